"""The best-epoch rule of `p2d evaluate`: scores with their noise, the tie set, drift flags, the
stable-stretch pick, and the notes on a test split too small or training that learned nothing."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from p2d.errors import P2DError
from p2d.evaluate.metrics import METRIC_LABELS, wilson_interval



@dataclass(frozen=True)
class BestEpochRule:
    """The rule that suggests a best epoch, with its tolerances (units in the names).

    A person picks the epoch that looks most like a drawing while the face is still the same face.

    Gates: an epoch is *eligible* when its structure and identity are within a tolerance of the best
    epoch's: the share of drawings with a face found at most `face_found_drop` below the best share,
    the landmark error at most `landmark_rise_iod` above the lowest (0.05 IOD is about the dlib
    predictor's own error on faces), the identity distance at most `identity_rise` above the lowest
    (a tenth of dlib's 0.6 range). An epoch fails a gate only when its whole 95% interval lies past
    the best epoch's interval by more than the tolerance (one face more or less on a small test
    split does not flip it, and the best value, the luckiest of the epochs, is not the standard);
    the landmark gate judges only epochs with at least `min_landmark_pairs` faces found in both
    photo and drawing.

    Score (lower is better; see `grouped_scores`): the mean of three questions, each the mean of
    its terms scaled to their range over the epochs compared. Every term judges the
    photo->drawing generator, the one the user keeps. Is it a drawing of this photo
    (KEEPS_THE_PHOTO: the cross cycle error and the photo-drawing identity distance)? Is it what
    the run settled on, not a swing of one epoch (AGREES_WITH_THE_RUN: `agreement_drawing`, the
    distance to the median of the drawings of the same photo by every epoch in evaluate.csv)?
    Does it look like a drawing (LOOKS_LIKE_A_DRAWING: realism in both feature spaces, the
    brightness and contrast gaps to the test drawings)? The realism measures also tell training that
    learned nothing (`learning_note`) and flag tone drift (DRIFT_TRENDS). The cross cycle (real
    drawing -> another epoch's photo -> this epoch's drawing) ends in G_photo2drawing, so its error is
    that generator redrawing a face from a photo it did not make itself. The epoch's own drawing cycle
    and the photo cycle are measured but not scored: the photo cycle ends in G_drawing2photo, and
    CycleGAN can satisfy it by hiding the photo in its drawing (Chu et al. 2017, "CycleGAN, a master of
    steganography"). Why each term is in or out, with the known-answer figures that decided it:
    docs/decisions/evaluation.md.

    Two epochs are *tied* when their scores differ by less than `noise_multiple` x their combined
    interval half-widths. Among the tie set of the best-scoring
    eligible epoch, epochs with a drift flag (see `drift_flags`) are passed over, and the
    lowest-scoring one in a stable good stretch (a neighbouring epoch tied too, so not an isolated
    lucky one; `stable_pick`) is suggested. When no epoch looks more like a drawing than the
    first beyond the noise, the verdict carries a warning that none is good (`learning_note`).
    A gate whose metric is missing in every epoch is skipped (and said so).
    """

    face_found_drop: float = 0.10
    landmark_rise_iod: float = 0.05
    identity_rise: float = 0.05
    noise_multiple: float = 1.0
    outlier_margin: float = 0.25  # score units (a quarter of the epochs' range) on top of the noise
    min_landmark_pairs: int = 10  # fewer face pairs than this: the landmark gate does not judge the epoch

    def __post_init__(self):
        if self.min_landmark_pairs < 1:
            raise P2DError(f"min_landmark_pairs={self.min_landmark_pairs}: give at least 1 face pair")
        for name, value in asdict(self).items():
            if name != "min_landmark_pairs" and not (0 <= value < 10):
                raise P2DError(f"best-epoch tolerance {name}={value} must be >= 0 (and sensible, < 10)")


# Score terms, all about G_photo2drawing (BestEpochRule says why the photo cycle is not one):
# column, and whether its size (not its sign) counts; in the three questions the score asks, each
# weighing a third whatever its number of measures. LOOKS_LIKE_A_DRAWING also tells training that
# learned nothing (`learning_note`) and tone drift (DRIFT_TRENDS).
LOOKS_LIKE_A_DRAWING = (
    ("kid_tone_drawing", False), ("kid_drawing", False), ("brightness_gap_drawing", True),
    ("contrast_gap_drawing", True),
)
KEEPS_THE_PHOTO = (("cross_cycle_drawing", False), ("identity_drawing", False))
AGREES_WITH_THE_RUN = (("agreement_drawing", False),)
SCORE_GROUPS = (KEEPS_THE_PHOTO, AGREES_WITH_THE_RUN, LOOKS_LIKE_A_DRAWING)
SCORE_TERMS = KEEPS_THE_PHOTO + AGREES_WITH_THE_RUN + LOOKS_LIKE_A_DRAWING
# Shares of yes/no per image (their interval is Wilson's, over `<col>_n` images).
SHARE_COLUMNS = ("face_found_drawing", "face_found_photo")
# Trends that turn: a rise beyond the noise after a fall is drift (the experiments' late epochs);
# like the score, only of G_photo2drawing's measures.
DRIFT_TRENDS = (("cross_cycle_drawing", False), ("brightness_gap_drawing", True),
                ("contrast_gap_drawing", True))

# One-sided runs (cut, fastcut) have no drawing->photo generator, so no cross cycle. What takes its
# place in "is it a drawing of this photo": `redraw_drawing`, |G_photo2drawing(real drawing) - drawing|.
# Like the cross cycle, it is that generator redrawing a known drawing, pixel by pixel, from an input it
# did not make; here the input is the drawing itself, which a generator that keeps content and changes
# only the domain should leave nearly alone (the identity idea of Taigman et al. 2017, which CUT's
# identity NCE trains in feature space, not in pixels). Its blind spot, a generator that changes
# nothing, scores best on it and worst on realism: the realism question and `learning_note` catch it.
# The photo-drawing identity distance stays beside it.
ONE_SIDED_KEEPS_THE_PHOTO = (("redraw_drawing", False), ("identity_drawing", False))
ONE_SIDED_SCORE_GROUPS = (ONE_SIDED_KEEPS_THE_PHOTO, AGREES_WITH_THE_RUN, LOOKS_LIKE_A_DRAWING)
ONE_SIDED_DRIFT_TRENDS = (("redraw_drawing", False),) + DRIFT_TRENDS[1:]


def score_groups(kind: str) -> tuple:
    """The score's questions for a run of `kind` (its recipe's [model] kind)."""
    from p2d.recipe import ONE_SIDED_KINDS

    return ONE_SIDED_SCORE_GROUPS if kind in ONE_SIDED_KINDS else SCORE_GROUPS


def value_and_noise(df: pd.DataFrame, col: str, absolute: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A metric column (its size with `absolute`) and its half-width per row: half the bootstrap
    interval (`col_lo`, `col_hi`), else the `col_std` of older files, else 0 (no noise known)."""
    v = df[col].to_numpy(float) if col in df else np.full(len(df), np.nan)
    if col + "_lo" in df and col + "_hi" in df:
        h = (df[col + "_hi"].to_numpy(float) - df[col + "_lo"].to_numpy(float)) / 2
    elif col + "_std" in df:
        h = df[col + "_std"].to_numpy(float)
    else:
        h = np.zeros(len(df))
    return (np.abs(v) if absolute else v), np.nan_to_num(h, nan=0.0)


def rule_scores(df: pd.DataFrame, terms=SCORE_TERMS) -> tuple[np.ndarray, np.ndarray]:
    """(score, half-width) per row: the mean over the measured terms of (value - lowest) / scale
    (for a term whose size counts, the size beyond its half-width),
    scale = the range over the rows plus the median interval width, so a term that only moves within
    its noise spans about half the range an informative one does. Half-widths add in quadrature.
    All NaN when no term is measured."""
    zs, hs = [], []
    for col, absolute in terms:
        v, h = value_and_noise(df, col, absolute)
        if not np.isfinite(v).any():
            continue
        if absolute:  # a gap within its noise of 0 is no gap: only the size beyond the noise counts
            v = np.maximum(v - h, 0.0)
        scale = np.nanmax(v) - np.nanmin(v) + 2 * float(np.median(h))
        scale = scale if scale > 0 else 1.0
        zs.append((v - np.nanmin(v)) / scale)
        hs.append(h / scale)
    return _mean_of_rows(zs, hs, len(df))


def _mean_of_rows(zs: list, hs: list, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the mean of the finite rows of zs and their half-widths hs added in quadrature
    (divided by the count); NaN where none is finite, all NaN when there are no rows."""
    if not zs:
        return np.full(n, np.nan), np.zeros(n)
    z, h = np.array(zs), np.array(hs)
    count = np.isfinite(z).sum(axis=0)
    with np.errstate(invalid="ignore"):
        score = np.where(count > 0, np.nansum(z, axis=0) / np.maximum(count, 1), np.nan)
    noise = np.sqrt(np.nansum(np.where(np.isfinite(z), h, 0) ** 2, axis=0)) / np.maximum(count, 1)
    return score, noise


def grouped_scores(df: pd.DataFrame, groups=SCORE_GROUPS) -> tuple[np.ndarray, np.ndarray]:
    """(score, half-width) per row: the mean over the measured groups of each group's `rule_scores`,
    so each question counts the same however many measures ask it (four realism measures, which
    move together, would otherwise outvote the two that ask whether the drawing is of this photo)."""
    parts = [rule_scores(df, terms) for terms in groups]
    parts = [(z, h) for z, h in parts if np.isfinite(z).any()]
    return _mean_of_rows([z for z, _ in parts], [h for _, h in parts], len(df))


def tie_set(score: np.ndarray, noise: np.ndarray, candidates: np.ndarray,
            multiple: float = 1.0) -> np.ndarray:
    """Indices of the candidates tied with the best-scoring one: score within `multiple` x the
    combined half-widths (sqrt(h_best^2 + h^2)); sorted by score."""
    idx = np.array([i for i in np.flatnonzero(candidates) if np.isfinite(score[i])], int)
    if not len(idx):
        return idx
    b = idx[np.argmin(score[idx])]
    tied = idx[score[idx] - score[b] <= multiple * np.hypot(noise[b], noise[idx]) + 1e-12]
    return tied[np.argsort(score[tied], kind="stable")]


def drift_flags(
    df: pd.DataFrame, score: np.ndarray, noise: np.ndarray, multiple: float = 1.0, margin: float = 0.25,
    trends=DRIFT_TRENDS,
) -> dict[int, list[str]]:
    """Drift flags per epoch (rows sorted by epoch): an epoch after the first whose score is worse
    than each of its neighbours' (one, for the last) by more than `multiple` x the combined noise
    plus `margin`; and an epoch where a
    DRIFT_TRENDS metric, after falling beyond its noise, has risen beyond its noise above its
    lowest value so far (a gap's size counted beyond its noise, as in `rule_scores`)."""
    epochs = [int(e) for e in df["epoch"]]
    flags: dict[int, list[str]] = {e: [] for e in epochs}
    for i, e in enumerate(epochs[1:], start=1):  # the first epoch is worse than the next by nature
        nb = [j for j in (i - 1, i + 1) if j < len(epochs) and np.isfinite(score[j])]
        if nb and np.isfinite(score[i]) and all(
            score[i] - score[j] > multiple * math.hypot(noise[i], noise[j]) + margin for j in nb
        ):
            worse_than = ", ".join(str(epochs[j]) for j in nb)
            flags[e].append(f"score {score[i]:.2f} far worse than epoch(s) {worse_than}")
    for col, absolute in trends:
        v, h = value_and_noise(df, col, absolute)
        if absolute:  # as in the score: a gap within its noise of 0 is no gap, so a lucky near-zero
            v = np.maximum(v - h, 0.0)  # epoch is not a low that every later epoch "rises" from
        label = ("|" + METRIC_LABELS.get(col, col) + "|") if absolute else METRIC_LABELS.get(col, col)
        for i in range(2, len(v)):
            past = v[:i]
            if not np.isfinite(v[i]) or not np.isfinite(past).any():
                continue
            m = int(np.nanargmin(past))
            fell = np.isfinite(v[0]) and v[0] - v[m] > multiple * math.hypot(h[0], h[m])
            rose = v[i] - v[m] > multiple * math.hypot(h[i], h[m])
            if fell and rose:
                flags[epochs[i]].append(f"{label} rising since epoch {epochs[m]} ({v[m]:.3f} -> {v[i]:.3f})")
    return flags


# Drawing-side realism: does the photo->drawing generator's output look more like the real drawings?
REALISM_TERMS = (("kid_tone_drawing", False), ("kid_drawing", False))


def learning_note(df: pd.DataFrame, terms=REALISM_TERMS, multiple: float = 1.0) -> str | None:
    """A sentence when no later epoch looks more like a drawing than the first evaluated one (rows
    sorted by epoch): on every measured REALISM_TERMS column, no epoch is lower than the first by
    more than `multiple` x their combined interval half-widths. Training that learns anything moves
    its outputs towards the drawings within a few epochs, so then no epoch is a good one (the
    lr, the data or the length of training is at fault). None when some epoch is better, or when
    fewer than 2 epochs or no such column were measured."""
    if len(df) < 2:
        return None
    measured = []
    for col, absolute in terms:
        v, h = value_and_noise(df, col, absolute)
        if not np.isfinite(v[0]) or not np.isfinite(v[1:]).any():
            continue
        measured.append(METRIC_LABELS.get(col, col))
        if any(v[0] - v[i] > multiple * math.hypot(h[0], h[i])
               for i in range(1, len(v)) if np.isfinite(v[i])):
            return None
    if not measured:
        return None
    first = int(df["epoch"].iloc[0])
    return (f"no epoch is good: none looks more like a drawing than epoch {first} ({' and '.join(measured)} "
            f"never lower beyond the noise), so the model did not learn the translation; train longer or "
            f"with another learning rate, or check the drawings, before keeping any epoch")


def stable_pick(score: np.ndarray, candidates: Sequence[int], tied: Sequence[int] | None = None) -> int:
    """Of candidate row indices, the lowest-scoring one in a stable good stretch: one with a
    neighbouring epoch in `tied` (the tie set; default: the candidates), so an isolated lucky
    epoch between two worse ones is passed over; when every candidate is isolated, the lowest
    score. Neighbours are not averaged in: a tied neighbour is as good within the noise, and an
    average would hold a worse neighbour against an epoch that is itself the best."""
    tied = set(candidates if tied is None else tied)
    stretch = [i for i in candidates if i - 1 in tied or i + 1 in tied]
    return min(stretch or candidates, key=lambda i: (score[i], i))


def _gate_reasons(df: pd.DataFrame, rule: BestEpochRule) -> tuple[dict[int, list[str]], list[str]]:
    """Per epoch, the gates it fails beyond the noise (its whole 95% interval past the best
    epoch's interval by more than the tolerance); and the gates measured in no epoch."""
    gates = [  # column, higher is better, tolerance, label
        ("face_found_drawing", True, rule.face_found_drop, "face found"),
        ("landmark_nme", False, rule.landmark_rise_iod, "landmark err"),
        ("identity_drawing", False, rule.identity_rise, "identity"),
    ]
    reasons: dict[int, list[str]] = {int(e): [] for e in df["epoch"]}
    skipped = []
    for col, higher, tol, label in gates:
        values, half = value_and_noise(df, col)
        if col == "landmark_nme" and "landmark_pairs" in df:  # a mean of 1-4 faces is not a measure
            values = np.where(df["landmark_pairs"].to_numpy(float) >= rule.min_landmark_pairs, values, np.nan)
        if np.isnan(values).all():
            skipped.append(label)
            continue
        lo, hi = values - half, values + half
        if col + "_lo" in df and col + "_hi" in df:
            lo = df[col + "_lo"].fillna(df[col]).to_numpy(float)
            hi = df[col + "_hi"].fillna(df[col]).to_numpy(float)
        if col in SHARE_COLUMNS:  # older files: bootstrap bounds, empty when all images agree
            lo, hi = _share_bounds(df, col, values, lo, hi)
        # The best epoch's value is the most favourable of noisy values (biased towards luck), so an
        # epoch is held against the edge of the best one's interval, not against its value: with
        # 24 faces, 0.42 and 0.71 faces found are not told apart.
        b = int(np.nanargmax(values) if higher else np.nanargmin(values))
        limit = lo[b] - tol if higher else hi[b] + tol
        for epoch, v, l_, h_ in zip(df["epoch"], values, lo, hi):
            if np.isnan(v):
                continue  # no face found in its drawings: the face-found gate judges that
            if (h_ < limit - 1e-12) if higher else (l_ > limit + 1e-12):
                sign = "<" if higher else ">"
                reasons[int(epoch)].append(
                    f"{label} {v:.3f} {sign} {limit:.3f}, interval [{l_:.3f}, {h_:.3f}]")
    return reasons, skipped


def _share_bounds(df: pd.DataFrame, col: str, values, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """A share's bounds widened to its Wilson interval over `<col>_n` images (older files kept
    bootstrap bounds, empty when all images agree). The count is that of test photos with a face,
    the same in every epoch, so a row that lacks it takes another row's."""
    n = df[col + "_n"] if col + "_n" in df else pd.Series(np.nan, index=df.index)
    n = n.fillna(n.max()).fillna(df["n_photos"] if "n_photos" in df else np.nan).to_numpy(float)
    wilson = [wilson_interval(v * k, int(k)) if not (np.isnan(k) or np.isnan(v)) else (l_, h_)
              for v, l_, h_, k in zip(values, lo, hi, n)]
    return (np.minimum(lo, [w[0] for w in wilson]), np.maximum(hi, [w[1] for w in wilson]))


def images_to_separate(n_images: int, gap: float, noise: float) -> int | None:
    """Test images needed for a score gap to exceed its noise, the half-width shrinking as
    1/sqrt(n): n * (noise / gap)^2 (None when the gap is 0)."""
    if gap <= 0 or n_images < 1:
        return None
    return int(math.ceil(n_images * (noise / gap) ** 2))


def suggest_best(df: pd.DataFrame, rule: BestEpochRule | None = None,
                 groups=SCORE_GROUPS) -> tuple[int | None, pd.DataFrame]:
    """(suggested epoch or None, a frame epoch / eligible / score / score_noise / flags / why) by
    `rule` over evaluate.csv rows; attrs: tie_set, skipped_gates, too_small (a sentence) when
    the test split cannot separate the tied epochs, and not_learned (a sentence, `learning_note`)
    when no epoch looks more like a drawing than the first. `groups`: the score's questions
    (`grouped_scores`; another set replays an earlier rule, as benchmarks/evaluate_known_answer.py does;
    ONE_SIDED_SCORE_GROUPS for a run without a drawing->photo generator, whose drift trends follow)."""
    rule = rule or BestEpochRule()
    if df.empty:
        return None, pd.DataFrame(columns=["epoch", "eligible", "score", "score_noise", "flags", "why"])
    df = df.sort_values("epoch").reset_index(drop=True)
    epochs = [int(e) for e in df["epoch"]]
    reasons, skipped = _gate_reasons(df, rule)
    score, noise = grouped_scores(df, groups)
    trends = ONE_SIDED_DRIFT_TRENDS if groups is ONE_SIDED_SCORE_GROUPS else DRIFT_TRENDS
    flags = drift_flags(df, score, noise, rule.noise_multiple, rule.outlier_margin, trends)
    eligible = np.array([not reasons[e] for e in epochs])
    tied = tie_set(score, noise, eligible, rule.noise_multiple)
    if not len(tied) and eligible.any():  # nothing scored: the earliest eligible epoch
        tied = np.flatnonzero(eligible)[:1]
    steady = [int(i) for i in tied if not flags[epochs[i]]]
    pick = stable_pick(score, steady or [int(i) for i in tied], [int(i) for i in tied]) if len(tied) else None
    best_epoch = epochs[pick] if pick is not None else None
    tie_epochs = sorted(epochs[i] for i in tied)
    rows = []
    for i, e in enumerate(epochs):
        if reasons[e]:
            why = "not eligible: " + "; ".join(reasons[e])
        elif e == best_epoch:
            why = f"suggested: score {score[i]:.3f} +- {noise[i]:.3f}"
            if len(tie_epochs) > 1:
                why += f", tied with {', '.join(str(t) for t in tie_epochs if t != e)}"
                why += "" if steady else " (all of them flagged)"
        elif e in tie_epochs:
            why = f"tied: score {score[i]:.3f} +- {noise[i]:.3f}" + (", flagged" if flags[e] else "")
        else:
            why = f"eligible, score {score[i]:.3f} +- {noise[i]:.3f}"
        rows.append({"epoch": e, "eligible": not reasons[e], "score": score[i], "score_noise": noise[i],
                     "flags": "; ".join(flags[e]), "why": why})
    table = pd.DataFrame(rows)
    table.attrs["tie_set"] = tie_epochs
    note = learning_note(df, multiple=rule.noise_multiple)
    if note:
        table.attrs["not_learned"] = note
    if skipped:
        table.attrs["skipped_gates"] = skipped
    if len(tie_epochs) > 1 and "n_photos" in df:
        table.attrs["too_small"] = _too_small_note(df, score, noise, tied, pick, rule.noise_multiple)
    return best_epoch, table


def _too_small_note(df, score, noise, tied, pick, multiple: float) -> str:
    """What the tie set says about the test split's size, and how many images would separate."""
    n = int(df["n_photos"].iloc[pick])
    others = [int(i) for i in tied if i != pick]
    far = max(others, key=lambda i: abs(score[i] - score[pick]))
    gap = abs(score[far] - score[pick])
    need = images_to_separate(n, gap, multiple * math.hypot(noise[far], noise[pick]))
    epochs = df["epoch"].astype(int).tolist()
    return (f"{len(tied)} epochs are tied within the noise of {n} test photos: the test split is too small "
            f"to separate them; " + (f"about {need} test photos would separate epoch {epochs[pick]} from "
                                     f"epoch {epochs[far]} (rebuild the manifest with --test-count {need})"
                                     if need else "their scores are equal"))
