"""Seconds per drawing of `crop_drawings` now against the code of commit a0f39c0 (issue 10's bound: 2x).

Usage: python -m benchmarks.drawing_cost [--quick] [--eval-sample 30] [--base a0f39c0] [--repeat 1]

Both versions crop the SAME drawings in one run, each in its own subprocess (a fresh interpreter
importing that version's p2d, with the same models), into a fresh output folder (no detection
cache), one after the other: the fixtures (p2d/samples/drawings and nonfaces, 19 files) and a fixed
sample of the label CSV's eval split (--eval-sample files: half with a face, half face-free, the
first by SHA-256; needs openclipart-png / gnome-cards-data, else fixtures only). The old code is
`git archive <base>` unpacked into a cache folder (no worktree is registered). Times are the whole
`crop_drawings` call per drawing, after one warm-up call on one fixture that loads the dlib models
(a fixed cost per run, not per drawing; seconds to a minute on a busy machine). --quick:
fixtures only. --repeat N: N alternating rounds (old, new, old, new ...), the median per version.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from p2d.images import list_images, write_image
from p2d.ui import console, table

ROOT = Path(__file__).resolve().parents[1]

BASE = "a0f39c0"
BOUND = 2.0  # the bound: at most twice the cost per drawing at BASE
# Run inside a fresh interpreter whose PYTHONPATH is one version's tree: crop RAW into OUT, print seconds.
CHILD = """
import json, sys, time
from p2d.curate.drawings import crop_drawings
from p2d.faces import FaceModels
models = FaceModels()
crop_drawings(sys.argv[3], sys.argv[4], models=models, show_progress=False)  # loads the models
t0 = time.perf_counter()
r = crop_drawings(sys.argv[1], sys.argv[2], models=models, show_progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "kept": sum(1 for x in r.rows if x["keep"]),
                  "rows": len(r.rows)}))
"""


def old_tree(base: str, cache: Path) -> Path:
    """The code of commit `base`, unpacked once into `cache`/<base>."""
    tree = cache / base
    if not (tree / "p2d" / "__init__.py").is_file():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", base], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def drawing_set(raw: Path, eval_sample: int) -> int:
    """Copy the fixtures and the eval sample into `raw`; the number of drawings."""
    n = 0
    for folder in ("drawings", "nonfaces"):
        for p in list_images(ROOT / "p2d" / "samples" / folder):
            shutil.copy(p, raw / f"{folder}_{p.name}")
            n += 1
    if eval_sample <= 0:
        return n
    from p2d.drawings.labels import CARD_PREFIX, available, load, read_labels

    have = available()
    rows = {p: e for p, e in read_labels().items()
            if e["split"] == "eval" and have["cards" if p.startswith(CARD_PREFIX) else "openclipart"]}
    order = sorted(rows, key=lambda p: rows[p]["sha256"] + p)
    faces = [p for p in order if rows[p]["boxes"]][: eval_sample // 2]
    free = [p for p in order if not rows[p]["boxes"]][: eval_sample - len(faces)]
    for i, p in enumerate(faces + free):
        write_image(raw / f"eval_{i:02d}.png", load(p, rows[p]["sha256"]))
        n += 1
    return n


def time_version(tree: Path, raw: Path, work: Path) -> dict:
    """One version's crop_drawings on `raw`, after a warm-up on one fixture that loads the models."""
    out, warm_out = (Path(tempfile.mkdtemp(dir=work, prefix=p)) for p in ("out_", "warm_out_"))
    warm = work / "warm"
    if not warm.is_dir():
        warm.mkdir()
        shutil.copy(ROOT / "p2d" / "samples" / "drawings" / "head1.png", warm)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(raw), str(out), str(warm), str(warm_out)],
                          capture_output=True, text=True, env=env, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"crop_drawings failed in {tree}:\n{done.stderr[-2000:]}")
    shutil.rmtree(out)
    shutil.rmtree(warm_out)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=BASE, help="the commit whose cost is the baseline")
    ap.add_argument("--eval-sample", type=int, default=30, help="eval-split drawings added to the fixtures")
    ap.add_argument("--quick", action="store_true", help="fixtures only")
    ap.add_argument("--repeat", type=int, default=1, help="alternating rounds per version (median)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "p2d_cost_trees")
    args = ap.parse_args()
    old = old_tree(args.base, args.cache)
    with tempfile.TemporaryDirectory(prefix="p2d_cost_") as tmp:
        work = Path(tmp)
        raw = work / "raw"
        raw.mkdir()
        n = drawing_set(raw, 0 if args.quick else args.eval_sample)
        runs: dict[str, list[dict]] = {"old": [], "new": []}
        for _ in range(args.repeat):
            for name, tree in (("old", old), ("new", ROOT)):
                runs[name].append(time_version(tree, raw, work))
                console.print(f"{name}: {runs[name][-1]}")
    sec = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    rows = [(f"{args.base} (old)", n, runs["old"][0]["kept"], f"{sec['old']:.1f}", f"{sec['old'] / n:.2f}"),
            ("this tree (new)", n, runs["new"][0]["kept"], f"{sec['new']:.1f}", f"{sec['new'] / n:.2f}")]
    ratio = sec["new"] / sec["old"]
    console.print(table(f"crop_drawings on the same {n} drawings; {os.cpu_count()} CPUs; ratio new/old "
                        f"{ratio:.2f} (bound {BOUND:.0f}x: {'within' if ratio <= BOUND else 'OVER'})",
                        ["code", "drawings", "kept", "seconds", "s/drawing"], rows))


if __name__ == "__main__":
    main()
