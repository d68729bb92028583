"""`p2d dedup`: near-duplicate images across manifests by 64-bit phash (and the phash of the mirror).

Two images are near duplicates when the Hamming distance between their phashes, or between one's
phash and the other's mirror-image phash, is at most `max_hamming`. Default 8, from
`benchmarks/dedup.py` on the fixtures: resized (0.5x, 2x), JPEG-recompressed (q 30-60) and
mirrored copies are within 2 bits, copies cropped by 2% a side within 8; distinct 128 px face
crops are 10 or more apart (the closest pair, two near-identical drawings by one artist, at 10;
the rest 16+). 200,000 hashes group in ~15 s on a 2-core CPU. Groups are connected components of the near-duplicate graph.

Search is multi-index hashing (Norouzi et al.): the 64 bits are cut into 3 chunks; by the
pigeonhole principle two hashes within d bits agree within d // 3 bits on some chunk, so each
query probes only the buckets of chunk values within that radius, then checks the full distance
vectorised. Keep rule: in each group the largest source image (pixels), then the first row.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from p2d.errors import P2DError

DEFAULT_MAX_HAMMING = 8
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


def near_pairs(hashes: np.ndarray, mirrors: np.ndarray | None = None, max_hamming: int = DEFAULT_MAX_HAMMING
               ) -> np.ndarray:
    """(P, 2) array of index pairs i < j whose hashes (or i's hash and j's mirror hash) differ in
    at most `max_hamming` bits. `hashes`, `mirrors`: uint64 arrays of equal length."""
    if not 0 <= max_hamming <= 20:
        raise P2DError(f"--max-hamming {max_hamming} is out of range: use 0..20 bits (default {DEFAULT_MAX_HAMMING})")
    q = np.asarray(hashes, dtype=np.uint64)
    n = len(q)
    db = q if mirrors is None else np.concatenate([q, np.asarray(mirrors, dtype=np.uint64)])
    owner = np.arange(len(db)) % n
    radius = max_hamming // len(_CHUNKS)
    found = []
    for first, width in _CHUNKS:
        mask_all = (1 << width) - 1
        db_key = ((db >> np.uint64(first)) & np.uint64(mask_all)).astype(np.int64)
        q_key = ((q >> np.uint64(first)) & np.uint64(mask_all)).astype(np.int64)
        order = np.argsort(db_key, kind="stable")
        counts = np.bincount(db_key, minlength=mask_all + 1)
        starts = np.cumsum(counts) - counts
        for m in _masks(width, radius):
            probe = q_key ^ m
            cnt = counts[probe]
            hit = np.flatnonzero(cnt)
            if hit.size == 0:
                continue
            c = cnt[hit]
            qi = np.repeat(hit, c)
            offsets = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
            di = order[np.repeat(starts[probe[hit]], c) + offsets]
            close = popcount(q[qi] ^ db[di]) <= max_hamming
            a, b = qi[close], owner[di[close]]
            keep = a != b
            found.append(np.stack([np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


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


# ----------------------------------------------------------------------------- manifests


@dataclass
class DedupReport:
    groups: list[list[int]]  # row indices (of the combined frame), keeper first
    cross_domain: list[int] = field(default_factory=list)  # indices into groups
    cross_split: list[int] = field(default_factory=list)
    dropped: int = 0
    unreadable: int = 0

    def summary_rows(self) -> list[tuple[str, int]]:
        return [("groups", len(self.groups)), ("dropped as duplicates", self.dropped),
                ("unreadable", self.unreadable), ("groups across domains", len(self.cross_domain)),
                ("groups across train/test", len(self.cross_split))]

    def crossing_groups(self) -> list[tuple[str, int, list[int]]]:
        """(what it crosses, group number from 1, its rows) for each group across domains, then
        for each across train/test."""
        return [(title, g + 1, self.groups[g]) for title, which in (("across domains", self.cross_domain),
                                                                    ("across train/test", self.cross_split)) for g in which]


def _mirror_hash(path: Path) -> tuple[str | None, str | None]:
    from p2d.curate.hashing import phash_hex
    from p2d.images import try_read_image

    image, why = try_read_image(path)
    if image is None:
        return None, why
    return phash_hex(np.ascontiguousarray(image[:, ::-1])), None


def dedup_frame(df: pd.DataFrame, image_paths: list[Path], dup_label: list,
                max_hamming: int = DEFAULT_MAX_HAMMING) -> tuple[pd.DataFrame, DedupReport]:
    """Mark near duplicates among kept rows of `df` (rows earlier marked `dup_of:` are reconsidered,
    so a re-run with other settings starts afresh). `image_paths[i]`: row i's file;
    `dup_label[i]`: how other rows name row i in `dup_of:<...>`."""
    from p2d.curate.hashing import phash_hex
    from p2d.images import try_read_image

    df = df.copy()
    reason = df["reason"].astype(str)
    was_dup = reason.str.startswith("dup_of:")
    df.loc[was_dup, "keep"] = True
    df.loc[was_dup, "reason"] = ""
    # A duplicate marked earlier may have had its file deleted since: it cannot come back.
    gone = was_dup.to_numpy() & np.array([not Path(f).is_file() for f in image_paths], dtype=bool)
    df.loc[gone, ["keep", "reason"]] = [False, "unreadable:missing"]
    keep = df["keep"].astype(bool).to_numpy()
    if "phash_mirror" not in df.columns:
        df["phash_mirror"] = ""
    report = DedupReport(groups=[])
    rows = np.flatnonzero(keep)
    hashes, mirrors, live = [], [], []
    for i in rows:
        h = str(df.at[df.index[i], "phash"])
        m = str(df.at[df.index[i], "phash_mirror"])
        if len(h) != 16 or len(m) != 16:
            image, why = try_read_image(image_paths[i])
            if image is None:
                df.loc[df.index[i], ["keep", "reason"]] = [False, why]
                report.unreadable += 1
                continue
            h, m = phash_hex(image), phash_hex(np.ascontiguousarray(image[:, ::-1]))
            df.loc[df.index[i], ["phash", "phash_mirror"]] = [h, m]
        hashes.append(h)
        mirrors.append(m)
        live.append(i)
    live = np.array(live, dtype=np.int64)
    pairs = near_pairs(hex_to_uint64(hashes), hex_to_uint64(mirrors), max_hamming)
    labels = group_labels(len(live), pairs)
    src_px = _source_pixels(df).to_numpy()[live]
    keepers = choose_keepers(labels, src_px)
    for k, (i, keeper) in enumerate(zip(live, keepers)):
        if keeper != k:
            df.loc[df.index[i], ["keep", "reason"]] = [False, f"dup_of:{dup_label[i][live[keeper]]}"]
            report.dropped += 1
    members: dict[int, list[int]] = {}
    for k, lab in enumerate(labels):
        members.setdefault(int(lab), []).append(k)
    for ks in members.values():
        if len(ks) < 2:
            continue
        keeper = int(keepers[ks[0]])
        group = [int(live[keeper])] + [int(live[k]) for k in ks if k != keeper]
        report.groups.append(group)
        if df.iloc[group]["domain"].nunique() > 1:
            report.cross_domain.append(len(report.groups) - 1)
        if df.iloc[group]["split"].nunique() > 1:
            report.cross_split.append(len(report.groups) - 1)
    return df, report


def _source_pixels(df: pd.DataFrame) -> pd.Series:
    """Pixels of each row's source image (`source_width` x `source_height`), else of the file."""
    def num(col):
        return pd.to_numeric(df[col], errors="coerce") if col in df.columns else pd.Series(np.nan, index=df.index)

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
                    sheet: Path | str | None = None) -> DedupResult:
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
    df, report = dedup_frame(df, files, labels, max_hamming)
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
            labels.append(f"g{k + 1} {'KEEP' if n == 0 else 'dup'} {df.iloc[i]['domain']}/{df.iloc[i]['split']}\n{files[i].name}")
        for _ in range(cols - min(len(group), cols)):
            cells.append(np.full((8, 8, 3), 255, np.uint8))
            labels.append("")
    if not cells:
        cells, labels = [np.full((32, 32, 3), 255, np.uint8)], ["no duplicate groups"]
    return write_sheet(path, cells, labels, cell=128, cols=cols)
