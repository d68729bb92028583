"""The drawing-face detector p2d trains and ships: dlib fHOG filters per view, in p2d/drawings/weights/.

The stock detectors were trained on photos; these filters were trained on hand-labelled
public-domain clip art and the face cards of free card decks (`python -m p2d.drawings.build_fhog`
rebuilds them from `weights/drawing_faces_labels.csv` and Debian's `openclipart-png` and
`gnome-cards-data`). One filter per view, as dlib's own frontal detector is several HOG filters:

- `frontal`: trained with left-right flips (a frontal face is its own mirror);
- `side`: profiles and three-quarter views, trained on faces that look to the image LEFT
  (right-facing ones mirrored); run on the image and on its mirror, so it also finds faces looking
  right. (The labels keep profile and three-quarter apart; too few profiles are labelled yet for a
  filter of their own.)

Facing follows `p2d.faces.yaw_deg`: a face "looks right" when its nose points to the image right.
A box's `view` is `frontal`, `left` or `right` (the label CSV also tells three-quarter from profile).
`view_scores` asks all three (frontal, side, mirrored side) about a box any detector found: which
way a drawn face looks where the landmarks do not hold.

Every image is first scaled so its longer side is `work_side_px` (the size the filters were
trained at: small drawings are enlarged, large scans shrunk), then searched with one 2x upsampling
(the filters were trained on work images upsampled once): faces down to ~32 px at work size. Images below
`min_side_px` on either side are too small to hold a findable face: `detect` returns no box, and
`p2d.images.too_small` gives the reason a batch run records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from p2d.drawings import WEIGHTS_DIR
from p2d.errors import ModelFileMissing
from p2d.images import MIN_SIDE_PX, too_small

# filter name -> file; the order is the order of `run_multiple`'s detector indices.
MODEL_FILES = {"frontal": "drawing_face_frontal.svm", "side": "drawing_face_side.svm"}
VIEWS = ("frontal", "left", "right")
# The view of a box found by each filter, on the image as given (False) and on its mirror (True).
VIEW_OF = {("frontal", False): "frontal", ("side", False): "left", ("side", True): "right"}

WORK_SIDE_PX = 400
# The lowest score at which no box fell on the eval split's face-free drawings or scikit-image's face-free
# pictures: the one threshold tuned on the eval split (docs/decisions/drawing-detector.md#the-fhog-filters).
MIN_SCORE = -0.74
# view_scores: a found face is scaled to about the size the filters were trained at (32 px at work
# size, searched with one 2x upsampling), and a filter that puts no window on it scores the floor.
VIEW_FACE_PX = 48
VIEW_SCORE_FLOOR = -2.0


@dataclass(frozen=True)
class DrawnFace:
    """A face box (x, y, w, h) in the image's pixels, the view the filter knows, and its SVM score."""

    x: float
    y: float
    w: float
    h: float
    view: str
    score: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)


# ----------------------------------------------------------------------------- pure geometry


def work_scale(shape: tuple[int, ...], work_side_px: int = WORK_SIDE_PX) -> float:
    """The factor that brings an image's longer side to `work_side_px`."""
    return work_side_px / max(int(shape[0]), int(shape[1]))


def mirror_box(box: tuple[float, float, float, float], width: float) -> tuple[float, float, float, float]:
    """A box (x, y, w, h) on an image `width` pixels wide, in the left-right mirrored image."""
    x, y, w, h = box
    return (width - x - w, y, w, h)


def clip_box(box: tuple[float, float, float, float], width: float,
             height: float) -> tuple[float, float, float, float]:
    """The part of an (x, y, w, h) box inside a width x height image (HOG windows can overhang the edge)."""
    x0, y0 = min(max(box[0], 0.0), width), min(max(box[1], 0.0), height)
    x1, y1 = min(max(box[0] + box[2], 0.0), width), min(max(box[1] + box[3], 0.0), height)
    return (x0, y0, x1 - x0, y1 - y0)


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def suppress_overlaps(faces: list[DrawnFace], max_iou: float = 0.3) -> list[DrawnFace]:
    """Strongest first; a box overlapping a kept one by more than `max_iou` is dropped (the
    filters of different views fire on the same face; the best-scoring view names it)."""
    kept: list[DrawnFace] = []
    for f in sorted(faces, key=lambda f: -f.score):
        if all(box_iou(f.box, k.box) <= max_iou for k in kept):
            kept.append(f)
    return kept


def view_from_scores(scores: dict[str, float], min_margin: float = 0.0) -> str:
    """The view whose filter scored best, if it beats the runner-up by more than `min_margin`, else ""."""
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    if not ranked or (len(ranked) > 1 and ranked[0][1] - ranked[1][1] <= min_margin):
        return ""
    return ranked[0][0]


# ----------------------------------------------------------------------------- the detector


def model_paths(models_dir: Path | str | None = None) -> dict[str, Path]:
    """{filter name: path} of the shipped (or given) model files; ModelFileMissing if any is absent."""
    folder = Path(models_dir) if models_dir else WEIGHTS_DIR
    paths = {name: folder / file for name, file in MODEL_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ModelFileMissing(
            f"drawing-face model file(s) missing: {', '.join(missing)}. They ship with p2d; reinstall it "
            f"(`pip install -e .`), or rebuild them with `python -m p2d.drawings.build_fhog` in a checkout "
            f"of p2d."
        )
    return paths


class DrawingFaceDetector:
    """The shipped fHOG filters, loaded on first use; `detect(image)` -> faces, best first."""

    def __init__(
        self,
        models_dir: Path | str | None = None,
        work_side_px: int = WORK_SIDE_PX,
        min_side_px: int = MIN_SIDE_PX,
        upsample: int = 1,
    ):
        if work_side_px < 64 or min_side_px < 1 or upsample < 0:
            raise ValueError("work_side_px must be >= 64, min_side_px >= 1, upsample >= 0")
        self.paths = model_paths(models_dir)
        self.work_side_px = work_side_px
        self.min_side_px = min_side_px
        self.upsample = upsample

    @cached_property
    def _filters(self) -> list:
        import dlib

        return [dlib.simple_object_detector(str(p)) for p in self.paths.values()]

    def detect(self, image: np.ndarray, min_score: float = MIN_SCORE,
               max_iou: float = 0.3) -> list[DrawnFace]:
        """Faces in an RGB (or gray) uint8 image scoring at least `min_score`, overlaps removed
        (`max_iou`), strongest first. An image below `min_side_px` gives no face."""
        if too_small(image, self.min_side_px):
            return []
        import cv2

        if image.ndim == 2:  # the filters were trained on RGB; dlib's gray pyramid gives other boxes
            image = np.stack([image] * 3, axis=-1)
        image = image[..., :3]
        s = work_scale(image.shape, self.work_side_px)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s)))
        work = np.ascontiguousarray(cv2.resize(image, size, interpolation=interp))
        found = (self._run(work, False, min_score)
                 + self._run(np.ascontiguousarray(work[:, ::-1]), True, min_score))
        h, w = image.shape[:2]
        return [replace(f, **dict(zip("xywh", clip_box((f.x / s, f.y / s, f.w / s, f.h / s), w, h))))
                for f in suppress_overlaps(found, max_iou)]

    def view_scores(self, image: np.ndarray, box: tuple[float, float, float, float],
                    face_px: int = VIEW_FACE_PX, min_iou: float = 0.3,
                    floor: float = VIEW_SCORE_FLOOR) -> dict[str, float]:
        """{view: the best score of that view's filter on a window overlapping `box` by `min_iou`} for a
        face box found by any detector: frontal, left (the side filter), right (the side filter on the
        mirror). The box's surroundings are scaled so the box is `face_px` wide (the filters' size);
        a view no window of which overlaps the box scores `floor`."""
        import cv2
        import dlib

        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        image = image[..., :3]
        x, y, w, h = box
        if w < 1 or h < 1 or too_small(image, self.min_side_px):
            return {v: floor for v in VIEWS}
        s = face_px / max(w, h)
        # the box and one box-width of context on each side (the filters see the head's outline)
        x0, y0 = max(0, int(x - w)), max(0, int(y - h))
        x1, y1 = min(image.shape[1], int(x + 2 * w)), min(image.shape[0], int(y + 2 * h))
        crop = image[y0:y1, x0:x1]
        size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
        work = np.ascontiguousarray(
            cv2.resize(crop, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR))
        target = ((x - x0) * s, (y - y0) * s, w * s, h * s)
        best = {v: floor for v in VIEWS}
        for mirrored in (False, True):
            img = np.ascontiguousarray(work[:, ::-1]) if mirrored else work
            names = list(self.paths)[1:] if mirrored else list(self.paths)
            filters = self._filters[1:] if mirrored else self._filters
            rects, scores, which = dlib.fhog_object_detector.run_multiple(filters, img, self.upsample, floor)
            for r, score, k in zip(rects, scores, which):
                found = (float(r.left()), float(r.top()), float(r.width()), float(r.height()))
                if mirrored:
                    found = mirror_box(found, img.shape[1])
                view = VIEW_OF[(names[k], mirrored)]
                if box_iou(found, target) >= min_iou and score > best[view]:
                    best[view] = float(score)
        return best

    def _run(self, work: np.ndarray, mirrored: bool, min_score: float) -> list[DrawnFace]:
        import dlib

        names = list(self.paths)
        # The frontal filter was trained with flips: running it on the mirror only duplicates boxes.
        filters = self._filters if not mirrored else self._filters[1:]
        names = names if not mirrored else names[1:]
        rects, scores, which = dlib.fhog_object_detector.run_multiple(filters, work, self.upsample, min_score)
        out = []
        for r, score, k in zip(rects, scores, which):
            box = (float(r.left()), float(r.top()), float(r.width()), float(r.height()))
            if mirrored:
                box = mirror_box(box, work.shape[1])
            out.append(DrawnFace(*box, view=VIEW_OF[(names[k], mirrored)], score=float(score)))
        return out
