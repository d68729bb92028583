"""Rebuild the shipped drawing-face filters (weights/*.svm) from the label CSV and openclipart-png.

Usage: python -m p2d.drawings.build_fhog [--clipart /usr/share/openclipart/png]
           [--cards /usr/share/aisleriot/cards] [--labels p2d/drawings/weights/drawing_faces_labels.csv]
           [--out p2d/drawings/weights] [--exclude FILE.sha256] [--C 1 5 20] [--window-px 64]

Needs Debian's `openclipart-png` (public domain) and aisleriot's card decks (`apt-get install
openclipart-png gnome-cards-data librsvg2-bin`; see labels.py). Only rows of
split `train` are used; of those, a quarter of the files (by SHA-256; a deck's cards together) is
held back to choose C, then the filter is retrained on all train files with the chosen C. Every file's SHA-256
must match the CSV (another package release is refused), and no file listed in --exclude (e.g.
../shared/eval-exclude.sha256) is ever read.

Two filters: `frontal` (frontal boxes, with left-right flips) and `side` (profiles and
three-quarter views, all as faces looking LEFT: right-facing ones are mirrored). In each filter's
training images the faces of the other filter, and faces too small for the window, are painted
over with the background (dlib treats every unboxed face as a negative).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from p2d.drawings import WEIGHTS_DIR
from p2d.drawings.fhog import MODEL_FILES, WORK_SIDE_PX, mirror_box, work_scale
from p2d.drawings.labels import CARDS, CLIPART, LABELS, available, load, read_labels
from p2d.ui import console, table

FILTER_OF_VIEW = {"frontal": "frontal", "left": "side", "three_quarter_left": "side",
                  "right": "side", "three_quarter_right": "side"}
MIRRORED_VIEWS = ("right", "three_quarter_right")
# Training images are the detector's work images upsampled once (the detector runs with one 2x
# upsampling), so a box of `window_px` here is a face of window_px / 2 at detection size.
TRAIN_UPSAMPLE = 2
VERBOSE = False


def square(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A square box with the same centre and area (one HOG window shape per filter)."""
    x, y, w, h = box
    side = (w * h) ** 0.5
    return (x + w / 2 - side / 2, y + h / 2 - side / 2, side, side)


def training_image(image: np.ndarray, boxes: list, want: str, mirror: bool, window_px: int):
    """(image, dlib rectangles) for one filter: the image at training scale, mirrored when asked;
    the filter's boxes kept, other faces and too-small ones painted over with the border colour."""
    import cv2
    import dlib

    s = work_scale(image.shape, WORK_SIDE_PX) * TRAIN_UPSAMPLE
    img = cv2.resize(image, (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if mirror:
        img = np.ascontiguousarray(img[:, ::-1])
    fill = tuple(int(v) for v in np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]), axis=0))
    rects = []
    for *b, view in boxes:
        b = tuple(v * s for v in b)
        if mirror:
            b = mirror_box(b, img.shape[1])
            view = {"right": "left", "three_quarter_right": "three_quarter_left",
                    "left": "right", "three_quarter_left": "three_quarter_right"}.get(view, view)
        x, y, w, h = square(b)
        keep = FILTER_OF_VIEW[view] == want and w >= window_px * 0.8
        if want == "side":
            keep = keep and view not in MIRRORED_VIEWS
        if keep:
            rects.append(dlib.rectangle(round(x), round(y), round(x + w), round(y + h)))
        else:
            x0, y0, x1, y1 = (int(v) for v in (b[0], b[1], b[0] + b[2], b[1] + b[3]))
            img[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = fill
    return img, rects


def build_set(files: dict, images: dict, want: str, window_px: int) -> tuple[list, list]:
    imgs, rects = [], []
    for path in files:
        boxes = files[path]["boxes"]
        passes = [False]
        if want == "side" and any(b[4] in MIRRORED_VIEWS for b in boxes):
            passes.append(True)  # the mirror turns right-facing faces into left-facing training boxes
        for mirror in passes:
            img, r = training_image(images[path], boxes, want, mirror, window_px)
            imgs.append(img)
            rects.append(r)
    return imgs, rects


def train(imgs: list, rects: list, want: str, c: float, window_px: int, epsilon: float = 0.02):
    import dlib

    opts = dlib.simple_object_detector_training_options()
    opts.add_left_right_image_flips = want == "frontal"
    opts.C = c
    opts.epsilon = epsilon  # dlib's default 0.01 converges ~2x slower for no gain seen here
    opts.detection_window_size = window_px * window_px
    opts.num_threads = 2
    opts.upsample_limit = 0
    opts.be_verbose = VERBOSE
    return dlib.train_simple_object_detector(imgs, rects, opts)


def validation_score(detector, imgs: list, rects: list) -> tuple[float, float, float]:
    """(precision, recall, average precision) on held-back train files, as dlib measures them."""
    import dlib

    r = dlib.test_simple_object_detector(imgs, rects, detector)
    return r.precision, r.recall, r.average_precision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clipart", type=Path, default=CLIPART)
    ap.add_argument("--cards", type=Path, default=CARDS, help="aisleriot's card decks (gnome-cards-data)")
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--exclude", type=Path, help="a file of SHA-256 sums never to read (one per line)")
    ap.add_argument("--C", type=float, nargs="+", default=[10.0, 50.0],
                    help="SVM C values to try (one value: train once with it, no validation round)")
    ap.add_argument("--val-negatives", type=int, default=100,
                    help="face-free files used while choosing C (all of them in the final training)")
    ap.add_argument("--window-px", type=int, default=64, help="HOG window side at training scale")
    ap.add_argument("--filters", nargs="+", choices=list(MODEL_FILES), default=list(MODEL_FILES),
                    help="train only these filters (e.g. one per process on a multi-core machine)")
    ap.add_argument("--verbose", action="store_true", help="dlib's optimiser progress")
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    missing = [name for name, ok in available(args.clipart, args.cards).items() if not ok]
    if missing:
        sys.exit(
            f"{', '.join(missing)} not found: apt-get install openclipart-png gnome-cards-data librsvg2-bin")
    excluded = frozenset(args.exclude.read_text().split()) if args.exclude else frozenset()
    files = {p: e for p, e in read_labels(args.labels).items() if e["split"] == "train"}
    images = {path: load(path, e["sha256"], args.clipart, args.cards, excluded) for path, e in files.items()}
    console.print(f"{len(images)} train images read")
    # a quarter held back, by the file's hash (a deck's cards stay together)
    held = {p for p in files if int(files[p]["sha256"][2:4], 16) < 64}
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    for want in args.filters:
        # Choosing C on a subset of the face-free files keeps each trial short on a 2-core machine.
        negatives = sorted((p for p in files if p not in held and not files[p]["boxes"]),
                           key=lambda p: files[p]["sha256"])[: args.val_negatives]
        fit = {p: e for p, e in files.items() if p not in held and (e["boxes"] or p in negatives)}
        val = {p: e for p, e in files.items() if p in held}
        fit_set, val_set = (build_set(fit, images, want, args.window_px),
                            build_set(val, images, want, args.window_px))
        scores = {}
        for c in args.C if len(args.C) > 1 else []:  # one C given: no choice to make, train once
            t0 = time.perf_counter()
            det = train(*fit_set, want, c, args.window_px)
            scores[c] = validation_score(det, *val_set)
            console.print(f"{want} C={c}: precision/recall/AP {scores[c]}")
            rows.append((want, c, sum(map(len, fit_set[1])), sum(map(len, val_set[1])),
                         *(f"{v:.2f}" for v in scores[c]), f"{time.perf_counter() - t0:.0f}"))
        best = max(scores, key=lambda c: (scores[c][2], scores[c][0], -c)) if scores else args.C[0]
        t0 = time.perf_counter()
        det = train(*build_set(files, images, want, args.window_px), want, best, args.window_px)
        det.save(str(args.out / MODEL_FILES[want]))
        console.print(
            f"{want}: C={best} -> {args.out / MODEL_FILES[want]} ({time.perf_counter() - t0:.0f} s)")
    console.print(table("validation (a quarter of the train files, by hash); 2-core CPU",
                        ["filter", "C", "train boxes", "val boxes", "precision", "recall", "AP", "seconds"],
                        rows))


if __name__ == "__main__":
    main()
