"""The checkpoint (contract 3): a plain dict that holds everything the next training step depends on.

It is a dict of tensors and primitive containers, loaded with weights_only=True, so a checkpoint from
a stranger cannot run code:

    format, epoch, step_in_epoch, global_step    where training stands (Position)
    models, optimizers, schedulers, scalers      the model's part (its state_dict(); for the CycleGAN
                                                 its four networks, and "G"/"D" for the rest)
    pools, rng, epoch_loss_sums                  this rank's own: its image pools (the model's
                                                 rank_state_dict()), python/numpy/torch/cuda RNG states
                                                 and the current epoch's loss sums
    world_size, epoch_seconds, recipe, manifest_sha256
    other_ranks                                  under torchrun: ranks 1.. own parts, in rank order

The networks are held unwrapped (no `module.` prefixes), so single-process train, translate and
evaluate read a checkpoint written under torchrun. A recipe key added later takes its default when
an older checkpoint's recipe lacks it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from p2d.errors import P2DError, RecipeError
from p2d.images import atomic_path
from p2d.recipe import TrainConfig, apply_overrides, config_from_dict
from p2d.runs import checkpoint_path
from p2d.train import ddp
from p2d.train.ddp import Ranks

if TYPE_CHECKING:
    from p2d.train.kinds import Model

CHECKPOINT_FORMAT = 1
# A resumed run must be the same training: only these and the [speed] switches may change.
MAY_CHANGE_ON_RESUME = {("train", "epochs"), ("train", "latest_every_minutes")}


@dataclass
class Position:
    """Where training stands: epochs done, steps into the current epoch, steps in total, and the
    current epoch's loss sums (on the device) and seconds so far."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    sums: torch.Tensor | None = None
    seconds: float = 0.0


# ----------------------------------------------------------------------------- files and RNG states


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
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        cuda_state = state["cuda"]
        cuda_state = cuda_state[0] if isinstance(cuda_state, (list, tuple)) else cuda_state
        torch.cuda.set_rng_state(cuda_state, device)


# ----------------------------------------------------------------------------- writing and restoring


def checkpoint_dict(model: Model, pos: Position, cfg: TrainConfig, manifest_sha: str, device: torch.device,
                    ranks: Ranks) -> dict | None:
    """The checkpoint of this moment on rank 0; None elsewhere. Every rank must call it: it gathers
    the ranks' own parts."""
    # Each rank's own loss sums too: the epoch's mean over ranks is then exactly the uninterrupted one.
    own = {**model.rank_state_dict(), "rng": rng_state(device), "epoch_loss_sums": pos.sums.cpu()}
    per_rank = ddp.gather_to_main(own, ranks)
    if not ranks.main:
        return None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": pos.epoch, "step_in_epoch": pos.step, "global_step": pos.global_step,
        **model.state_dict(),
        **own,  # rank 0's
        "world_size": ranks.world_size, "epoch_seconds": pos.seconds,
        "recipe": cfg.to_dict(), "manifest_sha256": manifest_sha,
    }
    if ranks.distributed:
        payload["other_ranks"] = per_rank[1:]
    return payload


def restore(state: dict, model: Model, device: torch.device, ranks: Ranks) -> Position:
    """Load a checkpoint into `model` (its shared part, then this rank's own) and this process's RNG
    states; returns where training stands."""
    model.load_state_dict(state)
    mine = state if ranks.rank == 0 else state["other_ranks"][ranks.rank - 1]
    model.load_rank_state_dict(mine)
    set_rng_state(mine["rng"], device)
    return Position(state["epoch"], state["step_in_epoch"], state["global_step"],
                    mine["epoch_loss_sums"].to(device), float(state["epoch_seconds"]))


# ----------------------------------------------------------------------------- resuming


def resume_state(run: Path, cfg: TrainConfig, epochs: int | None, ranks: Ranks,
                 say: Callable[[str], None]) -> tuple[dict, TrainConfig]:
    """The `latest` checkpoint of `run` to continue from, and the config to train with: the recipe's,
    with the run's own epochs unless --epochs (`epochs`) was given."""
    latest = checkpoint_path(run)
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
    check_resumable(config_from_dict(state["recipe"], source=str(latest)), cfg, run)
    return state, cfg


def check_resumable(saved: TrainConfig, cfg: TrainConfig, run: Path) -> None:
    """A resumed run must be the same training: only epochs, how often `latest` is saved and the
    [speed] switches may change."""
    if saved.data.channels != cfg.data.channels:
        raise RecipeError(
            f"channels: the checkpoint in {run} was trained with channels = {saved.data.channels}, "
            f"the recipe says {cfg.data.channels}: set data.channels = {saved.data.channels} in the recipe "
            "to resume, or start a new run with another --out"
        )
    a, b = saved.to_dict(), cfg.to_dict()
    changed = [f"{t}.{k}: {a[t][k]!r} -> {b[t][k]!r}" for t in ("data", "model", "train") for k in a[t]
               if a[t][k] != b[t][k] and (t, k) not in MAY_CHANGE_ON_RESUME]
    if changed:
        raise RecipeError(
            f"cannot resume {run} with a different recipe ({'; '.join(changed)}): put those keys back "
            "(or see RUN/recipe.toml), or start a new run with another --out"
        )


def _world_size_error(latest: Path, saved: int, now: int) -> P2DError:
    how = ("run it without torchrun" if saved == 1 else
           f"run `torchrun --nproc-per-node N --nnodes M -m p2d train ... --resume` with N x M = {saved}")
    return P2DError(
        f"{latest} was saved by {saved} training process(es), this run has {now}: each process's image "
        f"pool, RNG state and data shard belong to its rank, so the run continues exactly only with "
        f"{saved}: {how}. (translate and evaluate read it with any number.)"
    )
