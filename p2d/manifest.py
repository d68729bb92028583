"""The manifest: the CSV contract between curation and training. Read, write atomically, validate.

One row per image. Paths are relative to the manifest's own folder unless absolute. Curation
commands add their own columns; readers ignore columns they do not know.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from p2d.errors import ManifestError
from p2d.images import file_sha256, write_bytes_atomic

REQUIRED_COLUMNS = ("path", "domain", "source", "split", "crop", "width", "height", "phash", "keep", "reason")
DOMAINS = ("drawing", "photo")
SPLITS = ("train", "test")
CROPS = ("center", "random")
_TEXT_COLUMNS = ("path", "domain", "source", "split", "crop", "phash", "reason")
# optional text columns that could otherwise parse as numbers (a mirror hash of digits only)
_OPTIONAL_TEXT_COLUMNS = ("phash_mirror", "thumb")
_PHASH = re.compile(r"^[0-9a-f]{16}$")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _parse_bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def kept_mask(df: pd.DataFrame) -> pd.Series:
    """True for the rows whose `keep` reads as true (bool, or text true/1/yes in any case)."""
    return df["keep"].map(lambda v: _parse_bool(v) is True).astype(bool)


def manifest_images(manifest_path: Path | str, domain: str, split: str) -> list[Path]:
    """Absolute paths of the kept rows of one domain and split, in manifest order."""
    df = read_manifest(manifest_path)
    rows = df[kept_mask(df) & (df["domain"] == domain) & (df["split"] == split)]
    return [resolve_path(manifest_path, p) for p in rows["path"]]


def new_rows(rows: list[dict]) -> pd.DataFrame:
    """A manifest frame from row dicts, required columns first, missing ones filled empty."""
    df = pd.DataFrame(rows)
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            df[col] = "" if col in _TEXT_COLUMNS else pd.NA
    extra = [c for c in df.columns if c not in REQUIRED_COLUMNS]
    return df[list(REQUIRED_COLUMNS) + extra]


def missing_manifest(path: Path) -> ManifestError:
    """The error for a manifest path that is not a file: a folder given in its place (of images, or
    of a curate command's output) gets a pointer to what to pass instead."""
    if path.is_dir():
        inside = path / "manifest.csv"
        hint = (f"give {inside}, the manifest in that folder" if inside.is_file()
                else "manifests come from a curate command (`p2d crop-drawings`, `p2d curate`, `p2d scale`) "
                     "or `p2d manifest build`")
        return ManifestError(f"{path} is a folder, not a manifest CSV: {hint}")
    return ManifestError(
        f"manifest {path} not found: build one with a curate command or `p2d manifest build`")


def read_manifest(path: Path | str) -> pd.DataFrame:
    """Read a manifest CSV. Text columns stay text (a phash like 00ff... must not become a number);
    `keep` becomes bool where it parses (validate() reports rows where it does not)."""
    path = Path(path)
    if not path.is_file():
        raise missing_manifest(path)
    try:
        # Only empty cells are missing values: a source named "NA" or "null" stays text.
        df = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS + _OPTIONAL_TEXT_COLUMNS},
                         keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest {path} is not a readable CSV ({exc}): rebuild it") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks the columns {', '.join(missing)}: it was not written by p2d; "
            f"rebuild it with a curate command or `p2d manifest build`"
        )
    for col in _TEXT_COLUMNS:
        df[col] = df[col].fillna("")
    parsed = df["keep"].map(_parse_bool)
    if parsed.notna().all():
        df["keep"] = parsed.astype(bool)
    return df


def to_csv_text(df: pd.DataFrame) -> str:
    out = df.copy()
    if "keep" in out.columns:
        out["keep"] = out["keep"].map(lambda v: {True: "true", False: "false"}.get(_parse_bool(v), v))
    buf = io.StringIO()
    out.to_csv(buf, index=False, lineterminator="\n", float_format="%.6g")
    return buf.getvalue()


def write_manifest(df: pd.DataFrame, path: Path | str) -> Path:
    """Write atomically (temporary file, then rename), `keep` as true/false."""
    path = Path(path)
    write_bytes_atomic(path, to_csv_text(df).encode("utf-8"))
    return path


def manifest_hash(path: Path | str) -> str:
    """SHA-256 of the manifest file's bytes: saved in checkpoints to tie a model to its data."""
    return file_sha256(path)


def resolve_path(manifest_path: Path | str, path: str) -> Path:
    """An image path from a manifest row, made absolute against the manifest's folder."""
    p = Path(path)
    return p if p.is_absolute() else (Path(manifest_path).parent / p)


def relative_path(manifest_path: Path | str, image_path: Path | str) -> str:
    """The path to store in a manifest at `manifest_path` for `image_path` (POSIX separators)."""
    import os

    rel = os.path.relpath(Path(image_path).resolve(), Path(manifest_path).resolve().parent)
    return Path(rel).as_posix()


@dataclass
class RowProblem:
    row: int  # 0-based data row; CSV line is row + 2
    column: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row + 2} ({self.column}): {self.problem}"


def validate(df: pd.DataFrame, manifest_path: Path | str | None = None,
             check_files: bool = True) -> list[RowProblem]:
    """Every problem in the manifest, row by row. File existence is checked for kept rows when
    `manifest_path` is given (paths are relative to it)."""
    problems: list[RowProblem] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        return [RowProblem(-1, c, "required column missing") for c in missing]
    for i, row in enumerate(df.itertuples(index=False)):
        r = row._asdict()
        keep = _parse_bool(r["keep"])
        if not str(r["path"]).strip():
            problems.append(RowProblem(i, "path", "empty"))
        if r["domain"] not in DOMAINS:
            problems.append(RowProblem(i, "domain", f"{r['domain']!r} is not one of {', '.join(DOMAINS)}"))
        if not str(r["source"]).strip():
            problems.append(RowProblem(i, "source", "empty"))
        if r["split"] not in SPLITS:
            problems.append(RowProblem(i, "split", f"{r['split']!r} is not one of {', '.join(SPLITS)}"))
        if keep is None:
            problems.append(RowProblem(i, "keep", f"{r['keep']!r} is not true or false"))
        reason = str(r["reason"]).strip()
        if keep is True and reason:
            problems.append(RowProblem(i, "reason", f"kept row has a drop reason {reason!r}"))
        if keep is False and not reason:
            problems.append(RowProblem(i, "reason", "dropped row needs a reason"))
        if keep is True:
            # Kept rows feed training: they need a usable crop mode, size and hash.
            if r["crop"] not in CROPS:
                problems.append(RowProblem(i, "crop", f"{r['crop']!r} is not one of {', '.join(CROPS)}"))
            for col in ("width", "height"):
                try:
                    ok = int(float(r[col])) > 0
                except (TypeError, ValueError):
                    ok = False
                if not ok:
                    problems.append(RowProblem(i, col, f"{r[col]!r} is not a positive integer"))
            if not _PHASH.match(str(r["phash"])):
                problems.append(RowProblem(i, "phash", f"{r['phash']!r} is not 16 lowercase hex digits"))
            if check_files and manifest_path is not None and str(r["path"]).strip():
                if not resolve_path(manifest_path, str(r["path"])).is_file():
                    problems.append(RowProblem(i, "path", f"file {r['path']} does not exist"))
    return problems


def summarize(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Counts for a summary table: rows by domain, split and keep, and drops by reason kind."""
    keep = df["keep"].map(_parse_bool)
    reasons = df.loc[keep == False, "reason"].astype(str).str.split(":").str[0]  # noqa: E712
    return {
        "domain": df["domain"].value_counts().to_dict(),
        "split": df["split"].value_counts().to_dict(),
        "keep": {"kept": int((keep == True).sum()), "dropped": int((keep == False).sum())},  # noqa: E712
        "reason": reasons.value_counts().to_dict(),
    }


def check_manifest(path: Path | str) -> tuple[pd.DataFrame, list[RowProblem]]:
    """Read and validate a manifest file (for `p2d manifest check`)."""
    df = read_manifest(path)
    return df, validate(df, path)
