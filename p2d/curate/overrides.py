"""What a user decides over curation, and the library side of the `p2d review` page.

Two files live beside a curate command's `manifest.csv`:
- `overrides.csv` (`path,decision,note`): per photo, `keep` or `drop` whatever the filters say.
  `path` is the manifest's `path` value. Every later `p2d curate photos` / `p2d curate celeba` into
  the folder honours it (p2d.curate.pipeline), and so does `p2d manifest build` (p2d.curate.build),
  so a decision saved after curating counts without curating again. A `drop` makes a kept row
  keep=false, reason `override`; a `keep` makes a row a filter dropped keep=true. The manifest then
  carries `override` (the decision, empty where none) and `filter_reason` (what the filters said).
- `not_duplicates.csv` (`a,b`): two images the user says are not duplicates (p2d.curate.dedup
  reads it, and never joins such a pair).

The page's functions below are pure library: no HTTP. Each write checks the caller's `version`
(`overrides_version`) first and raises VersionConflict when the folder changed since the caller
read it, so a second tab reloads instead of overwriting.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from p2d.errors import P2DError, VersionConflict
from p2d.images import write_bytes_atomic, write_text_atomic

__all__ = [
    "OVERRIDES", "CURATE_SETTINGS", "Override", "apply_overrides", "dropped_path", "duplicate_groups",
    "keep_refusal", "match_overrides", "overridden", "overrides_version", "photo_review_items",
    "read_curate_settings", "read_overrides", "save_overrides", "split_duplicate", "write_overrides",
]

OVERRIDES = "overrides.csv"
OVERRIDES_PREV = "overrides.prev.csv"
CURATE_SETTINGS = "curate_settings.json"  # written by each curate run (p2d.curate.pipeline)
MANIFEST = "manifest.csv"
DECISIONS = ("keep", "drop")
OVERRIDE_REASON = "override"
DROPPED_DIR = "dropped"  # beside images/: the frames of framed photos that were dropped
# one review write at a time in this process: the version check and the write must not interleave
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Override:
    """One line of overrides.csv."""

    decision: str  # "keep" or "drop"
    note: str = ""
    line: int = 0  # in the file, for messages (0: not read from a file)


# ------------------------------------------------------------------ decisions (pure)


def keep_refusal(reason: str, crop: str | None = None) -> str:
    """Why a row dropped for `reason` cannot be kept ("" when it can). `crop` is the run's
    ("frame" needs landmarks; None: not known, judged by whether the curated file exists)."""
    kind = reason.split(":")[0]
    if reason.startswith("dup_of:"):
        return f"it is a duplicate of {reason[len('dup_of:'):]}: split it from its group instead"
    if kind == "unreadable":
        return f"its source image cannot be read ({reason})"
    if kind == "too_small":
        return f"its source image is too small to curate ({reason})"
    if kind == "error":
        return f"its analysis failed ({reason}): fix or replace the file and curate again"
    if reason == "no_face" and crop == "frame":
        return "no face was found in it, so there are no landmarks to frame it by"
    if reason == "listed_twice":
        return "the same image is listed twice: the other row stands for it"
    return ""


def overridden(reason: str, decision: str, crop: str | None = None) -> str:
    """The drop reason after the user's `decision` ("", "keep" or "drop"): a drop drops a kept row
    (reason `override`; a dropped row keeps its own reason); a keep clears any reason that
    `keep_refusal` allows."""
    if decision == "drop":
        return reason or OVERRIDE_REASON
    if decision == "keep" and reason and not keep_refusal(reason, crop):
        return ""
    return reason


def dropped_path(path: str) -> str:
    """Where a curate run puts the frame of a dropped photo whose manifest path is `path`:
    images/a/b.png -> dropped/a/b.png."""
    parts = PurePosixPath(str(path)).parts
    rest = parts[1:] if parts and parts[0] == "images" else parts
    return PurePosixPath(DROPPED_DIR, *rest).as_posix()


def override_key(path: str) -> str:
    """How an override finds its row: the path without its extension, so a decision outlives a
    re-run with another --format (images/a.png and images/a.jpg are the same photo)."""
    return str(PurePosixPath(str(path).strip()).with_suffix(""))


def match_overrides(paths: list[str], overrides: dict[str, Override]
                    ) -> tuple[list[Override | None], list[str]]:
    """The override of each manifest path (exact path first, else the same path without extension)
    and the override paths that match no row."""
    exact = {p: i for i, p in enumerate(paths)}
    found: list[Override | None] = [None] * len(paths)
    loose: dict[str, str] = {}
    for path in overrides:
        if path in exact:
            found[exact[path]] = overrides[path]
        else:
            loose.setdefault(override_key(path), path)
    used = set()
    if loose:
        for i, p in enumerate(paths):
            hit = loose.get(override_key(p)) if found[i] is None else None
            if hit is not None:
                found[i] = overrides[hit]
                used.add(hit)
    return found, [p for p in loose.values() if p not in used]


# ------------------------------------------------------------------ the files


def _folder(folder: Path | str) -> Path:
    folder = Path(folder)
    return folder.parent if folder.name == MANIFEST or folder.suffix == ".csv" else folder


def read_overrides(folder: Path | str) -> dict[str, Override]:
    """path -> Override from FOLDER/overrides.csv (empty without the file). A bad line is a
    P2DError naming the file and the line."""
    path = _folder(folder) / OVERRIDES
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise P2DError(f"{path} is not UTF-8 text: save it as UTF-8 CSV (path,decision,note)") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    if "path" not in header or "decision" not in header:
        raise P2DError(f"{path} line 1: the header must be path,decision,note "
                       f"(found {','.join(header) or 'nothing'})")
    reader.fieldnames = header
    out: dict[str, Override] = {}
    lines: dict[str, int] = {}
    for rec in reader:
        n = reader.line_num
        if None in rec:
            raise P2DError(f"{path} line {n}: more fields than the header: "
                           "put a note holding a comma in quotes")
        row_path = (rec.get("path") or "").strip()
        decision = (rec.get("decision") or "").strip().lower()
        if not row_path and not decision:
            continue
        if not row_path:
            raise P2DError(f"{path} line {n}: the path is empty: "
                           "give the manifest's path value, e.g. images/x.png")
        if decision not in DECISIONS:
            raise P2DError(f"{path} line {n}: decision {rec.get('decision')!r} for {row_path} "
                           "is not keep or drop")
        if row_path in out:
            raise P2DError(f"{path} line {n}: {row_path} is already decided on line {lines[row_path]}: "
                           "keep one of the two lines")
        out[row_path] = Override(decision, (rec.get("note") or "").strip(), n)
        lines[row_path] = n
    return out


def write_overrides(folder: Path | str, overrides: dict[str, Override]) -> None:
    """FOLDER/overrides.csv, sorted by path, written atomically; the file it replaces is kept as
    overrides.prev.csv (one step of undo by hand)."""
    folder = _folder(folder)
    path = folder / OVERRIDES
    if path.is_file():
        write_bytes_atomic(folder / OVERRIDES_PREV, path.read_bytes())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "decision", "note"])
    for p in sorted(overrides):
        writer.writerow([p, overrides[p].decision, overrides[p].note])
    write_text_atomic(path, buf.getvalue())


def read_curate_settings(folder: Path | str) -> dict | None:
    """What the folder's last curate run used (FOLDER/curate_settings.json), or None."""
    path = _folder(folder) / CURATE_SETTINGS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise P2DError(f"{path} is damaged: curate into the folder again to rewrite it") from None


def overrides_version(folder: Path | str) -> str:
    """The folder's review state as an opaque string ("" when it has none of the files): SHA-256
    over overrides.csv and not_duplicates.csv, and the manifest's size and modification time (a
    curate or dedup run rewrites it, and a page showing the old rows must reload too)."""
    from p2d.curate.dedup import NOT_DUPLICATES

    folder = _folder(folder)
    h = hashlib.sha256()
    found = False
    for name in (OVERRIDES, NOT_DUPLICATES):
        if (folder / name).is_file():
            data = (folder / name).read_bytes()
            h.update(f"{name}:{len(data)}:".encode() + data)
            found = True
    try:
        st = (folder / MANIFEST).stat()
        h.update(f"{MANIFEST}:{st.st_size}:{st.st_mtime_ns}".encode())
        found = True
    except OSError:
        pass
    return h.hexdigest() if found else ""


def _check_version(folder: Path, version: str | None) -> None:
    if version is not None and version != overrides_version(folder):
        raise VersionConflict(f"{folder} changed since this page read it (another tab or a curate run "
                              "saved first): reload and decide again")


# ------------------------------------------------------------------ a manifest with overrides applied


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _base_reason(reason: str) -> str:
    """What the filters said, read from a manifest written before any override: dedup's marks and
    an override's drop are not the filters'."""
    return "" if reason.startswith("dup_of:") or reason == OVERRIDE_REASON else reason


def _fill_image_columns(df, i: int, image: Path) -> str:
    """Size, hashes and thumbnail of a row made kept, from its curated file ("" or why not)."""
    from p2d.curate.hashing import output_hashes
    from p2d.images import try_read_image

    pixels, why = try_read_image(image)
    if pixels is None:
        return f"its curated image {image} cannot be read ({why})"
    phash, mirror, thumb = output_hashes(pixels)
    idx = df.index[i]
    for col, value in (("width", pixels.shape[1]), ("height", pixels.shape[0]), ("phash", phash),
                       ("phash_mirror", mirror), ("thumb", thumb)):
        if col not in df.columns:
            df[col] = ""
        if col in ("width", "height") or not _text(df.at[idx, col]):
            df.at[idx, col] = value
    return ""


def apply_overrides(df, manifest: Path | str, overrides: dict[str, Override],
                    crop: str | None = None) -> tuple[object, list[str]]:
    """The manifest frame with `overrides` applied (the same decisions `p2d curate` makes, for a
    manifest already written), and notes on what could not be honoured. Adds `override` and
    `filter_reason`; a row whose override was removed since gets its filters' verdict back."""
    from p2d.manifest import resolve_path

    manifest = Path(manifest)
    df = df.copy()
    reasons = [_text(r) for r in df["reason"]]
    if "filter_reason" not in df.columns:
        df["filter_reason"] = [_base_reason(r) for r in reasons]
    filter_reasons = [_text(r) for r in df["filter_reason"]]
    found, unmatched = match_overrides([_text(p) for p in df["path"]], overrides)
    df["override"] = [o.decision if o else "" for o in found]
    df["filter_reason"] = filter_reasons
    keep = df["keep"].astype(bool).tolist()
    notes = []
    ov_file = manifest.parent / OVERRIDES
    if unmatched:
        notes.append(f"{ov_file}: {len(unmatched)} path(s) not in {manifest}, ignored: "
                     f"{', '.join(unmatched[:5])}")
    for i, (o, reason, was) in enumerate(zip(found, reasons, filter_reasons)):
        decision = o.decision if o else ""
        if not decision and reason != OVERRIDE_REASON and not (keep[i] and was):
            continue  # untouched by any override, now or before
        base = was if reason == OVERRIDE_REASON or (keep[i] and was) else reason
        new = overridden(base, decision, crop)
        if decision == "keep" and new:
            notes.append(f"{ov_file} line {o.line}: keep refused for {df['path'].iat[i]}: "
                         f"{keep_refusal(base, crop)}")
            continue
        if decision == "drop":
            if not keep[i] and not reason.startswith("dup_of:"):
                continue  # already dropped by a filter: it keeps its own reason
            new = OVERRIDE_REASON  # a duplicate too: dedup resets its own marks and would revive it
        if not new and keep[i]:
            continue  # kept already (a keep saved before): its columns are filled
        if not new:
            path = _text(df["path"].iat[i])
            image = resolve_path(manifest, path)
            if not image.is_file() and resolve_path(manifest, dropped_path(path)).is_file():
                # a keep saved by hand after curating: the frame is still where curate set it aside
                image = resolve_path(manifest, dropped_path(path))
                df.loc[df.index[i], "path"] = dropped_path(path)
            why = (_fill_image_columns(df, i, image) if image.is_file()
                   else f"its curated image {image} is missing")
            if why:
                notes.append(f"{ov_file}: {df['path'].iat[i]} cannot be kept: {why}; curate into "
                             f"{manifest.parent} again (it honours {OVERRIDES})")
                new = base or "unreadable:missing"
        df.loc[df.index[i], ["keep", "reason"]] = [not new, new]
    return df, notes


# ------------------------------------------------------------------ the review page's calls


def _manifest_of(folder: Path | str) -> Path:
    from p2d.manifest import missing_manifest

    path = Path(folder)
    path = path if path.suffix == ".csv" else path / MANIFEST
    if not path.is_file():
        raise missing_manifest(path)
    return path


def _limits(settings: dict | None) -> dict | None:
    if not settings or "thresholds" not in settings:
        return None
    return {**settings["thresholds"], "max_padded_fraction": settings.get("max_padded_fraction")}


def photo_review_items(folder: Path | str) -> list[dict]:
    """One dict per manifest row of a photo folder (kept rows too), for the review page.

    Keys: path (the manifest's), image (absolute path of the curated image, in images/ or for a
    dropped framed photo in dropped/; None where there is no file), source_image (absolute path
    of the source photo, None where unknown), keep, reason,
    filter_reason (the filters' verdict, before any override), override ("keep", "drop" or ""),
    note (the override's), can_keep ("" or why a keep would be refused), and, for a row a filter
    threshold dropped, column (the manifest column measured), value, threshold_name, threshold (the
    run's, from curate_settings.json; None if the run did not record it) and rule (a sentence);
    those five are None otherwise."""
    from p2d.curate.filters import reason_measure
    from p2d.manifest import read_manifest, resolve_path

    manifest = _manifest_of(folder)
    df = read_manifest(manifest)
    settings = read_curate_settings(manifest.parent)
    limits = _limits(settings)
    smile_source = (settings or {}).get("smile_source", "landmarks")
    crop = (settings or {}).get("crop")
    found, _ = match_overrides([_text(p) for p in df["path"]], read_overrides(manifest.parent))
    has_filter = "filter_reason" in df.columns
    items = []
    for row, o in zip(df.to_dict("records"), found):
        path, reason = _text(row["path"]), _text(row["reason"])
        image = resolve_path(manifest, path)
        if not image.is_file():
            image = resolve_path(manifest, dropped_path(path))
        source = _text(row.get("source_path"))
        why = _text(row.get("filter_reason")) if has_filter else _base_reason(reason)
        measure = reason_measure(why, row, limits, smile_source) or {}
        refusal = keep_refusal(why if reason == OVERRIDE_REASON or not reason else reason, crop)
        items.append({
            "path": path,
            "image": str(image.absolute()) if image.is_file() else None,
            "source_image": str(resolve_path(manifest, source).absolute()) if source else None,
            "keep": bool(row["keep"]),
            "reason": reason,
            "filter_reason": why,
            "override": o.decision if o else "",
            "note": o.note if o else "",
            "can_keep": refusal,
            **{k: measure.get(k) for k in ("column", "value", "threshold_name", "threshold", "rule")},
        })
    return items


def _keep_plan(manifest: Path, row: dict, settings: dict | None) -> tuple[Path, Path | None, str]:
    """How a row about to be kept gets its curated file: (the file, where it comes from, how:
    "" it is there, "move" its frame from dropped/, "cut" CelebA's square from the source now).
    A framed photo without its frame is refused: framing needs the landmarks a curate run has."""
    from p2d.manifest import resolve_path

    path = _text(row["path"])
    image = resolve_path(manifest, path)
    if image.is_file():
        return image, None, ""
    aside = resolve_path(manifest, dropped_path(path))
    if aside.is_file():
        return image, aside, "move"
    source = _text(row.get("source_path"))
    if settings and settings.get("crop") == "center" and source:
        return image, resolve_path(manifest, source), "cut"
    raise P2DError(f"cannot keep {path}: its curated image {image} is missing: curate into "
                   f"{manifest.parent} again, then keep it")


def _place(image: Path, source: Path | None, how: str, settings: dict | None) -> None:
    if how == "move":
        image.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, image)
    elif how == "cut":
        from p2d.curate.pipeline import write_center_crop

        write_center_crop(source, image, int((settings or {}).get("size", 128)))


def _set_aside(manifest: Path, path: str, crop: str | None) -> None:
    """The file of a row the user dropped leaves images/ (which holds exactly the kept set, as a
    curate run leaves it): a frame goes to dropped/, CelebA's square is removed (cut again on undo)."""
    from p2d.manifest import resolve_path

    image = resolve_path(manifest, path)
    if not image.is_file() or crop not in ("frame", "center"):
        return  # a folder curated before curate_settings.json: the next curate run tidies it
    if crop == "center":
        image.unlink()
        return
    aside = resolve_path(manifest, dropped_path(path))
    aside.parent.mkdir(parents=True, exist_ok=True)
    os.replace(image, aside)


def save_overrides(folder: Path | str, changes: dict[str, str | None], version: str | None = None) -> str:
    """Apply `changes` (manifest path -> "keep", "drop", or None to remove its override) to
    FOLDER/overrides.csv and rewrite FOLDER/manifest.csv with every override applied; returns the
    new `overrides_version`. A keep that cannot be honoured (no face to frame, unreadable, a
    duplicate) is refused with a P2DError saying why, and nothing is written. Files move as a
    curate run would leave them: a kept row's in images/, a dropped frame in dropped/."""
    from p2d.manifest import read_manifest, write_manifest

    manifest = _manifest_of(folder)
    folder = manifest.parent
    with _LOCK:
        _check_version(folder, version)
        df = read_manifest(manifest)
        settings = read_curate_settings(folder)
        crop = (settings or {}).get("crop")
        paths = [_text(p) for p in df["path"]]
        row_of = {p: i for i, p in enumerate(paths)}
        current = read_overrides(folder)
        found, _ = match_overrides(paths, current)
        merged = dict(current)
        records = df.to_dict("records")
        plans = []
        for path, decision in changes.items():
            if path not in row_of:
                raise P2DError(f"{path} is not a row of {manifest}: reload the page")
            if decision is not None and decision not in DECISIONS:
                raise P2DError(f"decision {decision!r} for {path} is not keep, drop or None")
            row, old = records[row_of[path]], found[row_of[path]]
            for key in [k for k, v in merged.items() if v is old]:  # the line that matched this row
                del merged[key]
            if decision is not None:
                merged[path] = Override(decision, old.note if old else "")
            reason = _text(row["reason"])
            was = _text(row.get("filter_reason")) if "filter_reason" in row else _base_reason(reason)
            if decision == "keep" and not row["keep"]:
                why = keep_refusal(was if reason == OVERRIDE_REASON else reason, crop)
                if why:
                    raise P2DError(f"cannot keep {path}: {why}")
                plans.append(_keep_plan(manifest, row, settings))
            elif decision is None and reason == OVERRIDE_REASON and not was:
                plans.append(_keep_plan(manifest, row, settings))  # its drop undone: kept again
        for plan in plans:  # every refusal came first: nothing moves for a refused change
            _place(*plan, settings)
        write_overrides(folder, merged)
        new, _ = apply_overrides(df, manifest, merged, crop)
        write_manifest(new, manifest)
        for path, before, after in zip(paths, df["keep"].astype(bool), new["keep"].astype(bool)):
            if before and not after:
                _set_aside(manifest, path, crop)
        return overrides_version(folder)


def _manifest_paths(manifests) -> list[Path]:
    if isinstance(manifests, (str, Path)):
        manifests = [manifests]
    return [_manifest_of(m) for m in manifests]


def _abs(path: Path | str) -> str:
    return os.path.abspath(path)


def _group_rows(manifests: list[Path]) -> list[tuple[dict, list[dict]]]:
    """(keeper, members) of every group that dedup marked in `manifests` (rows `dup_of:<keeper>`):
    each an entry dict with path, manifest, image, domain, source, thumb, keep."""
    from p2d.manifest import read_manifest, resolve_path

    entries, groups = {}, {}
    for m in manifests:
        df = read_manifest(m)
        for row in df.to_dict("records"):
            image = _abs(resolve_path(m, _text(row["path"])))
            entry = {"path": _text(row["path"]), "manifest": str(m.absolute()), "image": image,
                     "domain": _text(row["domain"]), "source": _text(row["source"]),
                     "thumb": _text(row.get("thumb")), "keep": bool(row["keep"])}
            entries.setdefault(image, entry)
            reason = _text(row["reason"])
            if reason.startswith("dup_of:"):
                keeper = _abs(resolve_path(m, reason[len("dup_of:"):]))
                groups.setdefault(keeper, []).append(entry)
    out = []
    for keeper, members in groups.items():
        # a keeper in a manifest not given is named as its members' manifest names it
        label = Path(os.path.relpath(keeper, Path(members[0]["manifest"]).parent)).as_posix()
        known = entries.get(keeper) or {"path": label, "manifest": None, "image": keeper,
                                        "domain": "", "source": "", "thumb": "", "keep": True}
        out.append((known, members))
    return out


def _thumbs(entries: list[dict]):
    """The stored 16x16 thumbnails of `entries`, read from the image where a row has none."""
    import numpy as np

    from p2d.curate.hashing import thumb_b64, thumbs_from_b64
    from p2d.images import try_read_image

    thumbs, ok = thumbs_from_b64([e["thumb"] for e in entries])
    for k in np.flatnonzero(~ok):
        pixels, _ = try_read_image(entries[k]["image"])
        if pixels is not None:
            thumbs[k] = thumbs_from_b64([thumb_b64(pixels)])[0][0]
    return thumbs


def duplicate_groups(manifests) -> list[dict]:
    """The duplicate groups dedup marked in a folder (or manifest), or in a list of them.

    Each group: {"keeper": entry, "members": [entry + "similarity", ...]}, where an entry is
    {"path" (the manifest's value, which split_duplicate takes), "manifest" (absolute; None when the
    keeper's manifest was not given), "image" (absolute), "domain", "source"} and "similarity" is
    the member's thumbnail similarity to the keeper (p2d.curate.dedup.thumb_similarity, what dedup
    confirmed the pair with: 1.0 the same picture). Groups in order of their first member's row."""
    import numpy as np

    from p2d.curate.dedup import thumb_similarity

    shown = ("path", "manifest", "image", "domain", "source")
    out = []
    for keeper, members in _group_rows(_manifest_paths(manifests)):
        thumbs = _thumbs([keeper] + members)
        sims = thumb_similarity(thumbs[1:], np.repeat(thumbs[:1], len(members), axis=0))
        out.append({"keeper": {k: keeper[k] for k in shown},
                    "members": [{**{k: m[k] for k in shown}, "similarity": round(float(s), 4)}
                                for m, s in zip(members, sims)]})
    return out


def _owning_manifest(image: str, levels: int = 4) -> Path | None:
    """The nearest manifest.csv above `image` that lists it (dedup's groups may span folders)."""
    from p2d.manifest import read_manifest, resolve_path

    folder = Path(image).parent
    for _ in range(levels):
        candidate = folder / MANIFEST
        if candidate.is_file():
            paths = read_manifest(candidate)["path"].astype(str)
            if any(_abs(resolve_path(candidate, p)) == image for p in paths):
                return candidate
        folder = folder.parent
    return None


def split_duplicate(folder: Path | str, member_path: str, version: str | None = None, *,
                    max_hamming: int | None = None, min_similarity: float | None = None) -> str:
    """Record that `member_path` (a row of FOLDER/manifest.csv, a member or the keeper of a
    duplicate group) is not a duplicate of the rest of its group: one line per other member in
    FOLDER/not_duplicates.csv. Then dedup runs again over this manifest and the keeper's (dedup's
    defaults unless given), so the member is kept again unless another image joins it. Returns the
    new `overrides_version`."""
    from p2d.curate.dedup import (DEFAULT_MAX_HAMMING, DEFAULT_MIN_SIMILARITY, add_not_duplicates,
                                  dedup_manifests)
    from p2d.manifest import resolve_path

    manifest = _manifest_of(folder)
    folder = manifest.parent
    with _LOCK:
        _check_version(folder, version)
        image = _abs(resolve_path(manifest, member_path))
        involved = [manifest]
        groups = _group_rows(involved)
        group = next(((k, ms) for k, ms in groups if image in [k["image"]] + [m["image"] for m in ms]), None)
        if group is not None and group[0]["manifest"] is None:
            owner = _owning_manifest(group[0]["image"])
            if owner is not None and owner.resolve() != manifest.resolve():
                involved.append(owner)
                groups = _group_rows(involved)
                group = next((k, ms) for k, ms in groups if image in [k["image"]] + [m["image"] for m in ms])
        if group is None:
            raise P2DError(f"{member_path} is in no duplicate group of {manifest}: nothing to split")
        keeper, members = group
        others = [e["image"] for e in [keeper] + members if e["image"] != image]
        add_not_duplicates(folder, [(image, other) for other in others])
        source = _owning_manifest(image)
        if source is not None and source.parent.resolve() != folder.resolve():
            # an experiment manifest: the next `manifest build` reads the pairs beside its sources
            add_not_duplicates(source.parent, [(image, other) for other in others])
        dedup_manifests(involved, max_hamming=DEFAULT_MAX_HAMMING if max_hamming is None else max_hamming,
                        min_similarity=DEFAULT_MIN_SIMILARITY if min_similarity is None else min_similarity)
        return overrides_version(folder)
