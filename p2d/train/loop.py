"""The training loop, top to bottom: config -> data -> models -> optimizers -> loop -> checkpoints.

The run folder's layout is p2d.runs'. A checkpoint is a plain dict of tensors and primitive
containers (loaded with weights_only=True, so a checkpoint from a stranger cannot run code) that
holds everything the next step depends on: the four networks, both optimizers and schedulers,
both image pools, the position in the epoch and the python/numpy/torch/cuda RNG states. With the
data order a pure function of (seed, epoch) (see data.epoch_plan), a resumed run on the CPU ends
with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import random
import shutil
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from p2d.errors import ManifestError, P2DError, RecipeError
from p2d.images import atomic_path, write_image, write_text_atomic
from p2d.manifest import manifest_hash
from p2d.recipe import TrainConfig, apply_overrides, config_from_dict, load_recipe
from p2d.runs import INFO_FILE, LOSSES_FILE, RECIPE_FILE, checkpoint_path, pick_device, sample_path, write_losses
from p2d.train.data import TrainBatches, sample_images, tensor_to_image, training_rows
from p2d.train.models import ImagePool, LSGANLoss, build_models
from p2d.ui import console, progress

CHECKPOINT_FORMAT = 1
LOSS_NAMES = (
    "G_photo2drawing_gan",  # D_drawing fooled by fake drawings
    "G_drawing2photo_gan",  # D_photo fooled by fake photos
    "cycle_photo",  # L1(photo, G_drawing2photo(G_photo2drawing(photo)))
    "cycle_drawing",  # L1(drawing, G_photo2drawing(G_drawing2photo(drawing)))
    "identity_photo",  # L1(photo, G_drawing2photo(photo))
    "identity_drawing",  # L1(drawing, G_photo2drawing(drawing))
    "G_total",  # the weighted sum the generators minimise
    "D_drawing",  # least-squares loss of D_drawing on real vs pooled fake drawings
    "D_photo",
)


# ----------------------------------------------------------------------------- pure helpers


def lr_factor(epoch: int, epochs: int, decay_from_epoch: int) -> float:
    """Learning-rate multiplier during `epoch` (1-based): 1 before `decay_from_epoch`, then a
    straight line that would reach 0 one epoch after the last, so no epoch trains at lr 0."""
    if epoch < decay_from_epoch:
        return 1.0
    # max(1, ...): a run cut shorter than its decay start (--epochs below decay_from_epoch) must not
    # divide by zero in its last epoch.
    return max(0.0, 1.0 - (epoch - decay_from_epoch) / max(1, epochs - decay_from_epoch + 1))


def _lr_lambda(epochs_done: int, epochs: int, decay_from_epoch: int) -> float:
    return lr_factor(epochs_done + 1, epochs, decay_from_epoch)


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast only on CUDA cards with native bf16 (Ampere, compute capability 8, and newer):
    on older cards it is emulated, and on the CPU it is usually slower than fp32."""
    if precision == "bf16" and device.type != "cuda":
        warnings.warn("bf16 asked for on the CPU: training in fp32 (bf16 is slower there)", stacklevel=2)
    if precision == "fp32" or device.type != "cuda":
        return False
    supported = torch.cuda.get_device_capability(device)[0] >= 8
    if precision == "bf16" and not supported:
        warnings.warn("this GPU has no bf16 support: training in fp32", stacklevel=2)
    return supported


# ----------------------------------------------------------------------------- RNG and checkpoints


def rng_state() -> dict:
    """Every RNG the loop touches, as tensors and lists (weights_only-loadable)."""
    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        # only the current GPU's: a run resumed on a machine with fewer GPUs must still load
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_state = state["cuda"]
        torch.cuda.set_rng_state(cuda_state[0] if isinstance(cuda_state, (list, tuple)) else cuda_state)


def save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise P2DError(f"checkpoint {path} not found: give a run folder or an existing .pt file")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # pickle errors come as many types; the message says which
        raise P2DError(
            f"checkpoint {path} cannot be loaded safely ({type(exc).__name__}: {str(exc)[:200]}): "
            "p2d loads only plain-tensor checkpoints it wrote itself; re-save it or use another epoch"
        ) from None


def _check_resumable(saved: TrainConfig, cfg: TrainConfig, run: Path) -> None:
    """A resumed run must be the same training: only epochs and the [speed] switches may change."""
    if saved.data.channels != cfg.data.channels:
        raise RecipeError(
            f"channels: the checkpoint in {run} was trained with channels = {saved.data.channels}, "
            f"the recipe says {cfg.data.channels}: set data.channels = {saved.data.channels} in the recipe to "
            "resume, or start a new run with another --out"
        )
    a, b = saved.to_dict(), cfg.to_dict()
    changed = [f"{t}.{k}: {a[t][k]!r} -> {b[t][k]!r}" for t in ("data", "model", "train") for k in a[t]
               if a[t][k] != b[t][k] and (t, k) != ("train", "epochs")]
    if changed:
        raise RecipeError(
            f"cannot resume {run} with a different recipe ({'; '.join(changed)}): put those keys back "
            "(or see RUN/recipe.toml), or start a new run with another --out"
        )


# ----------------------------------------------------------------------------- one step


def _set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def train_step(nets: dict[str, nn.Module], opt_G, opt_D, pools: dict[str, ImagePool], photo, drawing,
               cfg: TrainConfig, gan: LSGANLoss, autocast) -> torch.Tensor:
    """One CycleGAN step (generators, then discriminators); returns the LOSS_NAMES values."""
    G_p2d, G_d2p, D_drawing, D_photo = (nets[k] for k in ("G_photo2drawing", "G_drawing2photo", "D_drawing", "D_photo"))
    w_photo, w_drawing = cfg.cycle_weights
    w_id = cfg.train.identity_weight
    l1 = nn.functional.l1_loss
    nan = torch.full((), float("nan"), device=photo.device)

    # Generators: the discriminators are only judges here, their weights stay out of the graph.
    _set_requires_grad([D_drawing, D_photo], False)
    opt_G.zero_grad(set_to_none=True)
    with autocast():
        fake_drawing = G_p2d(photo)
        back_photo = G_d2p(fake_drawing)
        fake_photo = G_d2p(drawing)
        back_drawing = G_p2d(fake_photo)
        gan_p2d = gan(D_drawing(fake_drawing), True)
        gan_d2p = gan(D_photo(fake_photo), True)
        cycle_photo = l1(back_photo.float(), photo)
        cycle_drawing = l1(back_drawing.float(), drawing)
        if w_id > 0:  # skipped at weight 0: two generator passes saved
            id_photo = l1(G_d2p(photo).float(), photo)
            id_drawing = l1(G_p2d(drawing).float(), drawing)
            identity = w_id * (id_photo + id_drawing)
        else:
            id_photo = id_drawing = nan
            identity = 0.0
        loss_G = gan_p2d + gan_d2p + w_photo * cycle_photo + w_drawing * cycle_drawing + identity
    loss_G.backward()
    opt_G.step()

    # Discriminators: real vs a fake from the pool of past fakes; halved as in the paper, so
    # D learns at half the generators' rate.
    _set_requires_grad([D_drawing, D_photo], True)
    opt_D.zero_grad(set_to_none=True)
    with autocast():
        pooled_drawing = pools["drawing"].query(fake_drawing)
        pooled_photo = pools["photo"].query(fake_photo)
        loss_D_drawing = 0.5 * (gan(D_drawing(drawing), True) + gan(D_drawing(pooled_drawing), False))
        loss_D_photo = 0.5 * (gan(D_photo(photo), True) + gan(D_photo(pooled_photo), False))
    (loss_D_drawing + loss_D_photo).backward()
    opt_D.step()
    values = [gan_p2d, gan_d2p, cycle_photo, cycle_drawing, id_photo, id_drawing, loss_G, loss_D_drawing, loss_D_photo]
    return torch.stack([v.detach().float() for v in values])  # stays on the device: no sync per step


# ----------------------------------------------------------------------------- outputs


@torch.no_grad()
def sample_grid(nets: dict[str, nn.Module], samples: dict[str, torch.Tensor], device: torch.device) -> np.ndarray:
    """Photo rows [photo, ->drawing, ->photo back], then drawing rows [drawing, ->photo, ->drawing back]."""
    rows = []
    for domain, there, back in (("photo", "G_photo2drawing", "G_drawing2photo"), ("drawing", "G_drawing2photo", "G_photo2drawing")):
        x = samples[domain].to(device)
        y = nets[there](x)
        z = nets[back](y)
        rows.append(torch.cat([x, y.float(), z.float()], dim=3))  # cells side by side
    grid = torch.cat(rows, 0)  # (rows, C, S, 3S)
    return tensor_to_image(torch.cat(list(grid), dim=1))  # rows stacked vertically


class _StopFlag:
    """Ctrl-C asks the loop to stop after the current step (it then saves `latest`); a second
    Ctrl-C interrupts at once. Installed only in the main thread (signals work only there)."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def _handler(self, signum, frame):
        self.stop = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        console.print("[yellow]Ctrl-C: finishing this step and saving checkpoints/latest.pt (Ctrl-C again to abort)[/]")

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


# ----------------------------------------------------------------------------- train


def resolve_config(manifest: Path, recipe: Path | str | None = None, **overrides) -> TrainConfig:
    """The recipe beside the manifest (same stem, .toml) or `recipe`, with flag overrides."""
    recipe_path = Path(recipe) if recipe else manifest.with_suffix(".toml")
    if recipe is None and not recipe_path.is_file():
        raise RecipeError(
            f"no recipe for {manifest}: write {recipe_path} (p2d/recipes/tiny.toml is an example) "
            "or pass --recipe PATH"
        )
    return apply_overrides(load_recipe(recipe_path), **overrides)


@dataclass
class _Nets:
    """The four networks, their optimizers and schedules, and the two image pools: what a
    checkpoint saves and a resume restores."""

    nets: dict[str, nn.Module]
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    sched_G: torch.optim.lr_scheduler.LambdaLR
    sched_D: torch.optim.lr_scheduler.LambdaLR
    pools: dict[str, ImagePool]
    schedule: Callable[[int], float]


@dataclass
class _Position:
    """Where training stands: epochs done, steps into the current epoch, steps in total, and the
    current epoch's loss sums and seconds so far."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    sums: torch.Tensor | None = None
    seconds: float = 0.0


def _build_nets(cfg: TrainConfig, dev: torch.device, memory_format) -> _Nets:
    """Networks (the seed set before fixes their initial weights), Adam optimizers and the
    linear-decay schedule."""
    t = cfg.train
    nets = {k: m.to(dev, memory_format=memory_format) for k, m in build_models(cfg).items()}
    generators = itertools.chain(nets["G_photo2drawing"].parameters(), nets["G_drawing2photo"].parameters())
    discriminators = itertools.chain(nets["D_drawing"].parameters(), nets["D_photo"].parameters())
    opt_G = torch.optim.Adam(generators, lr=t.lr, betas=(t.beta1, t.beta2))
    opt_D = torch.optim.Adam(discriminators, lr=t.lr, betas=(t.beta1, t.beta2))
    schedule = functools.partial(_lr_lambda, epochs=t.epochs, decay_from_epoch=t.decay_from_epoch)
    return _Nets(nets, opt_G, opt_D, torch.optim.lr_scheduler.LambdaLR(opt_G, schedule),
                 torch.optim.lr_scheduler.LambdaLR(opt_D, schedule),
                 {"drawing": ImagePool(t.pool_size), "photo": ImagePool(t.pool_size)}, schedule)


def _resume_state(run: Path, cfg: TrainConfig, resume: bool, epochs: int | None) -> tuple[dict | None, TrainConfig]:
    """The `latest` checkpoint to continue from (None for a new run) and the config to train with."""
    latest = checkpoint_path(run)
    if not resume:
        if latest.is_file():
            raise P2DError(f"{run} already holds a run: pass --resume to continue it, or --out NEW_FOLDER")
        return None, cfg
    if not latest.is_file():
        raise P2DError(f"nothing to resume: {latest} does not exist; start without --resume")
    state = load_checkpoint(latest)
    saved_epochs = int(state["recipe"]["train"]["epochs"])
    if epochs is None and cfg.train.epochs != saved_epochs:
        # --resume continues the same training: its length is the checkpoint's unless --epochs says otherwise
        console.print(f"resuming with the run's epochs = {saved_epochs} (the recipe now says "
                      f"{cfg.train.epochs}; pass --epochs to change it)")
        cfg = apply_overrides(cfg, train__epochs=saved_epochs)
    _check_resumable(config_from_dict(state["recipe"], source=str(latest)), cfg, run)
    return state, cfg


def _restore(state: dict, n: _Nets, dev: torch.device) -> _Position:
    """Load a checkpoint's networks, optimizers, schedules, pools and RNG states into `n`."""
    for name, net in n.nets.items():
        net.load_state_dict(state["models"][name])
    n.opt_G.load_state_dict(state["optimizers"]["G"])
    n.opt_D.load_state_dict(state["optimizers"]["D"])
    n.sched_G.load_state_dict(state["schedulers"]["G"])
    n.sched_D.load_state_dict(state["schedulers"]["D"])
    # The saved lr belongs to the saved schedule; with another --epochs the slope changed, and
    # LambdaLR would only apply it at the next epoch. Same epochs: the same value as saved.
    for opt, sched in ((n.opt_G, n.sched_G), (n.opt_D, n.sched_D)):
        for group, base in zip(opt.param_groups, sched.base_lrs):
            group["lr"] = base * n.schedule(sched.last_epoch)
    for name, pool in n.pools.items():
        pool.load_state_dict(state["pools"][name], dev)
    set_rng_state(state["rng"])
    return _Position(state["epoch"], state["step_in_epoch"], state["global_step"],
                     state["epoch_loss_sums"].to(dev), float(state["epoch_seconds"]))


def _checkpoint(n: _Nets, pos: _Position, cfg: TrainConfig, manifest_sha: str) -> dict:
    """The plain dict a checkpoint holds (see the module docstring)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": pos.epoch, "step_in_epoch": pos.step, "global_step": pos.global_step,
        "models": {k: m.state_dict() for k, m in n.nets.items()},
        "optimizers": {"G": n.opt_G.state_dict(), "D": n.opt_D.state_dict()},
        "schedulers": {"G": n.sched_G.state_dict(), "D": n.sched_D.state_dict()},
        "pools": {k: p.state_dict() for k, p in n.pools.items()},
        "rng": rng_state(),
        "epoch_loss_sums": pos.sums.cpu(), "epoch_seconds": pos.seconds,
        "recipe": cfg.to_dict(), "manifest_sha256": manifest_sha,
    }


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


def _end_epoch(run: Path, number: int, steps: int, seconds: float, losses: dict[str, float], lr: float,
               grid: np.ndarray, writer) -> None:
    """An epoch's outputs: the sample grid, its losses.csv row and the TensorBoard scalars."""
    write_image(sample_path(run, number), grid)
    write_losses(run / LOSSES_FILE, number, {"epoch": number, "steps": steps, "seconds": round(seconds, 3),
                                             **losses, "lr": lr})
    if writer is not None:
        for name, value in losses.items():
            if not math.isnan(value):
                writer.add_scalar(f"loss/{name}", value, number)
        writer.add_scalar("lr", lr, number)
        writer.flush()


def _status(losses: dict[str, float], speed: float) -> str:
    return (f"{speed:.2f} it/s  G {losses['G_total']:.3f}  D {losses['D_drawing'] + losses['D_photo']:.3f}  "
            f"cycle {losses['cycle_photo'] + losses['cycle_drawing']:.3f}")


def _mean_losses(sums: torch.Tensor, steps: int) -> dict[str, float]:
    return dict(zip(LOSS_NAMES, (sums / steps).tolist()))  # one device sync


def train(
    manifest: Path | str,
    recipe: Path | str | None = None,
    out: Path | str | None = None,
    epochs: int | None = None,
    device: str | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    seed: int | None = None,
    precision: str | None = None,
    channels_last: bool | None = None,
    gpu_dataset: bool | None = None,
    compile: bool | None = None,
    workers: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Path:
    """Train (or with resume=True continue) a CycleGAN on a manifest; returns the run folder.

    `max_steps` stops after that many optimizer steps in total (counting resumed ones), saving
    `latest`, so a later --resume continues. `on_step(global_step)` is called after each step.
    """
    # ---- config
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ManifestError(f"manifest {manifest} not found: build one with a curate command or `p2d manifest build`")
    cfg = resolve_config(
        manifest, recipe, train__epochs=epochs, train__seed=seed, speed__precision=precision,
        speed__channels_last=channels_last, speed__gpu_dataset=gpu_dataset, speed__compile=compile,
        speed__workers=workers,
    )
    run = Path(out) if out else Path("runs") / manifest.stem
    dev = pick_device(device)
    bf16 = use_bf16(cfg.speed.precision, dev)
    nhwc = cfg.speed.channels_last and dev.type == "cuda"
    memory_format = torch.channels_last if nhwc else torch.contiguous_format
    autocast = functools.partial(torch.autocast, device_type=dev.type, dtype=torch.bfloat16, enabled=bf16)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    latest = checkpoint_path(run)
    state, cfg = _resume_state(run, cfg, resume, epochs)
    manifest_sha = manifest_hash(manifest)

    # ---- data
    rows = training_rows(manifest)
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    with progress(transient=True) as bar:
        batches = TrainBatches(rows, cfg, dev, gpu_dataset=cfg.speed.gpu_dataset, workers=cfg.speed.workers, progress=bar)
    samples, notes = sample_images(rows, cfg)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    steps = batches.steps

    # ---- models, optimizers and schedules (the seed above fixes the initial weights)
    n = _build_nets(cfg, dev, memory_format)
    forward = {k: torch.compile(m) for k, m in n.nets.items()} if cfg.speed.compile else n.nets
    gan = LSGANLoss()
    pos = _Position(sums=torch.zeros(len(LOSS_NAMES), device=dev))
    if state is not None:
        pos = _restore(state, n, dev)
        if state["manifest_sha256"] != manifest_sha:
            console.print(f"[yellow]note:[/] {manifest} changed since the checkpoint: the resumed run trains on its current rows")
        console.print(f"resuming {run} at epoch {pos.epoch + 1}, step {pos.step + 1} of {steps}")

    run.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run / RECIPE_FILE, cfg.to_toml())
    t = cfg.train
    info = _write_run_info(run, {
        "manifest": str(manifest.resolve()), "manifest_sha256": manifest_sha, "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "bf16": bf16, "channels_last": nhwc, "compile": cfg.speed.compile, "data_on": batches.where,
        "photos_train": len(rows[("photo", "train")]), "drawings_train": len(rows[("drawing", "train")]),
        "steps_per_epoch": steps, "torch": torch.__version__,
    }, pos.global_step if state is not None else None)
    console.print(
        f"training {manifest.name} -> {run}: {info['photos_train']} photos, {info['drawings_train']} drawings, "
        f"{steps} steps an epoch; {info['device_name']}, {'bf16' if bf16 else 'fp32'}, images in {batches.where}; "
        f"cycle weights {cfg.cycle_weights}, identity {t.identity_weight}, lr {t.lr} decaying from epoch {t.decay_from_epoch}"
    )

    # ---- loop
    if pos.epoch >= t.epochs:
        console.print(f"{run} is already trained to epoch {pos.epoch}: raise --epochs to train further")
        return run
    if max_steps is not None and pos.global_step >= max_steps:
        console.print(f"{run} has already taken {pos.global_step} steps (--max-steps {max_steps}): nothing to do")
        return run
    with _tensorboard(run, cfg.speed.tensorboard) as writer, _StopFlag() as flag, progress() as bar:
        for epoch in range(pos.epoch, t.epochs):
            number = epoch + 1
            task = bar.add_task(f"epoch {number}/{t.epochs}", total=steps, completed=pos.step, status="")
            t0, shown = time.perf_counter(), time.perf_counter()
            for step, (photo, drawing) in enumerate(batches.epoch(epoch, pos.step), start=pos.step):
                photo = photo.contiguous(memory_format=memory_format)
                drawing = drawing.contiguous(memory_format=memory_format)
                pos.sums += train_step(forward, n.opt_G, n.opt_D, n.pools, photo, drawing, cfg, gan, autocast)
                pos.global_step += 1
                bar.advance(task)
                if time.perf_counter() - shown > 1.0 or step + 1 == steps:
                    shown = time.perf_counter()  # one device sync per second, not per step
                    bar.update(task, status=_status(_mean_losses(pos.sums, step + 1), (step + 1 - pos.step) / (shown - t0)))
                if on_step is not None:
                    on_step(pos.global_step)
                stop = flag.stop or (max_steps is not None and pos.global_step >= max_steps)
                if stop and step + 1 < steps:
                    cut = _Position(epoch, step + 1, pos.global_step, pos.sums, pos.seconds + time.perf_counter() - t0)
                    save_checkpoint(latest, _checkpoint(n, cut, cfg, manifest_sha))
                    console.print(f"stopped at epoch {number}, step {step + 1}/{steps}: saved {latest}; "
                                  "continue with --resume")
                    return run
            seconds = pos.seconds + time.perf_counter() - t0
            losses = _mean_losses(pos.sums, steps)
            lr = n.opt_G.param_groups[0]["lr"]
            n.sched_G.step()
            n.sched_D.step()
            _end_epoch(run, number, steps, seconds, losses, lr, sample_grid(n.nets, samples, dev), writer)
            pos = _Position(number, 0, pos.global_step, torch.zeros_like(pos.sums), 0.0)
            save_checkpoint(latest, _checkpoint(n, pos, cfg, manifest_sha))
            if number % t.save_every == 0 or number == t.epochs:
                with atomic_path(checkpoint_path(run, number)) as tmp:
                    shutil.copyfile(latest, tmp)
            bar.update(task, description=f"epoch {number}/{t.epochs} done")
            if flag.stop or (max_steps is not None and pos.global_step >= max_steps):
                console.print(f"stopped after epoch {number}: saved {latest}; continue with --resume")
                return run
    return run
