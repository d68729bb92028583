"""The pieces p2d's model kinds are built from: ResNet generator, PatchGAN discriminator, least-squares
GAN loss, image pool and the linear-decay learning-rate schedule.

The architecture is the CycleGAN paper's (and junyanz/pytorch-CycleGAN-and-pix2pix's "resnet_9blocks"
and "basic" PatchGAN): instance norm without affine parameters, reflection padding, weights drawn from
N(0, 0.02). Width and depth come from the recipe's [model] table. Which networks a model has, and
what they are called, is its own file's business (cyclegan.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch
from torch import nn

from p2d.recipe import TrainConfig, TrainOptions


class CopiedReflectionPad2d(nn.Module):
    """nn.ReflectionPad2d's output, bit for bit, made of slices, flips and concatenations.

    Its backward only copies and adds in a fixed order, so it is deterministic on CUDA, where
    ReflectionPad2d's backward adds with atomics (run to run differences; torch's deterministic
    mode refuses it). More kernel launches: used only with speed.deterministic.
    """

    def __init__(self, padding: int):
        super().__init__()
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        x = torch.cat([x[..., 1:p + 1].flip(-1), x, x[..., -p - 1:-1].flip(-1)], dim=-1)
        return torch.cat([x[..., 1:p + 1, :].flip(-2), x, x[..., -p - 1:-1, :].flip(-2)], dim=-2)


def _norm(channels: int) -> nn.Module:
    # Per-image statistics: batch size is 2 in the experiments, too small for batch norm.
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, pad: type[nn.Module] = nn.ReflectionPad2d):
        super().__init__()
        self.body = nn.Sequential(
            pad(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(inplace=True),
            pad(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-f, d2f, d4f, `blocks` x R4f, u2f, uf, c7s1-channels, tanh. Input sides: multiples of 4.
    `pad`: the reflection padding's module (CopiedReflectionPad2d for deterministic CUDA runs).
    `upsample`: "transposed" (the paper's stride-2 transposed convolutions) or "resize" (nearest
    upsampling, then a 3x3 convolution: no checkerboard, Odena et al. 2016). The encoder's modules
    keep their places in `net` either way (ENCODER_LAYERS), and "transposed" keeps the state dict's keys."""

    def __init__(self, channels: int, filters: int = 64, blocks: int = 9,
                 pad: type[nn.Module] = nn.ReflectionPad2d, upsample: str = "transposed"):
        super().__init__()
        f = filters
        self.blocks = blocks
        layers: list[nn.Module] = [
            pad(3),
            nn.Conv2d(channels, f, 7),
            _norm(f),
            nn.ReLU(inplace=True),
        ]
        for mult in (1, 2):  # two stride-2 downsamplings
            layers += [nn.Conv2d(f * mult, f * mult * 2, 3, stride=2, padding=1), _norm(f * mult * 2),
                       nn.ReLU(inplace=True)]
        layers += [ResidualBlock(f * 4, pad) for _ in range(blocks)]
        for mult in (4, 2):  # and back up
            if upsample == "resize":
                up = [nn.Upsample(scale_factor=2, mode="nearest"), pad(1),
                      nn.Conv2d(f * mult, f * mult // 2, 3)]
            else:
                up = [nn.ConvTranspose2d(f * mult, f * mult // 2, 3, stride=2, padding=1, output_padding=1)]
            layers += [*up, _norm(f * mult // 2), nn.ReLU(inplace=True)]
        layers += [pad(3), nn.Conv2d(f, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def layer_index(self, name: str) -> int:
        """The index in `net` after which a named encoder layer's output is taken: "input" (the
        padded image), "down1", "down2" (the strided convolutions, before their norm), "blockN"
        (after residual block N; past the last block, the last)."""
        if name in ENCODER_LAYERS:
            return ENCODER_LAYERS[name]
        return ENCODER_LAYERS["down2"] + 2 + min(int(name[5:]), self.blocks)

    def forward_with_features(self, x: torch.Tensor, layers: list[int],
                              encode_only: bool = False) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """(the output, or None with `encode_only`; the outputs of the modules at the indices
        `layers`, in their order). Encoding stops after the last of them."""
        wanted, feats, last = set(layers), {}, max(layers)
        for i, module in enumerate(self.net):
            x = module(x)
            if i in wanted:  # no in-place module writes to these: a norm or a new tensor follows each
                feats[i] = x
            if encode_only and i == last:
                return None, [feats[j] for j in layers]
        return x, [feats[j] for j in layers]


ENCODER_LAYERS = {"input": 0, "down1": 4, "down2": 7}  # indices in ResnetGenerator.net


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (for layers=3): one real/fake score per overlapping patch."""

    def __init__(self, channels: int, filters: int = 64, layers: int = 3):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(channels, filters, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = filters
        for n in range(1, layers + 1):
            new_width = filters * min(2**n, 8)
            stride = 2 if n < layers else 1  # the last hidden layer keeps the resolution
            seq += [nn.Conv2d(width, new_width, 4, stride=stride, padding=1), _norm(new_width),
                    nn.LeakyReLU(0.2, True)]
            width = new_width
        seq += [nn.Conv2d(width, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """The paper's initialisation: conv weights ~ N(0, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_generator(cfg: TrainConfig) -> ResnetGenerator:
    pad = CopiedReflectionPad2d if cfg.speed.deterministic else nn.ReflectionPad2d
    g = ResnetGenerator(cfg.data.channels, cfg.model.filters, cfg.model.blocks, pad, cfg.model.upsample)
    init_weights(g)
    return g


def build_discriminator(cfg: TrainConfig) -> PatchDiscriminator:
    d = PatchDiscriminator(cfg.data.channels, cfg.model.disc_filters, cfg.model.disc_layers)
    init_weights(d)
    return d


def set_requires_grad(nets: Iterable[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class LSGANLoss(nn.Module):
    """Least-squares GAN loss: mean (D(x) - 1)^2 for "real", mean D(x)^2 for "fake".

    The target tensors are built to match the prediction, so callers only say real or fake.
    """

    def forward(self, prediction: torch.Tensor, real: bool) -> torch.Tensor:
        prediction = prediction.float()  # the loss in fp32 even under bf16 autocast
        target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
        return nn.functional.mse_loss(prediction, target)


class ImagePool:
    """A buffer of past generated images, so the discriminator sees a history, not only the latest.

    Shrivastava et al. 2017, as used by CycleGAN: while the pool is not full, each new image is
    stored and returned; once full, with probability 1/2 a stored image is returned in its place
    (and the new one stored), else the new image is returned. Randomness comes from torch's global
    generator, whose state checkpoints save, so a resumed run draws the same choices.
    """

    def __init__(self, size: int = 50):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0).float()  # fp32 in the pool whatever autocast produced
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(1).item() < 0.5:
                i = int(torch.randint(0, self.size, (1,)).item())
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        """Tensors only (checkpoints load with weights_only=True)."""
        stored = torch.cat(self.images, 0).float().cpu() if self.images else torch.empty(0)
        return {"size": self.size, "images": stored}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu",
                        memory_format: torch.memory_format = torch.contiguous_format) -> None:
        """`memory_format`: the training's layout, so resumed entries match new ones (a checkpoint
        holds NCHW; mixed layouts would make every torch.cat of the pool copy)."""
        self.size = int(state["size"])
        images = state["images"]
        self.images = [images[i : i + 1].to(device, memory_format=memory_format)
                       for i in range(images.shape[0])]


# ----------------------------------------------------------------------------- learning rate


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


def adam(params: Iterable[nn.Parameter], train: TrainOptions) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=train.lr, betas=(train.beta1, train.beta2))


def linear_decay(optimizer: torch.optim.Optimizer, train: TrainOptions) -> torch.optim.lr_scheduler.LambdaLR:
    """The recipe's schedule (lr_factor), stepped once an epoch."""
    schedule = functools.partial(_lr_lambda, epochs=train.epochs, decay_from_epoch=train.decay_from_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def restore_lr(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """After a scheduler's load_state_dict: its optimizer's lr from this run's schedule. The saved lr
    belongs to the saved schedule; with another --epochs the slope changed, and LambdaLR would only
    apply it at the next epoch. Same epochs: the same value as saved."""
    for group, base, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * fn(scheduler.last_epoch)
