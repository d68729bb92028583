"""`p2d evaluate`: measure every saved epoch of a run (structure, identity, smile drift, cycle error,
realism as KID) on the manifest's test rows, and suggest the best epoch by a written rule.

The parts: `metrics` (the measures as plain numpy, their intervals, the tone-and-texture features),
`rule` (the best-epoch rule), `measure` (one epoch with dlib on the test split), `run` (a run, epoch
by epoch: evaluate.csv, the outputs kept for the cross cycle and agreement, the result). Every name
callers use is importable from `p2d.evaluate` itself.

What each column of RUN/evaluate.csv measures (photo->drawing unless named otherwise):

- `face_found_drawing`: of the test photos in which dlib's HOG detector finds a face, the share whose
  drawing still has one (HOG again). `face_found_photo`: the same for drawing->photo, over the test
  drawings in which HOG finds a face (many drawings have none a detector can find).
- `landmark_nme`: mean distance between the 68 landmarks of a photo and those of its drawing, divided
  by the photo's inter-ocular distance, over the pairs where HOG finds both faces. `smile_drift`:
  the mean of `faces.smile_score(drawing) - smile_score(photo)` over the same pairs (positive: the
  model adds a smile, the artifact the experiments saw).
- `identity_drawing`, `identity_cycle`: distance between dlib's 128-d face-recognition embedding of
  the photo and that of its drawing / its photo->drawing->photo reconstruction. All three are
  aligned with the PHOTO's landmarks (same chip region), so the distance measures what the generator
  changed inside the face, and is defined even where no face is found in the output. dlib calls
  two faces the same person below 0.6.
- `cycle_l1_photo`, `cycle_l1_drawing`: mean |input - reconstruction| in units of full intensity
  (0..1), for photo->drawing->photo and drawing->photo->drawing.
- `kid_drawing` (+ `_std`): KID between the translated photos and the real test drawings;
  `kid_photo` (+ `_std`): between the translated drawings and the real test photos.
  `brightness_gap_drawing`: mean intensity of the translated photos minus that of the real test
  drawings (0..1; negative: darker, the late-epoch drift the experiments saw).
  `contrast_gap_drawing`: the same for the per-image intensity std (negative: flatter).
- `kid_tone_drawing`, `kid_tone_photo` (+ `_std`): KID in a second, offline feature space that sees
  tone and texture (`tone_texture_features`: gray-level CDF, gradient and Laplacian statistics at
  three scales), standardized by the real test images of that domain.
- `cross_cycle_drawing`: the drawing cycle through other epochs: each real test drawing is turned
  into a photo by the drawing->photo generator of other evaluated epochs (`CROSS_REFERENCES`, 8,
  spread over the run) and redrawn by this epoch's photo->drawing generator; the mean |drawing -
  redrawing| (0..1). In `cycle_l1_drawing` the two generators of one epoch learned together and
  can undo each other's errors (a photo a little too bright, then a drawing a little too dark), or
  hide in the photo what the drawing needs back (Chu et al. 2017); another epoch's photo carries
  no such pact, so what is left is how well this epoch draws a real drawing's face from a photo.
  On benchmarks/evaluate_known_answer.py's tasks its Spearman with the true error is 0.67-0.96 on
  the 11 that learn (the plain drawing cycle 0.79-0.98); with the faces split as before, where the
  sketch tasks' differences were subtler, 0.93-0.96 on those (the plain cycle 0.67-0.97).
  Recomputed each call from the photos kept in RUN/evaluate_outputs/, pairs of epochs cached there.
- `agreement_drawing`: how far this epoch's drawings of the test photos lie from what the other
  evaluated epochs drew: the mean |drawing - the pixelwise median of every evaluated epoch's
  drawing of that photo| (0..1). It needs no reference drawings: an epoch the training swung away
  from (darker, a mouth painted in, a lucky or unlucky step of a high learning rate) differs from
  the run's settled answer, while the median of many epochs cancels what each got wrong its own
  way. Derived from every epoch in evaluate.csv (the epochs measured so far with these settings; 3
  at least), recomputed each call from the drawings kept in RUN/evaluate_outputs/, so its value
  moves when epochs are added.
- `<metric>_lo`, `<metric>_hi`: the 95% bootstrap interval of every metric over the test images
  (200 resamples, the same for every epoch). With 10 test photos KID's interval is as wide as the
  differences between late epochs; `suggest_best` only prefers an epoch beyond this noise.

Faces on curated 128 px images: faces are framed like CelebA's aligned faces, so HOG's box is ~60 px,
at the lower limit of dlib's 80 px HOG window (benchmarks/evaluate.py: framed photos at 128 px are
found with or without upsampling, at 64 px none without and all with it). Images are therefore
upsampled (dlib's pyramid) to ~256 px before detection, which also covers small recipes. Where HOG still misses an input photo, its landmarks are taken in
the known framing box (`framing_box`), so the identity measure covers every photo; the structure
measures only count HOG-confirmed faces, because for an output "a face is found" is the
measurement itself.

Realism feature space (why not Inception): KID is normally computed on Inception-v3 features, whose
weights would have to be downloaded; nothing may download here. The one image network installed
with p2d is dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1`, shipped by
`face_recognition_models`). It is fed the whole curated image resized to 150x150 (3 channels),
through `compute_face_descriptor(chip)`, which needs no landmarks, so every output gets a feature
even when no face is found. Limits: the network was trained to tell people apart on photos, and is
built to ignore lighting, colour and texture, so this KID sees face shape and layout changes and
drawing-vs-photo appearance only as far as the descriptor encodes it. It does not see darkening
(hence `brightness_gap_drawing`) and values are not comparable with published Inception KIDs.
Descriptors have entries of std ~0.115 (norm ~1.32 over 128 dims); they are multiplied by
`DLIB_FEATURE_SCALE` so that x.y/d is about the cosine, as the cubic kernel (x.y/d + 1)^3 expects.
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
