"""The CycleGAN model kind: its four networks, their optimizers, schedules, gradient scalers and image
pools, its training step and its part of a checkpoint.

Names follow the direction, mapped to the paper (Zhu et al. 2017, "Unpaired Image-to-Image
Translation using Cycle-Consistent Adversarial Networks") with X = photos, Y = drawings:

    G_photo2drawing   the paper's G : X -> Y
    G_drawing2photo   the paper's F : Y -> X
    D_drawing         the paper's D_Y (real drawing vs G_photo2drawing(photo))
    D_photo           the paper's D_X (real photo vs G_drawing2photo(drawing))

A step has junyanz/pytorch-CycleGAN-and-pix2pix's shape (`optimize_parameters`): `forward` runs the
generators, `backward_generators` and `backward_discriminators` compute each side's losses and take
its optimizer's step.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from p2d.errors import P2DError
from p2d.recipe import TrainConfig
from p2d.train.data import tensor_to_image
from p2d.train.ddp import Ranks
from p2d.train.models import (
    ImagePool,
    LSGANLoss,
    adam,
    build_discriminator,
    build_generator,
    linear_decay,
    restore_lr,
    set_requires_grad,
)
from p2d.train.speed import Speed, gradient_scalers, optimizer_step, step_networks

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
GENERATORS = {"drawing": "G_photo2drawing", "photo": "G_drawing2photo"}  # translate --to -> network
DISCRIMINATORS = ("D_drawing", "D_photo")


def build_networks(cfg: TrainConfig) -> dict[str, nn.Module]:
    """The four networks by name, initialised in a fixed order (so a seed fixes all weights)."""
    return {
        "G_photo2drawing": build_generator(cfg),
        "G_drawing2photo": build_generator(cfg),
        "D_drawing": build_discriminator(cfg),
        "D_photo": build_discriminator(cfg),
    }


@dataclass
class Translations:
    """What the generators make of a batch in one step."""

    fake_drawing: torch.Tensor  # G_photo2drawing(photo)
    back_photo: torch.Tensor  # G_drawing2photo(fake_drawing): the photo cycle
    fake_photo: torch.Tensor  # G_drawing2photo(drawing)
    back_drawing: torch.Tensor  # G_photo2drawing(fake_photo): the drawing cycle
    same_photo: torch.Tensor | None = None  # G_drawing2photo(photo), with an identity weight
    same_drawing: torch.Tensor | None = None  # G_photo2drawing(drawing)


class CycleGAN:
    """Two generators and two discriminators trained against each other, with cycle and identity
    L1 terms weighted by the recipe ([train] cycle_weight, identity_weight).

    `nets` are the plain networks (what checkpoints hold and on_step hooks see); after wrap(), a
    step calls them through DDP and torch.compile. Every tensor the step returns stays on the
    device: the loop syncs once a second, not once a step.
    """

    LOSS_NAMES = LOSS_NAMES
    DIRECTIONS = ("drawing", "photo")

    def __init__(self, cfg: TrainConfig, speed: Speed | None = None):
        """`speed`: how this device runs it (default: the CPU in fp32, as translate and evaluate use it)."""
        speed = speed or Speed()
        self.cfg, self.speed = cfg, speed
        fmt = speed.memory_format
        self.nets = n = {k: m.to(speed.device, memory_format=fmt) for k, m in build_networks(cfg).items()}
        self.optimizers = {
            "G": adam(itertools.chain(n["G_photo2drawing"].parameters(), n["G_drawing2photo"].parameters()),
                      cfg.train),
            "D": adam(itertools.chain(n["D_drawing"].parameters(), n["D_photo"].parameters()), cfg.train),
        }
        self.schedulers = {k: linear_decay(opt, cfg.train) for k, opt in self.optimizers.items()}
        self.pools = {"drawing": ImagePool(cfg.train.pool_size), "photo": ImagePool(cfg.train.pool_size)}
        self.scalers = gradient_scalers(speed.precision, speed.device)
        self.gan = LSGANLoss()
        self._step_nets = self.nets  # what a step calls: wrap() puts DDP and compile around them
        self._judges = {k: self.nets[k] for k in DISCRIMINATORS}  # as the generators' phase calls them

    def wrap(self, ranks: Ranks) -> None:
        """DDP under torchrun and torch.compile with speed.compile, for the steps from now on."""
        self._step_nets, self._judges = step_networks(self.nets, self.speed, ranks, judges=DISCRIMINATORS)

    # ------------------------------------------------------------------------- one step

    def optimize_parameters(self, photo: torch.Tensor, drawing: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training step on a batch; returns LOSS_NAMES' values as fp32 tensors on the device."""
        fakes = self.forward(photo, drawing)
        losses = self.backward_generators(photo, drawing, fakes)
        losses.update(self.backward_discriminators(photo, drawing, fakes))
        return {name: losses[name].detach().float() for name in LOSS_NAMES}

    def forward(self, photo: torch.Tensor, drawing: torch.Tensor) -> Translations:
        """Both translations and their way back; with an identity weight, also each generator's
        output for its own domain (skipped at weight 0: two generator passes saved)."""
        G_p2d, G_d2p = self._step_nets["G_photo2drawing"], self._step_nets["G_drawing2photo"]
        # Every generator pass in one autocast region (junyanz runs the identity passes in backward_G):
        # autocast casts a weight to bf16/fp16 once per region, and the calls keep the trainer's order.
        with self.speed.autocast():
            fake_drawing = G_p2d(photo)
            back_photo = G_d2p(fake_drawing)
            fake_photo = G_d2p(drawing)
            back_drawing = G_p2d(fake_photo)
            same = (G_d2p(photo), G_p2d(drawing)) if self.cfg.train.identity_weight > 0 else (None, None)
        return Translations(fake_drawing, back_photo, fake_photo, back_drawing, *same)

    def backward_generators(self, photo: torch.Tensor, drawing: torch.Tensor,
                            t: Translations) -> dict[str, torch.Tensor]:
        """The generators' losses and their optimizer's step. The discriminators only judge here:
        their weights stay out of the graph."""
        w_photo, w_drawing = self.cfg.cycle_weights
        w_id = self.cfg.train.identity_weight
        l1 = nn.functional.l1_loss
        set_requires_grad(self._judges.values(), False)
        with self.speed.autocast():
            losses = {
                "G_photo2drawing_gan": self.gan(self._judges["D_drawing"](t.fake_drawing), True),
                "G_drawing2photo_gan": self.gan(self._judges["D_photo"](t.fake_photo), True),
                "cycle_photo": l1(t.back_photo.float(), photo),
                "cycle_drawing": l1(t.back_drawing.float(), drawing),
            }
            identity = 0.0
            if w_id > 0:
                losses["identity_photo"] = l1(t.same_photo.float(), photo)
                losses["identity_drawing"] = l1(t.same_drawing.float(), drawing)
                identity = w_id * (losses["identity_photo"] + losses["identity_drawing"])
            else:  # not computed: NaN in losses.csv, not a misleading 0
                nan = torch.full((), float("nan"), device=photo.device)
                losses["identity_photo"] = losses["identity_drawing"] = nan
            losses["G_total"] = (losses["G_photo2drawing_gan"] + losses["G_drawing2photo_gan"]
                                 + w_photo * losses["cycle_photo"] + w_drawing * losses["cycle_drawing"]
                                 + identity)
        optimizer_step(losses["G_total"], self.optimizers["G"], self.scalers["G"])
        set_requires_grad(self._judges.values(), True)
        return losses

    def backward_discriminators(self, photo: torch.Tensor, drawing: torch.Tensor,
                                t: Translations) -> dict[str, torch.Tensor]:
        """Each discriminator on real images vs a fake from the pool of past fakes, halved as in the
        paper (so D learns at half the generators' rate), and their optimizer's step."""
        D_drawing, D_photo = self._step_nets["D_drawing"], self._step_nets["D_photo"]
        gan = self.gan
        with self.speed.autocast():
            pooled_drawing = self.pools["drawing"].query(t.fake_drawing)
            pooled_photo = self.pools["photo"].query(t.fake_photo)
            losses = {
                "D_drawing": 0.5 * (gan(D_drawing(drawing), True) + gan(D_drawing(pooled_drawing), False)),
                "D_photo": 0.5 * (gan(D_photo(photo), True) + gan(D_photo(pooled_photo), False)),
            }
        optimizer_step(losses["D_drawing"] + losses["D_photo"], self.optimizers["D"], self.scalers["D"])
        return losses

    def update_learning_rate(self) -> None:
        """At an epoch's end: the schedule's next step."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    @property
    def lr(self) -> float:
        return self.optimizers["G"].param_groups[0]["lr"]

    # ------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        """This model's part of a checkpoint: the networks under "models", and "optimizers",
        "schedulers" and "scalers" ("G", "D"). The image pools are each rank's own: rank_state_dict."""
        return {
            "models": {k: m.state_dict() for k, m in self.nets.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.load_networks(state["models"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
            restore_lr(scheduler)
        for name, scaler in self.scalers.items():
            saved = state.get("scalers", {}).get(name)
            if saved and scaler.is_enabled():  # a run that switches fp16 on starts a fresh scale
                scaler.load_state_dict(saved)

    def rank_state_dict(self) -> dict:
        """The part of a checkpoint each process has its own of: the image pools of its fakes."""
        return {"pools": {k: pool.state_dict() for k, pool in self.pools.items()}}

    def load_rank_state_dict(self, state: dict) -> None:
        for name, pool in self.pools.items():
            pool.load_state_dict(state["pools"][name], self.speed.device, self.speed.memory_format)

    def load_networks(self, models: dict[str, dict]) -> None:
        """A checkpoint's "models": all translate and evaluate need."""
        for name, net in self.nets.items():
            net.load_state_dict(models[name])

    # ------------------------------------------------------------------------- outputs

    def generator(self, direction: str) -> nn.Module:
        """The plain generator that translates to `direction` ("drawing" or "photo")."""
        if direction not in GENERATORS:
            raise P2DError(f"--to {direction!r}: use drawing (photo -> drawing) or photo (drawing -> photo)")
        return self.nets[GENERATORS[direction]]

    @torch.no_grad()
    def sample_grid(self, samples: dict[str, torch.Tensor]) -> np.ndarray:
        """Photo rows [photo, ->drawing, ->photo back], then drawing rows [drawing, ->photo, ->drawing
        back]."""
        rows = []
        for domain, there, back in (("photo", "drawing", "photo"), ("drawing", "photo", "drawing")):
            x = samples[domain].to(self.speed.device)
            y = self.generator(there)(x)
            z = self.generator(back)(y)
            rows.append(torch.cat([x, y.float(), z.float()], dim=3))  # cells side by side
        grid = torch.cat(rows, 0)  # (rows, C, S, 3S)
        return tensor_to_image(torch.cat(list(grid), dim=1))  # rows stacked vertically

    def describe(self) -> str:
        """The settings that shape this model's training, for the line a run starts with."""
        return f"cycle weights {self.cfg.cycle_weights}, identity {self.cfg.train.identity_weight}"

    def status(self, losses: dict[str, float]) -> str:
        """The progress bar's losses."""
        return (f"G {losses['G_total']:.3f}  D {losses['D_drawing'] + losses['D_photo']:.3f}  "
                f"cycle {losses['cycle_photo'] + losses['cycle_drawing']:.3f}")
