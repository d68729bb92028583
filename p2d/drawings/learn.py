"""Train a drawing-face detector (dlib fHOG) on a user's own face boxes: `--learn`, `p2d detector train`.

An artist's set is one style; a detector trained on a few dozen of its faces finds the rest, where
detectors trained on photos miss. dlib's `train_simple_object_detector` learns one fHOG filter
from boxes in images, everything outside the boxes being negative examples. Each box is cut out
with its surroundings (`CONTEXT_SIDES` box sides on every side: negatives from the same drawing) and
scaled so the box is `BOX_PX` across, a little above dlib's 80x80 detection window, so every face
is seen at the window's scale; left-right flips double the faces. Boxes are made square (same
centre and area) first: the window has one aspect ratio, and dlib refuses boxes it cannot match.
crop-drawings' `--learn` and `p2d detector train` (a boxes file and a folder: p2d.curate.learn) both
call `train_detector`.
"""

from __future__ import annotations

import cv2
import numpy as np

from p2d.errors import P2DError

BOX_PX = 96  # box side in the training crops: dlib's 80 px window plus a margin
CONTEXT_SIDES = 1.0  # surroundings kept on each side of a box, in box sides
MIN_BOXES = 6  # below this a filter learns the few faces, not the style
MAX_ASPECT = 2.0  # boxes wider (or taller) than this many times their height (width) are refused


# ----------------------------------------------------------------------------- pure geometry


def square_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The square with the box's centre and area."""
    x, y, w, h = box
    side = float(np.sqrt(w * h))
    return (x + w / 2 - side / 2, y + h / 2 - side / 2, side, side)


def crop_window(box: tuple[float, float, float, float], width: int, height: int,
                context_sides: float = CONTEXT_SIDES) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the box grown by `context_sides` box sides on each side, inside the image."""
    x, y, w, h = box
    x0, y0 = int(max(0, np.floor(x - context_sides * w))), int(max(0, np.floor(y - context_sides * h)))
    x1, y1 = (int(min(width, np.ceil(x + w + context_sides * w))),
              int(min(height, np.ceil(y + h + context_sides * h))))
    return x0, y0, x1, y1


def check_boxes(boxes: list[tuple[float, float, float, float]], min_boxes: int = MIN_BOXES,
                max_aspect: float = MAX_ASPECT) -> None:
    """A P2DError naming the fix when the boxes cannot train a detector."""
    if len(boxes) < min_boxes:
        raise P2DError(f"only {len(boxes)} face box(es) to learn from; a detector needs at least "
                       f"{min_boxes}: add hand boxes (path,x,y,w,h) to the boxes file for more drawings")
    aspects = np.array([w / h for _, _, w, h in boxes])
    spread = float(aspects.max() / aspects.min())
    if spread > max_aspect:
        odd = int(np.argmax(np.abs(np.log(aspects / np.median(aspects)))))
        raise P2DError(f"the boxes' shapes differ too much (width/height from {aspects.min():.2f} to "
                       f"{aspects.max():.2f}; at most {max_aspect:g}x apart): draw every box around the same "
                       f"part of the face, brows to chin and cheek to cheek (box {odd + 1} is the odd one)")


def training_example(image: np.ndarray, box: tuple[float, float, float, float], box_px: int = BOX_PX
                     ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The crop around one (square) box scaled so the box is `box_px` wide, and the box in it
    as (left, top, right, bottom)."""
    h, w = image.shape[:2]
    sq = square_box(box)
    x0, y0, x1, y1 = crop_window(sq, w, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise P2DError(f"box {tuple(round(v) for v in box)} lies outside its {w}x{h} image: fix that row")
    s = box_px / sq[2]
    crop = image[y0:y1, x0:x1]
    size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    left, top = (sq[0] - x0) * s, (sq[1] - y0) * s
    return np.ascontiguousarray(crop), (round(left), round(top), round(left + box_px), round(top + box_px))


# ----------------------------------------------------------------------------- training


def train_detector(examples: list[tuple[np.ndarray, tuple[float, float, float, float]]], c: float = 5.0,
                   min_boxes: int = MIN_BOXES, max_aspect: float = MAX_ASPECT, threads: int = 2):
    """A dlib fHOG detector (`simple_object_detector`) trained on (RGB image, face box) pairs."""
    import dlib

    check_boxes([b for _, b in examples], min_boxes, max_aspect)
    images, rects = [], []
    for image, box in examples:
        crop, (left, top, right, bottom) = training_example(image, box)
        images.append(crop)
        rects.append([dlib.rectangle(left, top, right, bottom)])
    options = dlib.simple_object_detector_training_options()
    options.add_left_right_image_flips = True  # a face looking left teaches the one looking right
    options.C = c
    options.num_threads = threads
    options.be_verbose = False
    try:
        return dlib.train_simple_object_detector(images, rects, options)
    except RuntimeError as exc:  # dlib explains which boxes it cannot use
        raise P2DError(f"dlib could not train on these boxes: {exc}. Draw boxes of one shape around the face "
                       "(brows to chin) and drop very small ones") from None
