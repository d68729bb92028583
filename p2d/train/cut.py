"""The CUT and FastCUT model kinds (contrastive unpaired translation): one generator photo -> drawing,
one discriminator, and the PatchNCE loss with its MLP heads; their training step and checkpoint part.

Park, Efros, Zhang, Zhu 2020, "Contrastive Learning for Unpaired Image-to-Image Translation" (ECCV),
and its code (taesungp/contrastive-unpaired-translation), with X = photos, Y = drawings:

    G_photo2drawing   the paper's G : X -> Y (the same ResNet generator as the CycleGAN's)
    D_drawing         the paper's D (real drawing vs G(photo)); LSGAN loss, as the paper's default
    nce_heads         the paper's H_l: per encoder layer, a 2-layer MLP on sampled patches

PatchNCE: G's encoder sees the photo and its drawing; for each chosen encoder layer, the features at
`nce_patches` random places of the photo (keys, detached, as in the paper's code) and the drawing
(queries) go through that layer's head, and each query must pick its own place's key among the
image's other sampled places (cross-entropy over similarities / nce_temperature). The drawing keeps
the photo's content patch by patch with no reverse generator. CUT adds the same loss between a
drawing and G(drawing) (nce_identity) and weighs both halves; FastCUT drops it, weighs PatchNCE 10
and translates the mirrored photo half the steps, comparing its features mirrored back
(flip_equivariance). Unlike CycleGAN, D sees the newest fakes (no image pool), and steps first.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from p2d.errors import P2DError
from p2d.recipe import TrainConfig
from p2d.train.data import tensor_to_image
from p2d.train.ddp import Ranks
from p2d.train.models import (
    LSGANLoss,
    ResnetGenerator,
    adam,
    build_discriminator,
    build_generator,
    linear_decay,
    restore_lr,
    set_requires_grad,
)
from p2d.train.speed import Speed, gradient_scalers, optimizer_step, step_networks

LOSS_NAMES = (
    "G_gan",  # D_drawing fooled by G(photo)
    "nce",  # PatchNCE between the photo and G(photo)
    "nce_identity",  # PatchNCE between a drawing and G(drawing); NaN where nce_identity is off
    "G_total",  # what G and the heads minimise
    "D_drawing",  # least-squares loss of D_drawing on real vs fake drawings
)


class PatchHeads(nn.Module):
    """One 2-layer MLP (Linear, ReLU, Linear, `units` wide) per encoder layer, applied to the features
    at sampled places and L2-normalised. Built for known layer widths (the paper's code builds them
    at the first batch), so the optimizer and DDP see them from the start."""

    def __init__(self, widths: list[int], units: int = 256):
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(w, units), nn.ReLU(inplace=True), nn.Linear(units, units))
            for w in widths)
        for m in self.modules():
            if isinstance(m, nn.Linear):  # p2d's initialisation for every network: N(0, 0.02)
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor], patches: int,
                places: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(per layer, (batch, places, units) unit vectors; the places sampled, to reuse for the
        other image). Places: `patches` random ones per layer, the same for every image of the batch."""
        out, chosen = [], []
        for i, (feat, mlp) in enumerate(zip(feats, self.mlps)):
            flat = feat.flatten(2).transpose(1, 2)  # (B, H*W, C)
            if places is None:
                ids = torch.randperm(flat.shape[1], device=feat.device)[:min(patches, flat.shape[1])]
            else:
                ids = places[i]
            v = mlp(flat[:, ids, :])
            out.append(v / (v.float().norm(dim=-1, keepdim=True).to(v.dtype) + 1e-7))
            chosen.append(ids)
        return out, chosen


def patch_nce_loss(queries: torch.Tensor, keys: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """PatchNCE of (batch, places, units) unit vectors: each query's positive is the key at its own
    place, its negatives the other places' keys of the same image. Keys are detached (the paper's
    code); the loss is the mean cross-entropy, in fp32."""
    q, k = queries.float(), keys.detach().float()
    positive = (q * k).sum(-1, keepdim=True)  # (B, P, 1)
    negative = torch.bmm(q, k.transpose(1, 2))  # (B, P, P)
    own = torch.eye(q.shape[1], dtype=torch.bool, device=q.device)[None]
    negative = negative.masked_fill(own, -10.0)  # the positive is not its own negative (exp(-10/T) ~ 0)
    logits = torch.cat([positive, negative], dim=2).flatten(0, 1) / temperature
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=q.device)
    return nn.functional.cross_entropy(logits, target)


def layer_widths(layers: list[int], channels: int, filters: int) -> list[int]:
    """The channel count at each encoder index (ResnetGenerator.layer_index)."""
    by_index = {0: channels, 4: 2 * filters, 7: 4 * filters}
    return [by_index.get(i, 4 * filters) for i in layers]


class _GeneratorStep(nn.Module):
    """G and the heads in one module, so that one call (one DDP forward) makes the step's drawings
    and PatchNCE terms. Holds the model's own networks: no copies of their parameters."""

    def __init__(self, g: ResnetGenerator, heads: PatchHeads, layers: list[int], cfg: TrainConfig):
        super().__init__()
        self.g, self.heads, self.layers = g, heads, layers
        self.patches, self.temperature = cfg.model.nce_patches, cfg.train.nce_temperature
        self.identity = cfg.train.nce_identity

    def nce(self, keys: list[torch.Tensor], queries: list[torch.Tensor]) -> torch.Tensor:
        """PatchNCE averaged over the layers, the places sampled anew."""
        k, places = self.heads(keys, self.patches)
        q, _ = self.heads(queries, self.patches, places)
        return sum(patch_nce_loss(a, b, self.temperature) for a, b in zip(q, k)) / len(self.layers)

    def forward(self, photo: torch.Tensor, drawing: torch.Tensor,
                flip: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(G(photo), PatchNCE photo vs drawing, PatchNCE drawing vs G(drawing) or None). With `flip`,
        G translates the mirrored photo, and its drawing's features are mirrored back."""
        n = photo.shape[0]
        source = photo.flip(3) if flip else photo
        both = torch.cat([source, drawing]) if self.identity else source  # one pass: norms are per image
        out, feats = self.g.forward_with_features(both, self.layers)
        fake = out[:n]
        if flip:  # keys from the photo as it is
            with torch.no_grad():
                _, photo_keys = self.g.forward_with_features(photo, self.layers, encode_only=True)
        else:
            photo_keys = [f[:n] for f in feats]
        _, queries = self.g.forward_with_features(out, self.layers, encode_only=True)
        fake_queries = [f[:n].flip(3) if flip else f[:n] for f in queries]
        nce = self.nce(photo_keys, fake_queries)
        nce_identity = self.nce([f[n:] for f in feats], [f[n:] for f in queries]) if self.identity else None
        return fake, nce, nce_identity


class CUT:
    """One generator (photo -> drawing), one discriminator and PatchNCE's heads (see the module's
    docstring); FastCUT is the same class with the fastcut kind's settings (recipe KIND_DEFAULTS).

    `nets` are the plain networks (what checkpoints hold); after wrap(), a step calls G and the heads
    through one DDP/compiled module. Every tensor the step returns stays on the device.
    """

    LOSS_NAMES = LOSS_NAMES
    DIRECTIONS = ("drawing",)

    def __init__(self, cfg: TrainConfig, speed: Speed | None = None):
        speed = speed or Speed()
        self.cfg, self.speed = cfg, speed
        fmt = speed.memory_format
        g = build_generator(cfg)
        layers = [g.layer_index(name) for name in cfg.model.nce_layers]
        self.layers = sorted(set(layers), key=layers.index)  # block7 of 4 blocks is block4: once
        widths = layer_widths(self.layers, cfg.data.channels, cfg.model.filters)
        heads = PatchHeads(widths, cfg.model.head_units)
        self.nets = {"G_photo2drawing": g.to(speed.device, memory_format=fmt),
                     "D_drawing": build_discriminator(cfg).to(speed.device, memory_format=fmt),
                     "nce_heads": heads.to(speed.device)}
        n = self.nets
        self.optimizers = {  # one Adam for G and the heads: the paper's two have the same settings
            "G": adam([*n["G_photo2drawing"].parameters(), *n["nce_heads"].parameters()], cfg.train),
            "D": adam(n["D_drawing"].parameters(), cfg.train),
        }
        self.schedulers = {k: linear_decay(opt, cfg.train) for k, opt in self.optimizers.items()}
        self.scalers = gradient_scalers(speed.precision, speed.device)
        self.gan = LSGANLoss()
        self._make = _GeneratorStep(n["G_photo2drawing"], n["nce_heads"], self.layers, cfg)
        self._step_nets = {"make": self._make, "D_drawing": n["D_drawing"]}
        self._judge = n["D_drawing"]

    def wrap(self, ranks: Ranks) -> None:
        """DDP under torchrun and torch.compile with speed.compile, for the steps from now on."""
        self._step_nets, judges = step_networks({"make": self._make, "D_drawing": self.nets["D_drawing"]},
                                                self.speed, ranks, judges=("D_drawing",))
        self._judge = judges["D_drawing"]

    # ------------------------------------------------------------------------- one step

    def optimize_parameters(self, photo: torch.Tensor, drawing: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training step: G's drawings and PatchNCE, D's step on them, then G's and the heads'."""
        # torch's generator (saved in checkpoints) decides the mirroring, so a resumed run mirrors alike
        flip = self.cfg.train.flip_equivariance and bool(torch.rand(1).item() < 0.5)
        with self.speed.autocast():
            fake, nce, nce_identity = self._step_nets["make"](photo, drawing, flip)
        losses = self.backward_discriminator(drawing, fake)
        losses.update(self.backward_generator(fake, nce, nce_identity))
        return {name: losses[name].detach().float() for name in LOSS_NAMES}

    def backward_discriminator(self, drawing: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """D on real drawings vs this step's fakes (detached), halved, and its optimizer's step."""
        D = self._step_nets["D_drawing"]
        with self.speed.autocast():
            loss = 0.5 * (self.gan(D(drawing), True) + self.gan(D(fake.detach()), False))
        optimizer_step(loss, self.optimizers["D"], self.scalers["D"])
        return {"D_drawing": loss}

    def backward_generator(self, fake: torch.Tensor, nce: torch.Tensor,
                           nce_identity: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """G's and the heads' loss (GAN + lambda_NCE x PatchNCE, the mean of both halves with the
        identity NCE) and their optimizer's step; D only judges here."""
        w = self.cfg.train.nce_weight
        set_requires_grad([self._judge], False)
        with self.speed.autocast():
            gan = self.gan(self._judge(fake), True)
        if nce_identity is None:
            total = gan + w * nce
            nce_identity = torch.full((), float("nan"), device=fake.device)  # NaN in losses.csv, not 0
        else:
            total = gan + w * 0.5 * (nce + nce_identity)
        optimizer_step(total, self.optimizers["G"], self.scalers["G"])
        set_requires_grad([self._judge], True)
        return {"G_gan": gan, "nce": nce, "nce_identity": nce_identity, "G_total": total}

    def update_learning_rate(self) -> None:
        for scheduler in self.schedulers.values():
            scheduler.step()

    @property
    def lr(self) -> float:
        return self.optimizers["G"].param_groups[0]["lr"]

    # ------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        """The networks under "models" (G_photo2drawing, D_drawing, nce_heads), and "optimizers",
        "schedulers" and "scalers" ("G": G and the heads, "D")."""
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
            if saved and scaler.is_enabled():
                scaler.load_state_dict(saved)

    def rank_state_dict(self) -> dict:
        """No image pool: nothing of its own per process beyond what the checkpoint adds (RNG)."""
        return {"pools": {}}

    def load_rank_state_dict(self, state: dict) -> None:
        """Nothing to restore (see rank_state_dict)."""

    def load_networks(self, models: dict[str, dict]) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(models[name])

    # ------------------------------------------------------------------------- outputs

    def generator(self, direction: str) -> nn.Module:
        """G_photo2drawing for "drawing"; a one-sided model has no drawing -> photo generator."""
        if direction == "drawing":
            return self.nets["G_photo2drawing"]
        if direction == "photo":
            raise P2DError(f"this run is a {self.cfg.model.kind} model, which translates photos to drawings "
                           "only: use --to drawing, or train a cyclegan run ([model] kind = \"cyclegan\") "
                           "for drawings to photos")
        raise P2DError(f"--to {direction!r}: use drawing (photo -> drawing)")

    @torch.no_grad()
    def sample_grid(self, samples: dict[str, torch.Tensor]) -> np.ndarray:
        """Photo rows [photo, ->drawing], then drawing rows [drawing, G(drawing)]: what G does to
        a drawing (with the identity NCE, it should leave it as it is)."""
        g = self.nets["G_photo2drawing"]
        rows = []
        for domain in ("photo", "drawing"):
            x = samples[domain].to(self.speed.device)
            rows.append(torch.cat([x, g(x).float()], dim=3))
        grid = torch.cat(rows, 0)
        return tensor_to_image(torch.cat(list(grid), dim=1))

    def describe(self) -> str:
        t = self.cfg.train
        return (f"{self.cfg.model.kind}: PatchNCE weight {t.nce_weight} on {len(self.layers)} layers x "
                f"{self.cfg.model.nce_patches} patches, identity NCE {'on' if t.nce_identity else 'off'}"
                f"{', flip-equivariance' if t.flip_equivariance else ''}")

    def status(self, losses: dict[str, float]) -> str:
        return f"G {losses['G_total']:.3f}  D {losses['D_drawing']:.3f}  nce {losses['nce']:.3f}"
