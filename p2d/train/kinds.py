"""Which model a recipe trains: `[model] kind` -> its class, one file per kind, and what every kind provides.

To add a kind: a file beside cyclegan.py with a class that has the members of `Model` below, a line in
MODEL_KINDS, and its name in p2d.recipe.MODEL_KIND_NAMES (the recipe checks names without torch).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from p2d.recipe import TrainConfig
from p2d.train.cut import CUT
from p2d.train.cyclegan import CycleGAN
from p2d.train.ddp import Ranks
from p2d.train.speed import Speed

# FastCUT is CUT with other settings (p2d.recipe.KIND_DEFAULTS), as in the paper's code
MODEL_KINDS = {"cyclegan": CycleGAN, "cut": CUT, "fastcut": CUT}


class Model(Protocol):
    """What the loop, the checkpoint, translate and evaluate use of a model (CycleGAN, CUT)."""

    LOSS_NAMES: tuple[str, ...]  # losses.csv's columns, and the order of a checkpoint's epoch_loss_sums
    DIRECTIONS: tuple[str, ...]  # what generator() translates to: ("drawing", "photo") or ("drawing",)
    cfg: TrainConfig
    speed: Speed
    nets: dict[str, nn.Module]  # the plain networks by the names a checkpoint's "models" holds

    def __init__(self, cfg: TrainConfig, speed: Speed | None = None) -> None: ...

    def wrap(self, ranks: Ranks) -> None:
        """DDP (under torchrun) and torch.compile (speed.compile) around what a step calls."""

    def optimize_parameters(self, photo: torch.Tensor, drawing: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training step; LOSS_NAMES' values, on the device (no host sync)."""

    def update_learning_rate(self) -> None:
        """Called at every epoch's end."""

    @property
    def lr(self) -> float: ...

    def state_dict(self) -> dict:
        """The model's part of a checkpoint ("models" and whatever else it needs to continue)."""

    def load_state_dict(self, state: dict) -> None: ...

    def rank_state_dict(self) -> dict:
        """The part each torchrun process has its own of (image pools)."""

    def load_rank_state_dict(self, state: dict) -> None: ...

    def load_networks(self, models: dict[str, dict]) -> None:
        """A checkpoint's "models" alone: what translate and evaluate load."""

    def generator(self, direction: str) -> nn.Module:
        """The plain network that translates to `direction` ("drawing" or "photo"); a P2DError
        naming what the kind can do when it has none."""

    def sample_grid(self, samples: dict[str, torch.Tensor]) -> np.ndarray:
        """The epoch's sample picture of the fixed test images ({"photo": ..., "drawing": ...})."""

    def describe(self) -> str:
        """Its settings, for the line a run starts with."""

    def status(self, losses: dict[str, float]) -> str:
        """The progress bar's losses."""
