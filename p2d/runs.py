"""Run folders: where `p2d train` puts each file, and reading them back (torch only for pick_device).

A run folder holds recipe.toml (every key), run.json, losses.csv, samples/epoch_NNNN.png and
checkpoints/{latest,epoch_NNNN}.pt; evaluate adds evaluate.csv. Read-only commands (report) list
and read these without importing torch.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from p2d.errors import P2DError
from p2d.images import write_text_atomic

RECIPE_FILE = "recipe.toml"
INFO_FILE = "run.json"
LOSSES_FILE = "losses.csv"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"


def _epoch_files(folder: Path, suffix: str) -> dict[int, Path]:
    """{epoch: folder/epoch_NNNN<suffix>}, in epoch order; other names (epoch_final.png) are skipped."""
    found = {}
    for path in sorted(folder.glob(f"epoch_*{suffix}")):
        number = path.stem.split("_", 1)[1]
        if number.isdigit():
            found[int(number)] = path
    return dict(sorted(found.items()))


def list_checkpoints(run: Path | str) -> dict[int, Path]:
    """Saved epochs of a run folder: {epoch: RUN/checkpoints/epoch_NNNN.pt} (not `latest`)."""
    return _epoch_files(Path(run) / CHECKPOINTS_DIR, ".pt")


def list_samples(run: Path | str) -> dict[int, Path]:
    """Sample grids of a run folder: {epoch: RUN/samples/epoch_NNNN.png}."""
    return _epoch_files(Path(run) / SAMPLES_DIR, ".png")


def checkpoint_path(run: Path, epoch: int | None = None) -> Path:
    name = "latest.pt" if epoch is None else f"epoch_{epoch:04d}.pt"
    return Path(run) / CHECKPOINTS_DIR / name


def sample_path(run: Path, epoch: int) -> Path:
    return Path(run) / SAMPLES_DIR / f"epoch_{epoch:04d}.png"


def write_losses(path: Path, epoch: int, row: dict) -> None:
    """Append the epoch's row, dropping rows of this or later epochs first (a re-run epoch after
    a crash between writing this file and the checkpoint must not appear twice)."""
    kept = []
    if path.is_file():
        with path.open(newline="") as f:
            kept = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept + [{k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()}])
    write_text_atomic(path, buf.getvalue())


def read_losses(run: Path | str) -> list[dict]:
    """losses.csv rows as dicts of floats (epoch and steps as ints)."""
    path = Path(run) / LOSSES_FILE
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: (int(v) if k in ("epoch", "steps") else float(v)) for k, v in r.items()}
                for r in csv.DictReader(f)]


# losses.csv columns that `p2d train` shows at the end, and how many epochs.
LOSS_SUMMARY_COLUMNS = ("epoch", "steps", "seconds", "G_total", "D_drawing", "D_photo", "cycle_photo",
                        "cycle_drawing")


def loss_summary_rows(run: Path | str, last: int = 5) -> list[list[float]]:
    """The last epochs' rows of losses.csv, in LOSS_SUMMARY_COLUMNS."""
    return [[r[c] for c in LOSS_SUMMARY_COLUMNS] for r in read_losses(run)[-last:]]


def loss_summary(run: Path | str, last: int = 5) -> tuple[list[str], list[list[float]]]:
    """(columns, the last epochs' rows) of losses.csv: LOSS_SUMMARY_COLUMNS for a CycleGAN run,
    every column but lr for a model kind with other losses (cut, fastcut)."""
    rows = read_losses(run)[-last:]
    columns = list(LOSS_SUMMARY_COLUMNS)
    if rows and not all(c in rows[0] for c in columns):
        columns = [c for c in rows[0] if c != "lr"]
    return columns, [[r[c] for c in columns] for r in rows]


def pick_device(device: str | None):
    """"auto"/None: CUDA when torch sees a GPU, else the CPU (a torch.device).

    A CUDA device always comes back with its index (cuda -> cuda:<current device>): torch before
    2.5 refuses an index-less device in torch.cuda.mem_get_info.
    """
    import torch  # only the commands that run a network get here

    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise P2DError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise P2DError(f"device {device} asked for, but torch sees no CUDA GPU: use --device cpu "
                       "(or install a CUDA build of torch)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise P2DError(f"device {device} asked for, but torch sees {torch.cuda.device_count()} GPU(s): "
                       f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev
