"""Benchmark: CycleGAN training steps/s and images/s, plain fp32 eager vs p2d's default path, and each switch alone.

The full experiment model (9 residual blocks, 64 filters, 128x128, batch 2) on the bundled sample
photos and drawings, through the trainer's own data pipeline, precision setup and model
(`CycleGAN.optimize_parameters`).
All paths run in one process, on the same data and device:

  plain            fp32, contiguous NCHW, images kept in RAM and copied to the device each step
  gpu data         plain + the uint8 dataset resident on the GPU (augmented there)
  precision        plain + gpu data + the precision `auto` picks (bf16 on 8.x+, fp16 + scalers on 7.x)
  channels_last    plain + channels_last only (fp32, data in RAM): the layout alone
  default          what `p2d train` does on this device: precision auto, channels_last, gpu data
  default, NCHW    the default without channels_last (--no-channels-last)
  deterministic    the default with --deterministic (deterministic kernels, copied padding)
  compile          (with --compile) the default path plus torch.compile

On the CPU only plain and default run (the switches are CUDA-only). Every timed step is a full
batch (the trainer pads an epoch's last batch), after --warmup untimed steps (allocator, cuDNN
autotune, compilation). peak_GiB is torch's peak allocated memory for that path alone.

--only keeps the paths named (labels separated by ";"). --profile runs torch.profiler over the
timed steps of each path and prints where the time went: the busiest kernels and the share of
the wall time the device was busy (low: the step waits on the host's Python and kernel launches).

Usage: python -m benchmarks.train_step [--steps 3] [--warmup 1] [--device auto] [--channels 3]
                                       [--threads N] [--compile] [--only "plain fp32 eager;default"]
                                       [--profile]
A step is one image pair through both generators and both discriminators (images/s = 2 x batch x it/s).
"""  # noqa: E501 (the first line is the script's --help description)

from __future__ import annotations

import argparse
import contextlib
import itertools
import tempfile
import time
from pathlib import Path

import torch

from p2d.curate.hashing import phash_hex
from p2d.images import read_image
from p2d.manifest import new_rows, write_manifest
from p2d.recipe import TrainConfig, apply_overrides
from p2d.train.data import TrainBatches, training_rows
from p2d.runs import pick_device
from p2d.train.cyclegan import CycleGAN
from p2d.train.ddp import Ranks
from p2d.train.speed import Speed, set_cuda_kernels

SAMPLES = Path(__file__).resolve().parent.parent / "p2d" / "samples"


def sample_manifest(folder: Path) -> Path:
    """A manifest of the bundled public-domain photos and drawings (all train rows)."""
    rows = []
    for domain, sub in (("photo", "photos"), ("drawing", "drawings")):
        for path in sorted((SAMPLES / sub).glob("*.png")):
            img = read_image(path)
            rows.append({"path": str(path), "domain": domain, "source": "samples", "split": "train",
                         "crop": "center", "width": img.shape[1], "height": img.shape[0],
                         "phash": phash_hex(img), "keep": True, "reason": ""})
    manifest = folder / "bench.csv"
    write_manifest(new_rows(rows), manifest)
    return manifest


def device_busy(prof, steps: int, seconds: float) -> str:
    """The profiled steps' kernel time against their wall time, and the five costliest kernels."""
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.device_time for e in kernels) / 1e3  # microseconds -> ms
    by_name: dict[str, float] = {}
    for e in kernels:
        by_name[e.name] = by_name.get(e.name, 0.0) + e.device_time / 1e3
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:5]
    return (f"  device busy {busy / steps:.1f} ms of {1e3 * seconds / steps:.1f} ms a step "
            f"({busy / (1e3 * seconds):.0%}); {len(kernels) / steps:.0f} kernels a step; costliest: "
            + "; ".join(f"{name[:60]} {ms / steps:.2f} ms" for name, ms in top))


def measure(label: str, rows, cfg: TrainConfig, dev: torch.device, steps: int, warmup: int,
            profile: bool = False) -> dict:
    speed = Speed.for_device(cfg.speed, dev)
    fmt = speed.memory_format
    batches = TrainBatches(rows, cfg, dev, gpu_dataset=cfg.speed.gpu_dataset and dev.type == "cuda")
    if dev.type == "cuda":
        set_cuda_kernels(cfg.speed.deterministic)  # as `p2d train` does
    torch.manual_seed(0)
    model = CycleGAN(cfg, speed)
    model.wrap(Ranks())  # one process: torch.compile with speed.compile, no DDP
    step = model.optimize_parameters
    t = cfg.train

    def batch_stream():
        for epoch in itertools.count():
            yield from batches.epoch(epoch)

    stream = batch_stream()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(warmup):
        photo, drawing = next(stream)
        step(photo.contiguous(memory_format=fmt), drawing.contiguous(memory_format=fmt))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) if profile else contextlib.nullcontext() as prof:
        start = time.perf_counter()
        for _ in range(steps):
            photo, drawing = next(stream)
            losses = step(photo.contiguous(memory_format=fmt), drawing.contiguous(memory_format=fmt))
        torch.stack(list(losses.values())).tolist()  # waits for the device
        seconds = time.perf_counter() - start
    if profile and dev.type == "cuda":
        print(f"{label}:" + device_busy(prof, steps, seconds), flush=True)
    it_s = steps / seconds
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    return {"path": label, "precision": speed.precision, "channels_last": speed.channels_last,
            "data_on": batches.where, "compile": cfg.speed.compile,
            "it/s": it_s, "images/s": it_s * 2 * t.batch_size, "s/step": 1 / it_s, "peak_GiB": peak}


def paths(base: TrainConfig, dev: torch.device, compile: bool) -> list[tuple[str, TrainConfig]]:
    """(label, config) of every path timed on `dev` (see the module docstring)."""
    plain = apply_overrides(base, speed__precision="fp32", speed__channels_last=False,
                            speed__gpu_dataset=False)
    found = [("plain fp32 eager", plain), ("default", base)]
    if dev.type == "cuda":
        found += [
            ("gpu data", apply_overrides(plain, speed__gpu_dataset=True)),
            ("gpu data + precision",
             apply_overrides(plain, speed__gpu_dataset=True, speed__precision="auto")),
            ("channels_last alone", apply_overrides(plain, speed__channels_last=True)),
            ("default, NCHW", apply_overrides(base, speed__channels_last=False)),
            ("default, deterministic", apply_overrides(base, speed__deterministic=True)),
        ]
    if compile:
        found.append(("default + compile", apply_overrides(base, speed__compile=True)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per path")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed steps first (allocator, cuDNN autotune, compile)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--only", default="", help="path labels to time, separated by \";\" (default: all)")
    parser.add_argument("--profile", action="store_true", help="torch.profiler over the timed steps (CUDA)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dev = pick_device(args.device)
    base = apply_overrides(TrainConfig(), data__channels=args.channels, data__size=args.size,
                           train__batch_size=args.batch_size, model__blocks=args.blocks)
    name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
            else f"CPU, {torch.get_num_threads()} torch threads")
    print(f"device: {name}; torch {torch.__version__}; {args.size}x{args.size}, batch {args.batch_size}, "
          f"{args.blocks} blocks, {args.channels} channels; {args.warmup} warm-up + {args.steps} timed steps "
          "per path")
    with tempfile.TemporaryDirectory() as tmp:
        rows = training_rows(sample_manifest(Path(tmp)))
        header = ["path", "precision", "channels_last", "data_on", "compile", "it/s", "images/s", "s/step",
                  "peak_GiB"]
        print(" | ".join(header), flush=True)
        results = []
        only = {label.strip() for label in args.only.split(";") if label.strip()}
        for label, cfg in paths(base, dev, args.compile):
            if only and label not in only:
                continue
            r = measure(label, rows, cfg, dev, args.steps, args.warmup, args.profile)
            print(" | ".join(f"{r[h]:.3f}" if isinstance(r[h], float) else str(r[h]) for h in header),
                  flush=True)
            results.append(r)
    for r in results[1:]:
        print(f"{r['path']} / plain speed: {r['it/s'] / results[0]['it/s']:.2f}x")


if __name__ == "__main__":
    main()
