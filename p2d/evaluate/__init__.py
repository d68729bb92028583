"""`p2d evaluate`: measure every saved epoch of a run (structure, identity, smile drift, cycle error,
realism as KID) on the manifest's test rows, and suggest the best epoch by a written rule.

The parts: `metrics` (the measures as plain numpy, their intervals, the tone-and-texture features),
`rule` (the best-epoch rule), `measure` (one epoch with dlib on the test split), `run` (a run, epoch
by epoch: evaluate.csv, the outputs kept for the cross cycle and agreement, the result). Every name
callers use is importable from `p2d.evaluate` itself.

What each column of RUN/evaluate.csv measures and how the epoch is picked, for users: docs/evaluation.md.
Why the measures and the rule are what they are: docs/decisions/evaluation.md; how the rule was tested
on runs whose true error is known: docs/evaluate_known_answer.md.
"""


from p2d.evaluate.metrics import (  # noqa: F401
    CROSS_REFERENCES,
    DETECT_MIN_PX,
    DLIB_CHIP_PX,
    DLIB_FEATURE_DIM,
    DLIB_FEATURE_SCALE,
    GRADIENT_LEVELS,
    METRIC_LABELS,
    TONE_FEATURE_SCALE,
    TONE_LEVELS,
    TONE_SCALES,
    agreement_errors,
    bootstrap_ci,
    cross_cycle_errors,
    cross_reference_epochs,
    detect_upsample,
    embedding_distance,
    kid,
    kid_ci,
    l1_error,
    landmark_error,
    mean_ci,
    mean_gap_ci,
    mmd2_unbiased,
    polynomial_kernel,
    standardize,
    tone_texture_features,
    Translator,
    wilson_interval,
)
from p2d.evaluate.rule import (  # noqa: F401
    AGREES_WITH_THE_RUN,
    DRIFT_TRENDS,
    KEEPS_THE_PHOTO,
    LOOKS_LIKE_A_DRAWING,
    ONE_SIDED_DRIFT_TRENDS,
    ONE_SIDED_KEEPS_THE_PHOTO,
    ONE_SIDED_SCORE_GROUPS,
    REALISM_TERMS,
    SCORE_GROUPS,
    SCORE_TERMS,
    SHARE_COLUMNS,
    BestEpochRule,
    drift_flags,
    grouped_scores,
    images_to_separate,
    learning_note,
    rule_scores,
    score_groups,
    stable_pick,
    suggest_best,
    tie_set,
    value_and_noise,
)
from p2d.evaluate.measure import (  # noqa: F401
    EvalSettings,
    FaceLandmarks,
    FaceProbe,
    measure,
    Reference,
)
from p2d.evaluate.run import (  # noqa: F401
    CROSS_CACHE,
    EVALUATE_CSV,
    OUTPUTS_DIR,
    SUMMARY_GROUPS,
    add_agreement,
    add_cross_cycle,
    evaluate_run,
    EvaluateResult,
    load_test_image,
    metric_cell,
    parse_epochs,
    torch_translator,
)
