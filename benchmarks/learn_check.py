"""Check: the learning test's task at the experiments' size, trained for a fixed time, then resumed.

tests/test_learning.py trains on 32 px pencil sketches of scikit-image's real LFW faces (unpaired)
on the CPU. This runs the same task at 128 px (faces scaled up, sketch lines scaled with them)
with the experiments' generator (64 filters, 9 blocks), through `p2d.train.loop.train` on the
device, for --minutes (Ctrl-C's own path stops it: a real SIGINT, `latest` saved), then resumes
for --resume-steps more steps. It prints the held-out error against the filter (model vs the
identity and the mean drawing, gray levels), the steps/s, and whether the resume continued.

Usage: python -m benchmarks.learn_check [--minutes 2] [--device auto] [--resume-steps 50]
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from p2d.images import write_image
from p2d.manifest import new_rows, write_manifest
from p2d.runs import checkpoint_path, read_losses
from p2d.train.data import fit_image
from p2d.train.loop import TrainOptions, train
from p2d.train.translate import load_generators, translate_array

from benchmarks.fixtures import tests_module

pencil_sketch = tests_module("test_learning").pencil_sketch  # the learning test's task
lfw_faces = tests_module("train_helpers").lfw_faces

SIZE = int(os.environ.get("P2D_LEARN_SIZE", 128))  # smaller only to try the script on a CPU
RECIPE = f"""
[data]
channels = 1
size = {SIZE}
augment = ["hflip"]
[train]
epochs = 1000          # stopped by the clock
batch_size = 2
decay_from_epoch = 1000
cycle_weight = 10.0
identity_weight = 5.0
save_every = 1000
latest_every_minutes = 1.0
"""


def build(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    faces = np.stack([fit_image(f[:, :, None], SIZE, "center")[:, :, 0] for f in lfw_faces()])
    drawings, photos, held_out = faces[:50], faces[50:85], faces[85:]
    rows = []
    for domain, split, images in (("drawing", "train", [pencil_sketch(f, 2.0 * SIZE / 32) for f in drawings]),
                                  ("photo", "train", photos), ("photo", "test", held_out[:2])):
        for i, img in enumerate(images):
            path = folder / domain / f"{split}{i:03d}.png"
            write_image(path, img)
            rows.append({"path": str(path), "domain": domain, "source": "lfw", "split": split,
                         "crop": "center",
                         "width": SIZE, "height": SIZE, "phash": "0" * 16, "keep": True, "reason": ""})
    manifest = folder / "lfw128.csv"
    write_manifest(new_rows(rows), manifest)
    manifest.with_suffix(".toml").write_text(RECIPE)
    return manifest, drawings, held_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume-steps", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest, drawings, held_out = build(Path(tmp))
        run = Path(tmp) / "run"
        start = time.perf_counter()

        def stop_on_time(step, nets):
            if time.perf_counter() - start > args.minutes * 60:
                os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C path: finish the step, save latest

        train(manifest, out=run, options=TrainOptions(device=args.device), on_step=stop_on_time)
        seconds = time.perf_counter() - start
        stopped = torch.load(checkpoint_path(run), weights_only=True)
        steps = stopped["global_step"]
        _, photo2drawing, _ = load_generators(run)
        sketch = 2.0 * SIZE / 32
        target = np.stack([pencil_sketch(f, sketch) for f in held_out]).astype(np.float64)
        translated = np.stack([translate_array(photo2drawing, f, 1) for f in held_out]).astype(np.float64)
        mean_drawing = np.stack([pencil_sketch(f, sketch) for f in drawings]).astype(np.float64).mean(0)
        error = {"model": np.abs(translated - target).mean(), "identity": np.abs(held_out - target).mean(),
                 "mean drawing": np.abs(mean_drawing - target).mean()}
        print(f"learning at {SIZE} px: {steps} steps in {seconds:.0f} s ({steps / seconds:.2f} steps/s incl. "
              f"start-up); epochs done {stopped['epoch']}; held-out error (gray levels): "
              + ", ".join(f"{k} {v:.1f}" for k, v in error.items()))
        print(f"learns: {error['model'] < error['mean drawing'] < error['identity']} "
              f"(model / mean drawing = {error['model'] / error['mean drawing']:.2f}; the 32 px CPU test "
              "asks < 0.93)")
        print("last losses:", {k: round(v, 3) for k, v in (read_losses(run) or [{}])[-1].items()})
        train(manifest, out=run, options=TrainOptions(device=args.device), resume=True,
              max_steps=steps + args.resume_steps)
        resumed = torch.load(checkpoint_path(run), weights_only=True)
        print(f"resume on {args.device}: from step {steps} to {resumed['global_step']} "
              f"(asked {steps + args.resume_steps}): "
              f"{'ok' if resumed['global_step'] == steps + args.resume_steps else 'FAILED'}")


if __name__ == "__main__":
    main()
