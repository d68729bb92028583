"""The measures `p2d evaluate` is built from, as plain numpy: pixel and landmark errors, the cross
cycle and agreement, KID and its kernel, bootstrap and Wilson intervals, and the tone-and-texture features."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from p2d.errors import P2DError
from p2d.faces import inter_ocular


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


# Other epochs whose drawing->photo generator feeds an epoch's cross cycle (`cross_cycle_errors`): 8
# spread over the run rank the epochs as well as all of them do (docs/decisions/evaluation.md).
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


def mean_gap_ci(x: Sequence[float], y: Sequence[float], n_boot: int = 200,
                seed: int = 0) -> tuple[float, float, float]:
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


# Standardized tone features are scaled down so that x.y/d stays ~0.1 and the cubic kernel works near
# its linear part: the MMD is then mostly the difference of means, far less noisy on a small test split
# (tests/test_evaluate.py tells a 15% darker copy from a 2 px shift on 17 drawings at this scale).
TONE_FEATURE_SCALE = 0.3


def standardize(features: np.ndarray, reference: np.ndarray, min_std: float = 0.01,
                scale: float = TONE_FEATURE_SCALE) -> np.ndarray:
    """Features in units of the reference set's spread per dimension, times `scale`; `min_std`
    keeps near-constant dimensions from blowing up."""
    mu = reference.mean(axis=0)
    sd = np.maximum(reference.std(axis=0), min_std)
    return (np.asarray(features, float) - mu) / sd * scale




# Short names of the metric columns, for tables (terminal and report).
METRIC_LABELS = {
    "face_found_drawing": "face found", "landmark_nme": "landmark err", "smile_drift": "smile drift",
    "identity_drawing": "id drawing", "identity_cycle": "id cycle", "cycle_l1_photo": "cycle photo",
    "cycle_l1_drawing": "cycle drawing", "kid_drawing": "KID drawing", "kid_photo": "KID photo",
    "brightness_gap_drawing": "brightness", "contrast_gap_drawing": "contrast",
    "kid_tone_drawing": "KID tone drawing", "kid_tone_photo": "KID tone photo",
    "agreement_drawing": "agreement", "cross_cycle_drawing": "cross cycle", "redraw_drawing": "redraw",
}
