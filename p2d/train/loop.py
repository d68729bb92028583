"""The training loop, top to bottom: config -> data -> model -> loop -> checkpoints, samples, losses.

The model is the recipe's `[model] kind` (p2d.train.kinds): it owns its networks, optimizers, pools
and training step, so this loop is the same for every kind. The run folder's layout is p2d.runs',
the checkpoint's p2d.train.checkpoint's. With the data order a pure function of (seed, epoch) (see
data.epoch_plan), a resumed run on the CPU ends with exactly the weights of an uninterrupted one,
whether it stopped at an epoch's end or in the middle (`latest` is also saved every
train.latest_every_minutes).

Under torchrun (see p2d.train.ddp) every process trains on its slice of each global batch with
DistributedDataParallel; rank 0 alone writes files and shows progress.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from p2d.errors import P2DError, RecipeError
from p2d.images import atomic_path, write_image, write_text_atomic
from p2d.manifest import manifest_hash, missing_manifest
from p2d.recipe import TrainConfig, apply_overrides, load_recipe
from p2d.runs import INFO_FILE, LOSSES_FILE, RECIPE_FILE, checkpoint_path, sample_path, write_losses
from p2d.train import ddp
from p2d.train.checkpoint import Position, checkpoint_dict, restore, resume_state, save_checkpoint
from p2d.train.data import TrainBatches, sample_images, training_rows
from p2d.train.ddp import Ranks, any_rank, mean_over_ranks
from p2d.train.kinds import MODEL_KINDS, Model
from p2d.train.speed import Speed, set_cuda_kernels
from p2d.ui import console, progress

# Under torchrun, Ctrl-C and the timed save of `latest` are agreed between the processes every
# this many steps (one tiny all-reduce), so all ranks stop or save at the same step.
AGREE_EVERY_STEPS = 20


@dataclass
class _Job:
    """What train() was asked for beyond the recipe."""

    manifest: Path
    run: Path
    resume: bool = False
    epochs: int | None = None  # --epochs as given: without it, a resume keeps the run's own length
    max_steps: int | None = None  # in total, counting resumed steps
    on_step: Callable[[int, dict[str, nn.Module]], None] | None = None

    def reached_max_steps(self, global_step: int) -> bool:
        return self.max_steps is not None and global_step >= self.max_steps


@dataclass
class _Outputs:
    """Where a run writes and what its checkpoints record: the folder, the config, the manifest's
    hash; this process's device and rank (rank 0 alone writes and speaks); the TensorBoard writer."""

    run: Path
    cfg: TrainConfig
    manifest_sha: str
    device: torch.device
    ranks: Ranks
    writer: object | None = None

    @property
    def latest(self) -> Path:
        return checkpoint_path(self.run)

    def say(self, text: str) -> None:
        if self.ranks.main:
            console.print(text)


@dataclass(frozen=True)
class TrainOptions:
    """What `p2d train`'s flags change in the recipe for one run (None: the recipe's value; `device`
    None: auto)."""

    epochs: int | None = None
    device: str | None = None
    seed: int | None = None
    precision: str | None = None
    channels_last: bool | None = None
    gpu_dataset: bool | None = None
    compile: bool | None = None
    workers: int | None = None
    deterministic: bool | None = None
    latest_every_minutes: float | None = None


def train(
    manifest: Path | str,
    recipe: Path | str | None = None,
    out: Path | str | None = None,
    *,
    options: TrainOptions = TrainOptions(),
    resume: bool = False,
    max_steps: int | None = None,
    on_step: Callable[[int, dict[str, nn.Module]], None] | None = None,
) -> Path:
    """Train (or with resume=True continue) the recipe's model on a manifest; returns the run folder.

    `options` are `p2d train`'s flags. `max_steps` stops after that many optimizer steps in total
    (counting resumed ones), saving `latest`, so a later --resume continues.
    `on_step(global_step, nets)` is called after each step with the model's plain networks.
    Under torchrun (WORLD_SIZE set) every process calls this; see p2d.train.ddp.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise missing_manifest(manifest)
    o = options
    cfg = resolve_config(
        manifest, recipe, train__epochs=o.epochs, train__seed=o.seed,
        train__latest_every_minutes=o.latest_every_minutes, speed__precision=o.precision,
        speed__channels_last=o.channels_last, speed__gpu_dataset=o.gpu_dataset, speed__compile=o.compile,
        speed__workers=o.workers, speed__deterministic=o.deterministic,
    )
    run = Path(out) if out else Path("runs") / manifest.stem
    job = _Job(manifest, run, resume, o.epochs, max_steps, on_step)
    ranks = ddp.ranks_from_env()
    ddp.local_batch_size(cfg.train.batch_size, ranks.world_size)  # before any process group starts
    dev = ddp.start(o.device, ranks)
    try:
        _train(job, cfg, dev, ranks)
    except BaseException:
        ddp.stop(ranks, finished=False)
        raise
    ddp.stop(ranks)
    return job.run


def resolve_config(manifest: Path, recipe: Path | str | None = None, **overrides) -> TrainConfig:
    """The recipe beside the manifest (same stem, .toml) or `recipe`, with flag overrides."""
    recipe_path = Path(recipe) if recipe else manifest.with_suffix(".toml")
    if recipe is None and not recipe_path.is_file():
        raise RecipeError(
            f"no recipe for {manifest}: write {recipe_path} (p2d/recipes/tiny.toml is an example) "
            "or pass --recipe PATH"
        )
    return apply_overrides(load_recipe(recipe_path), **overrides)


def _train(job: _Job, cfg: TrainConfig, dev: torch.device, ranks: Ranks) -> None:
    """train() once the process (group) and device are set up."""
    # ---- config: the recipe's, or the run's own when resuming
    state = None
    if job.resume:
        state, cfg = resume_state(job.run, cfg, job.epochs, ranks, console.print if ranks.main else _quiet)
    elif checkpoint_path(job.run).is_file():
        raise P2DError(f"{job.run} already holds a run: pass --resume to continue it, or --out NEW_FOLDER")
    out = _Outputs(job.run, cfg, manifest_hash(job.manifest), dev, ranks)
    speed = Speed.for_device(cfg.speed, dev)
    if dev.type == "cuda":
        set_cuda_kernels(cfg.speed.deterministic)

    # ---- data (the seed also fixes the model's initial weights, drawn next)
    rows = training_rows(job.manifest)
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    with progress(transient=True, disable=not ranks.main) as bar:
        batches = TrainBatches(rows, cfg, dev, gpu_dataset=cfg.speed.gpu_dataset, workers=cfg.speed.workers,
                               progress=bar, rank=ranks.rank, world_size=ranks.world_size)
    samples, notes = sample_images(rows, cfg)
    for note in notes:
        out.say(f"[yellow]note:[/] {note}")

    # ---- model: built, restored, then wrapped for the steps
    model = MODEL_KINDS[cfg.model.kind](cfg, speed)
    pos = Position(sums=torch.zeros(len(model.LOSS_NAMES), device=dev))
    if state is not None:
        pos = restore(state, model, dev, ranks)
        if state["manifest_sha256"] != out.manifest_sha:
            out.say(f"[yellow]note:[/] {job.manifest} changed since the checkpoint: the resumed run trains "
                    "on its current rows")
        out.say(f"resuming {job.run} at epoch {pos.epoch + 1}, step {pos.step + 1} of {batches.steps}")
    model.wrap(ranks)

    # ---- loop
    if ranks.main:
        _open_run(out, job, model, rows, batches, pos.global_step if state is not None else None)
    if pos.epoch >= cfg.train.epochs:
        out.say(f"{job.run} is already trained to epoch {pos.epoch}: raise --epochs to train further")
    elif job.reached_max_steps(pos.global_step):
        out.say(f"{job.run} has already taken {pos.global_step} steps (--max-steps {job.max_steps}): "
                "nothing to do")
    else:
        _loop(out, job, model, pos, batches, samples)


def _open_run(out: _Outputs, job: _Job, model: Model, rows: dict, batches: TrainBatches,
              resumed_at_step: int | None) -> None:
    """The run folder's recipe.toml and run.json, and the line a run starts with (rank 0)."""
    cfg, t, dev, ranks = out.cfg, out.cfg.train, out.device, out.ranks
    out.run.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out.run / RECIPE_FILE, cfg.to_toml())
    info = _write_run_info(out.run, {
        "manifest": str(job.manifest.resolve()), "manifest_sha256": out.manifest_sha, "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "precision": model.speed.precision, "channels_last": model.speed.channels_last,
        "compile": cfg.speed.compile, "data_on": batches.where, "world_size": ranks.world_size,
        "photos_train": len(rows[("photo", "train")]), "drawings_train": len(rows[("drawing", "train")]),
        "steps_per_epoch": batches.steps, "torch": torch.__version__,
    }, resumed_at_step)
    processes = ""
    if ranks.distributed:
        processes = f", {ranks.world_size} processes x {t.batch_size // ranks.world_size} images"
    out.say(f"training {job.manifest.name} -> {out.run}: {info['photos_train']} photos, "
            f"{info['drawings_train']} drawings, {batches.steps} steps an epoch "
            f"(batch {t.batch_size}{processes}); "
            f"{info['device_name']}, {model.speed.precision}, images in {batches.where}; {model.describe()}, "
            f"lr {t.lr} decaying from epoch {t.decay_from_epoch}")


def _write_run_info(run: Path, info: dict, resumed_at_step: int | None) -> dict:
    """Write run.json; a resume keeps when the run began and adds itself to the list of resumes."""
    info = dict(info, started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                resumed=resumed_at_step is not None)
    info_path = run / INFO_FILE
    if resumed_at_step is not None and info_path.is_file():
        first = json.loads(info_path.read_text())
        info["resumes"] = first.get("resumes", []) + [{"at": info["started"], "device": info["device"],
                                                       "global_step": resumed_at_step}]
        info["started"] = first.get("started", info["started"])
    write_text_atomic(info_path, json.dumps(info, indent=2) + "\n")
    return info


# ----------------------------------------------------------------------------- the loop


@dataclass
class _Controls:
    """What the steps consult besides the model: Ctrl-C, the progress bar and its epoch's task, and
    when `latest` was last saved."""

    flag: _StopFlag
    bar: object
    save_every_s: float
    task: object = None
    last_save: float = field(default_factory=time.perf_counter)

    def save_due(self) -> bool:
        return 0 < self.save_every_s <= time.perf_counter() - self.last_save

    def saved(self) -> None:
        self.last_save = time.perf_counter()


def _loop(out: _Outputs, job: _Job, model: Model, pos: Position, batches: TrainBatches,
          samples: dict[str, torch.Tensor]) -> None:
    """Epochs from `pos` on: each epoch's steps, then its outputs and `latest`; stops after the last
    epoch, at --max-steps or on Ctrl-C, with `latest` saved."""
    t, ranks = out.cfg.train, out.ranks
    with _tensorboard(out.run, out.cfg.speed.tensorboard and ranks.main) as writer, _StopFlag() as flag, \
            progress(disable=not ranks.main) as bar:
        out.writer = writer
        ctl = _Controls(flag, bar, t.latest_every_minutes * 60)
        while pos.epoch < t.epochs:
            ctl.task = bar.add_task(f"epoch {pos.epoch + 1}/{t.epochs}", total=batches.steps,
                                    completed=pos.step, status="")
            if not _train_epoch(out, job, model, pos, batches, ctl):
                return
            pos = _end_epoch(out, model, pos, samples, batches.steps)
            ctl.saved()
            bar.update(ctl.task, description=f"epoch {pos.epoch}/{t.epochs} done")
            (ctrl_c,) = any_rank([flag.stop], out.device, ranks)
            if ctrl_c or job.reached_max_steps(pos.global_step):
                out.say(f"stopped after epoch {pos.epoch}: saved {out.latest}; continue with --resume")
                return


def _train_epoch(out: _Outputs, job: _Job, model: Model, pos: Position, batches: TrainBatches,
                 ctl: _Controls) -> bool:
    """The current epoch's steps from pos.step on, advancing `pos`; saves `latest` inside the epoch
    when it is due or training stops. False when training stopped inside the epoch."""
    steps, fmt = batches.steps, model.speed.memory_format
    first, seconds_before = pos.step, pos.seconds
    t0 = shown = time.perf_counter()
    for photo, drawing in batches.epoch(pos.epoch, pos.step):
        photo, drawing = photo.contiguous(memory_format=fmt), drawing.contiguous(memory_format=fmt)
        losses = model.optimize_parameters(photo, drawing)
        pos.sums += torch.stack([losses[name] for name in model.LOSS_NAMES])
        pos.step, pos.global_step = pos.step + 1, pos.global_step + 1
        ctl.bar.advance(ctl.task)
        if out.ranks.main and (time.perf_counter() - shown > 1.0 or pos.step == steps):
            shown = time.perf_counter()  # one device sync per second, not per step
            speed = (pos.step - first) / (shown - t0)
            status = model.status(_mean_losses(model, pos.sums, pos.step))
            ctl.bar.update(ctl.task, status=f"{speed:.2f} it/s  {status}")
        if job.on_step is not None:
            job.on_step(pos.global_step, model.nets)
        stop, due = _stop_or_save(out, job, pos, ctl)
        if (stop or due) and pos.step < steps:
            pos.seconds = seconds_before + time.perf_counter() - t0
            _save_latest(out, model, pos)
            ctl.saved()
            if stop:
                out.say(f"stopped at epoch {pos.epoch + 1}, step {pos.step}/{steps}: saved {out.latest}; "
                        "continue with --resume")
                return False
    pos.seconds = seconds_before + time.perf_counter() - t0
    return True


def _stop_or_save(out: _Outputs, job: _Job, pos: Position, ctl: _Controls) -> tuple[bool, bool]:
    """(stop now, save `latest` now). Ctrl-C and the clock differ between processes: under torchrun
    they count only every AGREE_EVERY_STEPS steps, where all ranks agree."""
    ctrl_c = due = False
    if not out.ranks.distributed or pos.global_step % AGREE_EVERY_STEPS == 0:
        ctrl_c, due = any_rank([ctl.flag.stop, ctl.save_due()], out.device, out.ranks)
    return ctrl_c or job.reached_max_steps(pos.global_step), due


def _end_epoch(out: _Outputs, model: Model, pos: Position, samples: dict[str, torch.Tensor],
               steps: int) -> Position:
    """The epoch's outputs (rank 0), the schedule's step, `latest`, and every save_every epochs a kept
    checkpoint; returns the next epoch's start."""
    number, t = pos.epoch + 1, out.cfg.train
    losses = _mean_losses(model, mean_over_ranks(pos.sums, out.ranks), steps)
    lr = model.lr
    model.update_learning_rate()
    if out.ranks.main:
        row = {"epoch": number, "steps": steps, "seconds": round(pos.seconds, 3), **losses, "lr": lr}
        _write_epoch(out, number, row, model.sample_grid(samples))
    pos = Position(number, 0, pos.global_step, torch.zeros_like(pos.sums), 0.0)
    _save_latest(out, model, pos)
    if out.ranks.main and (number % t.save_every == 0 or number == t.epochs):
        with atomic_path(checkpoint_path(out.run, number)) as tmp:
            shutil.copyfile(out.latest, tmp)
    return pos


# ----------------------------------------------------------------------------- outputs


def _save_latest(out: _Outputs, model: Model, pos: Position) -> None:
    """Every rank calls it (the ranks' own parts are gathered); rank 0 writes."""
    payload = checkpoint_dict(model, pos, out.cfg, out.manifest_sha, out.device, out.ranks)
    if payload is not None:
        save_checkpoint(out.latest, payload)


def _write_epoch(out: _Outputs, number: int, row: dict, grid: np.ndarray) -> None:
    """An epoch's sample grid, its losses.csv row (epoch, steps, seconds, the losses, lr) and its
    TensorBoard scalars."""
    write_image(sample_path(out.run, number), grid)
    write_losses(out.run / LOSSES_FILE, number, row)
    if out.writer is not None:
        for name, value in row.items():
            if name not in ("epoch", "steps", "seconds") and not math.isnan(value):
                out.writer.add_scalar(name if name == "lr" else f"loss/{name}", value, number)
        out.writer.flush()


def _mean_losses(model: Model, sums: torch.Tensor, steps: int) -> dict[str, float]:
    return dict(zip(model.LOSS_NAMES, (sums / steps).tolist()))  # one device sync


def _quiet(*args, **kwargs) -> None:
    """console.print on ranks other than 0."""


class _StopFlag:
    """Ctrl-C asks the loop to stop after the current step (it then saves `latest`); a second
    Ctrl-C interrupts at once. Installed only in the main thread (signals work only there)."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def _handler(self, signum, frame):
        self.stop = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        console.print("[yellow]Ctrl-C: finishing this step and saving checkpoints/latest.pt "
                      "(Ctrl-C again to abort)[/]")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@contextlib.contextmanager
def _tensorboard(run: Path, enabled: bool):
    """A TensorBoard writer for the run (None when off or not installed), closed however the run ends."""
    writer = None
    if enabled:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: only when the tensorboard package is installed
            SummaryWriter = None
        writer = SummaryWriter(str(run / "tensorboard")) if SummaryWriter is not None else None
    try:
        yield writer
    finally:
        if writer is not None:
            writer.close()
