"""Training data from a manifest only: kept rows, unaligned batches of both domains, augmentation.

The trainer never scans folders. It reads the manifest's rows with keep=true: split=train rows
are trained on, split=test rows give the fixed images of each epoch's sample grid.

Every random choice of an epoch (which image of each domain goes in which batch, where a
crop=random row is cropped, each augmentation's parameters) is a pure function of (seed, epoch),
computed by `epoch_plan`. That is what makes a resumed run the same run: batch k of epoch e is
the same whether the process started at batch 0 or at batch k, with or without worker processes.
Under torchrun each process takes its own slice of every global batch (`rank_positions`), a pure
function of (step, batch size, rank, world size): together the ranks cover the plan once.

The last batch of an epoch is padded, not dropped and not left smaller: the plan is as long as
whole global batches need, the extra positions taken from a fresh permutation of the larger
domain. So every training row is seen every epoch (dropping would skip up to batch_size - 1 rows
of the larger domain each epoch), every step has the same shape (one torch.compile graph, one
cuDNN autotune), and every rank takes the same number of steps (DDP collectives never wait for a
rank that ran out). The price: up to batch_size - 1 rows are seen twice in an epoch.

Augmentation composes horizontal flip, random crop (scale up, crop back) and rotation (reflect
padding, rotate, centre crop) into ONE affine transform per image and resamples once with
`grid_sample` (reflection padding), on whatever device the batch is on. So on a GPU the uint8
images never leave the card, and the images are interpolated once instead of three times.

Worker processes (speed.workers > 0) use the spawn start method on every platform, so the code
that runs on Windows and macOS is the code tested on Linux: everything a worker needs lives at
module level in this importable module (no lambdas, no closures), so a user's script needs no
`if __name__ == "__main__"` guard.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from p2d.errors import ManifestError
from p2d.images import BadImage, read_image
from p2d.manifest import DOMAINS, read_manifest, resolve_path, validate
from p2d.recipe import TrainConfig

# Fraction of the free GPU memory the uint8 dataset may take (the rest is for the networks).
GPU_DATASET_MAX_FRACTION = 0.5


# ----------------------------------------------------------------------------- tensors <-> images


def image_to_tensor(img: np.ndarray, channels: int) -> torch.Tensor:
    """uint8 HxW or HxWx3 -> float (1, channels, H, W) in [-1, 1] (gray <-> colour as needed)."""
    img = to_channels(np.asarray(img), channels)
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).unsqueeze(0)  # a copy: PIL arrays are read-only
    return t.float().div(127.5).sub(1.0)


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) float in [-1, 1] -> uint8 HxW (C=1) or HxWx3 (C=3)."""
    t = t.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    img = ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return img[:, :, 0] if img.shape[2] == 1 else img


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """uint8 HxW / HxWx1 / HxWx3 -> HxWxchannels (ITU-R 601 luma for colour -> gray, as PIL does)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == channels:
        return img
    if channels == 1:
        gray = Image.fromarray(np.ascontiguousarray(img[:, :, :3])).convert("L")
        return np.asarray(gray)[:, :, None]
    return np.repeat(img[:, :, :1], 3, axis=2)


# ----------------------------------------------------------------------------- manifest rows


@dataclass(frozen=True)
class Row:
    path: Path
    crop: str  # "center" or "random"
    line: int  # CSV line in the manifest (for messages)


def training_rows(manifest_path: Path | str) -> dict[tuple[str, str], list[Row]]:
    """Kept rows by (domain, split), after checking the manifest and that every file exists."""
    manifest_path = Path(manifest_path)
    df = read_manifest(manifest_path)
    problems = validate(df, manifest_path, check_files=False)
    if problems:
        shown = "; ".join(str(p) for p in problems[:3])
        raise ManifestError(
            f"manifest {manifest_path} has {len(problems)} problem(s), e.g. {shown}: "
            f"run `p2d manifest check {manifest_path}` and fix or rebuild it"
        )
    out: dict[tuple[str, str], list[Row]] = {(d, s): [] for d in DOMAINS for s in ("train", "test")}
    for i, r in enumerate(df.itertuples(index=False)):
        if not bool(r.keep):
            continue
        path = resolve_path(manifest_path, str(r.path))
        if not path.is_file():
            raise ManifestError(
                f"image {path} (manifest {manifest_path}, line {i + 2}) does not exist: restore the "
                f"file, or rebuild the manifest; `p2d manifest check {manifest_path}` lists every "
                "missing file"
            )
        out[(r.domain, r.split)].append(Row(path, r.crop, i + 2))
    for domain in DOMAINS:
        if not out[(domain, "train")]:
            raise ManifestError(
                f"manifest {manifest_path} has no kept training rows for domain {domain!r} "
                f"(keep=true, split=train): add {domain}s to it, e.g. with `p2d manifest build`"
            )
    return out


# ----------------------------------------------------------------------------- loading one image


def resize_image(img: np.ndarray, width: int, height: int) -> np.ndarray:
    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    out = np.asarray(pil.resize((width, height), Image.Resampling.LANCZOS))
    return out[:, :, None] if out.ndim == 2 else out


def fit_image(img: np.ndarray, size: int, crop: str) -> np.ndarray:
    """Bring a decoded HxWxC image to training scale.

    crop=center rows are meant to be size x size already; others are scaled so the shorter side is
    `size` and centre-cropped. crop=random rows are scaled so the shorter side is `size` and kept
    whole: a random size x size window is taken each time the row is drawn.
    """
    h, w = img.shape[:2]
    if (h, w) != (size, size) and min(h, w) != size:
        scale = size / min(h, w)
        img = resize_image(img, max(size, round(w * scale)), max(size, round(h * scale)))
    if crop == "center":
        img = window(img, size, 0.5, 0.5)
    return np.array(img)  # contiguous and writable (PIL's arrays are read-only)


def window(img, size: int, u_y: float, u_x: float):
    """A size x size window of an HxW(xC) array or a CxHxW tensor-like (last two axes when
    `img` is a torch tensor) at relative position u in [0, 1] along each axis."""
    if isinstance(img, torch.Tensor):
        h, w = img.shape[-2:]
        y, x = int(u_y * (h - size + 0.999)), int(u_x * (w - size + 0.999))
        return img[..., y : y + size, x : x + size]
    h, w = img.shape[:2]
    y, x = int(u_y * (h - size + 0.999)), int(u_x * (w - size + 0.999))
    return img[y : y + size, x : x + size]


def _decode(path: Path, channels: int, size: int, crop: str) -> torch.Tensor:
    """`load_image` without the manifest's wording: raises the decoder's BadImage (it has `reason`)."""
    img = fit_image(to_channels(read_image(path, "L" if channels == 1 else "RGB"), channels), size, crop)
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()


def load_image(path: Path, channels: int, size: int, crop: str) -> torch.Tensor:
    """Read, convert to the recipe's channels, fit to training scale: uint8 tensor (C, H, W)."""
    try:
        return _decode(path, channels, size, crop)
    except BadImage as exc:
        raise ManifestError(
            f"{exc}: the manifest keeps it; re-run the curate command for it or drop its row"
        ) from None


# ----------------------------------------------------------------------------- the epoch plan


@dataclass
class EpochPlan:
    """Random choices for one epoch, position by position (one position = one image pair)."""

    photo: np.ndarray  # (N,) index into the photo rows
    drawing: np.ndarray  # (N,) index into the drawing rows
    crop_u: np.ndarray  # (N, 2 domains, 2 axes) relative window position for crop=random rows
    augment: np.ndarray  # (N, 2 domains, 5): flip, scale, shift_x, shift_y, angle_rad


def _cover(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """`length` indices into n items: whole permutations back to back, so every item is used."""
    reps = math.ceil(length / n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:length]


def epoch_plan(seed: int, epoch: int, n_photo: int, n_drawing: int, cfg: TrainConfig) -> EpochPlan:
    """The epoch's random choices, a pure function of its arguments. One epoch is one pass over
    the larger domain, padded to whole global batches (see the module docstring); the smaller
    domain is drawn in fresh permutations (unaligned pairs)."""
    rng = np.random.default_rng([seed, epoch])
    n = steps_per_epoch(n_photo, n_drawing, cfg.train.batch_size) * cfg.train.batch_size
    photo, drawing = _cover(rng, n_photo, n), _cover(rng, n_drawing, n)
    crop_u = rng.random((n, 2, 2))
    aug = np.zeros((n, 2, 5))
    names = cfg.data.augment
    aug[..., 0] = np.where(rng.random((n, 2)) < 0.5, -1.0, 1.0) if "hflip" in names else 1.0
    scale = cfg.data.random_crop_scale if "random_crop" in names else 1.0
    aug[..., 1] = scale
    slack = 1.0 - 1.0 / scale  # how far (in [-1, 1] units) the crop window can move
    aug[..., 2:4] = rng.uniform(-slack, slack, (n, 2, 2))
    deg = cfg.data.rotation_deg if "rotation" in names else 0.0
    aug[..., 4] = np.deg2rad(rng.uniform(-deg, deg, (n, 2)))
    return EpochPlan(photo, drawing, crop_u, aug)


def affine_matrices(params: np.ndarray) -> np.ndarray:
    """(B, 5) flip, scale, shift_x, shift_y, angle -> (B, 2, 3) output->input maps in
    grid_sample's [-1, 1] coordinates: rotate about the centre, zoom in by `scale` and move the
    window (random crop), mirror x (flip)."""
    flip, scale, tx, ty, a = (params[:, i] for i in range(5))
    cos, sin = np.cos(a) / scale, np.sin(a) / scale
    theta = np.zeros((len(params), 2, 3))
    theta[:, 0] = np.stack([flip * cos, -flip * sin, flip * tx], 1)
    theta[:, 1] = np.stack([sin, cos, ty], 1)
    return theta


IDENTITY_PARAMS = np.array([1.0, 1.0, 0.0, 0.0, 0.0])  # no flip, no zoom, no shift, no rotation


def augment(batch_uint8: torch.Tensor, params: np.ndarray) -> torch.Tensor:
    """uint8 (B, C, S, S) on any device -> float in [-1, 1], augmented by `params` (B, 5)."""
    theta = None if np.allclose(params, IDENTITY_PARAMS) else torch.from_numpy(affine_matrices(params))
    return augment_with(batch_uint8, theta if theta is None else theta.to(batch_uint8.device, torch.float32))


def augment_with(batch_uint8: torch.Tensor, theta: torch.Tensor | None) -> torch.Tensor:
    """uint8 (B, C, S, S) -> float in [-1, 1], resampled by the (B, 2, 3) matrices `theta` (already
    on the batch's device; None: no augmentation)."""
    x = batch_uint8.float().div_(127.5).sub_(1.0)
    if theta is None:
        return x
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def epoch_matrices(plan: EpochPlan, device: torch.device) -> torch.Tensor:
    """(N, 2 domains, 2, 3) float32 matrices of the whole epoch, copied to `device` once: one
    host-to-device copy an epoch instead of two blocking ones a step."""
    n = len(plan.augment)
    theta = affine_matrices(plan.augment.reshape(-1, 5)).reshape(n, 2, 2, 3)
    return torch.from_numpy(theta).to(device, torch.float32)


# ----------------------------------------------------------------------------- batches


class PairedCrops(Dataset):
    """Position (epoch, i) of an epoch -> (photo, drawing) uint8 crops (C, size, size).

    Images come from `cache` (decoded once, on the CPU or the GPU) or are decoded from disk on
    each access (in worker processes). Module level and picklable: spawn workers import it.
    """

    def __init__(self, photos: list[Row], drawings: list[Row], cfg: TrainConfig, cache=None):
        self.rows = {"photo": photos, "drawing": drawings}
        self.channels, self.size = cfg.data.channels, cfg.data.size
        self.seed, self.cfg = cfg.train.seed, cfg
        self.cache = cache  # {"photo": [tensor], "drawing": [tensor]} or None
        self._plan: tuple[int, EpochPlan] | None = None

    def __len__(self) -> int:
        return max(len(self.rows["photo"]), len(self.rows["drawing"]))

    def plan(self, epoch: int) -> EpochPlan:
        if self._plan is None or self._plan[0] != epoch:
            n_p, n_d = len(self.rows["photo"]), len(self.rows["drawing"])
            self._plan = (epoch, epoch_plan(self.seed, epoch, n_p, n_d, self.cfg))
        return self._plan[1]

    def crop(self, domain: str, index: int, u: np.ndarray) -> torch.Tensor:
        row = self.rows[domain][index]
        if self.cache is not None:
            img = self.cache[domain][index]
        else:
            img = load_image(row.path, self.channels, self.size, row.crop)
        return window(img, self.size, float(u[0]), float(u[1]))

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = key
        p = self.plan(epoch)
        return (self.crop("photo", int(p.photo[i]), p.crop_u[i, 0]),
                self.crop("drawing", int(p.drawing[i]), p.crop_u[i, 1]))


def rank_positions(step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> range:
    """Plan positions that process `rank` of `world_size` trains on at `step`: its contiguous
    slice of global batch `step` (batch_size is the global batch, a multiple of world_size)."""
    local = batch_size // world_size
    start = step * batch_size + rank * local
    return range(start, start + local)


class EpochBatches:
    """This rank's batches of positions (epoch, i), in order, starting at step `start`."""

    def __init__(self, epoch: int, steps: int, batch_size: int, start: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.epoch, self.steps, self.batch_size, self.start = epoch, steps, batch_size, start
        self.rank, self.world_size = rank, world_size

    def __iter__(self):
        for b in range(self.start, len(self)):
            yield [(self.epoch, i) for i in rank_positions(b, self.batch_size, self.rank, self.world_size)]

    def __len__(self) -> int:
        return self.steps


def steps_per_epoch(n_photo: int, n_drawing: int, batch_size: int) -> int:
    """Global batches in an epoch: one pass over the larger domain, the last batch padded."""
    return math.ceil(max(n_photo, n_drawing) / batch_size)


class TrainBatches:
    """Yields augmented (photo, drawing) float batches on `device` for one epoch at a time.

    With workers=0 every image is decoded once up front and kept as uint8: on the GPU when
    `gpu_dataset` is on and it fits (so the GPU never waits for data), else in RAM. With workers>0
    the images are decoded from disk by spawned DataLoader workers (datasets larger than RAM).
    Under torchrun, process `rank` of `world_size` yields only its slice of each global batch.
    """

    def __init__(self, rows: dict[tuple[str, str], list[Row]], cfg: TrainConfig, device: torch.device,
                 gpu_dataset: bool = False, workers: int = 0, progress=None, rank: int = 0,
                 world_size: int = 1):
        self.cfg, self.device, self.workers = cfg, device, workers
        photos, drawings = rows[("photo", "train")], rows[("drawing", "train")]
        self.where = "disk (workers)" if workers else "memory"
        cache = None
        if workers == 0:
            target = torch.device("cpu")
            if device.type == "cuda" and gpu_dataset and self._fits_on_gpu(photos + drawings, cfg, device):
                target, self.where = device, "GPU memory"
            unreadable: list[str] = []
            cache = {
                "photo": _load_all(photos, cfg, target, progress, "loading photos", unreadable),
                "drawing": _load_all(drawings, cfg, target, progress, "loading drawings", unreadable),
            }
            if unreadable:
                raise unreadable_error(unreadable)
        self.dataset = PairedCrops(photos, drawings, cfg, cache)
        self._batches = EpochBatches(0, self.steps, cfg.train.batch_size, rank=rank, world_size=world_size)
        self._loader: DataLoader | None = None

    @staticmethod
    def _fits_on_gpu(rows: list[Row], cfg: TrainConfig, device: torch.device) -> bool:
        # Estimate from the training size (random-crop rows are somewhat larger; the margin covers it).
        need = len(rows) * cfg.data.channels * cfg.data.size**2 * 2
        free, _total = torch.cuda.mem_get_info(device)
        return need < GPU_DATASET_MAX_FRACTION * free

    @property
    def steps(self) -> int:
        rows = self.dataset.rows
        return steps_per_epoch(len(rows["photo"]), len(rows["drawing"]), self.cfg.train.batch_size)

    def epoch(self, epoch: int, start_step: int = 0):
        """(photo, drawing) batches for steps start_step.. of `epoch` (0-based epoch index)."""
        batches = self._batches  # one object, so persistent workers see each epoch's positions
        batches.epoch, batches.start = epoch, start_step
        plan = self.dataset.plan(epoch)
        theta = epoch_matrices(plan, self.device) if self.cfg.data.augment else None
        if self.workers:
            if self._loader is None:
                self._loader = DataLoader(
                    self.dataset,
                    batch_sampler=batches,
                    num_workers=self.workers,
                    multiprocessing_context="spawn",
                    persistent_workers=True,  # start the processes once, not every epoch
                    worker_init_fn=ignore_ctrl_c,
                    pin_memory=self.device.type == "cuda",
                )
            source = iter(self._loader)
        else:
            source = (_stack([self.dataset[k] for k in keys]) for keys in batches)
        for keys, (photo, drawing) in zip(batches, source):
            lo, hi = keys[0][1], keys[-1][1] + 1  # a rank's positions are contiguous: slice, no copy
            photo = photo.to(self.device, non_blocking=True)
            drawing = drawing.to(self.device, non_blocking=True)
            yield self._augment(photo, theta, plan, lo, hi, 0), self._augment(drawing, theta, plan, lo, hi, 1)

    @staticmethod
    def _augment(batch, theta, plan: EpochPlan, lo: int, hi: int, domain: int) -> torch.Tensor:
        # The identity test reads the plan on the host: no device sync.
        if theta is None or np.allclose(plan.augment[lo:hi, domain], IDENTITY_PARAMS):
            return augment_with(batch, None)
        return augment_with(batch, theta[lo:hi, domain])


def ignore_ctrl_c(worker_id: int) -> None:
    """Workers ignore SIGINT: a terminal's Ctrl-C reaches every process of the group, and the
    main process handles it (it finishes the step and saves `latest`, which needs live workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stack(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([p for p, _ in pairs]), torch.stack([d for _, d in pairs])


def _load_all(rows: list[Row], cfg: TrainConfig, device: torch.device, progress, label: str,
              unreadable: list[str]) -> list[torch.Tensor]:
    """Every row's image decoded; a file that cannot be read is added to `unreadable` (its path and
    why) and the rest are still read, so that one message can name them all."""
    task = progress.add_task(label, total=len(rows), status="") if progress is not None else None
    out = []
    for row in rows:
        try:
            out.append(_decode(row.path, cfg.data.channels, cfg.data.size, row.crop).to(device))
        except BadImage as exc:
            unreadable.append(f"{row.path} ({exc.reason})")
        if task is not None:
            progress.advance(task)
    if task is not None:
        progress.remove_task(task)
    return out


def unreadable_error(unreadable: list[str], shown: int = 10) -> ManifestError:
    """One error naming the kept rows whose images cannot be read (the first `shown` of them)."""
    more = f" and {len(unreadable) - shown} more" if len(unreadable) > shown else ""
    names = ", ".join(unreadable[:shown]) + more
    return ManifestError(f"{len(unreadable)} image(s) the manifest keeps cannot be read ({names}): re-run "
                         "the curate command for them or drop their rows; `p2d curate` and "
                         "`p2d crop-drawings` record such files as keep=false, unreadable:<why>")


def sample_images(rows: dict[tuple[str, str], list[Row]],
                  cfg: TrainConfig) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The fixed images of the sample grid: the first `sample_rows` test rows of each domain,
    centre-cropped, as float (N, C, S, S). A domain without test rows falls back to training
    rows, with a note."""
    out, notes = {}, []
    for domain in DOMAINS:
        chosen = rows[(domain, "test")][: cfg.data.sample_rows]
        if not chosen:
            chosen = rows[(domain, "train")][: cfg.data.sample_rows]
            notes.append(f"no {domain} test rows: the sample grid shows training {domain}s")
        crops = [window(load_image(r.path, cfg.data.channels, cfg.data.size, r.crop), cfg.data.size, 0.5, 0.5)
                 for r in chosen]
        out[domain] = torch.stack(crops).float().div(127.5).sub(1.0)
    return out, notes
