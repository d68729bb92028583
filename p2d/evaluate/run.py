"""`p2d evaluate` over a run: each saved epoch measured (outputs kept for the cross cycle and
agreement), evaluate.csv written, the rule applied, and the result as tables."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from p2d.errors import P2DError
from p2d.evaluate.measure import EvalSettings, FaceProbe, measure, Reference
from p2d.evaluate.metrics import (
    CROSS_REFERENCES, METRIC_LABELS, agreement_errors, cross_cycle_errors, mean_ci, Translator,
)
from p2d.evaluate.rule import ONE_SIDED_SCORE_GROUPS, SCORE_GROUPS, BestEpochRule, suggest_best
from p2d.faces import FaceModels


EVALUATE_CSV = "evaluate.csv"


def load_test_image(path: Path, channels: int, size: int) -> np.ndarray:
    """A test image as the sample grid shows it: the run's channels, shorter side scaled to `size`,
    centre crop (width-scaled figures are taller than wide); uint8 HxW or HxWx3."""
    from p2d.train.data import load_image, window

    img = window(load_image(path, channels, size, "random"), size, 0.5, 0.5).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img[:, :, 0] if channels == 1 else img)


def torch_translator(generator, channels: int, device: str = "cpu", batch_size: int = 16) -> Translator:
    """A batch function uint8 images -> uint8 images around a generator (eval mode, no grad)."""
    import torch

    from p2d.train.data import image_to_tensor, tensor_to_image

    def run(images: Sequence[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = torch.cat([image_to_tensor(im, channels) for im in images[start:start + batch_size]])
                result = generator(batch.to(device)).float().cpu()
                out.extend(tensor_to_image(result[i:i + 1]) for i in range(len(result)))
        return out

    return run


OUTPUTS_DIR = "evaluate_outputs"  # per epoch, its drawings of the test photos (for agreement_drawing)


def _outputs_path(run: Path, epoch: int) -> Path:
    return run / OUTPUTS_DIR / f"epoch_{epoch:04d}.npz"


def _read_outputs(run: Path, epoch: int, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """An epoch's kept drawings of the test photos and photos of the test drawings, or None where
    missing, unreadable, kept before the photos were (no `photos`), or made from another
    checkpoint, settings or test split (`key`)."""
    path = _outputs_path(run, epoch)
    try:
        with np.load(path) as z:
            return (z["drawings"], z["photos"]) if str(z["key"]) == key else None
    except (OSError, KeyError, ValueError):
        return None


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """A compressed .npz written atomically (write_bytes_atomic makes its folder if missing)."""
    import io

    from p2d.images import write_bytes_atomic

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def _keep_outputs(run: Path, epoch: int, key: str, drawings: list[np.ndarray],
                  photos: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """Write an epoch's drawings of the test photos and photos of the test drawings (atomically,
    one file) and return them as two arrays; a one-sided model's photos are an empty array."""
    kept = (np.stack(drawings).astype(np.uint8),
            np.stack(photos).astype(np.uint8) if photos is not None else np.zeros((0,), np.uint8))
    _write_npz(_outputs_path(run, epoch), drawings=kept[0], photos=kept[1], key=np.array(key))
    return kept


CROSS_CACHE = "cross_cycle.npz"  # in OUTPUTS_DIR: the cross cycle's per-image errors per pair of epochs


def _read_cross_pairs(run: Path) -> dict[tuple[str, str], np.ndarray]:
    """Cached cross-cycle errors, (epoch key, reference epoch key) -> per-image errors; {} where
    missing or unreadable (they are recomputed)."""
    try:
        with np.load(run / OUTPUTS_DIR / CROSS_CACHE) as z:
            return {tuple(str(name).split(">", 1)): row for name, row in zip(z["names"], z["errors"])}
    except (OSError, KeyError, ValueError):
        return {}


def _keep_cross_pairs(run: Path, pairs: dict[tuple[str, str], np.ndarray]) -> None:
    if not pairs:
        return
    n = Counter(len(v) for v in pairs.values()).most_common(1)[0][0]
    pairs = {k: v for k, v in pairs.items() if len(v) == n}
    _write_npz(run / OUTPUTS_DIR / CROSS_CACHE, names=np.array([">".join(k) for k in pairs]),
               errors=np.stack(list(pairs.values())))


def _set_mean_ci(rows: dict[int, dict], col: str, values: dict[int, np.ndarray],
                 settings: EvalSettings) -> None:
    """`col` (+ _lo, _hi) in every row: the mean of its epoch's per-image values and their
    bootstrap interval; NaN for an epoch without values."""
    for epoch, row in rows.items():
        v = values.get(epoch)
        row[col], row[col + "_lo"], row[col + "_hi"] = (
            mean_ci(v, n_boot=settings.bootstrap, seed=settings.seed) if v is not None else (np.nan,) * 3)


def add_cross_cycle(rows: dict[int, dict], fake_photos: dict[int, np.ndarray], drawings: list[np.ndarray],
                    photo2drawing: Callable[[int], Translator], keys: dict[int, str], run: Path,
                    settings: EvalSettings, k: int = CROSS_REFERENCES) -> None:
    """Set `cross_cycle_drawing` (+ _lo, _hi) in every row (`cross_cycle_errors`; NaN with fewer
    than 2 epochs). Pairs already computed for the same two checkpoints, settings and test split
    are read from RUN/evaluate_outputs/cross_cycle.npz, and the file keeps those of this call.
    Only epochs whose kept photos are of the test drawings as read now take part (a drawing that
    became unreadable since leaves the epochs translated before out, NaN, rather than stopping)."""
    fake_photos = {e: o for e, o in fake_photos.items() if len(o) == len(drawings)}
    if fake_photos:
        shape = Counter(o.shape for o in fake_photos.values()).most_common(1)[0][0]
        fake_photos = {e: o for e, o in fake_photos.items() if o.shape == shape}
    cached = _read_cross_pairs(run)
    pairs = {(e, r): cached[(keys[e], keys[r])] for e in fake_photos for r in fake_photos
             if (keys[e], keys[r]) in cached}
    errors = cross_cycle_errors(photo2drawing, fake_photos, drawings, k, pairs)
    _keep_cross_pairs(run, {(keys[e], keys[r]): v for (e, r), v in pairs.items()})
    _set_mean_ci(rows, "cross_cycle_drawing", errors, settings)


def add_agreement(rows: dict[int, dict], outputs: dict[int, np.ndarray], settings: EvalSettings) -> None:
    """Set `agreement_drawing` (+ _lo, _hi) in every row from the epochs' kept outputs (NaN for a
    row without them, and for all with fewer than 3 epochs; see `agreement_errors`). Only outputs
    of the most common shape are compared: a test image that became unreadable between two calls
    leaves the epochs drawn before it out, rather than stopping the evaluation."""
    if outputs:
        shape = Counter(o.shape for o in outputs.values()).most_common(1)[0][0]
        outputs = {e: o for e, o in outputs.items() if o.shape == shape}
    _set_mean_ci(rows, "agreement_drawing", agreement_errors(outputs), settings)


def _run_manifest(run: Path) -> Path:
    import json

    info = run / "run.json"
    if not info.is_file():
        raise P2DError(f"{run} is not a run folder (no run.json): give the folder `p2d train` wrote")
    manifest = Path(json.loads(info.read_text())["manifest"])
    if not manifest.is_file():
        raise P2DError(
            f"the run's manifest {manifest} (named in {info}) is gone: restore it, or edit the "
            f"\"manifest\" entry of run.json to where it is now"
        )
    return manifest


def parse_epochs(text: str | None) -> list[int] | None:
    """'5,10,20-30' -> [5, 10, 20, ..., 30]; None or '' -> None (all saved epochs)."""
    if not text:
        return None
    epochs: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                epochs.update(range(a, b + 1))
            elif part:
                epochs.add(int(part))
        except ValueError:
            raise P2DError(f"--epochs {text!r}: give epoch numbers like 5,10,15 or a range 20-30") from None
    return sorted(epochs)


def _load_all(paths: Sequence[Path], channels: int, size: int, skipped: list[str]) -> list[np.ndarray]:
    """Load test images; a bad file is recorded in `skipped` with its reason, and the rest go on."""
    out = []
    for path in paths:
        try:
            out.append(load_test_image(path, channels, size))
        except P2DError as exc:
            skipped.append(f"test image {path}: {exc}")
    if not out:
        raise P2DError(f"none of the {len(paths)} test images could be read (first: {skipped[-1]}): "
                       f"fix the files or rebuild the manifest")
    return out


# The terminal summary: four narrow tables rather than one wide one.
SUMMARY_GROUPS = {
    "structure and identity (photo -> drawing)": (
        "face_found_drawing", "landmark_nme", "smile_drift", "identity_drawing", "identity_cycle"),
    "cycle error, agreement with the other epochs": (
        "cycle_l1_photo", "cycle_l1_drawing", "cross_cycle_drawing", "redraw_drawing", "agreement_drawing"),
    "realism in dlib's face features (KID photo: shown, not scored)": ("kid_drawing", "kid_photo"),
    "tone and texture (gaps: translated photos minus real drawings; KID tone photo not scored)": (
        "kid_tone_drawing", "kid_tone_photo", "brightness_gap_drawing", "contrast_gap_drawing"),
}


def metric_cell(row, col: str) -> str | float:
    """One metric of an evaluate.csv row for a table: "–" where not measurable (no face found, too
    few images for KID), "value ± half its 95% interval" where measured with one, KID of older
    files as "mean ± std", otherwise the number."""
    value = row.get(col)
    if value is None or pd.isna(value):
        return "–"
    lo, hi = row.get(col + "_lo"), row.get(col + "_hi")
    if lo is not None and hi is not None and not pd.isna(lo) and not pd.isna(hi):
        return f"{value:.3g} ± {(hi - lo) / 2:.2g}"
    std = row.get(col + "_std")
    if std is not None and not pd.isna(std):
        return f"{value:.3g} ± {std:.2g}"
    return float(value)


@dataclass
class EvaluateResult:
    table: pd.DataFrame  # one row per evaluated epoch, sorted by epoch
    best_epoch: int | None
    why: pd.DataFrame  # epoch / eligible / score / score_noise / flags / why (attrs: tie_set ...)
    csv_path: Path
    skipped: list[str] = field(default_factory=list)  # "epoch 7: reason" for epochs not evaluated

    def summary_tables(self) -> list[tuple[str, list[str], list[list[object]]]]:
        """(title, columns, rows) per SUMMARY_GROUPS table, then the best-epoch rule's verdicts."""
        out = []
        for title, columns in SUMMARY_GROUPS.items():
            rows = [[int(r["epoch"])] + [metric_cell(r, c) for c in columns]
                    for _, r in self.table.iterrows()]
            out.append((title, ["epoch"] + [METRIC_LABELS[c] for c in columns], rows))
        verdicts = [(int(r["epoch"]), r["why"], r["flags"] or "–") for _, r in self.why.iterrows()]
        out.append(("best-epoch rule (score: lower is better, ± its noise)",
                    ["epoch", "verdict", "drift flags"], verdicts))
        return out

    @property
    def tie_set(self) -> list[int]:
        """Epochs tied with the best-scoring eligible one (within the noise), the suggestion among them."""
        return list(self.why.attrs.get("tie_set", []))

    @property
    def drift_flags(self) -> dict[int, str]:
        """Epoch -> its drift flags, for the flagged epochs."""
        return {int(e): f for e, f in zip(self.why["epoch"], self.why["flags"]) if f}

    def notes(self) -> list[str]:
        """Epochs not evaluated, gates skipped, the verdict, its tie set and the drift (rich markup)."""
        lines = [f"[yellow]skipped[/] {note}" for note in self.skipped]
        lines += [f"[yellow]rule[/]: {gate} was measured in no epoch (no faces found by HOG); gate skipped"
                  for gate in self.why.attrs.get("skipped_gates", [])]
        if self.drift_flags:
            lines.append(f"[yellow]drift flags[/] on epochs {', '.join(map(str, self.drift_flags))} "
                         "(passed over when tied)")
        if "too_small" in self.why.attrs:
            lines.append(f"[yellow]noise[/]: {self.why.attrs['too_small']}")
        if "not_learned" in self.why.attrs:
            lines.append(f"[bold red]warning[/]: {self.why.attrs['not_learned']}")
        if self.best_epoch is None:
            lines.append("[bold yellow]no epoch passes the structure/identity gates[/]: "
                         "loosen the tolerances to compare")
        else:
            ties = [e for e in self.tie_set if e != self.best_epoch]
            tied = f"; tied within the noise: {', '.join(map(str, ties))} (look at them too)" if ties else ""
            lines.append(f"[bold green]suggested best epoch: {self.best_epoch}[/]{tied}. "
                         f"Wrote {self.csv_path}")
        return lines


def _earlier_rows(csv_path: Path, settings: EvalSettings, wanted: Sequence[int],
                  skipped: list[str]) -> dict[int, dict]:
    """evaluate.csv's rows by epoch, less those measured with other settings (another
    --max-images, KID subsets ...) that are not asked for again: they are not comparable with this
    call's, and evaluate.csv (which `p2d report` ranks) holds one measurement (said in `skipped`)."""
    if not csv_path.is_file():
        return {}
    cached = pd.read_csv(csv_path, dtype={"checkpoint_sha256": str, "settings": str})
    rows = {int(r["epoch"]): r.to_dict() for _, r in cached.iterrows()}
    stale = sorted(e for e, r in rows.items() if r.get("settings") != settings.key() and e not in wanted)
    for e in stale:
        del rows[e]
    if stale:
        skipped.append(f"epochs {', '.join(map(str, stale))}: measured with other settings earlier; "
                       "dropped from evaluate.csv (evaluate them again to compare)")
    return rows


def _test_split(manifest: Path, max_images: int) -> tuple[list[Path], list[Path], str]:
    """The manifest's test photos and drawings (kept rows, at most `max_images` each) and a short
    hash of the two lists, which keys the outputs kept per epoch."""
    from p2d.manifest import manifest_images

    photo_paths = manifest_images(manifest, "photo", "test")[:max_images]
    drawing_paths = manifest_images(manifest, "drawing", "test")[:max_images]
    if not photo_paths or not drawing_paths:
        raise P2DError(
            f"{manifest} has {len(photo_paths)} test photos and {len(drawing_paths)} test drawings "
            f"(keep=true): evaluation needs both; rebuild it with a test split"
        )
    split = hashlib.sha256("\n".join(map(str, photo_paths + ["|"] + drawing_paths)).encode()).hexdigest()[:16]
    return photo_paths, drawing_paths, split


@dataclass
class _RunGenerators:
    """The generators of a run's epochs, and the test drawings at the run's channels and size (read
    once, when first needed: after the first checkpoint has said what those are)."""

    run: Path
    device: str
    drawing_paths: list[Path]
    skipped: list[str]
    channels: int | None = None
    size: int | None = None
    one_sided: bool = False  # cut, fastcut: no drawing -> photo generator
    drawings: list[np.ndarray] = field(default_factory=list)

    def configure(self, epoch: int) -> None:
        from p2d.train.translate import load_generators

        if self.channels is None:
            cfg, _, back = load_generators(self.run, epoch, device=self.device)
            self.channels, self.size, self.one_sided = cfg.data.channels, cfg.data.size, back is None

    def test_drawings(self) -> list[np.ndarray]:
        if not self.drawings:
            self.drawings.extend(_load_all(self.drawing_paths, self.channels, self.size, self.skipped))
        return self.drawings

    def __call__(self, epoch: int) -> tuple[Translator, Translator | None]:
        """(photo -> drawing, drawing -> photo or None for a one-sided model) of one epoch's checkpoint."""
        from p2d.train.translate import load_generators

        _, g_p2d, g_d2p = load_generators(self.run, epoch, device=self.device)
        back = torch_translator(g_d2p, self.channels, self.device) if g_d2p is not None else None
        return torch_translator(g_p2d, self.channels, self.device), back


def _checkpoints(run: Path, epochs: Sequence[int] | None) -> tuple[dict[int, Path], list[int], list[str]]:
    """(every saved checkpoint by epoch, the epochs to evaluate, "epoch N: why" for those asked for
    without a checkpoint)."""
    from p2d.runs import list_checkpoints

    saved = list_checkpoints(run)
    if not saved:
        raise P2DError(f"{run} has no saved checkpoints yet: train longer "
                       "(checkpoints are kept every save_every epochs)")
    wanted = sorted(saved) if epochs is None else list(epochs)
    skipped = [f"epoch {e}: no checkpoint saved" for e in wanted if e not in saved]
    wanted = [e for e in wanted if e in saved]
    if not wanted:
        raise P2DError(f"none of the epochs asked for has a checkpoint; saved epochs: {sorted(saved)}")
    return saved, wanted, skipped


def _write_rows(csv_path: Path, rows: dict[int, dict]) -> None:
    from p2d.images import write_text_atomic

    write_text_atomic(csv_path, pd.DataFrame([rows[e] for e in sorted(rows)]).to_csv(index=False))


def evaluate_run(
    run: Path | str,
    epochs: Sequence[int] | None = None,
    device: str | None = None,
    settings: EvalSettings | None = None,
    rule: BestEpochRule | None = None,
    models_dir: Path | str | None = None,
    recompute: bool = False,
    cross_epochs: int = CROSS_REFERENCES,
) -> EvaluateResult:
    """Measure each saved checkpoint of `run` on its manifest's test rows; write RUN/evaluate.csv
    after every epoch (an interrupted evaluation continues where it stopped: rows whose checkpoint
    and settings are unchanged are reused unless `recompute`). `cross_epochs`: how many other
    epochs' photos each epoch's cross cycle redraws (`cross_cycle_errors`; each costs one
    translation of the test drawings per epoch)."""
    from p2d.images import file_sha256
    from p2d.runs import pick_device
    from p2d.ui import progress

    run = Path(run)
    if cross_epochs < 1:
        raise P2DError(f"cross_epochs={cross_epochs}: give at least 1 other epoch for the cross cycle "
                       "(8 by default)")
    device = str(pick_device(device))  # None/"auto": the GPU when torch sees one
    settings = settings or EvalSettings()
    manifest = _run_manifest(run)
    saved, wanted, skipped = _checkpoints(run, epochs)

    csv_path = run / EVALUATE_CSV
    rows = _earlier_rows(csv_path, settings, wanted, skipped) if not recompute else {}
    shas = {e: file_sha256(saved[e])[:16] for e in wanted}
    todo = [e for e in wanted if not (
        e in rows and rows[e].get("checkpoint_sha256") == shas[e]
        and rows[e].get("settings") == settings.key()
    )]
    photo_paths, drawing_paths, split = _test_split(manifest, settings.max_images)
    # An epoch's kept outputs count for agreement_drawing and cross_cycle_drawing while its
    # checkpoint, the settings and the test images are those it translated.
    keys = {e: f"{r.get('checkpoint_sha256')}|{r.get('settings')}|{split}" for e, r in rows.items()}
    keys.update({e: f"{shas[e]}|{settings.key()}|{split}" for e in wanted})
    kept = {e: o for e in rows if e not in todo and (o := _read_outputs(run, e, keys[e])) is not None}
    outputs = {e: o[0] for e, o in kept.items()}  # epoch -> its drawings of the test photos
    fake_photos = {e: o[1] for e, o in kept.items()}  # epoch -> its photos of the test drawings
    redraw = [e for e in wanted if e not in todo and e not in outputs]  # measured before outputs were kept
    generators = _RunGenerators(run, device, drawing_paths, skipped)

    with progress() as bar:
        if todo or redraw:
            generators.configure((todo or redraw)[0])
            task = bar.add_task("test images", total=1,
                                status=f"{len(photo_paths)} photos, {len(drawing_paths)} drawings")
            photos = _load_all(photo_paths, generators.channels, generators.size, skipped)
            generators.test_drawings()
            bar.update(task, advance=1)
        if redraw:
            task = bar.add_task("outputs kept", total=len(redraw), status="")
            for epoch in redraw:
                draw, to_photo = generators(epoch)
                outputs[epoch], fake_photos[epoch] = _keep_outputs(
                    run, epoch, keys[epoch], draw(photos), to_photo and to_photo(generators.test_drawings()))
                bar.update(task, advance=1)
        if todo:
            probe = FaceProbe(FaceModels(models_dir), settings.min_detect_px)
            ref = Reference.build(photos, generators.test_drawings(), probe)
            task = bar.add_task("epochs", total=len(todo), status="")
        for epoch in todo:
            bar.update(task, status=f"epoch {epoch}")
            start = time.perf_counter()
            draw, to_photo = generators(epoch)
            outputs[epoch], fake_photos[epoch] = _keep_outputs(
                run, epoch, keys[epoch], draw(ref.photos), to_photo and to_photo(ref.drawings))
            metrics = measure(ref, draw, to_photo, probe, settings, list(outputs[epoch]),
                              list(fake_photos[epoch]))
            rows[epoch] = {"epoch": epoch, **metrics, "seconds": round(time.perf_counter() - start, 2),
                           "checkpoint_sha256": shas[epoch], "settings": settings.key()}
            _write_rows(csv_path, rows)
            bar.update(task, advance=1)
        # every row and output cached: the cross cycle still reads the test drawings
        generators.configure(wanted[0])
        task = bar.add_task("cross cycle", total=None, status=f"{len(fake_photos)} epochs")
        with_checkpoint = {e: o for e, o in fake_photos.items() if e in saved}  # G of each is needed
        add_cross_cycle(rows, with_checkpoint, generators.test_drawings(), lambda e: generators(e)[0], keys,
                        run, settings, cross_epochs)
        bar.update(task, total=1, completed=1)

    add_agreement(rows, outputs, settings)  # over every epoch in evaluate.csv with its drawings kept
    _write_rows(csv_path, rows)
    table = pd.DataFrame([rows[e] for e in wanted]).sort_values("epoch").reset_index(drop=True)
    # One-sided runs have no cross cycle (no drawing -> photo generator): their rule scores the redraw
    best, why = suggest_best(table, rule, ONE_SIDED_SCORE_GROUPS if generators.one_sided else SCORE_GROUPS)
    return EvaluateResult(table, best, why, csv_path, skipped)
