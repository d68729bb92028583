"""Benchmark the 68-point landmark predictors: dlib's own (one face per call) against
p2d.shape_predictor (a batch of faces per call; compiled by numba and numpy), on the same faces, in one
process.

Faces: CelebA-shaped 178x218 images built from the bundled public-domain photos (the fixture
builder of the tests: shifted, scaled, rotated, mirrored, relit copies), each with its HOG box.
Prints ms per face for dlib and for the batched predictor at several batch sizes, whether the points
are identical, and what p2d.faces.landmark_speeds measured for this machine (which one curation uses).
Run it alone on a quiet machine: both predictors are memory-bound, a busy machine changes the ratio.

    python -m benchmarks.landmarks            # 512 faces, ~1 minute on 2 cores
    python -m benchmarks.landmarks --faces 2048
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

import p2d
from p2d.faces import SHAPE_68, FaceModels, find_model, landmark_speeds
from p2d.images import list_images, read_image
from p2d.shape_predictor import ShapePredictor68, compiled_kernel
from p2d.ui import console, table

from benchmarks.fixtures import tests_module

_synth = tests_module("celeba_synth")  # the tests' CelebA-shaped fixture builder
jittered_variants, load_source_faces, render = (_synth.jittered_variants, _synth.load_source_faces,
                                                _synth.render)


def faces(models: FaceModels, n: int) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]]]:
    samples = Path(p2d.__file__).parent / "samples"
    sources = load_source_faces(list_images(samples / "photos"), models)
    nonfaces = [read_image(p) for p in list_images(samples / "nonfaces")]
    images, boxes = [], []
    for variant in jittered_variants(4 * n, len(sources), len(nonfaces), seed=1):
        image, _ = render(variant, sources, nonfaces)
        found = models.detect_hog(image, 1)
        if found:
            images.append(image)
            boxes.append(max(found, key=lambda d: d.w).box)
        if len(images) == n:
            break
    return images, boxes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=512)
    args = ap.parse_args()
    models = FaceModels()
    images, boxes = faces(models, args.faces)
    n = len(images)
    models.landmarks(images[0], boxes[0])  # load both before timing
    predictors = {backend: ShapePredictor68.from_dat(find_model(SHAPE_68), backend=backend)
                  for backend in (["compiled"] if compiled_kernel() else []) + ["numpy"]}
    for predictor in predictors.values():
        predictor.warm()
    t0 = time.perf_counter()
    expected = np.stack([models.landmarks(im, b) for im, b in zip(images, boxes)])
    dlib_ms = 1000 * (time.perf_counter() - t0) / n
    rects = [tuple(int(round(v)) for v in (x, y, x + w, y + h)) for x, y, w, h in boxes]
    rows = [("dlib, 1 face per call", round(dlib_ms, 3), "1.00x", "reference")]
    for batch in (1, 8, 32, 64):
        for backend, predictor in predictors.items():
            t0 = time.perf_counter()
            got = np.concatenate([predictor.predict(images[k:k + batch], rects[k:k + batch])
                                  for k in range(0, n, batch)])
            ms = 1000 * (time.perf_counter() - t0) / n
            rows.append((f"p2d.shape_predictor {backend}, {batch} per call", round(ms, 3),
                         f"{dlib_ms / ms:.2f}x",
                         "identical" if np.array_equal(got, expected) else "DIFFERENT"))
    console.print(table(f"68-point landmarks, {n} faces of 178x218, one process ({platform.machine()}, "
                        f"{platform.processor() or 'cpu'})", ["predictor", "ms/face", "speed-up", "points"],
                        rows))
    speeds = landmark_speeds(models)
    console.print(f"p2d.faces.landmark_speeds (measured once on this machine, kept in p2d's cache): dlib "
                  f"{speeds['dlib_ms']:.2f} ms, batched {speeds['batched_ms']:.2f} ms per face -> curation "
                  f"uses {'the batched predictor' if speeds['batched_ms'] < speeds['dlib_ms'] else 'dlib'}")


if __name__ == "__main__":
    main()
