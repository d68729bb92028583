"""Detection rate of each drawing-face detector and of their combination, against hand boxes.

Usage: python benchmarks/detect_drawings.py [--min-iou 0.4] [--skimage]

Images: p2d/samples/drawings/ (17 drawn faces) and nonfaces/ (2 clip-art vehicles; the
tractor's driver has a small face, see tests/data/drawing_face_boxes.md). Truth: tests/data/drawing_face_boxes.csv (boxes drawn by hand; see
tests/data/drawing_face_boxes.md). A chosen box is correct when its IoU with the hand box is at
least --min-iou. "false" counts boxes on an image without a face and boxes that miss the face.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from p2d.curate.detect import DrawingDetector, choose_with_rotations, score_choices  # noqa: E402
from p2d.images import list_images, read_image  # noqa: E402
from p2d.ui import console, table  # noqa: E402

DATA = ROOT / "p2d" / "samples"
BOXES = ROOT / "tests" / "data" / "drawing_face_boxes.csv"


def load_truth() -> dict[str, tuple[float, float, float, float] | None]:
    """{ "drawings/x.png": box or None } for every image in drawings/ and nonfaces/."""
    boxes = {}
    with open(BOXES, newline="") as f:
        for r in csv.DictReader(f):
            boxes[r["path"]] = tuple(float(r[k]) for k in "xywh")
    truth = {}
    for folder in ("drawings", "nonfaces"):
        for p in list_images(DATA / folder):
            name = f"{folder}/{p.name}"
            truth[name] = boxes.get(name)
    return truth


def run_candidates(truth: dict, detector: DrawingDetector) -> tuple[dict, dict]:
    """Candidates per image (all detectors, rotated passes where upright finds no face), and
    seconds: one upright pass per detector, and the whole combined pass."""
    seconds = {}
    images = {name: read_image(DATA / name) for name in truth}
    for family in detector.detectors:
        single = DrawingDetector(detector.models, detectors=(family,), rotations_deg=())
        t0 = time.perf_counter()
        for img in images.values():
            single.candidates(img)
        seconds[family] = time.perf_counter() - t0
    t0 = time.perf_counter()
    candidates = {name: detector.all_candidates(img) for name, img in images.items()}
    seconds["combined"] = time.perf_counter() - t0
    return candidates, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-iou", type=float, default=0.4, help="IoU with the hand box that counts as correct")
    ap.add_argument("--skimage", action="store_true", help="also run on 20 face-free scikit-image pictures")
    args = ap.parse_args()
    truth = load_truth()
    detector = DrawingDetector()
    for note in detector.notes:
        console.print(f"[yellow]{note}[/]")
    candidates, seconds = run_candidates(truth, detector)
    drawings = {k: v for k, v in candidates.items() if k.startswith("drawings/")}
    nonfaces = {k: v for k, v in candidates.items() if k.startswith("nonfaces/")}
    rows = []
    for name in [*detector.detectors, "combined"]:
        chosen = None if name == "combined" else (name,)
        r = score_choices(drawings, truth, chosen, args.min_iou)
        n = score_choices(nonfaces, truth, chosen, args.min_iou)
        rows.append((name, r["correct"], r["faces"], f"{100 * r['correct'] / r['faces']:.0f}%", r["false"],
                     n["false"], n["correct"], round(seconds[name], 1)))
    combined = score_choices(candidates, truth, None, args.min_iou)
    console.print(table(
        f"face boxes (correct: IoU >= {args.min_iou} with the hand box); 2-core CPU, no GPU",
        ["detector", "drawings correct", "of", "rate", "wrong boxes", "nonfaces: false boxes",
         "tractor driver found", "seconds"], rows))
    per_image = []
    for k, v in sorted(combined["per_image"].items()):
        face = choose_with_rotations(candidates[k])
        found = "" if face is None else f"{'+'.join(face.detectors)} at {face.rotation_deg:+.0f} deg"
        per_image.append((k, v, found))
    console.print(table("combined, per image", ["image", "verdict", "face found by"], per_image))
    if args.skimage:
        rows = skimage_false_boxes(detector)
        false = sum(1 for _, v in rows if v.startswith("FALSE"))
        console.print(table(f"face-free scikit-image pictures: {false} false box(es)", ["picture", "result"], rows))


# Pictures without faces that ship with scikit-image (a dev dependency): a check that the rule
# is not fitted to the two fixture non-faces. `camera` (a photographer) and `astronaut` have faces.
SKIMAGE_NONFACES = ("coins", "text", "page", "horse", "rocket", "coffee", "hubble_deep_field", "moon",
                    "brick", "grass", "gravel", "clock", "checkerboard", "logo", "immunohistochemistry",
                    "cell", "colorwheel", "retina", "shepp_logan_phantom", "cat")


def skimage_false_boxes(detector: DrawingDetector) -> list[tuple[str, str]]:
    import numpy as np

    try:
        import skimage.data as data
    except ImportError:
        return [("scikit-image not installed", "skipped")]
    rows = []
    for name in SKIMAGE_NONFACES:
        try:
            img = getattr(data, name)()
        except Exception as exc:  # some images are fetched on first use; nothing downloads here
            rows.append((name, f"unavailable ({type(exc).__name__})"))
            continue
        img = (img * 255).astype(np.uint8) if img.dtype == bool else (img / max(img.max(), 1) * 255).astype(np.uint8) if img.dtype != np.uint8 else img
        img = np.ascontiguousarray(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3])
        face, _ = detector.detect(img)
        rows.append((name, "none" if face is None else
                     f"FALSE BOX {'+'.join(face.detectors)} at {face.rotation_deg:+.0f} deg"))
    return rows


if __name__ == "__main__":
    main()
