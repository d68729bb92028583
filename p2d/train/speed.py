"""How a run computes on its device (the recipe's [speed] table, resolved): precision, gradient scalers,
memory layout, CUDA kernels, and the DDP-wrapped and compiled networks a training step calls.

None of it changes what a run learns, except bf16's and fp16's arithmetic.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from p2d.recipe import SpeedConfig
from p2d.train import ddp
from p2d.train.ddp import Ranks

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


@dataclass(frozen=True)
class Speed:
    """The [speed] switches as this device runs them. The defaults (CPU, fp32, NCHW, eager) are
    what translate and evaluate build a model with."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"  # "bf16", "fp16" or "fp32": what precision_mode picked
    channels_last: bool = False  # CUDA only
    compile: bool = False

    @classmethod
    def for_device(cls, speed: SpeedConfig, device: torch.device) -> Speed:
        precision = device_precision(speed.precision, device)
        return cls(device, precision, speed.channels_last and device.type == "cuda", speed.compile)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self):
        """A fresh autocast context in this precision (off for fp32)."""
        dtype = AUTOCAST_DTYPES.get(self.precision, torch.float32)
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.precision in AUTOCAST_DTYPES)


def gradient_scalers(mode: str, device: torch.device,
                     names: tuple[str, ...] = ("G", "D")) -> dict[str, torch.amp.GradScaler]:
    """One scaler per optimizer, enabled for fp16 only (bf16 has fp32's range). The generators' and
    the discriminators' losses differ by orders of magnitude, so they need their own scales."""
    return {k: torch.amp.GradScaler(device.type, enabled=mode == "fp16") for k in names}


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler) -> None:
    """Backward and step; a disabled scaler (bf16, fp32) passes everything through, an fp16 one
    skips the step when the gradients overflowed."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def step_networks(nets: dict[str, nn.Module], speed: Speed, ranks: Ranks,
                  judges: tuple[str, ...] = ()) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    """(the networks as a training step calls them: DDP-wrapped under torchrun, compiled with
    speed.compile; the `judges` (networks frozen while the others learn, the discriminators) as the
    generators' phase calls them: unwrapped under DDP, whose bookkeeping would have nothing to reduce).
    The modules share their parameters with `nets`, which checkpoints save."""
    wrapped = {k: ddp.wrap(m, speed.device, ranks) for k, m in nets.items()}
    if speed.compile:
        wrapped = {k: torch.compile(m) for k, m in wrapped.items()}
    if not ranks.distributed:
        return wrapped, {k: wrapped[k] for k in judges}
    return wrapped, {k: torch.compile(nets[k]) if speed.compile else nets[k] for k in judges}


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
