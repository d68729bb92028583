"""`p2d report`: one self-contained HTML page (PNGs beside it) for one or more runs: what differs
between their recipes, loss curves, evaluate curves, every test image as a strip across epochs,
and the full recipes. It references nothing outside its own folder, so it opens offline.

Sample strips: each epoch's RUN/samples/epoch_NNNN.png is a grid with one row per fixed test image
([input, translated, reconstructed], cells size x size; photo rows first, then drawing rows). For
each test image the report cuts that row out of every chosen epoch and lays the epochs side by
side: top line the translation, bottom line the reconstruction, the input once at the left. The
strips of several runs sit under each other per test image, so the same epoch columns line up.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from p2d.errors import P2DError
from p2d.recipe import tomllib
from p2d.runs import list_checkpoints, list_samples

# Cells are shown at least this large (tiny 32 px runs are scaled up, pixels kept sharp).
MIN_CELL_PX = 96
LABEL_PX = 18  # height of the label band on top of a strip
# Columns of losses.csv that are bookkeeping, not losses.
LOSS_SKIP = ("epoch", "steps", "seconds", "lr")
# evaluate.csv columns plotted, with a title saying which way is better.
EVALUATE_PLOTS = (
    ("kid_drawing", "KID photo->drawing (lower: more like real drawings; scored)"),
    ("kid_photo", "KID drawing->photo (lower: more like real photos)"),
    ("kid_tone_drawing", "KID tone/texture photo->drawing (lower; scored)"),
    ("face_found_drawing", "faces still found in drawings (higher)"),
    ("landmark_nme", "landmark error / inter-ocular (lower)"),
    ("identity_drawing", "identity distance photo-drawing (lower)"),
    ("smile_drift", "smile drift (0: none)"),
    ("cross_cycle_drawing", "cross cycle: real drawings via other epochs (lower; scored)"),
    ("redraw_drawing", "redraw: G(real drawing) vs the drawing (lower; scored for cut, fastcut)"),
    ("cycle_l1_drawing", "cycle L1 drawing->photo->drawing (lower; not scored)"),
    ("agreement_drawing", "distance to the other epochs' drawings (lower; scored)"),
    ("cycle_l1_photo", "cycle L1 photo->drawing->photo (lower; not scored)"),
    ("brightness_gap_drawing", "brightness vs real drawings (0: same)"),
    ("contrast_gap_drawing", "contrast vs real drawings (0: same)"),
)

# evaluate.csv columns in the report's table (KID with its std; labels: evaluate.METRIC_LABELS).
EVALUATE_TABLE = ("kid_drawing", "kid_tone_drawing", "kid_photo", "face_found_drawing", "landmark_nme",
                  "identity_drawing", "smile_drift", "cycle_l1_drawing", "cross_cycle_drawing",
                  "redraw_drawing", "agreement_drawing", "brightness_gap_drawing",
                  "contrast_gap_drawing")


# ============================================================================ pure helpers


def flatten_recipe(recipe: dict, prefix: str = "") -> dict[str, object]:
    """{"train": {"cycle_weight": 15}} -> {"train.cycle_weight": 15} (lists kept as values)."""
    flat: dict[str, object] = {}
    for key, value in recipe.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_recipe(value, name + "."))
        else:
            flat[name] = value
    return flat


def recipe_differences(recipes: Sequence[dict[str, object]],
                       ignore_prefixes: Sequence[str] = ("meta.",)) -> list[tuple[str, list]]:
    """The flattened keys whose values differ between recipes (a key missing from one counts as
    different), in recipe order, as (key, [value per recipe, None where missing])."""
    keys: list[str] = []
    for r in recipes:
        keys.extend(k for k in r if k not in keys)
    out = []
    for key in keys:
        if any(key.startswith(p) for p in ignore_prefixes):
            continue
        values = [r.get(key) for r in recipes]
        if any(v != values[0] for v in values[1:]):
            out.append((key, values))
    return out


def split_grid(grid: np.ndarray, size: int, cells: int | None = 3) -> list[list[np.ndarray]]:
    """A sample grid (rows * size) x (cells * size) -> per row, its `cells` size x size images.
    cells=None: 3 (input, translated, back: a CycleGAN's) or 2 (input, translated: a one-sided model's)."""
    h, w = grid.shape[:2]
    if cells is None:
        cells = 2 if w == 2 * size else 3
    if h % size or w != cells * size:
        raise P2DError(
            f"sample grid of {w}x{h} px is not {cells} cells of {size} px per row: was the run's "
            f"recipe size changed after training? Re-train, or remove the old samples/ files"
        )
    return [[grid[r * size:(r + 1) * size, c * size:(c + 1) * size] for c in range(cells)]
            for r in range(h // size)]


def choose_epochs(available: Sequence[int], saved: Sequence[int], wanted: Sequence[int] | None = None,
                  max_epochs: int = 12) -> list[int]:
    """Epochs to show: `wanted` (those that have samples), else the epochs with a saved checkpoint,
    else every sampled epoch; at most `max_epochs`, spread evenly and always keeping the last."""
    available = sorted(set(available))
    if wanted:
        return [e for e in sorted(set(wanted)) if e in available]
    pool = [e for e in sorted(set(saved)) if e in available] or available
    if len(pool) <= max_epochs:
        return pool
    picks = np.linspace(0, len(pool) - 1, max_epochs).round().astype(int)
    return [pool[i] for i in sorted(set(picks))]


def _gray_to_rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def compose_strip(input_cell: np.ndarray, columns: Sequence[tuple[str, np.ndarray, np.ndarray | None]],
                  input_label: str = "input", min_cell_px: int = MIN_CELL_PX) -> np.ndarray:
    """One test image across epochs as an RGB array: a label band on top, then the translations
    (top line) and reconstructions (bottom line); the input at the left. `columns` holds
    (label, translated, reconstructed) per epoch; reconstructed None (a one-sided model): no bottom line."""
    from PIL import Image, ImageDraw, ImageFont

    size = input_cell.shape[0]
    scale = max(1, math.ceil(min_cell_px / size))
    cell = size * scale
    gap = 2
    n = 1 + len(columns)
    lines = 1 if all(back is None for _, _, back in columns) else 2
    height = LABEL_PX + lines * cell + (lines - 1) * gap
    canvas = np.full((height, n * cell + (n - 1) * gap, 3), 255, np.uint8)

    def put(img: np.ndarray, row: int, col: int) -> None:
        big = np.kron(_gray_to_rgb(img), np.ones((scale, scale, 1), np.uint8))  # nearest, sharp
        y, x = LABEL_PX + row * (cell + gap), col * (cell + gap)
        canvas[y:y + cell, x:x + cell] = big

    put(input_cell, 0, 0)
    for i, (_, there, back) in enumerate(columns, start=1):
        put(there, 0, i)
        if back is not None:
            put(back, 1, i)
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: bitmap font only
        font = ImageFont.load_default()
    labels = [input_label] + [label for label, _, _ in columns]
    for i, label in enumerate(labels):
        draw.text((i * (cell + gap) + 3, 2), label, fill=(40, 40, 40), font=font)
    if lines == 2:
        draw.text((3, LABEL_PX + cell + gap + 3), "top: translated", fill=(90, 90, 90), font=font)
        draw.text((3, LABEL_PX + cell + gap + 19), "below: back", fill=(90, 90, 90), font=font)
    return np.asarray(pil)


# ============================================================================ reading a run


@dataclass
class RunInfo:
    """What the report needs from one run folder."""

    path: Path
    label: str
    recipe: dict
    flat: dict[str, object]
    info: dict
    losses: pd.DataFrame
    evaluate: pd.DataFrame | None
    samples: dict[int, Path]
    saved: list[int]
    photo_rows: int | None = None  # how many grid rows are photos (None: unknown)
    notes: list[str] = field(default_factory=list)


def _photo_rows(info: dict, recipe: dict) -> int | None:
    """Grid rows that are photos: the first `sample_rows` test photos (training photos when the
    manifest has no test photos), as the trainer picks them. None when the manifest is gone."""
    from p2d.manifest import manifest_images

    manifest = Path(info.get("manifest", ""))
    if not manifest.is_file():
        return None
    rows = int(recipe.get("data", {}).get("sample_rows", 4))
    n = len(manifest_images(manifest, "photo", "test")) or len(manifest_images(manifest, "photo", "train"))
    return min(rows, n)


def read_run(path: Path | str) -> RunInfo:
    """A run folder's recipe, run.json, losses, evaluate.csv, samples and saved epochs."""
    path = Path(path)
    recipe_file = path / "recipe.toml"
    if not recipe_file.is_file():
        raise P2DError(f"{path} is not a run folder (no recipe.toml): give a folder written by `p2d train`")
    recipe = tomllib.loads(recipe_file.read_text(encoding="utf-8"))
    info = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
    losses = pd.read_csv(path / "losses.csv") if (path / "losses.csv").is_file() else pd.DataFrame()
    evaluate = pd.read_csv(path / "evaluate.csv") if (path / "evaluate.csv").is_file() else None
    samples = list_samples(path)
    ckpts = list(list_checkpoints(path))
    name = recipe.get("meta", {}).get("name") or path.name
    run = RunInfo(path, name if name == path.name else f"{path.name} ({name})", recipe,
                  flatten_recipe(recipe), info, losses, evaluate, samples, ckpts)
    try:
        run.photo_rows = _photo_rows(info, recipe)
    except P2DError as exc:
        run.notes.append(f"manifest unreadable ({exc}): sample rows are not labelled photo/drawing")
    if not samples:
        run.notes.append("no sample grids yet (samples/epoch_*.png): train at least one epoch")
    return run


# ============================================================================ figures


def _panel_grid(n: int, cols: int = 3):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for ax in axes.flat[n:]:
        ax.axis("off")
    return plt, fig, list(axes.flat)


def plot_losses(runs: Sequence[RunInfo], out: Path) -> bool:
    """Every loss column of losses.csv per epoch, one panel per loss, one line per run."""
    names: list[str] = []
    for r in runs:
        names.extend(c for c in r.losses.columns if c not in LOSS_SKIP and c not in names)
    if not names:
        return False
    plt, fig, axes = _panel_grid(len(names))
    for ax, name in zip(axes, names):
        for i, r in enumerate(runs):
            if name in r.losses and r.losses[name].notna().any():
                ax.plot(r.losses["epoch"], r.losses[name], marker="o", ms=3, color=f"C{i}", label=r.label)
        _style(ax, name)
    _finish(plt, fig, axes, out)
    return True


def plot_evaluate(runs: Sequence[RunInfo], best: dict[str, int | None], out: Path) -> bool:
    """evaluate.csv curves per epoch (error bars: the 95% interval, or KID's std in older files); a
    star on each run's suggested best epoch."""
    have = [r for r in runs if r.evaluate is not None and len(r.evaluate)]
    if not have:
        return False
    plots = [(c, t) for c, t in EVALUATE_PLOTS
             if any(c in r.evaluate and r.evaluate[c].notna().any() for r in have)]
    plt, fig, axes = _panel_grid(len(plots))
    for ax, (col, title) in zip(axes, plots):
        for i, r in enumerate(runs):
            df = r.evaluate
            if df is None or col not in df:
                continue
            df = df.sort_values("epoch")
            if col + "_lo" in df and col + "_hi" in df:
                err = [(df[col] - df[col + "_lo"]).clip(lower=0), (df[col + "_hi"] - df[col]).clip(lower=0)]
            else:
                err = df.get(col + "_std")
            ax.errorbar(df["epoch"], df[col], yerr=err, marker="o", ms=3, capsize=2, color=f"C{i}",
                        label=r.label)
            b = best.get(r.label)
            if b is not None and b in set(df["epoch"]):
                ax.plot([b], [df.loc[df["epoch"] == b, col].iloc[0]], marker="*", ms=13, color=f"C{i}",
                        markeredgecolor="black", linestyle="none")
        _style(ax, title)
    _finish(plt, fig, axes, out)
    return True


def _style(ax, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("epoch", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def _finish(plt, fig, axes, out: Path) -> None:
    """Legend on the first panel, then save atomically as PNG and free the figure."""
    from p2d.images import atomic_path

    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


# ============================================================================ the page


CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr.diff td { background: #fff4cc; }
.strip { overflow-x: auto; margin: 0.3em 0 1em 0; }
.strip img { image-rendering: pixelated; max-width: none; display: block; }
.run { font-weight: 600; margin-top: 0.4em; }
.note { color: #8a5a00; }
img.plot { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _esc(value) -> str:
    return html.escape("" if value is None else str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence], row_classes: Sequence[str] | None = None) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def default_out(runs: Sequence[Path]) -> Path:
    """RUN/report.html for one run; report.html in the runs' common folder for several."""
    runs = [Path(r).resolve() for r in runs]
    if len(runs) == 1:
        return runs[0] / "report.html"
    return Path(os.path.commonpath([str(r.parent) for r in runs])) / "report.html"


@dataclass
class ReportResult:
    page: Path
    images: list[Path]
    epochs: dict[str, list[int]]  # run label -> epochs shown in the strips
    notes: list[str]

    def summary_rows(self) -> list[tuple[str, str]]:
        return [(label, ", ".join(map(str, e)) or "none") for label, e in self.epochs.items()]


@dataclass
class _Page:
    """Where the page and its PNGs go; the PNGs written so far."""

    path: Path
    assets: Path
    images: list[Path] = field(default_factory=list)

    def rel(self, p: Path) -> str:
        return Path(os.path.relpath(p, self.path.parent)).as_posix()

    def plot(self, name: str, draw: Callable[[Path], bool], alt: str) -> str | None:
        """The <img> of a figure that `draw(png)` wrote, or None when it had nothing to draw."""
        png = self.assets / name
        if not draw(png):
            return None
        self.images.append(png)
        return f'<img class="plot" src="{_esc(self.rel(png))}" alt="{alt}">'


def build_report(
    runs: Sequence[Path | str],
    out: Path | str | None = None,
    epochs: Sequence[int] | None = None,
    max_epochs: int = 12,
) -> ReportResult:
    """Write the HTML page and its PNGs; returns where they are."""
    from p2d.images import write_text_atomic

    if not runs:
        raise P2DError("give at least one run folder, e.g. `p2d report runs/exp4`")
    if max_epochs < 1:
        raise P2DError(f"max_epochs={max_epochs}: show at least 1 epoch")
    infos = [read_run(r) for r in runs]
    labels = [r.label for r in infos]
    for i, r in enumerate(infos):  # two runs of the same name: tell them apart by position
        if labels.count(r.label) > 1:
            r.label = f"{r.label} #{i + 1}"
    path = Path(out) if out else default_out([r.path for r in infos])
    if path.suffix.lower() not in (".html", ".htm"):
        raise P2DError(f"--out {path}: give a file name ending in .html")
    page = _Page(path, path.with_name(path.stem + "_files"))
    page.assets.mkdir(parents=True, exist_ok=True)
    notes = [f"{r.label}: {n}" for r in infos for n in r.notes]

    body = (_header_section(infos, notes) + _differences_section(infos) + _data_section(infos, page)
            + _losses_section(infos, page)
            + _evaluate_section(infos, page))
    samples_html, shown = _samples_section(infos, page, epochs, max_epochs)
    body += samples_html + _recipes_section(infos)
    # Strips an earlier report wrote here for runs or rows no longer shown would linger: remove
    # only files of our own naming pattern in our own folder.
    for stale in set(page.assets.glob("strip_run*_row*.png")) - set(page.images):
        stale.unlink()
    title = _esc("p2d report: " + ", ".join(r.label for r in infos))
    text = (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
    write_text_atomic(page.path, text)
    return ReportResult(page.path, page.images, shown, notes)


def _header_section(infos: Sequence[RunInfo], notes: list[str]) -> list[str]:
    """Title, and one line per run: folder, description, epochs done, device, saved epochs."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    run_rows = [
        (r.label, str(r.path), r.recipe.get("meta", {}).get("description", ""),
         int(r.losses["epoch"].max()) if len(r.losses) else 0,
         r.info.get("device_name", r.info.get("device", "")),
         ", ".join(map(str, r.saved)) or "none")
        for r in infos
    ]
    return ([f"<h1>p2d report: {_esc(', '.join(r.label for r in infos))}</h1>",
             f"<p>written {stamp} by <code>p2d report</code></p>",
             _table(["run", "folder", "description", "epochs done", "device", "saved epochs"], run_rows)]
            + [f'<p class="note">{_esc(note)}</p>' for note in notes])


def _differences_section(infos: Sequence[RunInfo]) -> list[str]:
    """The recipe keys that differ between runs (nothing for a single run)."""
    if len(infos) < 2:
        return []
    diffs = recipe_differences([r.flat for r in infos])
    if not diffs:
        return ["<h2>Recipe keys that differ</h2>", "<p>The recipes are identical.</p>"]
    return ["<h2>Recipe keys that differ</h2>",
            _table(["key"] + [r.label for r in infos], [[k] + v for k, v in diffs])]


def _data_section(infos: Sequence[RunInfo], page: _Page) -> list[str]:
    """Do the run's drawings and photos match (`p2d inspect` of its manifest): the feature table,
    what to do about the largest differences, the histograms and the least matched rows."""
    from p2d.inspection import inspect_manifest

    body = ["<h2>Drawings vs photos (p2d inspect)</h2>"]
    manifests = {}
    for r in infos:
        manifests.setdefault(str(r.info.get("manifest", "")), []).append(r.label)
    for k, (manifest, labels) in enumerate(manifests.items()):
        body.append(f"<p class=\"run\">{_esc(', '.join(labels))}: {_esc(manifest)}</p>")
        if not Path(manifest).is_file():
            body.append("<p>The manifest is gone: nothing to inspect.</p>")
            continue
        try:
            result = inspect_manifest(manifest, out=page.assets / f"inspect_{k + 1}", quiet=True)
        except P2DError as exc:
            body.append(f"<p class=\"note\">{_esc(exc)}</p>")
            continue
        body.append(_table(result.SUMMARY_COLUMNS, result.summary_rows()))
        body.append("<ul>" + "".join(f"<li>{_esc(line)}</li>" for line in result.notes()) + "</ul>")
        for png in result.files[1:]:
            page.images.append(png)
            body.append(f'<img class="plot" src="{_esc(page.rel(png))}" alt="{_esc(png.stem)}">')
    return body


def _losses_section(infos: Sequence[RunInfo], page: _Page) -> list[str]:
    img = page.plot("losses.png", lambda png: plot_losses(infos, png), "loss curves")
    return ["<h2>Losses per epoch</h2>", img or "<p>No losses.csv rows yet.</p>"]


def _evaluate_section(infos: Sequence[RunInfo], page: _Page) -> list[str]:
    """Measured curves, the suggested epoch of each evaluated run with its tie set and drift flags,
    and every epoch's metrics."""
    from p2d.evaluate import METRIC_LABELS, score_groups, suggest_best

    best: dict[str, int | None] = {}
    verdicts, why_rows, notes = [], [], []
    for r in infos:
        if r.evaluate is not None and len(r.evaluate):
            b, why = suggest_best(r.evaluate, groups=score_groups(str(r.flat.get("model.kind", "cyclegan"))))
            best[r.label] = b
            flagged = [f"{int(e)}: {f}" for e, f in zip(why["epoch"], why["flags"]) if f]
            verdicts.append((r.label, b if b is not None else "none passes",
                             ", ".join(map(str, why.attrs.get("tie_set", []))), "; ".join(flagged) or "none"))
            if "too_small" in why.attrs:
                notes.append(f"<p>{_esc(r.label)}: {_esc(why.attrs['too_small'])}.</p>")
            if "not_learned" in why.attrs:
                notes.append(f"<p class=\"note\"><b>{_esc(r.label)}: "
                             f"{_esc(why.attrs['not_learned'])}.</b></p>")
            rule = why.set_index("epoch")
            for _, row in r.evaluate.sort_values("epoch").iterrows():
                e = int(row["epoch"])
                why_rows.append([r.label, e] + [_fmt(row, c) for c in EVALUATE_TABLE]
                                + [rule.at[e, "why"], rule.at[e, "flags"] or ""])
    body = []
    if best:
        body.append("<h2>Evaluation (p2d evaluate)</h2>")
        img = page.plot("evaluate.png", lambda png: plot_evaluate(infos, best, png), "evaluation curves")
        body += [img] if img else []
        body.append("<p>Suggested epoch (star): among the epochs whose faces, landmarks and identity stay "
                    "within a tolerance of the best epoch's (beyond the noise), the lowest score: a third "
                    "'looks like a drawing' (realism in dlib and tone/texture features, brightness and "
                    "contrast gaps), a third 'keeps the photo' (the cross cycle, for cut and fastcut the "
                    "redraw error; identity distance), a third 'agrees with the run', each measure scaled "
                    "to its range over the epochs. Epochs whose score is within the noise of the best (95% "
                    "bootstrap intervals over the test images) are tied; among them, epochs with a drift "
                    "flag are passed over and the best one with a tied neighbour (not an isolated lucky "
                    "epoch) is suggested (<code>p2d evaluate --help</code>).</p>")
        body.append(_table(["run", "suggested epoch", "tied within the noise", "drift flags"], verdicts))
        body += notes
        columns = ["run", "epoch"] + [METRIC_LABELS[c] for c in EVALUATE_TABLE] + ["rule", "drift flags"]
        body.append(_table(columns,
                           why_rows))
    missing_eval = [r.label for r in infos if r.label not in best]
    if missing_eval:
        body.append(f"<p>No evaluate.csv for {_esc(', '.join(missing_eval))}: run "
                    f"<code>p2d evaluate RUN</code> to add measured curves and a suggested best epoch.</p>")
    return body


def _samples_section(infos: Sequence[RunInfo], page: _Page, epochs: Sequence[int] | None,
                     max_epochs: int) -> tuple[list[str], dict[str, list[int]]]:
    """Per test image, one strip per run across the chosen epochs; and the epochs each run shows."""
    from p2d.images import read_image, write_image

    strips: dict[tuple[str, int], tuple[Path, str]] = {}
    shown: dict[str, list[int]] = {}
    n_rows = 0
    for ri, r in enumerate(infos):
        chosen = choose_epochs(list(r.samples), r.saved, epochs, max_epochs)
        shown[r.label] = chosen
        if not chosen:
            continue
        size = int(r.recipe.get("data", {}).get("size", 128))
        grids = {e: split_grid(read_image(r.samples[e], mode="RGB" if _is_rgb(r.samples[e]) else "L"), size,
                               cells=None) for e in chosen}
        rows = len(grids[chosen[0]])
        n_rows = max(n_rows, rows)
        for row in range(rows):
            if any(len(g) <= row for g in grids.values()):
                continue  # the grid shape changed mid-run (sample_rows edited): skip the row
            name = _row_name(row, r.photo_rows, rows)
            strip = compose_strip(
                grids[chosen[0]][row][0],
                [(f"epoch {e}", grids[e][row][1], grids[e][row][2] if len(grids[e][row]) > 2 else None)
                 for e in chosen],
                input_label=name,
            )
            png = page.assets / f"strip_run{ri + 1}_row{row + 1}.png"
            write_image(png, strip)
            page.images.append(png)
            strips[(r.label, row)] = (png, name)
    body = ["<h2>Test images across epochs</h2>"]
    for row in range(n_rows):
        names = {strips[(r.label, row)][1] for r in infos if (r.label, row) in strips}
        body.append(f"<h3>{_esc(' / '.join(sorted(names)))}</h3>")
        for r in infos:
            if (r.label, row) not in strips:
                continue
            png, _ = strips[(r.label, row)]
            body.append(f'<div class="run">{_esc(r.label)}</div>')
            body.append(f'<div class="strip"><img src="{_esc(page.rel(png))}" '
                        f'alt="{_esc(r.label)} row {row + 1}"></div>')
    return body, shown


def _recipes_section(infos: Sequence[RunInfo]) -> list[str]:
    """Every recipe key of every run side by side, differing keys marked."""
    keys: list[str] = []
    for r in infos:
        keys.extend(k for k in r.flat if k not in keys)
    differing = ({k for k, _ in recipe_differences([r.flat for r in infos], ignore_prefixes=())}
                 if len(infos) > 1 else set())
    return ["<h2>Recipes</h2>", _table(["key"] + [r.label for r in infos],
                                       [[k] + [r.flat.get(k) for r in infos] for k in keys],
                                       ["diff" if k in differing else "" for k in keys])]


def _fmt(row: pd.Series, col: str) -> str:
    """A metric cell: 3 significant digits, KID with its std, '–' where not measured."""
    from p2d.evaluate import metric_cell

    cell = metric_cell(row, col)
    return cell if isinstance(cell, str) else f"{cell:.3g}"


def _is_rgb(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as im:
        return im.mode not in ("L", "LA", "I", "I;16", "1")


def _row_name(row: int, photo_rows: int | None, rows: int) -> str:
    if photo_rows is None:
        return f"test image {row + 1}"
    if row < photo_rows:
        return f"photo {row + 1}"
    return f"drawing {row - photo_rows + 1}"
