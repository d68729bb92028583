"""Benchmark: seconds per training step and peak memory of the model kinds (cyclegan, cut, fastcut).

exp4's size (manifests/exp4.toml: 128 px, batch 2, gray, 64 filters, 9 blocks; the CUT kinds with the paper's
settings), one process, the kinds interleaved in every repeat (kind A, B, C, A, B, C, ...) so that a change in
the machine's load touches all of them alike. Each repeat builds the model afresh, takes --warmup untimed
steps and times --steps steps of `optimize_parameters` on fixed random batches (a step's cost does not
depend on the pixels).

Memory: on the CPU, the process's resident set (RSS, /proc/self/statm) sampled every millisecond by a
thread, minus the RSS before the model was built: the weights, optimizer moments, pools and the step's
activations at their peak. torch's CPU allocator is invisible to tracemalloc, so RSS is what can see it;
glibc's mmap threshold is pinned (MALLOC_MMAP_THRESHOLD_, set by re-executing this script) so that the
large tensors a step frees go back to the system and the next model starts from the same RSS.
On CUDA: torch.cuda.max_memory_allocated over the same span.

Usage: python -m benchmarks.model_kinds [--repeats 3] [--steps 3] [--warmup 1] [--size 128] [--batch 2]
                                        [--kinds cyclegan,cut,fastcut] [--device cpu] [--upsample transposed]
OMP_NUM_THREADS=1 on a shared machine (say so with the figures).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time

MMAP_THRESHOLD = "131072"  # glibc's default before it adapts: large blocks are mmap'd and unmapped on free


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """The highest RSS seen while the block runs (sampled every `every_s`)."""

    def __init__(self, every_s: float = 0.001):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.every_s)

    def __enter__(self):
        self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def measure(kind: str, args, device) -> dict:
    """One repeat of one kind: build, warm up, time; seconds per step and peak memory in MiB."""
    import torch

    from p2d.recipe import load_recipe, apply_overrides
    from p2d.train.ddp import Ranks
    from p2d.train.kinds import MODEL_KINDS
    from p2d.train.speed import Speed

    cfg = apply_overrides(load_recipe("manifests/exp4.toml"), model__kind=kind, data__size=args.size,
                          train__batch_size=args.batch, model__upsample=args.upsample)
    speed = Speed.for_device(cfg.speed, device)
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, cfg.data.channels, args.size, args.size)
    photo, drawing = (torch.rand(shape, generator=g) * 2 - 1 for _ in range(2))
    photo, drawing = photo.to(device), drawing.to(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    before = rss_bytes()
    with PeakRSS() as peak:
        torch.manual_seed(0)
        model = MODEL_KINDS[kind](cfg, speed)
        model.wrap(Ranks())
        for _ in range(args.warmup):
            model.optimize_parameters(photo, drawing)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            losses = model.optimize_parameters(photo, drawing)
        torch.stack(list(losses.values())).tolist()  # waits for the device
        seconds = (time.perf_counter() - start) / args.steps
    if device.type == "cuda":
        mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        mib = (peak.peak - before) / 2**20
    params = sum(p.numel() for net in model.nets.values() for p in net.parameters())
    del model, losses
    gc.collect()
    return {"kind": kind, "s/step": seconds, "peak_MiB": mib, "params_M": params / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--kinds", default="cyclegan,cut,fastcut")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--upsample", default="transposed", choices=("transposed", "resize"))
    args = parser.parse_args()

    import torch

    device = torch.device(args.device)
    kinds = args.kinds.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"{args.size} px, batch {args.batch}, {args.steps} timed steps after {args.warmup}, "
          f"{args.repeats} repeats interleaved; memory: "
          + ("torch.cuda.max_memory_allocated" if device.type == "cuda"
             else "peak RSS - RSS before the model"),
          flush=True)
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    for r in range(args.repeats):
        for kind in kinds:
            row = measure(kind, args, device)
            results[kind].append(row)
            print(f"  repeat {r + 1} {kind:9s} {row['s/step']:.3f} s/step  {row['peak_MiB']:.0f} MiB",
                  flush=True)
    base = results[kinds[0]]
    base_s = statistics.median(x["s/step"] for x in base)
    base_m = statistics.median(x["peak_MiB"] for x in base)
    print(f"\n| kind | params (M) | s/step median (min-max) | x {kinds[0]} | peak MiB median (min-max) "
          f"| x {kinds[0]} |")
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        s = [x["s/step"] for x in results[kind]]
        m = [x["peak_MiB"] for x in results[kind]]
        print(f"| {kind} | {results[kind][0]['params_M']:.2f} | "
              f"{statistics.median(s):.3f} ({min(s):.3f}-{max(s):.3f}) | "
              f"{statistics.median(s) / base_s:.2f} | "
              f"{statistics.median(m):.0f} ({min(m):.0f}-{max(m):.0f}) | "
              f"{statistics.median(m) / base_m:.2f} |")


if __name__ == "__main__":
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_THRESHOLD and sys.platform.startswith("linux"):
        os.environ["MALLOC_MMAP_THRESHOLD_"] = MMAP_THRESHOLD  # read by glibc at start: run again with it
        os.execv(sys.executable, [sys.executable, "-m", "benchmarks.model_kinds", *sys.argv[1:]])
    main()
