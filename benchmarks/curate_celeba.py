"""Benchmark `p2d curate celeba`: fast path vs full detection, 1 and 2 workers, cached re-run.

Builds a CelebA-shaped folder (official layout, 178x218 JPEGs with jitter, annotation files) from
the bundled public-domain sample photos, then times the whole pipeline (decode, landmarks,
filters, crop, PNG write) in one run:

    python benchmarks/curate_celeba.py            # 2000 images
    python benchmarks/curate_celeba.py --n 4232   # the card's --first 4232
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import sys
import time
from pathlib import Path

import p2d
from p2d.curate.celeba import curate_celeba
from p2d.curate.filters import Thresholds
from p2d.faces import FaceModels
from p2d.images import list_images, read_image
from p2d.ui import console, table

# The CelebA-shaped fixture builder lives with the tests (it is not part of the package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from celeba_synth import jittered_variants, load_source_faces, write_celeba_folder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="images in the synthetic CelebA folder")
    ap.add_argument("--workers", type=int, default=2, help="the multi-process figure uses this many")
    ap.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it")
    args = ap.parse_args()

    samples = Path(p2d.__file__).parent / "samples"
    work = args.keep or Path(tempfile.mkdtemp(prefix="p2d-bench-"))
    root = work / "celeba"
    t0 = time.perf_counter()
    if not (root / "img_align_celeba").is_dir():
        faces = load_source_faces(list_images(samples / "photos"), FaceModels())
        nonfaces = [read_image(p) for p in list_images(samples / "nonfaces")]
        variants = jittered_variants(args.n, len(faces), len(nonfaces), seed=0)
        write_celeba_folder(root, variants, faces, nonfaces, layout="txt")
    console.print(f"CelebA-shaped folder: {args.n} images of 178x218 in {root} ({time.perf_counter() - t0:.1f} s to build)")

    stage_rows = stage_costs(sorted((root / "img_align_celeba").iterdir())[:100])
    common = dict(drop_smiles=True, drop_outliers=True)
    runs = [
        ("fast path, 1 worker", dict(detect=False, workers=1), "fast1"),
        (f"fast path, {args.workers} workers", dict(detect=False, workers=args.workers), "fast2"),
        ("full detection, 1 worker", dict(detect=True, workers=1), "full1"),
        (f"full detection, {args.workers} workers", dict(detect=True, workers=args.workers), "full2"),
    ]
    results = {}
    rows = []
    load = os.getloadavg()[0]
    for label, kw, key in runs:
        shutil.rmtree(work / key, ignore_errors=True)  # a first run: nothing cached
        cpu0 = _cpu_seconds()
        r = curate_celeba(root, work / key, **common, **kw)
        cpu = _cpu_seconds() - cpu0
        results[key] = r
        rows.append((label, r.selected, round(r.seconds, 2), round(r.images_per_s, 1),
                     round(1000 * cpu / r.selected, 2), r.analyzed, r.kept))
    # A re-run with other thresholds: every analysis comes from the cache.
    cpu0 = _cpu_seconds()
    cached = curate_celeba(root, work / "fast2", **common, detect=False, workers=args.workers,
                           thresholds=Thresholds(smile_threshold=1.0, max_yaw_deg=25.0))
    cpu = _cpu_seconds() - cpu0
    rows.append(("cached re-run (other thresholds)", cached.selected, round(cached.seconds, 2),
                 round(cached.images_per_s, 1), round(1000 * cpu / cached.selected, 2), cached.analyzed, cached.kept))

    console.print(table(f"p2d curate celeba, {args.n} images, {os.cpu_count()} CPUs ({platform.machine()}), "
                        f"load average {load:.1f} at start -> {os.getloadavg()[0]:.1f} at end",
                        ["run", "images", "seconds", "images/s", "CPU ms/image", "landmarks computed", "kept"], rows))
    console.print("CPU ms/image counts this process and its workers (user + system). When other programs "
                  "share the cores it grows less than wall-clock time (caches and memory bandwidth are shared "
                  "too, and the 100 MB shape predictor is memory-bound).")
    same_fast = (work / "fast1" / "manifest.csv").read_bytes() == _manifest_before_rerun(results["fast2"])
    same_full = (work / "full1" / "manifest.csv").read_bytes() == (work / "full2" / "manifest.csv").read_bytes()
    fast, full = results["fast2"], results["full2"]
    console.print(f"fast / full speed-up: {results['fast1'].images_per_s / results['full1'].images_per_s:.1f}x (1 worker), "
                  f"{fast.images_per_s / full.images_per_s:.1f}x ({args.workers} workers); target >= 8x")
    console.print(table("cost of each stage, one process (ms per image, median of 100)", ["stage", "ms"], stage_rows))
    cpu_fast, cpu_full = rows[0][4], rows[2][4]
    console.print(f"fast / full in CPU time per image: {cpu_full / cpu_fast:.1f}x")
    console.print(f"fast path with {args.workers} workers: {fast.images_per_s:.0f} images/s; target >= 400")
    console.print(f"cached re-run: {cached.seconds:.2f} s = {100 * cached.seconds / fast.seconds:.1f}% of the first run; target <= 10%")
    console.print(f"manifest identical for 1 and {args.workers} workers: fast {same_fast}, full {same_full}")


def stage_costs(files: list[Path]) -> list[tuple[str, float]]:
    """Median milliseconds of each step of the pipeline, measured one image at a time."""
    import statistics

    import cv2

    from p2d.framing import CELEBA_HOG_BOX, center_crop_square, resize_square
    from p2d.curate.hashing import phash_hex
    from p2d.curate.pipeline import PNG_OPTIONS, decode, shared_models
    from p2d.faces import landmark_features

    models = shared_models()
    models.predictor, models.hog
    images = [decode(f)[0] for f in files]
    crops = [resize_square(center_crop_square(im), 128) for im in images]
    points = [models.landmarks(im, CELEBA_HOG_BOX) for im in images]
    stages = {
        "decode JPEG (OpenCV)": lambda i: decode(files[i]),
        "dlib HOG detector, upsample 1": lambda i: models.detect_hog(images[i], 1),
        "dlib 68-point shape predictor": lambda i: models.landmarks(images[i], CELEBA_HOG_BOX),
        "landmark features": lambda i: landmark_features(points[i]),
        "centre crop + resize to 128": lambda i: resize_square(center_crop_square(images[i]), 128),
        "PNG encode": lambda i: cv2.imencode(".png", crops[i], PNG_OPTIONS),
        "phash": lambda i: phash_hex(crops[i]),
    }
    rows = []
    for name, fn in stages.items():
        times = []
        for i in range(len(files)):
            t = time.perf_counter()
            fn(i)
            times.append(1000 * (time.perf_counter() - t))
        rows.append((name, round(statistics.median(times), 2)))
    return rows


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished worker processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _manifest_before_rerun(result) -> bytes:
    from p2d.manifest import to_csv_text

    return to_csv_text(result.rows).encode("utf-8")


if __name__ == "__main__":
    main()
