"""Two checkouts of p2d curating the same CelebA-shaped folder, interleaved: their speed ratio in one run.

Usage: python -m benchmarks.curate_versions OLD_TREE [NEW_TREE] [--modes fast,full] [--repeat 3]
           [--small 200] [--large 2000] [--workers 2] [--keep DIR]

This machine's speed drifts from day to day (dlib's HOG detector alone took 8.7 ms per 178x218
image the day issue 12 was written and 15.9-21 ms on later days, on the same VM), so an absolute
images/s target set on one day cannot be checked on another. What can: both versions measured in
one run, on the same images, one after the other. OLD_TREE and NEW_TREE are source trees of p2d
(e.g. `git worktree add /tmp/old <commit>`); NEW_TREE defaults to this checkout. Each run is a
fresh Python process importing p2d from its tree (PYTHONPATH) and timing `curate_celeba` inside
it (the process' own start is not counted); output folders are fresh, so nothing is cached. Per
mode and tree, the marginal rate between a SMALL and a LARGE run (start-up excluded, as
benchmarks/curate_celeba.py does), the median of --repeat interleaved pairs with their range,
the ratio new / old of the medians and the median of the pairs' own ratios (a pair's two runs are
minutes apart, so drift hits both alike); then what a target set for the old version's measured
rate on its day means here ("scaled": old day's rate x ratio).

    git worktree add /tmp/p2d-33100d0 33100d0     # main when issue 12 was written
    python -m benchmarks.curate_versions /tmp/p2d-33100d0 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from p2d.ui import console, table

from benchmarks.curate_celeba import MODES, build  # the same folder and modes as the main benchmark

ROOT = Path(__file__).resolve().parents[1]

# One curation in a fresh process; prints its wall time in seconds. A tree with CurateOptions takes
# the shared options as that one object, an older tree as keywords: the same run either way.
RUN = """
import json, sys, time
from pathlib import Path
from p2d.curate.celeba import curate_celeba
from p2d.curate.photos import curate_photos
a = json.loads(sys.argv[1])
mode = {} if a["mode"] == "photos" else dict(a["mode"])
opts = dict(drop_smiles=True, drop_outliers=True, workers=a["workers"], upsample=mode.pop("upsample", 1))
try:
    from p2d.curate.pipeline import CurateOptions
    opts = {"options": CurateOptions(**opts)}
except ImportError:
    pass
if __name__ == "__main__":
    t0 = time.perf_counter()
    if a["mode"] == "photos":
        curate_photos(Path(a["root"]), Path(a["out"]), **opts)
    else:
        curate_celeba(Path(a["root"]), Path(a["out"]), first=a["n"], **opts, **mode)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
"""
# `p2d curate photos` (detection on every photo, the photo framing) on a folder of the first N
PHOTOS = "photos"


def photo_folder(root: Path, n: int) -> Path:
    """A folder holding (hard links to) the CelebA-shaped folder's first `n` images, for curate_photos."""
    folder = root.parent / f"photos-{n}"
    if not folder.is_dir():
        tmp = root.parent / f"photos-{n}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for src in sorted((root / "img_align_celeba").iterdir())[:n]:
            if not (tmp / src.name).exists():
                os.link(src, tmp / src.name)
        tmp.rename(folder)
    return folder


def timed(tree: Path, root: Path, out: Path, n: int, mode: str, workers: int) -> float:
    """Seconds one curation of the first `n` images took, run by the p2d in `tree`."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    script = out.parent / "run_one.py"
    script.write_text(RUN)
    folder = photo_folder(root, n) if mode == PHOTOS else root
    args = json.dumps({"root": str(folder), "out": str(out), "n": n, "workers": workers,
                       "mode": PHOTOS if mode == PHOTOS else MODES[mode]})
    done = subprocess.run([sys.executable, str(script), args], env=env, cwd=tree, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: curate_celeba failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path, help="a source tree of the older p2d")
    ap.add_argument("new", type=Path, nargs="?", default=ROOT,
                    help="a source tree of the newer p2d (this checkout)")
    ap.add_argument("--modes", default="fast,full",
                    help="comma-separated: fast, full, full0 as benchmarks/curate_celeba.py; photos: `p2d "
                         "curate photos` on a folder of the first SMALL / LARGE images")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--large", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="build the folder here and keep it")
    ap.add_argument("--old-rates", default="fast=603,full=183,photos=183",
                    help="the old version's marginal rates on the day a target was set (issue 12's figures)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="p2d-versions-"))
    root = work / "celeba"
    build(root, args.large)
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    for name, tree in trees.items():
        if not (tree / "p2d" / "__init__.py").is_file():
            raise SystemExit(f"{tree} is not a p2d source tree (no p2d/__init__.py)")
        timed(tree, root, work / f"warm-up-{name}", 4 * args.workers, "fast", args.workers)  # imports, caches
    modes = args.modes.split(",")
    rates: dict[tuple[str, str], list[float]] = {(m, t): [] for m in modes for t in trees}
    for i in range(args.repeat):  # interleaved: a slow minute of the machine does not hit one version only
        for mode in modes:
            for name, tree in trees.items():
                small, large = (timed(tree, root, work / f"{mode}-{name}-{n}", n, mode, args.workers)
                                for n in (args.small, args.large))
                rates[mode, name].append((args.large - args.small) / max(large - small, 1e-9))
                console.print(f"pair {i + 1}: {mode}, {name}: {rates[mode, name][-1]:.0f} images/s")
    old_day = dict(kv.split("=") for kv in args.old_rates.split(",") if kv)
    rows = []
    for mode in modes:
        med = {t: statistics.median(rates[mode, t]) for t in trees}
        ratio = med["new"] / med["old"]
        pair_ratios = sorted(n / o for n, o in zip(rates[mode, "new"], rates[mode, "old"]))
        pair_median = statistics.median(pair_ratios)
        day = float(old_day[mode]) if mode in old_day else None
        rows.append((mode,
                     *(f"{med[t]:.0f} ({min(rates[mode, t]):.0f}-{max(rates[mode, t]):.0f})" for t in trees),
                     f"{ratio:.2f}", f"{pair_median:.2f} ({pair_ratios[0]:.2f}-{pair_ratios[-1]:.2f})",
                     "" if day is None else f"{day:.0f} -> {day * ratio:.0f}"))
    console.print(table(
        f"curate_celeba, {args.workers} workers, marginal images/s between {args.small} and {args.large} "
        f"images, median of {args.repeat} interleaved pairs (range); old {trees['old']}, new {trees['new']}",
        ["mode", "old", "new", "new / old", "pairs' new / old: median (range)",
         "old's rate on its day -> new's, scaled"], rows))


if __name__ == "__main__":
    main()
