"""Detection rate of each drawing-face detector and of their combination, against hand boxes.

Usage: python benchmarks/detect_drawings.py [--min-iou 0.4]

Images: tests/data/pd-faces/drawings/ (17 drawn faces) and nonfaces/ (2 clip-art vehicles; the
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

from p2d.curate.detect import DETECTORS, DrawingDetector, score_choices  # noqa: E402
from p2d.images import list_images, read_image  # noqa: E402
from p2d.ui import console, table  # noqa: E402

DATA = ROOT / "tests" / "data"


def load_truth() -> dict[str, tuple[float, float, float, float] | None]:
    """{ "drawings/x.png": box or None } for every image in drawings/ and nonfaces/."""
    boxes = {}
    with open(DATA / "drawing_face_boxes.csv", newline="") as f:
        for r in csv.DictReader(f):
            boxes[r["path"]] = tuple(float(r[k]) for k in "xywh")
    truth = {}
    for folder in ("drawings", "nonfaces"):
        for p in list_images(DATA / "pd-faces" / folder):
            name = f"{folder}/{p.name}"
            truth[name] = boxes.get(name)
    return truth


def run_candidates(truth: dict, detector: DrawingDetector) -> tuple[dict, dict]:
    """Candidates per image, and seconds per detector family (one pass per family)."""
    candidates = {name: [] for name in truth}
    seconds = {}
    for family in detector.detectors:
        single = DrawingDetector(detector.models, detectors=(family,))
        t0 = time.perf_counter()
        for name in truth:
            candidates[name] += single.candidates(read_image(DATA / "pd-faces" / name))
        seconds[family] = time.perf_counter() - t0
    return candidates, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-iou", type=float, default=0.4, help="IoU with the hand box that counts as correct")
    args = ap.parse_args()
    truth = load_truth()
    detector = DrawingDetector()
    for note in detector.notes:
        console.print(f"[yellow]{note}[/]")
    candidates, seconds = run_candidates(truth, detector)
    rows = []
    for name in [*detector.detectors, "combined"]:
        chosen = None if name == "combined" else (name,)
        r = score_choices(candidates, truth, chosen, args.min_iou)
        rows.append((name, r["correct"], r["faces"], f"{100 * r['correct'] / r['faces']:.0f}%",
                     r["false"], round(seconds.get(name, sum(seconds.values())), 1)))
        if name == "combined":
            combined = r
    console.print(table(f"face boxes on {len(truth)} images (correct: IoU >= {args.min_iou} with the hand box)",
                        ["detector", "correct", "of faces", "rate", "false boxes", "seconds"], rows))
    console.print(table("combined, per image", ["image", "verdict"], sorted(combined["per_image"].items())))


if __name__ == "__main__":
    main()
