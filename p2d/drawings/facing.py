"""Which way a drawn face looks: a small classifier p2d trains and ships (frontal, left, right).

A drawn face found by any detector is cut out with a quarter of its box as context on each side
(the outline of the head and hair tells a turned head as much as the features do), turned gray,
scaled to `CROP_PX` square and described by its histogram of oriented gradients (OpenCV's
HOGDescriptor). A multinomial logistic regression on that descriptor gives the probability of each
facing. It is mirror-consistent by construction: the crop's mirror is scored too, with left and
right swapped, and the two are averaged; as the crop of a mirrored drawing is the mirrored crop
(`face_crop`), a drawing and its mirror image get mirrored answers (to ~0.01 in probability).

A model file names its features (`facing_features`; a file without the field reads "hog"). Besides
the HOG alone there is "hog+asymmetry": how far the HOG differs from the mirrored crop's, summed
per block, since a frontal face is nearly its own mirror image and a linear model on the HOG
cannot measure that distance. The shipped model uses the HOG alone: the asymmetry fell short of the
bar set for it (research/README.md).

The weights (`p2d/drawings/weights/drawing_facing.npz`, a few tens of KB) were trained by
`python -m p2d.drawings.build_facing` on the hand-labelled faces of the label CSV's train split
(three-quarter views count as left / right, as in the `facing` column), with jittered boxes so that
the boxes of any detector, not only hand boxes, are read alike. Facing follows `p2d.faces.yaw_deg`:
"right" means the nose points to the image right.
"""

from __future__ import annotations

import math
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from p2d.drawings import WEIGHTS_DIR
from p2d.errors import ModelFileMissing

MODEL_FILE = WEIGHTS_DIR / "drawing_facing.npz"
CLASSES = ("frontal", "left", "right")
CROP_PX = 48
CONTEXT = 0.25  # of the box's side, added on each side of it


def face_crop(image: np.ndarray, box: tuple[float, float, float, float], crop_px: int = CROP_PX,
              context: float = CONTEXT) -> np.ndarray:
    """The gray square around `box` (its centre, its larger side plus `context` of it on each side),
    `crop_px` wide, uint8; what lies past the image's edge repeats the edge. Shrinking blurs first
    (a Gaussian of 0.4 source pixels per crop pixel: thin drawn lines must not alias away), and every
    step is symmetric, so the crop of a mirrored image around the mirrored box (`mirror_box`) is the
    mirrored crop (to a few gray levels: OpenCV interpolates in fixed point)."""
    import cv2

    gray = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    x, y, w, h = box
    side = max(w, h, 1e-6) * (1 + 2 * context)
    cx, cy = x + w / 2, y + h / 2  # box coordinates: pixel i spans [i, i + 1)
    s = crop_px / side
    if s < 1:  # blur only the region the warp reads (plus the blur's reach), not the whole image
        sigma = 0.4 / s
        reach = side / 2 + 4 * sigma + 2
        x0, x1 = max(0, math.floor(cx - reach)), min(gray.shape[1], math.ceil(cx + reach))
        y0, y1 = max(0, math.floor(cy - reach)), min(gray.shape[0], math.ceil(cy + reach))
        if x1 > x0 and y1 > y0:
            gray = cv2.GaussianBlur(gray[y0:y1, x0:x1], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
            cx, cy = cx - x0, cy - y0
    # pixel centres sit at i + 0.5 in box coordinates: box centre -> crop centre, scaled by s
    m = np.array([[s, 0, crop_px / 2 - 0.5 + s * (0.5 - cx)], [0, s, crop_px / 2 - 0.5 + s * (0.5 - cy)]])
    return cv2.warpAffine(gray, m, (crop_px, crop_px), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


@lru_cache(maxsize=1)
def _hog():
    import cv2

    return cv2.HOGDescriptor((CROP_PX, CROP_PX), (16, 16), (8, 8), (8, 8), 9)


def hog_features(crop: np.ndarray) -> np.ndarray:
    """OpenCV's HOG of a CROP_PX square gray crop: 16 px blocks of 8 px cells, stride 8, 9 bins."""
    return _hog().compute(np.ascontiguousarray(crop)).ravel().astype(np.float64)


BLOCK_VALUES = 36  # one HOG block: 2 x 2 cells of 9 bins
FEATURES = "hog"  # what p2d.drawings.build_facing trains by default (the shipped model's)
FEATURE_KINDS = ("hog", "hog+asymmetry")  # what `facing_features` can make


def facing_features(crop: np.ndarray, kind: str = FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """The features of `crop` and of its mirror image. "hog": each one's HOG. "hog+asymmetry": each
    one's HOG followed by |HOG(crop) - HOG(mirror)| summed per block (25 values, the same for both:
    how far the face is from its own mirror image, block by block)."""
    h = hog_features(crop)
    hm = hog_features(np.ascontiguousarray(crop[:, ::-1]))
    if kind == "hog":
        return h, hm
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown facing features {kind!r}: "
                         "retrain with `python -m p2d.drawings.build_facing`")
    asym = np.abs(h - hm).reshape(-1, BLOCK_VALUES).sum(axis=1)
    return np.concatenate([h, asym]), np.concatenate([hm, asym])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


MIRROR = [0, 2, 1]  # class order under a left-right flip: frontal stays, left <-> right


class FacingClassifier:
    """Probabilities of frontal / left / right for a face box in a drawing (see the module docstring)."""

    def __init__(self, model_file: Path | str | None = None, weights: dict | None = None):
        """`weights` (mean, scale, coef, intercept, and `features`: the kind `facing_features` makes)
        instead of a file: a model being trained."""
        self.model_file = Path(model_file) if model_file else MODEL_FILE
        if weights is not None:
            self._weights = weights

    @cached_property
    def _weights(self) -> dict[str, np.ndarray]:
        if not self.model_file.is_file():
            raise ModelFileMissing(
                f"{self.model_file} is missing: reinstall p2d, or rebuild it with "
                "`python -m p2d.drawings.build_facing` in a checkout of p2d")
        with np.load(self.model_file) as z:
            weights = {k: z[k] for k in ("mean", "scale", "coef", "intercept")}
            weights["features"] = str(z["features"]) if "features" in z.files else "hog"
        return weights

    def logits(self, features: np.ndarray) -> np.ndarray:
        w = self._weights
        return ((features - w["mean"]) / w["scale"]) @ w["coef"] + w["intercept"]

    def probabilities(self, image: np.ndarray, box: tuple[float, float, float, float]) -> dict[str, float]:
        crop = face_crop(image, box)
        p = softmax(self.logits(np.stack(facing_features(crop, self._weights.get("features", "hog")))))
        both = (p[0] + p[1][MIRROR]) / 2
        return {c: float(v) for c, v in zip(CLASSES, both)}

    def facing(self, image: np.ndarray, box: tuple[float, float, float, float]) -> str:
        p = self.probabilities(image, box)
        return max(p, key=p.get)
