"""The training loop, top to bottom: config -> data -> models -> optimizers -> loop -> checkpoints.

The run folder's layout is p2d.runs'. A checkpoint is a plain dict of tensors and primitive
containers (loaded with weights_only=True, so a checkpoint from a stranger cannot run code) that
holds everything the next step depends on: the four networks, both optimizers and schedulers,
both image pools, the fp16 gradient scalers, the position in the epoch and the
python/numpy/torch/cuda RNG states. With the data order a pure function of (seed, epoch) (see
data.epoch_plan), a resumed run on the CPU ends with exactly the weights of an uninterrupted one,
whether it stopped at an epoch's end or in the middle (`latest` is also saved every
train.latest_every_minutes).

Under torchrun (see p2d.train.ddp) every process trains on its slice of each global batch with
DistributedDataParallel; rank 0 alone writes files and shows progress. A checkpoint holds the
unwrapped networks (no `module.` prefixes, so single-process train, translate and evaluate read
it), rank 0's pools, RNG states and loss sums under the usual keys, and the other ranks' under
`other_ranks`: each process keeps its own image pool of its own fakes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import os
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

from p2d.errors import P2DError, RecipeError
from p2d.images import atomic_path, write_image, write_text_atomic
from p2d.manifest import manifest_hash, missing_manifest
from p2d.recipe import TrainConfig, apply_overrides, config_from_dict, load_recipe
from p2d.runs import INFO_FILE, LOSSES_FILE, RECIPE_FILE, checkpoint_path, sample_path, write_losses
from p2d.train import ddp
from p2d.train.data import TrainBatches, sample_images, tensor_to_image, training_rows
from p2d.train.ddp import Ranks, any_rank, mean_over_ranks
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
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Under torchrun, Ctrl-C and the timed save of `latest` are agreed between the processes every
# this many steps (one tiny all-reduce), so all ranks stop or save at the same step.
AGREE_EVERY_STEPS = 20


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


def precision_mode(precision: str, device_type: str, capability: tuple[int, int] | None = None) -> str:
    """The arithmetic a run trains in, "bf16", "fp16" or "fp32", for speed.precision on a device
    (`capability`: the CUDA card's compute capability). Pure: tested without a GPU.

    auto: bf16 where the card has it natively (capability 8+, Ampere and newer); fp16 with gradient
    scalers on 7.x (Volta, Turing: fp16 tensor cores, no bf16); fp32 on older cards (Pascal, such
    as the experiments' GTX 1060, runs fp16 slowly) and on the CPU. An explicit bf16 or fp16 is
    honoured, on the CPU too (slower than fp32 there, but it runs the same code), except bf16 on a
    card without it, which would be emulated: fp32 then, with a warning.
    """
    major = capability[0] if capability else 0
    if precision == "auto":
        if device_type != "cuda":
            return "fp32"
        return "bf16" if major >= 8 else "fp16" if major == 7 else "fp32"
    if precision == "bf16" and device_type == "cuda" and major < 8:
        warnings.warn(f"this GPU (compute capability {major}.x) has no native bf16: training in fp32; "
                      "--precision fp16 uses its fp16 units", stacklevel=2)
        return "fp32"
    if precision != "fp32" and device_type != "cuda":
        warnings.warn(f"{precision} on the {device_type}: usually slower than fp32 there", stacklevel=2)
    return precision


def device_precision(precision: str, device: torch.device) -> str:
    """precision_mode for a torch device (asks CUDA for the card's compute capability)."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return precision_mode(precision, device.type, capability)


def autocast_for(mode: str, device: torch.device):
    """A context-manager factory: autocast in `mode`'s dtype (off for fp32)."""
    return functools.partial(torch.autocast, device_type=device.type, dtype=AUTOCAST_DTYPES.get(mode, torch.float32),
                             enabled=mode in AUTOCAST_DTYPES)


def gradient_scalers(mode: str, device: torch.device) -> dict[str, torch.amp.GradScaler]:
    """One scaler per optimizer ("G", "D"), enabled for fp16 only (bf16 has fp32's range). Their
    losses differ by orders of magnitude, so they need their own scales."""
    return {k: torch.amp.GradScaler(device.type, enabled=mode == "fp16") for k in ("G", "D")}


# ----------------------------------------------------------------------------- RNG and checkpoints


def rng_state(device: torch.device | None = None) -> dict:
    """Every RNG the loop touches, as tensors and lists (weights_only-loadable); with a CUDA
    `device`, that device's generator (not whichever GPU happens to be current)."""
    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        cuda_state = state["cuda"]
        torch.cuda.set_rng_state(cuda_state[0] if isinstance(cuda_state, (list, tuple)) else cuda_state, device)


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


_MAY_CHANGE_ON_RESUME = {("train", "epochs"), ("train", "latest_every_minutes")}


def _check_resumable(saved: TrainConfig, cfg: TrainConfig, run: Path) -> None:
    """A resumed run must be the same training: only epochs, how often `latest` is saved and the
    [speed] switches may change."""
    if saved.data.channels != cfg.data.channels:
        raise RecipeError(
            f"channels: the checkpoint in {run} was trained with channels = {saved.data.channels}, "
            f"the recipe says {cfg.data.channels}: set data.channels = {saved.data.channels} in the recipe to "
            "resume, or start a new run with another --out"
        )
    a, b = saved.to_dict(), cfg.to_dict()
    changed = [f"{t}.{k}: {a[t][k]!r} -> {b[t][k]!r}" for t in ("data", "model", "train") for k in a[t]
               if a[t][k] != b[t][k] and (t, k) not in _MAY_CHANGE_ON_RESUME]
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


def _optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    if scaler is None:
        loss.backward()
        opt.step()
        return
    scaler.scale(loss).backward()  # a disabled scaler (bf16, fp32) passes everything through
    scaler.step(opt)  # skips the step when fp16 gradients overflowed
    scaler.update()


def train_step(nets: dict[str, nn.Module], opt_G, opt_D, pools: dict[str, ImagePool], photo, drawing,
               cfg: TrainConfig, gan: LSGANLoss, autocast, scalers: dict | None = None,
               judges: dict[str, nn.Module] | None = None) -> torch.Tensor:
    """One CycleGAN step (generators, then discriminators); returns the LOSS_NAMES values.

    `scalers`: {"G", "D"} gradient scalers (fp16). `judges`: the discriminators as called in the
    generator phase; under DDP the unwrapped modules: their parameters are frozen there, so DDP
    would have nothing to reduce, and its per-call bookkeeping is skipped.
    """
    G_p2d, G_d2p, D_drawing, D_photo = (nets[k] for k in ("G_photo2drawing", "G_drawing2photo", "D_drawing", "D_photo"))
    judges = judges or nets
    scalers = scalers or {}
    w_photo, w_drawing = cfg.cycle_weights
    w_id = cfg.train.identity_weight
    l1 = nn.functional.l1_loss
    nan = torch.full((), float("nan"), device=photo.device)

    # Generators: the discriminators are only judges here, their weights stay out of the graph.
    _set_requires_grad([judges["D_drawing"], judges["D_photo"]], False)
    opt_G.zero_grad(set_to_none=True)
    with autocast():
        fake_drawing = G_p2d(photo)
        back_photo = G_d2p(fake_drawing)
        fake_photo = G_d2p(drawing)
        back_drawing = G_p2d(fake_photo)
        gan_p2d = gan(judges["D_drawing"](fake_drawing), True)
        gan_d2p = gan(judges["D_photo"](fake_photo), True)
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
    _optimizer_step(loss_G, opt_G, scalers.get("G"))

    # Discriminators: real vs a fake from the pool of past fakes; halved as in the paper, so
    # D learns at half the generators' rate.
    _set_requires_grad([judges["D_drawing"], judges["D_photo"]], True)
    opt_D.zero_grad(set_to_none=True)
    with autocast():
        pooled_drawing = pools["drawing"].query(fake_drawing)
        pooled_photo = pools["photo"].query(fake_photo)
        loss_D_drawing = 0.5 * (gan(D_drawing(drawing), True) + gan(D_drawing(pooled_drawing), False))
        loss_D_photo = 0.5 * (gan(D_photo(photo), True) + gan(D_photo(pooled_photo), False))
    _optimizer_step(loss_D_drawing + loss_D_photo, opt_D, scalers.get("D"))
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
    """The four networks, their optimizers, schedules and gradient scalers, and the two image
    pools: what a checkpoint saves and a resume restores."""

    nets: dict[str, nn.Module]
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    sched_G: torch.optim.lr_scheduler.LambdaLR
    sched_D: torch.optim.lr_scheduler.LambdaLR
    pools: dict[str, ImagePool]
    scalers: dict[str, torch.amp.GradScaler]
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


def _build_nets(cfg: TrainConfig, dev: torch.device, memory_format, mode: str) -> _Nets:
    """Networks (the seed set before fixes their initial weights), Adam optimizers, the
    linear-decay schedule and the gradient scalers of precision `mode`."""
    t = cfg.train
    nets = {k: m.to(dev, memory_format=memory_format) for k, m in build_models(cfg).items()}
    generators = itertools.chain(nets["G_photo2drawing"].parameters(), nets["G_drawing2photo"].parameters())
    discriminators = itertools.chain(nets["D_drawing"].parameters(), nets["D_photo"].parameters())
    opt_G = torch.optim.Adam(generators, lr=t.lr, betas=(t.beta1, t.beta2))
    opt_D = torch.optim.Adam(discriminators, lr=t.lr, betas=(t.beta1, t.beta2))
    schedule = functools.partial(_lr_lambda, epochs=t.epochs, decay_from_epoch=t.decay_from_epoch)
    return _Nets(nets, opt_G, opt_D, torch.optim.lr_scheduler.LambdaLR(opt_G, schedule),
                 torch.optim.lr_scheduler.LambdaLR(opt_D, schedule),
                 {"drawing": ImagePool(t.pool_size), "photo": ImagePool(t.pool_size)},
                 gradient_scalers(mode, dev), schedule)


def _forward_nets(nets: dict[str, nn.Module], cfg: TrainConfig, dev: torch.device,
                  ranks: Ranks) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    """(the networks a step calls: DDP-wrapped under torchrun, compiled with speed.compile;
    the discriminators the generator phase calls, unwrapped)."""
    wrapped = {k: ddp.wrap(m, dev, ranks) for k, m in nets.items()}
    if cfg.speed.compile:
        wrapped = {k: torch.compile(m) for k, m in wrapped.items()}
    if not ranks.distributed:
        return wrapped, wrapped
    judges = {k: torch.compile(nets[k]) if cfg.speed.compile else nets[k] for k in ("D_drawing", "D_photo")}
    return wrapped, judges


def _world_size_error(latest: Path, saved: int, now: int) -> P2DError:
    how = ("run it without torchrun" if saved == 1 else
           f"run `torchrun --nproc-per-node N --nnodes M -m p2d train ... --resume` with N x M = {saved}")
    return P2DError(
        f"{latest} was saved by {saved} training process(es), this run has {now}: each process's image "
        f"pool, RNG state and data shard belong to its rank, so the run continues exactly only with "
        f"{saved}: {how}. (translate and evaluate read it with any number.)"
    )


def _resume_state(run: Path, cfg: TrainConfig, resume: bool, epochs: int | None, ranks: Ranks,
                  say) -> tuple[dict | None, TrainConfig]:
    """The `latest` checkpoint to continue from (None for a new run) and the config to train with."""
    latest = checkpoint_path(run)
    if not resume:
        if latest.is_file():
            raise P2DError(f"{run} already holds a run: pass --resume to continue it, or --out NEW_FOLDER")
        return None, cfg
    if not latest.is_file():
        raise P2DError(f"nothing to resume: {latest} does not exist; start without --resume")
    state = load_checkpoint(latest)
    if int(state.get("world_size", 1)) != ranks.world_size:
        raise _world_size_error(latest, int(state.get("world_size", 1)), ranks.world_size)
    saved_epochs = int(state["recipe"]["train"]["epochs"])
    if epochs is None and cfg.train.epochs != saved_epochs:
        # --resume continues the same training: its length is the checkpoint's unless --epochs says otherwise
        say(f"resuming with the run's epochs = {saved_epochs} (the recipe now says "
            f"{cfg.train.epochs}; pass --epochs to change it)")
        cfg = apply_overrides(cfg, train__epochs=saved_epochs)
    _check_resumable(config_from_dict(state["recipe"], source=str(latest)), cfg, run)
    return state, cfg


def _restore(state: dict, n: _Nets, dev: torch.device, memory_format, ranks: Ranks) -> _Position:
    """Load a checkpoint's networks, optimizers, schedules, scalers, and this rank's pools and RNG
    states into `n`."""
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
    for name, scaler in n.scalers.items():
        saved = state.get("scalers", {}).get(name)
        if saved and scaler.is_enabled():  # a run that switches fp16 on starts a fresh scale
            scaler.load_state_dict(saved)
    mine = state if ranks.rank == 0 else state["other_ranks"][ranks.rank - 1]
    for name, pool in n.pools.items():
        pool.load_state_dict(mine["pools"][name], dev, memory_format)
    set_rng_state(mine["rng"], dev)
    return _Position(state["epoch"], state["step_in_epoch"], state["global_step"],
                     mine["epoch_loss_sums"].to(dev), float(state["epoch_seconds"]))


def _checkpoint(n: _Nets, pos: _Position, cfg: TrainConfig, manifest_sha: str, dev: torch.device,
                ranks: Ranks) -> dict | None:
    """The plain dict a checkpoint holds (see the module docstring), on rank 0; None elsewhere.
    Every rank must call it: it gathers the ranks' pools and RNG states."""
    # Each rank's own loss sums too: the epoch's mean over ranks is then exactly the uninterrupted one.
    own = {"pools": {k: p.state_dict() for k, p in n.pools.items()}, "rng": rng_state(dev),
           "epoch_loss_sums": pos.sums.cpu()}
    per_rank = ddp.gather_to_main(own, ranks)
    if not ranks.main:
        return None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": pos.epoch, "step_in_epoch": pos.step, "global_step": pos.global_step,
        "models": {k: m.state_dict() for k, m in n.nets.items()},
        "optimizers": {"G": n.opt_G.state_dict(), "D": n.opt_D.state_dict()},
        "schedulers": {"G": n.sched_G.state_dict(), "D": n.sched_D.state_dict()},
        "scalers": {k: s.state_dict() for k, s in n.scalers.items()},
        **own,  # rank 0's pools, RNG states and loss sums
        "world_size": ranks.world_size, "epoch_seconds": pos.seconds,
        "recipe": cfg.to_dict(), "manifest_sha256": manifest_sha,
    }
    if ranks.distributed:
        payload["other_ranks"] = per_rank[1:]
    return payload


def _save_latest(path: Path, n: _Nets, pos: _Position, cfg: TrainConfig, manifest_sha: str,
                 dev: torch.device, ranks: Ranks) -> None:
    """Every rank calls it; rank 0 writes."""
    payload = _checkpoint(n, pos, cfg, manifest_sha, dev, ranks)
    if payload is not None:
        save_checkpoint(path, payload)


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


def _quiet(*args, **kwargs) -> None:
    """console.print on ranks other than 0."""


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
    deterministic: bool | None = None,
    latest_every_minutes: float | None = None,
    on_step: Callable[[int, dict[str, nn.Module]], None] | None = None,
) -> Path:
    """Train (or with resume=True continue) a CycleGAN on a manifest; returns the run folder.

    `max_steps` stops after that many optimizer steps in total (counting resumed ones), saving
    `latest`, so a later --resume continues. `on_step(global_step, nets)` is called after each
    step with the four (unwrapped) networks.
    Under torchrun (WORLD_SIZE set) every process calls this; see p2d.train.ddp.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise missing_manifest(manifest)
    cfg = resolve_config(
        manifest, recipe, train__epochs=epochs, train__seed=seed, train__latest_every_minutes=latest_every_minutes,
        speed__precision=precision, speed__channels_last=channels_last, speed__gpu_dataset=gpu_dataset,
        speed__compile=compile, speed__workers=workers, speed__deterministic=deterministic,
    )
    ranks = ddp.ranks_from_env()
    ddp.local_batch_size(cfg.train.batch_size, ranks.world_size)  # before any process group starts
    dev = ddp.start(device, ranks)
    try:
        run = _train(manifest, cfg, Path(out) if out else Path("runs") / manifest.stem, dev, ranks,
                     resume, epochs, max_steps, on_step)
    except BaseException:
        ddp.stop(ranks, finished=False)
        raise
    ddp.stop(ranks)
    return run


def set_cuda_kernels(deterministic: bool) -> None:
    """How CUDA picks kernels. Fast: cuDNN benchmarks the convolutions once (fixed input sizes:
    the last batch is padded), and some backward kernels add with atomics, so two runs (and a
    run and its resume) drift apart by rounding that GAN training grows. Deterministic: cuDNN's
    deterministic algorithms without benchmarking, torch's deterministic mode and a fixed cuBLAS
    workspace (the models swap in CopiedReflectionPad2d)."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:  # switched on only: a caller's own torch.use_deterministic_algorithms stays
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
        torch.use_deterministic_algorithms(True, warn_only=True)


def _train(manifest: Path, cfg: TrainConfig, run: Path, dev: torch.device, ranks: Ranks, resume: bool,
           epochs: int | None, max_steps: int | None, on_step) -> Path:
    """train() once the process (group) and device are set up: config -> data -> models -> loop."""
    say = console.print if ranks.main else _quiet
    mode = device_precision(cfg.speed.precision, dev)
    nhwc = cfg.speed.channels_last and dev.type == "cuda"
    memory_format = torch.channels_last if nhwc else torch.contiguous_format
    if dev.type == "cuda":
        set_cuda_kernels(cfg.speed.deterministic)
    state, cfg = _resume_state(run, cfg, resume, epochs, ranks, say)
    manifest_sha = manifest_hash(manifest)

    # ---- data
    rows = training_rows(manifest)
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    with progress(transient=True, disable=not ranks.main) as bar:
        batches = TrainBatches(rows, cfg, dev, gpu_dataset=cfg.speed.gpu_dataset, workers=cfg.speed.workers,
                               progress=bar, rank=ranks.rank, world_size=ranks.world_size)
    samples, notes = sample_images(rows, cfg)
    for note in notes:
        say(f"[yellow]note:[/] {note}")

    # ---- models, optimizers and schedules (the seed above fixes the initial weights)
    n = _build_nets(cfg, dev, memory_format, mode)
    pos = _Position(sums=torch.zeros(len(LOSS_NAMES), device=dev))
    if state is not None:
        pos = _restore(state, n, dev, memory_format, ranks)
        if state["manifest_sha256"] != manifest_sha:
            say(f"[yellow]note:[/] {manifest} changed since the checkpoint: the resumed run trains on its current rows")
        say(f"resuming {run} at epoch {pos.epoch + 1}, step {pos.step + 1} of {batches.steps}")
    forward, judges = _forward_nets(n.nets, cfg, dev, ranks)

    t = cfg.train
    if ranks.main:
        run.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run / RECIPE_FILE, cfg.to_toml())
        info = _write_run_info(run, {
            "manifest": str(manifest.resolve()), "manifest_sha256": manifest_sha, "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "precision": mode, "channels_last": nhwc, "compile": cfg.speed.compile, "data_on": batches.where,
            "world_size": ranks.world_size, "photos_train": len(rows[("photo", "train")]),
            "drawings_train": len(rows[("drawing", "train")]), "steps_per_epoch": batches.steps, "torch": torch.__version__,
        }, pos.global_step if state is not None else None)
        processes = f", {ranks.world_size} processes x {t.batch_size // ranks.world_size} images" if ranks.distributed else ""
        say(f"training {manifest.name} -> {run}: {info['photos_train']} photos, {info['drawings_train']} drawings, "
            f"{batches.steps} steps an epoch (batch {t.batch_size}{processes}); {info['device_name']}, {mode}, "
            f"images in {batches.where}; cycle weights {cfg.cycle_weights}, identity {t.identity_weight}, "
            f"lr {t.lr} decaying from epoch {t.decay_from_epoch}")
    if pos.epoch >= t.epochs:
        say(f"{run} is already trained to epoch {pos.epoch}: raise --epochs to train further")
        return run
    if max_steps is not None and pos.global_step >= max_steps:
        say(f"{run} has already taken {pos.global_step} steps (--max-steps {max_steps}): nothing to do")
        return run
    step_fn = functools.partial(train_step, forward, n.opt_G, n.opt_D, n.pools, cfg=cfg, gan=LSGANLoss(),
                                autocast=autocast_for(mode, dev), scalers=n.scalers, judges=judges)
    _loop(run, cfg, n, pos, batches, samples, step_fn, manifest_sha, dev, ranks, memory_format, max_steps, on_step, say)
    return run


def _loop(run: Path, cfg: TrainConfig, n: _Nets, pos: _Position, batches: TrainBatches, samples, step_fn,
          manifest_sha: str, dev: torch.device, ranks: Ranks, memory_format, max_steps, on_step, say) -> None:
    """Epochs from `pos` on: steps, the timed and end-of-epoch saves of `latest`, stopping."""
    t, steps, latest = cfg.train, batches.steps, checkpoint_path(run)
    save_every_s = t.latest_every_minutes * 60
    with _tensorboard(run, cfg.speed.tensorboard and ranks.main) as writer, _StopFlag() as flag, \
            progress(disable=not ranks.main) as bar:
        last_save = time.perf_counter()
        for epoch in range(pos.epoch, t.epochs):
            number = epoch + 1
            task = bar.add_task(f"epoch {number}/{t.epochs}", total=steps, completed=pos.step, status="")
            t0, shown = time.perf_counter(), time.perf_counter()
            for step, (photo, drawing) in enumerate(batches.epoch(epoch, pos.step), start=pos.step):
                pos.sums += step_fn(photo.contiguous(memory_format=memory_format),
                                    drawing.contiguous(memory_format=memory_format))
                pos.global_step += 1
                bar.advance(task)
                if ranks.main and (time.perf_counter() - shown > 1.0 or step + 1 == steps):
                    shown = time.perf_counter()  # one device sync per second, not per step
                    bar.update(task, status=_status(_mean_losses(pos.sums, step + 1), (step + 1 - pos.step) / (shown - t0)))
                if on_step is not None:
                    on_step(pos.global_step, n.nets)
                # Ctrl-C and the clock differ between processes: act on them only where all agree.
                agree = not ranks.distributed or pos.global_step % AGREE_EVERY_STEPS == 0
                ctrl_c, due = any_rank([flag.stop, 0 < save_every_s <= time.perf_counter() - last_save], dev, ranks) \
                    if agree else (False, False)
                stop = ctrl_c or (max_steps is not None and pos.global_step >= max_steps)
                if (stop or due) and step + 1 < steps:
                    cut = _Position(epoch, step + 1, pos.global_step, pos.sums, pos.seconds + time.perf_counter() - t0)
                    _save_latest(latest, n, cut, cfg, manifest_sha, dev, ranks)
                    last_save = time.perf_counter()
                    if stop:
                        say(f"stopped at epoch {number}, step {step + 1}/{steps}: saved {latest}; continue with --resume")
                        return
            seconds = pos.seconds + time.perf_counter() - t0
            losses = _mean_losses(mean_over_ranks(pos.sums, ranks), steps)
            lr = n.opt_G.param_groups[0]["lr"]
            n.sched_G.step()
            n.sched_D.step()
            if ranks.main:
                _end_epoch(run, number, steps, seconds, losses, lr, sample_grid(n.nets, samples, dev), writer)
            pos = _Position(number, 0, pos.global_step, torch.zeros_like(pos.sums), 0.0)
            _save_latest(latest, n, pos, cfg, manifest_sha, dev, ranks)
            last_save = time.perf_counter()
            if ranks.main and (number % t.save_every == 0 or number == t.epochs):
                with atomic_path(checkpoint_path(run, number)) as tmp:
                    shutil.copyfile(latest, tmp)
            bar.update(task, description=f"epoch {number}/{t.epochs} done")
            (ctrl_c,) = any_rank([flag.stop], dev, ranks)
            if ctrl_c or (max_steps is not None and pos.global_step >= max_steps):
                say(f"stopped after epoch {number}: saved {latest}; continue with --resume")
                return
