"""What `p2d evaluate`'s cross cycle costs per epoch: k passes of the test drawings through a
photo->drawing generator of a recipe's size (random weights: the cost does not depend on them).

Usage: python -m benchmarks.cross_cycle_cost [--recipe manifests/exp4.toml] [--images 50]
           [--device cpu|cuda] [--repeat 3] [--threads N]

Prints the seconds of one pass (median of --repeat, after a warm-up pass) and of the k = 4 and
8 passes an epoch's cross cycle makes; compare with an epoch's other measurements (on a 2-core CPU
at exp4's size, 2026-11-27: 31.6 s for 50 test images, of which 12.3 s dlib and 4 passes of 4.8 s).

Measured 2026-11-27: this project's 2-core CPU, exp4 (128 px, gray, 9 blocks, 64 filters), 50
images: one pass 4.70 s (94 ms an image), k=8 37.6 s. An NVIDIA H200 (torch 2.11.0+cu130): 0.03 s
(0.5 ms an image), k=8 0.2 s; exp1 (colour) 0.9 ms an image; 500 images 0.26 s a pass.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from p2d.evaluate import torch_translator
from p2d.recipe import load_recipe
from p2d.train.models import build_generator

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", type=Path, default=ROOT / "manifests" / "exp4.toml")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_recipe(args.recipe)
    g = build_generator(cfg).to(args.device).eval()
    draw = torch_translator(g, cfg.data.channels, args.device)
    shape = (cfg.data.size, cfg.data.size) + ((3,) if cfg.data.channels == 3 else ())
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape).astype(np.uint8) for _ in range(args.images)]
    draw(images)  # warm-up: allocations, cuDNN's choice of kernels
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        draw(images)  # ends in .cpu(): the device has finished
        times.append(time.perf_counter() - start)
    one = statistics.median(times)
    where = (torch.cuda.get_device_name() if args.device.startswith("cuda")
             else f"{torch.get_num_threads()} threads")
    print(f"{args.recipe.name}: {cfg.data.size} px, {cfg.data.channels} channel(s), {cfg.model.blocks} "
          f"blocks, {cfg.model.filters} filters; {args.images} images on {args.device} ({where})")
    print(f"one pass: {one:.2f} s ({one / args.images * 1000:.1f} ms an image; passes "
          f"{', '.join(f'{t:.2f}' for t in times)})")
    print(f"cross cycle per epoch: k=4 {4 * one:.1f} s, k=8 {8 * one:.1f} s")


if __name__ == "__main__":
    main()
