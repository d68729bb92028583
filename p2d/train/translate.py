"""Translate images with a trained run: load its model's generator, run it over files and folders.

The generator is fully convolutional with two stride-2 steps, so it runs on any image whose sides
are multiples of 4. Images are scaled so their shorter side is the training size (the scale the
model learned faces at; --no-resize keeps their own size), reflect-padded up to a multiple of 4,
translated, and cropped back: the output has the input's name and (scaled) size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from p2d.errors import P2DError
from p2d.images import check_output_dir, list_images, try_read_image, write_image
from p2d.recipe import TrainConfig, config_from_dict
from p2d.runs import checkpoint_path, list_checkpoints, pick_device
from p2d.train.checkpoint import load_checkpoint
from p2d.train.data import image_to_tensor, resize_image, to_channels, tensor_to_image
from p2d.train.kinds import MODEL_KINDS, Model
from p2d.ui import progress

DIRECTIONS = ("drawing", "photo")  # translate --to: the domain an image is translated into


def find_checkpoint(run_or_checkpoint: Path | str, epoch: int | None = None) -> Path:
    """A .pt file as is; a run folder's epoch_NNNN.pt for `epoch`, else its latest.pt."""
    path = Path(run_or_checkpoint)
    if path.is_file():
        if epoch is not None:
            raise P2DError(f"--epoch {epoch} needs a run folder, not the checkpoint file {path}")
        return path
    if not path.is_dir():
        raise P2DError(f"{path} does not exist: give a run folder (e.g. runs/exp4) or a checkpoint .pt file")
    if epoch is not None:
        saved = list_checkpoints(path)
        if epoch not in saved:
            have = ", ".join(map(str, saved)) or "none"
            raise P2DError(f"{path} has no checkpoint for epoch {epoch} (saved epochs: {have})")
        return saved[epoch]
    latest = checkpoint_path(path)
    if latest.is_file():
        return latest
    saved = list_checkpoints(path)
    if not saved:
        raise P2DError(f"{path} holds no checkpoints: train it first with `p2d train`")
    return saved[max(saved)]


def load_model(run_or_checkpoint: Path | str, epoch: int | None = None) -> Model:
    """The model a run folder or checkpoint holds (its recipe's [model] kind), with the checkpoint's
    networks, on the CPU.

    The checkpoint is read into host memory; callers move only the generator they need to a device:
    the discriminators, optimizer moments and image pools would take GPU memory for nothing.
    """
    ckpt = load_checkpoint(find_checkpoint(run_or_checkpoint, epoch), "cpu")
    cfg = config_from_dict(ckpt["recipe"], source=f"checkpoint {run_or_checkpoint}")
    model = MODEL_KINDS[cfg.model.kind](cfg)
    model.load_networks(ckpt["models"])
    return model


def load_generators(run_or_checkpoint: Path | str, epoch: int | None = None,
                    device="cpu") -> tuple[TrainConfig, nn.Module, nn.Module | None]:
    """(config, photo -> drawing generator, drawing -> photo generator) of a run folder or
    checkpoint, on `device` in eval mode; the last is None for a one-sided model (cut, fastcut)."""
    model = load_model(run_or_checkpoint, epoch)
    back = model.generator("photo").to(device).eval() if "photo" in model.DIRECTIONS else None
    return model.cfg, model.generator("drawing").to(device).eval(), back


def pad_to_multiple(x: torch.Tensor, multiple: int = 4) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (1, C, H, W) on the bottom and right up to multiples of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        # Reflection needs the pad smaller than the side; replicate covers tiny images.
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


@torch.no_grad()
def translate_array(generator: nn.Module, img: np.ndarray, channels: int, device="cpu") -> np.ndarray:
    """uint8 image -> uint8 translated image of the same height and width."""
    x, (h, w) = pad_to_multiple(image_to_tensor(img, channels).to(device))
    return tensor_to_image(generator(x)[..., :h, :w])


def scale_to_size(img: np.ndarray, size: int) -> np.ndarray:
    """Scale so the shorter side is `size` (the training scale), keeping the aspect ratio."""
    h, w = img.shape[:2]
    if min(h, w) == size:
        return img
    s = size / min(h, w)
    arr = img if img.ndim == 3 else img[:, :, None]
    out = resize_image(arr, max(1, round(w * s)), max(1, round(h * s)))
    return out if img.ndim == 3 else out[:, :, 0]


def _output_name(rel: Path) -> Path:
    """A GIF's translation is written as PNG (one frame, and no 256-colour palette to squeeze the
    generator's output into); every other input keeps its name and format."""
    return rel.with_suffix(".png") if rel.suffix.lower() == ".gif" else rel


def _inputs(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """(image, output name relative to OUT): a file keeps its name; a folder keeps its sub-paths
    (`_output_name`)."""
    pairs = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            pairs += [(p, _output_name(p.relative_to(item))) for p in list_images(item)]
        elif item.is_file():
            pairs.append((item, _output_name(Path(item.name))))
        else:
            raise P2DError(f"{item} does not exist: give image files or folders of images")
    return pairs


@dataclass
class TranslateResult:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (input, reason)
    seconds: float = 0.0
    config: TrainConfig | None = None
    checkpoint: Path | None = None

    @property
    def images_per_second(self) -> float:
        return len(self.written) / self.seconds if self.seconds > 0 else 0.0

    SUMMARY_COLUMNS = ("checkpoint", "channels", "size", "written", "skipped", "images/s")

    def summary_rows(self) -> list[list[object]]:
        cfg = self.config
        return [[str(self.checkpoint), cfg.data.channels, cfg.data.size, len(self.written), len(self.skipped),
                 round(self.images_per_second, 2)]]


@dataclass(frozen=True)
class TranslateOptions:
    """`p2d translate`'s options beyond what and where: the epoch (None: latest), face framing first
    (`crop_faces`, its `pad`), scaling to the training size, the torch device, dlib's model folder."""

    epoch: int | None = None
    crop_faces: bool = False
    pad: str = "blur"
    resize: bool = True
    device: str | None = None
    models_dir: Path | str | None = None


def translate(
    run_or_checkpoint: Path | str,
    inputs: list[Path | str],
    to: str,
    out: Path | str,
    options: TranslateOptions = TranslateOptions(),
) -> TranslateResult:
    """Translate every image in `inputs` (files and folders) to `to` ("drawing" or "photo") into `out`.

    Bad files and (with crop_faces) images without a face are recorded in `.skipped` with a reason; the
    batch carries on. `options.pad` fills a cropped face's frame past the photo's edge (a --pad value;
    `blur` as `p2d curate photos` does).
    """
    if to not in DIRECTIONS:
        raise P2DError(f"--to {to!r}: use drawing (photo -> drawing) or photo (drawing -> photo)")
    fill = None
    if options.crop_faces:
        from p2d.padding import parse_pad

        fill = parse_pad(options.pad)  # a bad --pad is told before any model loads
    dev = pick_device(options.device)
    out = Path(out)
    pairs = _inputs([Path(i) for i in inputs])
    for item in inputs:
        if Path(item).is_dir():
            check_output_dir(item, out)
    ckpt = find_checkpoint(run_or_checkpoint, options.epoch)
    model = load_model(ckpt)
    generator = model.generator(to).to(dev).eval()
    faces = None
    if options.crop_faces:
        from p2d.faces import FaceModels

        faces = FaceModels(options.models_dir)
    framing = _Framing(model.cfg, options.resize, faces, fill)
    result = TranslateResult(config=model.cfg, checkpoint=ckpt)
    start = time.perf_counter()
    taken: set[str] = set()
    with progress() as bar:
        task = bar.add_task(f"to {to}", total=len(pairs), status="")
        for src, rel in pairs:
            bar.advance(task)
            if rel.as_posix().lower() in taken:
                # a/x.jpg and b/x.jpg given as files would both become OUT/x.jpg
                why = f"same output name as an earlier input: {rel}; translate it on its own"
                result.skipped.append((src, why))
                continue
            taken.add(rel.as_posix().lower())
            img, reason = framing.prepare(src)
            if img is None:
                result.skipped.append((src, reason))
                continue
            write_image(out / rel, translate_array(generator, img, model.cfg.data.channels, dev))
            result.written.append(out / rel)
            bar.update(task, status=f"{len(result.written) / (time.perf_counter() - start):.1f} images/s")
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class _Framing:
    """How an input file becomes what the generator takes: read, with --crop-faces framed as `p2d curate
    photos` frames faces (`faces`: FaceModels, `fill`: the parsed --pad), at the run's channels and,
    with `resize`, its training scale."""

    cfg: TrainConfig
    resize: bool = True
    faces: object | None = None
    fill: object | None = None

    def prepare(self, src: Path) -> tuple[np.ndarray | None, str]:
        """(the image as uint8, "") or (None, why it is skipped)."""
        img, reason = try_read_image(src, "RGB")
        if img is not None and self.faces is not None:
            from p2d.padding import crop_face  # the framing and fill `p2d curate photos` use

            img, reason = crop_face(img, self.faces, size=self.cfg.data.size, pad=self.fill)
        if img is None:
            return None, reason or "unreadable"
        img = to_channels(img, self.cfg.data.channels)
        img = img[:, :, 0] if img.shape[2] == 1 else img
        if self.resize:
            img = scale_to_size(img, self.cfg.data.size)
        if min(img.shape[:2]) < 8:
            # two stride-2 convolutions and reflect padding need a few pixels to work on
            return None, f"too small ({img.shape[1]}x{img.shape[0]}): at least 8 px a side"
        return img, ""
