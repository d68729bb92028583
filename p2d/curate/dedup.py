"""`p2d dedup`: near-duplicate images across manifests: phash candidates, confirmed by gray thumbnails.

Search: two images are candidates when the Hamming distance between their 64-bit phashes, or
between one's phash and the other's mirror-image phash, is at most `max_hamming` (default 8).
The phash alone is not proof: aligned faces look alike at 32x32, so their phashes cluster, and
at CelebA's size thousands of distinct pairs fall within 8 bits. Confirmation: every candidate
pair is kept only if the 16x16 gray thumbnails (manifest column `thumb`, stored at curation time)
correlate >= `min_similarity` (default 0.94) at their best registration: the mirror and crops of
up to 4% a side of either image are tried. Measured in `benchmarks/dedup.py` on 100 distinct LFW
faces (128 px): distinct pairs at most 0.91; resized, JPEG q40 and mirrored copies 0.999+, copies
cropped 2-3% 0.957+. So `--max-hamming` widens the search, never the verdict.

Groups are connected components over confirmed pairs only (never chained through a refused pair);
a member that does not confirm against its group's keeper is regrouped among the other such
members. Keep rule: in each group the largest source image (pixels), then the first row.

A user who knows better lists pairs in `not_duplicates.csv` beside a manifest (columns `a,b`,
image paths relative to that file's folder, like the manifest's own, or absolute): such a pair
never confirms, so it never joins directly nor as member and keeper (`p2d review` writes it when a
member is split off its group, listing it against every other member). Pairs are matched by the
images' absolute paths, which are the same whichever manifest (a curate folder's, or the one
`p2d manifest build` writes elsewhere) names the file; a phash would change with --size.

Search is multi-index hashing (Norouzi et al.): the 64 bits are cut into 3 chunks; by the
pigeonhole principle two hashes within d bits agree within d // 3 bits on some chunk, so each
query probes only the buckets of chunk values within that radius, then checks the full distance
vectorised.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from p2d.curate.hashing import THUMB_PX
from p2d.errors import P2DError

if TYPE_CHECKING:
    import scipy.sparse

DEFAULT_MAX_HAMMING = 8
NOT_DUPLICATES = "not_duplicates.csv"
DEFAULT_MIN_SIMILARITY = 0.94  # thumbnail correlation that confirms a candidate pair
MAX_CROP_FRACTION = 0.04  # largest crop per side the confirmation registers
_CHUNKS = ((0, 22), (22, 21), (43, 21))  # (first bit, width): 64 bits in 3 chunks


def hex_to_uint64(hashes) -> np.ndarray:
    """16-hex-digit strings to a uint64 array."""
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (numpy >= 2 has it built in; older numpy counts byte by byte)."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _BYTE_BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


def _masks(width: int, radius: int) -> np.ndarray:
    """Every `width`-bit mask with at most `radius` bits set."""
    out = [0]
    for k in range(1, radius + 1):
        out += [sum(1 << b for b in bits) for bits in itertools.combinations(range(width), k)]
    return np.array(out, dtype=np.int64)


def _balanced_chunks(x: np.ndarray) -> list[np.ndarray]:
    """The 64 bit positions cut into chunks of the widths in _CHUNKS with about equal entropy.
    Face hashes have nearly constant bits; in one chunk they would crowd its buckets, and the
    pigeonhole argument holds for any partition of the bits."""
    ones = np.array(
        [np.count_nonzero((x >> np.uint64(b)) & np.uint64(1)) for b in range(64)]) / max(len(x), 1)
    p = np.clip(ones, 1e-9, 1 - 1e-9)
    entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    widths = [w for _, w in _CHUNKS]
    chunks, total = [[] for _ in widths], [0.0] * len(widths)
    for b in np.argsort(-entropy, kind="stable"):
        k = min((k for k in range(len(widths)) if len(chunks[k]) < widths[k]), key=lambda k: total[k])
        chunks[k].append(int(b))
        total[k] += entropy[b]
    return [np.array(sorted(c)) for c in chunks]


def _chunk_key(x: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The bits at positions `bits` of each uint64, packed into an int32 key."""
    key = np.zeros(len(x), dtype=np.int32)
    for k, b in enumerate(bits):
        key |= ((x >> np.uint64(b)) & np.uint64(1)).astype(np.int32) << np.int32(k)
    return key


def near_pairs(hashes: np.ndarray, mirrors: np.ndarray | None = None, max_hamming: int = DEFAULT_MAX_HAMMING
               ) -> np.ndarray:
    """(P, 2) array of index pairs i < j whose hashes (or i's hash and j's mirror hash) differ in
    at most `max_hamming` bits. `hashes`, `mirrors`: uint64 arrays of equal length."""
    if not 0 <= max_hamming <= 20:
        raise P2DError(
            f"--max-hamming {max_hamming} is out of range: use 0..20 bits (default {DEFAULT_MAX_HAMMING})")
    q = np.asarray(hashes, dtype=np.uint64)
    n = len(q)
    db = q if mirrors is None else np.concatenate([q, np.asarray(mirrors, dtype=np.uint64)])
    owner = np.arange(len(db)) % n
    radius = max_hamming // len(_CHUNKS)
    found = []
    for bits in _balanced_chunks(db):
        width = len(bits)
        # int32 keys and counts: half the memory traffic of the gathers, which dominate the time
        db_key, q_key = _chunk_key(db, bits), _chunk_key(q, bits)
        # queries in key order: q_key ^ m keeps the high bits, so the gathers below stay cache-local
        by_key = np.argsort(q_key, kind="stable")
        q_key = q_key[by_key]
        order = np.argsort(db_key, kind="stable").astype(np.int32)
        counts = np.bincount(db_key, minlength=1 << width).astype(np.int32)
        starts = (np.cumsum(counts, dtype=np.int64) - counts).astype(np.int32)
        for m in _masks(width, radius).astype(np.int32):
            probe = q_key ^ m
            cnt = counts[probe]
            hit = np.flatnonzero(cnt)
            if hit.size == 0:
                continue
            c = cnt[hit]
            qi = np.repeat(by_key[hit], c)
            offsets = np.arange(qi.size) - np.repeat(np.cumsum(c) - c, c)
            di = order[np.repeat(starts[probe[hit]], c) + offsets]
            close = popcount(q[qi] ^ db[di]) <= max_hamming
            a, b = qi[close], owner[di[close]]
            keep = a != b
            # one int64 per pair (i * n + j, i < j): a 1-D unique is far faster than unique(axis=0)
            found.append(np.minimum(a[keep], b[keep]) * n + np.maximum(a[keep], b[keep]))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    code = np.unique(np.concatenate(found))
    return np.stack([code // n, code % n], axis=1)


def group_labels(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label per item (items in no pair get their own label)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def choose_keepers(labels: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Index of the kept item for each item's group: most pixels, then the lowest index."""
    order = np.lexsort((np.arange(len(labels)), -np.asarray(pixels, dtype=np.float64), labels))
    first = np.ones(len(order), dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    keeper_of_label = {int(labels[i]): int(i) for i in order[first]}
    return np.array([keeper_of_label[int(lab)] for lab in labels], dtype=np.int64)


# ----------------------------------------------------------------------------- confirmation


@functools.lru_cache(maxsize=4)
def _registrations(side: int = THUMB_PX, max_crop: float = MAX_CROP_FRACTION) -> "scipy.sparse.csr_matrix":
    """Bilinear resampling of a side x side thumbnail onto its inner part: scale s from 1 - 2 * max_crop
    to 1 in 5 steps, 3 x 3 offsets that keep the sample inside. Stacked: (T * side^2, side^2)."""
    from scipy.sparse import coo_matrix

    c = (side - 1) / 2
    yy, xx = np.mgrid[0:side, 0:side]
    rows, cols, vals, t = [], [], [], 0
    for s in np.linspace(1 - 2 * max_crop, 1.0, 5):
        reach = (1 - s) * c
        for dy, dx in itertools.product(*[np.linspace(-reach, reach, 3) if reach > 0 else [0.0]] * 2):
            sy, sx = (c + s * (yy - c) + dy).ravel(), (c + s * (xx - c) + dx).ravel()
            y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
            fy, fx = sy - y0, sx - x0
            out = t * side * side + np.arange(side * side)
            for oy, wy in ((0, 1 - fy), (1, fy)):
                for ox, wx in ((0, 1 - fx), (1, fx)):
                    rows.append(out)
                    cols.append(np.clip(y0 + oy, 0, side - 1) * side + np.clip(x0 + ox, 0, side - 1))
                    vals.append(wy * wx)
            t += 1
    n = side * side
    return coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(t * n, n)).tocsr()


def _unit(v: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-length along the last axis (a flat thumbnail stays all zeros: similarity 0)."""
    v = v - v.mean(axis=-1, keepdims=True)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def _mirror(v: np.ndarray) -> np.ndarray:
    return v.reshape(*v.shape[:-1], THUMB_PX, THUMB_PX)[..., ::-1].reshape(v.shape)


def thumb_similarity(a: np.ndarray, b: np.ndarray, enough: float | None = None,
                     chunk: int = 2048) -> np.ndarray:
    """Best normalised correlation between gray thumbnails a[k] and b[k] (each (P, 256)), over
    the mirror and small crops of either side (either may be the cropped copy). 1.0: the same
    picture; distinct aligned faces stay below ~0.91 (benchmarks/dedup.py). Pairs that reach
    `enough` unregistered skip the crop search (their value is then a lower bound >= enough)."""
    a = np.asarray(a, dtype=np.float32).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float32).reshape(len(b), -1)
    ua, ub = _unit(a), _unit(b)
    out = np.maximum((ua * ub).sum(axis=1), (ua * _mirror(ub)).sum(axis=1))
    todo = np.flatnonzero(out < enough) if enough is not None else np.arange(len(a))
    reg = _registrations().astype(np.float32)
    n = THUMB_PX * THUMB_PX
    for start in range(0, len(todo), chunk):
        rows = todo[start:start + chunk]
        best = out[rows]
        for src, ref in ((a[rows], ub[rows]), (b[rows], ua[rows])):
            # src resampled by every registration, laid out (T, n, p) as the sparse product gives it
            moved = (reg @ np.ascontiguousarray(src.T)).reshape(-1, n, len(rows))
            total = moved.sum(axis=1)
            norm = np.maximum(
                np.sqrt(np.maximum(np.einsum("tnp,tnp->tp", moved, moved) - total * total / n, 0)), 1e-3)
            for target in (ref, _mirror(ref)):  # zero-mean targets: the dot needs no centring of `moved`
                best = np.maximum(best, (np.einsum("tnp,pn->tp", moved, target) / norm).max(axis=0))
        out[rows] = best
    return out


def confirmed_keepers(labels: np.ndarray, pixels: np.ndarray, pairs: np.ndarray, confirm) -> np.ndarray:
    """Keeper per item such that every item confirms against its keeper (`confirm(i, j)`: bool
    array for index arrays). `pairs`: the confirmed edges that made `labels`. A member that fails
    against its group's keeper is regrouped with the other failures over the same edges."""
    keepers = choose_keepers(labels, pixels)
    todo = np.flatnonzero(keepers != np.arange(len(labels)))
    while todo.size:
        bad = todo[~confirm(todo, keepers[todo])]
        if bad.size == 0:
            break
        # the failures form their own groups over the confirmed edges among them
        inside = np.zeros(len(labels), dtype=bool)
        inside[bad] = True
        sub = pairs[inside[pairs[:, 0]] & inside[pairs[:, 1]]]
        local = np.full(len(labels), -1)
        local[bad] = np.arange(len(bad))
        sub_labels = group_labels(len(bad), local[sub].reshape(-1, 2))
        keepers[bad] = bad[choose_keepers(sub_labels, pixels[bad])]
        todo = bad[keepers[bad] != bad]
    return keepers


# ----------------------------------------------------------------------------- manifests


@dataclass
class DedupReport:
    groups: list[list[int]]  # row indices (of the combined frame), keeper first
    cross_domain: list[int] = field(default_factory=list)  # indices into groups
    cross_split: list[int] = field(default_factory=list)
    dropped: int = 0
    unreadable: int = 0
    candidates: int = 0  # pairs within max_hamming (phash or mirror phash)
    rejected: int = 0  # of those, pairs the thumbnail confirmation refused: the phash alone would merge them
    reread: int = 0  # rows whose hashes or thumbnail were not in the manifest: their images were read
    kept_apart: int = 0  # pairs of kept rows listed in a not_duplicates.csv: never joined

    def summary_rows(self) -> list[tuple[str, int]]:
        rows = [("candidate pairs (phash)", self.candidates),
                ("candidate pairs rejected by confirmation", self.rejected),
                ("groups", len(self.groups)), ("dropped as duplicates", self.dropped),
                ("unreadable", self.unreadable), ("groups across domains", len(self.cross_domain)),
                ("groups across train/test", len(self.cross_split))]
        if self.reread:
            rows.append(("rows without stored hashes/thumbnail (image read)", self.reread))
        if self.kept_apart:
            rows.append((f"pairs kept apart ({NOT_DUPLICATES})", self.kept_apart))
        return rows

    def crossing_groups(self) -> list[tuple[str, int, list[int]]]:
        """(what it crosses, group number from 1, its rows) for each group across domains, then
        for each across train/test."""
        return [(title, g + 1, self.groups[g]) for title, which in (("across domains", self.cross_domain),
                                                                    ("across train/test", self.cross_split))
                for g in which]


def _row_signatures(df: pd.DataFrame, rows: np.ndarray, image_paths: list[Path], report: DedupReport):
    """phash, mirror phash and thumbnail of each kept row, from the manifest where it has them, else
    from the image (older manifests have no `thumb` column); unreadable rows are marked dropped."""
    from p2d.curate.hashing import phash_hex, thumb_b64, thumbs_from_b64
    from p2d.images import try_read_image

    for col in ("phash_mirror", "thumb"):
        if col not in df.columns:
            df[col] = ""
    _, has_thumb = thumbs_from_b64(df["thumb"].to_numpy()[rows].tolist())
    live = []
    for i, thumb_ok in zip(rows, has_thumb):
        h, m = str(df.at[df.index[i], "phash"]), str(df.at[df.index[i], "phash_mirror"])
        if len(h) != 16 or len(m) != 16 or not thumb_ok:
            image, why = try_read_image(image_paths[i])
            if image is None:
                df.loc[df.index[i], ["keep", "reason"]] = [False, why]
                report.unreadable += 1
                continue
            df.loc[df.index[i], ["phash", "phash_mirror", "thumb"]] = [
                phash_hex(image), phash_hex(np.ascontiguousarray(image[:, ::-1])), thumb_b64(image)]
            report.reread += 1
        live.append(i)
    live = np.array(live, dtype=np.int64)
    thumbs, _ = thumbs_from_b64(df["thumb"].to_numpy()[live].tolist())
    return (live, hex_to_uint64(df["phash"].to_numpy()[live]),
            hex_to_uint64(df["phash_mirror"].to_numpy()[live]), thumbs)


def find_duplicates(hashes: np.ndarray, mirrors: np.ndarray, thumbs: np.ndarray, pixels: np.ndarray,
                    max_hamming: int = DEFAULT_MAX_HAMMING, min_similarity: float = DEFAULT_MIN_SIMILARITY,
                    apart: np.ndarray | None = None) -> tuple[np.ndarray, int, int]:
    """Keeper per item, rejected and all candidate pairs (counts). Candidates come from the
    phash search; only pairs whose thumbnails correlate >= `min_similarity` join a group, and every
    member confirms against its keeper (the largest by `pixels`). `apart`: (k, 2) item pairs that
    never confirm (a user said they are not duplicates)."""
    if not 0.0 < min_similarity <= 1.0:
        raise P2DError(f"--min-similarity {min_similarity} is out of range: use 0 < S <= 1 "
                       f"(default {DEFAULT_MIN_SIMILARITY})")
    pairs = near_pairs(hashes, mirrors, max_hamming)
    n = len(hashes)
    apart = np.asarray(apart if apart is not None else [], dtype=np.int64).reshape(-1, 2)
    refused = np.unique(apart.min(axis=1) * n + apart.max(axis=1))

    def confirm(i, j):
        ok = thumb_similarity(thumbs[i], thumbs[j], enough=min_similarity) >= min_similarity
        if refused.size:
            ok &= ~np.isin(np.minimum(i, j) * n + np.maximum(i, j), refused)
        return ok

    ok = confirm(pairs[:, 0], pairs[:, 1]) if len(pairs) else np.zeros(0, dtype=bool)
    good = pairs[ok]
    labels = group_labels(len(hashes), good)
    keepers = confirmed_keepers(labels, np.asarray(pixels, dtype=np.float64), good, confirm)
    return keepers, int((~ok).sum()), len(pairs)


def dedup_frame(df: pd.DataFrame, image_paths: list[Path], dup_label: list,
                max_hamming: int = DEFAULT_MAX_HAMMING, min_similarity: float = DEFAULT_MIN_SIMILARITY,
                not_duplicates: list[tuple[str, str]] = ()
                ) -> tuple[pd.DataFrame, DedupReport]:
    """Mark near duplicates among kept rows of `df` (rows earlier marked `dup_of:` are reconsidered,
    so a re-run with other settings starts afresh). `image_paths[i]`: row i's file;
    `dup_label[i]`: how other rows name row i in `dup_of:<...>`; `not_duplicates`: pairs of absolute
    image paths never joined (`read_not_duplicates`)."""
    df = df.copy()
    reason = df["reason"].astype(str)
    was_dup = reason.str.startswith("dup_of:")
    df.loc[was_dup, "keep"] = True
    df.loc[was_dup, "reason"] = ""
    # A duplicate marked earlier may have had its file deleted since: it cannot come back.
    gone = was_dup.to_numpy() & np.array([not Path(f).is_file() for f in image_paths], dtype=bool)
    df.loc[gone, ["keep", "reason"]] = [False, "unreadable:missing"]
    report = DedupReport(groups=[])
    live, hashes, mirrors, thumbs = _row_signatures(df, np.flatnonzero(df["keep"].astype(bool).to_numpy()),
                                                    image_paths, report)
    apart = _apart_pairs(not_duplicates, image_paths, live)
    report.kept_apart = len(apart)
    keepers, report.rejected, report.candidates = find_duplicates(
        hashes, mirrors, thumbs, _source_pixels(df).to_numpy()[live], max_hamming, min_similarity, apart)
    members: dict[int, list[int]] = {}
    for k, keeper in enumerate(keepers):
        members.setdefault(int(keeper), []).append(k)
        if keeper != k:
            i = live[k]
            df.loc[df.index[i], ["keep", "reason"]] = [False, f"dup_of:{dup_label[i][live[keeper]]}"]
            report.dropped += 1
    for keeper, ks in sorted(members.items(), key=lambda kv: min(kv[1])):
        if len(ks) < 2:
            continue
        group = [int(live[keeper])] + [int(live[k]) for k in ks if k != keeper]
        report.groups.append(group)
        if df.iloc[group]["domain"].nunique() > 1:
            report.cross_domain.append(len(report.groups) - 1)
        if df.iloc[group]["split"].nunique() > 1:
            report.cross_split.append(len(report.groups) - 1)
    return df, report


def _apart_pairs(not_duplicates, image_paths: list[Path], live: np.ndarray) -> np.ndarray:
    """The listed pairs as (k, 2) indices into `live` (pairs naming an image not live are moot)."""
    if not not_duplicates:
        return np.zeros((0, 2), dtype=np.int64)
    import os

    index = {os.path.abspath(image_paths[i]): k for k, i in enumerate(live)}
    pairs = {(index[a], index[b]) for a, b in not_duplicates if a in index and b in index}
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def read_not_duplicates(folder: Path | str) -> list[tuple[str, str]]:
    """The pairs of FOLDER/not_duplicates.csv as absolute paths (empty without the file); a bad
    line is a P2DError naming the file and the line."""
    import csv
    import os

    path = Path(folder) / NOT_DUPLICATES
    if not path.is_file():
        return []
    try:
        lines = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except UnicodeDecodeError:
        raise P2DError(f"{path} is not UTF-8 text: save it as UTF-8 CSV with columns a,b") from None
    if not lines or [c.strip() for c in lines[0]] != ["a", "b"]:
        raise P2DError(f"{path} line 1: the header must be a,b (two images that are not duplicates)")
    pairs = []
    for n, rec in enumerate(lines[1:], start=2):
        if not any(c.strip() for c in rec):
            continue
        if len(rec) != 2 or not rec[0].strip() or not rec[1].strip():
            raise P2DError(f"{path} line {n}: give two image paths, a,b "
                           f"(relative to {path.parent} or absolute)")
        a, b = (os.path.abspath(Path(folder) / c.strip()) for c in rec)
        if a == b:
            raise P2DError(f"{path} line {n}: {rec[0].strip()} is listed against itself: remove the line")
        pairs.append((a, b))
    return pairs


def not_duplicate_pairs(manifests: list[Path | str]) -> list[tuple[str, str]]:
    """The pairs of the not_duplicates.csv beside each manifest, each folder read once."""
    folders = dict.fromkeys(Path(m).absolute().parent for m in manifests)
    return [pair for folder in folders for pair in read_not_duplicates(folder)]


def add_not_duplicates(folder: Path | str, pairs: list[tuple[str, str]]) -> None:
    """Add image pairs (any paths) to FOLDER/not_duplicates.csv, stored relative to the folder,
    each pair once; written atomically."""
    import csv
    import io
    import os

    from p2d.images import write_text_atomic

    folder = Path(folder)
    rows = read_not_duplicates(folder)
    known = {frozenset(p) for p in rows}
    for a, b in pairs:
        a, b = os.path.abspath(a), os.path.abspath(b)
        if a != b and frozenset((a, b)) not in known:
            known.add(frozenset((a, b)))
            rows.append((a, b))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["a", "b"])
    for a, b in rows:
        writer.writerow([Path(os.path.relpath(p, folder.absolute())).as_posix() for p in (a, b)])
    write_text_atomic(folder / NOT_DUPLICATES, buf.getvalue())


def _source_pixels(df: pd.DataFrame) -> pd.Series:
    """Pixels of each row's source image (`source_width` x `source_height`), else of the file."""
    def num(col):
        return (pd.to_numeric(df[col], errors="coerce") if col in df.columns
                else pd.Series(np.nan, index=df.index))

    px = num("source_width") * num("source_height")
    return px.fillna(num("width") * num("height")).fillna(0)


@dataclass
class DedupResult:
    manifests: list[Path]
    frame: pd.DataFrame
    report: DedupReport
    sheet: Path | None
    labels: list[str]


def dedup_manifests(manifests: list[Path | str], max_hamming: int = DEFAULT_MAX_HAMMING,
                    sheet: Path | str | None = None,
                    min_similarity: float = DEFAULT_MIN_SIMILARITY) -> DedupResult:
    """Dedup across the rows of all `manifests` and rewrite each one atomically."""
    from p2d.manifest import read_manifest, relative_path, resolve_path, write_manifest

    if not manifests:
        raise P2DError("give at least one manifest: p2d dedup data/drawings/manifest.csv ...")
    paths = [Path(m) for m in manifests]
    resolved = [p.resolve() for p in paths]
    twice = sorted({str(p) for p in paths if resolved.count(p.resolve()) > 1})
    if twice:
        # its rows would all be duplicates of themselves
        raise P2DError(f"manifest given more than once: {', '.join(twice)}: name each manifest once")
    frames = [read_manifest(p) for p in paths]
    owner = np.concatenate([np.full(len(f), k) for k, f in enumerate(frames)])
    df = pd.concat(frames, ignore_index=True)
    files = [resolve_path(paths[o], str(p)) for o, p in zip(owner, df["path"])]
    # dup_label[i][j]: row j's path as seen from row i's manifest
    labels = [LabelView(paths[o], files) for o in owner]
    df, report = dedup_frame(df, files, labels, max_hamming, min_similarity, not_duplicate_pairs(paths))
    start = 0
    for p, f in zip(paths, frames):
        part = df.iloc[start:start + len(f)].reset_index(drop=True)
        write_manifest(part, p)
        start += len(f)
    sheet_path = write_group_sheet(sheet, report, files, df) if sheet else None
    return DedupResult(paths, df, report, sheet_path, [relative_path(paths[0], f) for f in files])


class LabelView:
    """Lazy `relative_path(manifest, files[j])` for j: only the dropped rows' keepers are named."""

    def __init__(self, manifest: Path, files: list[Path]):
        self.manifest, self.files = manifest, files

    def __getitem__(self, j: int) -> str:
        from p2d.manifest import relative_path

        return relative_path(self.manifest, self.files[j])


def write_group_sheet(path: Path | str, report: DedupReport, files: list[Path], df: pd.DataFrame) -> Path:
    """A contact sheet of the duplicate groups: one group per sheet row, the kept image first."""
    from p2d.images import try_read_image
    from p2d.sheets import write_sheet

    cols = max([min(len(g), 8) for g in report.groups] + [2])
    cells, labels = [], []
    for k, group in enumerate(report.groups):
        for n, i in enumerate(group[:cols]):
            image, _ = try_read_image(files[i])
            cells.append(image)
            labels.append(f"g{k + 1} {'KEEP' if n == 0 else 'dup'} "
                          f"{df.iloc[i]['domain']}/{df.iloc[i]['split']}\n{files[i].name}")
        for _ in range(cols - min(len(group), cols)):
            cells.append(np.full((8, 8, 3), 255, np.uint8))
            labels.append("")
    if not cells:
        cells, labels = [np.full((32, 32, 3), 255, np.uint8)], ["no duplicate groups"]
    return write_sheet(path, cells, labels, cell=128, cols=cols)
