"""Benchmark `p2d inspect`'s parts: per-crop measuring (pixels, landmarks) and the comparison.

Times, on this machine, in one process: the pixel features and the 68-point landmarks of the
16 drawing crops in tests/data/inspect (per crop), and the typicality of every row against the
other domain at CelebA-like sizes (430 drawings vs 3554 photos, and 430 vs 200,000):

    python -m benchmarks.inspect_sets
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from p2d.faces import FaceModels
from p2d.framing import framing_box
from p2d.images import list_images, read_image
from p2d.inspection import pixel_features, typicality

CROPS = Path(__file__).resolve().parent.parent / "tests" / "data" / "inspect" / "drawings"


def per_item_ms(fn, items, repeat: int = 5) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for it in items:
            fn(it)
    return 1000 * (time.perf_counter() - start) / (repeat * len(items))


def main() -> None:
    crops = [read_image(p) for p in list_images(CROPS)]
    print(f"pixel features: {per_item_ms(pixel_features, crops):.2f} ms per 128 px crop")
    models = FaceModels()
    models.predictor  # loading the model is not part of the per-crop cost
    box = framing_box(128, 128)
    print(f"68 landmarks: {per_item_ms(lambda c: models.landmarks(c, box), crops):.2f} ms per crop")
    rng = np.random.default_rng(0)
    for n_draw, n_photo in ((430, 3554), (430, 200_000)):
        d, p = rng.normal(0.0, 1.0, n_draw), rng.normal(0.3, 1.0, n_photo)
        start = time.perf_counter()
        typicality(d, p, 0.01)
        typicality(p, d, 0.01)
        print(f"typicality both ways, {n_draw} drawings vs {n_photo} photos: "
              f"{time.perf_counter() - start:.2f} s per numeric feature")


if __name__ == "__main__":
    main()
