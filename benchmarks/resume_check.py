"""Check: is a resumed run the uninterrupted run on this device, and is a run repeatable at all?

tests/test_train_loop.py shows on the CPU that a run stopped twice mid-epoch and resumed ends with
the uninterrupted run's weights, bit for bit. On CUDA that holds only as far as the kernels are
deterministic (cuDNN's benchmark mode may pick another convolution algorithm in a new process,
and some backward kernels add in a varying order). Per precision this trains the tests' tiny
task (tiny.toml: 32 px, 3 epochs of 3 steps) through `p2d train` three times: uninterrupted,
uninterrupted again, and stopped at steps 4 and 5 then resumed. It prints, against the first run,
how many weight tensors differ and the largest difference relative to the weights' scale.

With --deterministic the runs use `p2d train --deterministic` (speed.deterministic).

Usage: python -m benchmarks.resume_check [--device cuda] [--precision fp32 bf16 fp16] [--deterministic]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import torch
from typer.testing import CliRunner

from p2d.cli import app

from benchmarks.fixtures import tests_module

make_manifest = tests_module("train_helpers").make_manifest

runner = CliRunner()


def weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")
    return {f"{net}.{k}": v.double() for net, sd in ckpt["models"].items() for k, v in sd.items()
            if v.is_floating_point()}


def train(manifest: Path, run: Path, device: str, precision: str, *extra: str) -> None:
    result = runner.invoke(app, ["train", str(manifest), "--out", str(run), "--epochs", "3",
                                 "--device", device, "--precision", precision, *extra])
    if result.exit_code != 0:
        raise SystemExit(f"p2d train {' '.join(extra)} failed:\n{result.output}\n{result.exception!r}")


def compare(a: Path, b: Path) -> str:
    wa, wb = weights(a), weights(b)
    differing = [k for k in wa if not torch.equal(wa[k], wb[k])]
    scale = max(float(v.abs().max()) for v in wa.values())
    largest = max((float((wa[k] - wb[k]).abs().max()) for k in differing), default=0.0)
    return (f"{len(differing):3d} of {len(wa)} tensors differ, largest difference {largest / scale:.1e} of "
            "the largest weight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args()
    switch = ["--deterministic"] if args.deterministic else []
    label = f"{args.device}{' deterministic' if args.deterministic else ''}"
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tmp = Path(tmp)
        manifest = make_manifest(tmp / "data")
        for precision in args.precision:
            runs = {name: tmp / f"{precision}-{name}" for name in ("first", "again", "resumed")}
            train(manifest, runs["first"], args.device, precision, *switch)
            train(manifest, runs["again"], args.device, precision, *switch)
            for extra in (["--max-steps", "4"], ["--resume", "--max-steps", "5"], ["--resume"]):
                train(manifest, runs["resumed"], args.device, precision, *switch, *extra)
            print(f"{label} {precision:4s}  run again: {compare(runs['first'], runs['again'])}", flush=True)
            print(f"{label} {precision:4s}  resumed:   {compare(runs['first'], runs['resumed'])}", flush=True)
        kernels = sorted({str(w.message).split(".")[0] for w in caught if "deterministic" in str(w.message)})
        print("no kernel without a deterministic version ran" if not kernels else
              "kernels without a deterministic version: " + "; ".join(kernels))


if __name__ == "__main__":
    main()
