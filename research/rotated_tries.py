"""What crop-drawings' rotated tries add and cost, on the label CSV's TRAIN split (never eval).

The shipped detector (`DrawingDetector()` with crop-drawings' rotations) runs on every train drawing
with a face and on --free face-free ones (by hash order), as crop-drawings runs it: upright, dlib's
CNN upright where the others find nothing, then the turned copies up to the first angle with a face.
Per drawing it records the verdict (found / wrong / missed, or false / none on a face-free one), the
angle the face was found at, and the seconds spent upright and on the turned copies. Printed: the
verdict counts, the faces found only by a rotated try, and the mean seconds per drawing where the
turned copies were searched. --with-dlib-cnn adds dlib's CNN to the detectors that search every
drawing and its turned copies (how the turned copies were searched before 2026-11-27).

Measured 2026-11-27 (2-core VM, two shards at once, so the seconds are high; the prototype of this
script): 300 face drawings and 100 face-free; the turned copies were searched on the 12 face
drawings the upright pass missed and 98 face-free ones, found no face and put no box, and with
dlib's CNN among their searchers took 7.1 of the 8.2 s each such drawing cost. This script, one
quiet process, the same 20 face-free drawings (`--faces 0 --free 20`): the turned copies cost 2.12 s
a drawing as shipped, 5.82 s with `--with-dlib-cnn` (upright 1.18 / 1.13 s); no face, no box either way.

Usage: python -m research.rotated_tries [--free 100] [--faces N] [--with-dlib-cnn] [--shard 0/1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import p2d.drawings.detect as detect
from p2d.drawings.detect import DEFAULT_DETECTORS, ROTATIONS_DEG, DrawingDetector, iou
from p2d.drawings.labels import load, read_labels
from p2d.ui import console, table


class PhaseClock:
    """Seconds in the detectors, upright vs on turned copies (a turned copy is made first)."""

    def __init__(self, detector: DrawingDetector):
        self.rotating = False
        self.seconds = {"upright": 0.0, "turned": 0.0}
        turn, candidates = detect.rotate_expanded, detector.candidates

        def turned(*args, **kwargs):
            self.rotating = True
            return turn(*args, **kwargs)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return candidates(*args, **kwargs)
            finally:
                self.seconds["turned" if self.rotating else "upright"] += time.perf_counter() - t0

        detect.rotate_expanded = turned  # all_candidates looks it up in the module at each call
        detector.candidates = timed

    def start(self) -> None:
        self.rotating = False
        self.seconds = {"upright": 0.0, "turned": 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--free", type=int, default=100, help="face-free train drawings (by hash order)")
    ap.add_argument("--faces", type=int, default=None, help="only the first N train face drawings")
    ap.add_argument("--with-dlib-cnn", action="store_true", help="dlib's CNN searches everything, turned copies too")
    ap.add_argument("--shard", default="0/1", help="K/N: every N-th drawing from the K-th (run N at once)")
    args = ap.parse_args()
    k, n = (int(v) for v in args.shard.split("/"))
    labels = read_labels()
    faces = sorted(p for p, e in labels.items() if e["split"] == "train" and e["boxes"])[: args.faces]
    free = sorted((p for p, e in labels.items() if e["split"] == "train" and not e["boxes"]),
                  key=lambda p: labels[p]["sha256"])[: args.free]
    names = (faces + free)[k::n]
    detectors = DEFAULT_DETECTORS + (("dlib_cnn",) if args.with_dlib_cnn else ())
    detector = DrawingDetector(detectors=detectors, rotations_deg=ROTATIONS_DEG,
                               fallback=() if args.with_dlib_cnn else None)
    clock = PhaseClock(detector)
    rows = []
    for name in names:
        image = load(name, labels[name]["sha256"])
        clock.start()
        face, found = detector.detect(image)
        truth = [tuple(b[:4]) for b in labels[name]["boxes"]]
        if face is None:
            verdict = "missed" if truth else "none"
        elif not truth:
            verdict = "false"
        else:
            verdict = "found" if max(iou(face.box.box, t) for t in truth) >= 0.3 else "wrong"
        rows.append({"name": name, "verdict": verdict, "angle": face.rotation_deg if face else None,
                     "turned": bool(found.rotated), **clock.seconds})
    counts = Counter(r["verdict"] for r in rows)
    by_turn = [r for r in rows if r["angle"]]
    searched = [r for r in rows if r["turned"]]
    console.print(f"train split, shard {args.shard}: {len(rows)} drawings; " + ", ".join(f"{v} {c}" for v, c in sorted(counts.items())))
    console.print(table("faces found only in a turned copy", ["drawing", "verdict", "angle"],
                        [(r["name"], r["verdict"], f"{r['angle']:+.0f}") for r in by_turn]))
    if searched:
        console.print(f"turned copies searched on {len(searched)} drawings: upright "
                      f"{statistics.mean(r['upright'] for r in searched):.2f} s, turned copies "
                      f"{statistics.mean(r['turned'] for r in searched):.2f} s per drawing "
                      f"({'with' if args.with_dlib_cnn else 'without'} dlib's CNN among their searchers)")


if __name__ == "__main__":
    main()
