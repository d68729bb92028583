"""`p2d inspect`: do the drawings and the photos look alike? Per-row face features, per-feature distances,
rows without a counterpart.

Each kept row of a manifest gets the same features, measured by the same functions whatever its
domain: facing, yaw and roll, smile score and mouth opening (from the 68 landmarks, where they
hold), face size and centre in the frame, eye size over the face, brightness, contrast,
colourfulness (and whether the image is nearly gray), and the padded share of the frame. Photos
take their landmark features from curation's columns where present (measured at the source's
resolution); everything else is measured on the curated crops, cached in OUT/cache/.

Rarity of a value in the other domain ("typicality"): the share of the other domain's rows whose
own value is at most as common there as this value is. For a number, "common" is the density of
a Gaussian kernel estimate (bandwidth by Silverman's rule, never below the feature's measurement
resolution); for a category, its share. A row lacks a counterpart on a feature when its
typicality is below `rare_share` (default 2%: it is rarer in the other domain than all but 2% of
that domain's own rows), so the cut follows from the two distributions, not from fixed values.
A row's mismatch score is 1 - its lowest typicality (1: nothing like it in the other domain).
How far apart two sets are on a feature: the two-sample Kolmogorov-Smirnov distance (numbers) or
the total-variation distance of the shares (categories), both 0 (same) to 1 (disjoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from p2d.errors import P2DError
from p2d.faces import (MAX_FRONTAL_YAW_DEG, SMILE_THRESHOLD, face_box, facing_from_yaw, inter_ocular,
                       landmark_features)
from p2d.framing import framing_box

# Beyond ~30 degrees of yaw the far cheek is foreshortened and the jaw outline the yaw estimate
# relies on breaks down (curation's default --max-yaw-deg says the same): a face turned further
# is no longer frontal.
FRONTAL_MAX_YAW_DEG = MAX_FRONTAL_YAW_DEG
# Hasler & Suesstrunk (2003) call an image of colourfulness 15 "slightly colourful"; below half of
# that, what colour there is is a scan's tint or JPEG noise: the image is nearly gray.
NEAR_GRAY_MAX_COLOURFULNESS = 7.5
# A border strip counts as padding when its pixels stay within this many levels (0-255) of the
# strip's colour: a constant fill, allowing for PNG/JPEG rounding.
PAD_TOLERANCE_LEVELS = 3
RARE_SHARE = 0.02
# Fewer known values than this in the other domain say too little about what it holds: such a
# feature judges no row (a 2% tail needs some rows to exist).
MIN_ROWS = 10
# A feature differs notably when its distance is at least this and significant at this level.
MIN_DISTANCE = 0.2
SIGNIFICANCE = 0.01
FACINGS = ("frontal", "left", "right")


@dataclass(frozen=True)
class Feature:
    """One measured feature: its column, what it is, its unit, and how finely it is measured."""

    name: str
    label: str
    unit: str = ""
    resolution: float = 0.0  # kernel bandwidth floor: differences below this are noise
    category: bool = False


FEATURES: tuple[Feature, ...] = (
    Feature("facing", "facing (where the nose points)", category=True),
    Feature("yaw", "head turn", "deg", 5.0),
    Feature("roll", "head tilt", "deg", 3.0),
    Feature("smile", "smile score", "IOD", 0.03),
    Feature("mouth_open", "mouth opening", "IOD", 0.03),
    Feature("face_size", "face width over frame", "frame", 0.02),
    Feature("face_x", "face centre x in frame", "frame", 0.02),
    Feature("face_y", "face centre y in frame", "frame", 0.02),
    Feature("eye_size", "eye width over face width", "face", 0.01),
    Feature("brightness", "brightness (mean luma)", "0-1", 0.02),
    Feature("contrast", "contrast (luma std)", "0-1", 0.01),
    Feature("colourfulness", "colourfulness (Hasler-Suesstrunk)", "", 2.0),
    Feature("gray", "gray or colour", category=True),
    Feature("padded", "padded share of the frame", "frame", 0.02),
)
FEATURE_NAMES = tuple(f.name for f in FEATURES)
BY_NAME = {f.name: f for f in FEATURES}
# curation's photo columns that hold the same measures, taken at the source's resolution
CURATION_COLUMNS = {"yaw": "yaw_deg", "roll": "roll_deg", "smile": "smile_score", "mouth_open": "mouth_open"}
# what changes when the measuring changes: cached analyses with another method are redone
METHOD = "inspect-v1"


# ----------------------------------------------------------------------------- pure features


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma in 0-1 of an RGB (or gray) uint8 image."""
    a = np.asarray(rgb, dtype=np.float64) / 255.0
    if a.ndim == 2:
        return a
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114


def brightness(rgb: np.ndarray) -> float:
    """Mean luma, 0 (black) to 1 (white)."""
    return float(luma(rgb).mean())


def contrast(rgb: np.ndarray) -> float:
    """Standard deviation of luma, 0 (flat) to 0.5 (half black, half white)."""
    return float(luma(rgb).std())


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness on 0-255 levels: 0 for a gray image, ~15 slightly,
    ~33 moderately, ~60+ very colourful."""
    a = np.asarray(rgb, dtype=np.float64)
    if a.ndim == 2:
        return 0.0
    rg = a[..., 0] - a[..., 1]
    yb = (a[..., 0] + a[..., 1]) / 2 - a[..., 2]
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def _uniform_run(lo: np.ndarray, hi: np.ndarray, tolerance: float) -> int:
    """How many leading lines are each one flat colour equal to the first line's, given each
    line's per-channel minimum and maximum (lines x channels)."""
    flat = ((hi - lo).max(axis=1) <= tolerance) & (np.abs(hi - hi[0]).max(axis=1) <= tolerance)
    return len(flat) if flat.all() else int(np.argmin(flat))


def padded_share(rgb: np.ndarray, tolerance_levels: float = PAD_TOLERANCE_LEVELS) -> float:
    """Share of the frame in flat strips along its edges (a constant fill past the source's edge).

    Measured from pixels, for rows without curation's `padded_fraction`; a drawing's own flat
    margin counts too, which is what the network sees either way."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = a[..., None]
    a = a.astype(np.int16)
    h, w = a.shape[:2]
    row_lo, row_hi = a.min(axis=1), a.max(axis=1)  # (h, channels)
    col_lo, col_hi = a.min(axis=0), a.max(axis=0)  # (w, channels)
    top = _uniform_run(row_lo, row_hi, tolerance_levels)
    if top == h:
        return 1.0
    bottom = _uniform_run(row_lo[::-1], row_hi[::-1], tolerance_levels)
    left = _uniform_run(col_lo, col_hi, tolerance_levels)
    right = _uniform_run(col_lo[::-1], col_hi[::-1], tolerance_levels)
    inner = max(h - top - bottom, 0) * max(w - left - right, 0)
    return float(1.0 - inner / (h * w))


def frame_features(points: np.ndarray, side_px: float) -> dict[str, float]:
    """Face size and centre in the frame, eye size over the face, from 68 landmarks in a square
    frame of `side_px`: face width (landmarks' box) over the side, the box centre over the side,
    and the mean eye width (corner to corner, 36-39 and 42-45) over the face width."""
    x, y, w, h = face_box(points)
    eye_w = (np.linalg.norm(points[39] - points[36]) + np.linalg.norm(points[45] - points[42])) / 2
    return {"face_size": w / side_px, "face_x": (x + w / 2) / side_px, "face_y": (y + h / 2) / side_px,
            "eye_size": float(eye_w / w) if w > 0 else math.nan}


def pixel_features(rgb: np.ndarray) -> dict[str, float]:
    """The features measured on pixels alone."""
    return {"brightness": brightness(rgb), "contrast": contrast(rgb), "colourfulness": colourfulness(rgb),
            "padded": padded_share(rgb)}


def landmark_shape_features(points: np.ndarray) -> dict[str, float]:
    """The features measured on the landmarks' shape (scale-free: the same in the source and the crop)."""
    f = landmark_features(points)
    return {"yaw": f["yaw_deg"], "roll": f["roll_deg"], "smile": f["smile_score"],
            "mouth_open": f["mouth_open"]}


# ----------------------------------------------------------------------------- comparing two sets


def _silverman(values: np.ndarray) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    q75, q25 = np.percentile(values, [75, 25])
    spread = min(values.std(ddof=1), (q75 - q25) / 1.34) or values.std(ddof=1)
    return float(0.9 * spread * n ** -0.2)


def _density(at: np.ndarray, sample: np.ndarray, bandwidth: float, leave_one_out: bool = False) -> np.ndarray:
    """Gaussian kernel density of `sample` at each point of `at` (unnormalised: a kernel peaks at 1).

    Binned: the sample's histogram on a grid a quarter bandwidth fine, convolved with the kernel,
    read off by linear interpolation; linear in the sample's size (200,000 photos take well
    under a second), and within a few percent of the exact sum."""
    lo = min(sample.min(), at.min()) - 4 * bandwidth
    hi = max(sample.max(), at.max()) + 4 * bandwidth
    bins = int(min(max(math.ceil((hi - lo) / (bandwidth / 4)), 16), 1 << 21))
    step = (hi - lo) / bins
    counts, _ = np.histogram(sample, bins=bins, range=(lo, hi))
    half = int(math.ceil(4 * bandwidth / step))
    offsets = np.arange(-half, half + 1) * step
    smooth = np.convolve(counts.astype(np.float64),
                         np.exp(-0.5 * (offsets / bandwidth) ** 2))[half:half + bins]
    centres = lo + (np.arange(bins) + 0.5) * step
    k = np.interp(at, centres, smooth)
    n = len(sample)
    if leave_one_out:
        k, n = k - 1.0, n - 1  # each point's own kernel
    return np.maximum(k, 0.0) / max(n, 1) / bandwidth


def typicality(values: np.ndarray, other: np.ndarray, resolution: float = 0.0, category: bool = False,
               min_rows: int = MIN_ROWS) -> np.ndarray:
    """For each value, the share of `other`'s rows whose own value is at most as common in `other`
    as this one (see the module docstring); NaN where the value is missing or `other` has fewer
    than `min_rows` known values."""
    values = np.asarray(values, dtype=object if category else np.float64)
    other = np.asarray(other, dtype=object if category else np.float64)
    out = np.full(len(values), np.nan)
    if category:
        known = other[other != "unknown"]
        if len(known) < max(min_rows, 1):
            return out
        names, counts = np.unique(known.astype(str), return_counts=True)
        share = dict(zip(names, counts / len(known)))
        for i, v in enumerate(values):
            if v != "unknown":
                s = share.get(str(v), 0.0)
                out[i] = sum(x for x in share.values() if x <= s)
        return out
    other = other[np.isfinite(other)]
    ok = np.isfinite(values)
    if len(other) < max(min_rows, 1) or not ok.any():
        return out
    bandwidth = max(_silverman(other), resolution, 1e-9)
    own = np.sort(_density(other, other, bandwidth, leave_one_out=len(other) > 1))
    at = _density(values[ok], other, bandwidth)
    out[ok] = np.searchsorted(own, at, side="right") / len(own)
    return out


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                        - np.searchsorted(b, grid, side="right") / len(b)).max())


def ks_critical(n: int, m: int, significance: float = SIGNIFICANCE) -> float:
    """The KS distance two samples of n and m exceed by chance with probability `significance`."""
    return math.sqrt(-0.5 * math.log(significance / 2)) * math.sqrt((n + m) / (n * m))


def shares(values: np.ndarray) -> dict[str, float]:
    """Share of each known category (unknown left out)."""
    v = pd.Series(values, dtype=object)
    v = v[v != "unknown"]
    return (v.value_counts() / len(v)).to_dict() if len(v) else {}


@dataclass
class Difference:
    """How the two domains differ on one feature."""

    feature: Feature
    distance: float
    significant: bool
    drawings: np.ndarray
    photos: np.ndarray
    unmatched: dict[str, int]  # domain -> rows without a counterpart on this feature

    @property
    def notable(self) -> bool:
        return self.significant and self.distance >= MIN_DISTANCE

    def describe(self, values: np.ndarray) -> str:
        """A set's value in a table cell: median (numbers) or the largest shares (categories)."""
        if self.feature.category:
            s = shares(values)
            return ", ".join(f"{k} {v:.0%}" for k, v in sorted(s.items(), key=lambda kv: -kv[1])[:2]) or "-"
        v = values[np.isfinite(values)]
        if not len(v):
            return "-"
        q1, q2, q3 = np.percentile(v, [25, 50, 75])
        return f"{q2:.3g} ({q1:.3g}-{q3:.3g})"


def compare(drawings: np.ndarray, photos: np.ndarray, feature: Feature) -> tuple[float, bool]:
    """Distance between the two domains' values on a feature, and whether it is beyond chance."""
    if feature.category:
        a, b = shares(drawings), shares(photos)
        n, m = int((drawings != "unknown").sum()), int((photos != "unknown").sum())
        if not n or not m:
            return math.nan, False
        d = 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))
    else:
        a, b = drawings[np.isfinite(drawings)], photos[np.isfinite(photos)]
        n, m = len(a), len(b)
        if not n or not m:
            return math.nan, False
        d = ks_distance(a, b)
    return d, d > ks_critical(n, m)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def advice(diff: Difference) -> str:
    """One line a user can act on, for a feature on which the two sets differ."""
    f, d, p = diff.feature, diff.drawings, diff.photos
    n_un = sum(diff.unmatched.values())
    drop = f"--drop-unmatched {f.name} drops the {n_un} row(s) without a counterpart"
    if f.name == "smile":
        wd, wp = (
            np.nanmean(v[np.isfinite(v)] > SMILE_THRESHOLD) if np.isfinite(v).any() else 0.0 for v in (d, p))
        if wp >= wd:
            return (f"{_pct(wp)} of the photos smile widely, {_pct(wd)} of the drawings do: try "
                    f"--drop-smiles when curating the photos (or {drop})")
        return (f"{_pct(wd)} of the drawings smile widely, {_pct(wp)} of the photos do: add smiling photos, "
                f"or {drop}")
    if f.name == "facing":
        td, tp = (1.0 - shares(v).get("frontal", 1.0) for v in (d, p))
        more = "drawings" if td > tp else "photos"
        return (f"{_pct(td)} of the drawings face sideways (left or right), {_pct(tp)} of the photos do: "
                f"add turned {'photos' if more == 'drawings' else 'drawings'}, or {drop}")
    if f.name == "gray":
        gd, gp = (shares(v).get("gray", 0.0) for v in (d, p))
        if gd > gp:
            return (f"{_pct(gd)} of the drawings are nearly gray, {_pct(gp)} of the photos are: train in "
                    f"gray (channels = 1 in the recipe's [data]), or {drop}")
        return (f"{_pct(gp)} of the photos are nearly gray, {_pct(gd)} of the drawings are: train in gray "
                f"(channels = 1 in the recipe's [data]), or {drop}")
    md, mp = (float(np.nanmedian(v)) if np.isfinite(v).any() else math.nan for v in (d, p))
    unit = f" {f.unit}" if f.unit and f.unit not in ("0-1",) else ""
    return f"{f.label}: drawings' median {md:.3g}{unit}, photos' {mp:.3g}{unit}: {drop}"


# ----------------------------------------------------------------------------- measuring a manifest


def _box_in_crop(row: dict, side_px: int) -> tuple[float, float, float, float]:
    """Where the face is in a curated crop: the detector's box mapped through crop-drawings' crop
    square when the row has them, else the known framing of curated faces."""
    v = {k: _finite(row.get(k))
         for k in ("crop_side", "crop_x", "crop_y", "box_x", "box_y", "box_w", "box_h")}
    if any(x is None for x in v.values()) or v["crop_side"] <= 0:
        return framing_box(side_px, side_px)
    k = side_px / v["crop_side"]
    return ((v["box_x"] - v["crop_x"]) * k, (v["box_y"] - v["crop_y"]) * k, v["box_w"] * k, v["box_h"] * k)


def _finite(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def landmarks_hold(row: dict) -> bool:
    """Do curation's results say this crop's 68 landmarks hold together? Photos: curation measured
    them (a yaw is stored); drawings: crop-drawings centred the crop on them (not on the box)."""
    if row.get("domain") == "photo":
        return _finite(row.get("yaw_deg")) is not None
    return str(row.get("centred_on", "")) == "landmarks"


def measure_image(rgb: np.ndarray, points: np.ndarray | None) -> dict[str, float]:
    """Every measured feature of one crop, given its landmarks in crop coordinates (or None)."""
    out = pixel_features(rgb)
    if points is not None:
        out.update(frame_features(points, rgb.shape[1]))
        out.update(landmark_shape_features(points))
        out["iod_px"] = inter_ocular(points)
    return out


def row_features(row: dict, measured: dict[str, float]) -> dict:
    """A row's features: the measured ones, curation's columns where present, facing and gray."""
    out = {name: measured.get(name, math.nan) for name in FEATURE_NAMES if not BY_NAME[name].category}
    if row.get("domain") == "photo":
        for name, col in CURATION_COLUMNS.items():
            v = _finite(row.get(col))
            if v is not None:
                out[name] = v
    padded = _finite(row.get("padded_fraction"))
    if padded is not None:
        out["padded"] = padded
    given = str(row.get("facing", "") or "").strip().lower()
    out["facing"] = given if given in FACINGS + ("unknown",) else facing_from_yaw(out["yaw"])
    c = out["colourfulness"]
    out["gray"] = "unknown" if not math.isfinite(c) else (
        "gray" if c < NEAR_GRAY_MAX_COLOURFULNESS else "colour")
    return out


def measure_manifest(manifest: Path, df: pd.DataFrame, cache_dir: Path, models=None, quiet: bool = False
                     ) -> pd.DataFrame:
    """Features of the kept rows of `df` (paths relative to `manifest`), one row each, same index;
    unreadable images get a `problem`. Analyses are cached in `cache_dir` (re-runs recompute nothing)."""
    from p2d import ui
    from p2d.facecache import FaceCache, file_signature
    from p2d.manifest import kept_mask, resolve_path

    kept = df[kept_mask(df)]
    cache = FaceCache(cache_dir)
    models = models or _LazyModels()
    rows, index = [], []
    bar = ui.progress(transient=quiet)
    try:
        with bar:
            task = bar.add_task("inspect", total=len(kept), status="")
            for idx, row in zip(kept.index, kept.to_dict("records")):
                path = resolve_path(manifest, str(row["path"]))
                name, sig = str(path.resolve()), file_signature(path)
                hold = landmarks_hold(row) and str(row.get("crop", "center")) == "center"
                method = f"{METHOD}:{'landmarks' if hold else 'pixels'}"
                rec = cache.analysis(name, sig, method)
                if rec is None:
                    rec = _analyse(path, row, hold, models)
                    if sig is not None:
                        cache.analyses.add({"name": name, "sig": sig, "method": method, **rec})
                features = row_features(row, rec.get("features", {}))
                rows.append({"path": row["path"], "domain": row["domain"], "source": row["source"],
                             "problem": rec.get("problem", ""), **features})
                index.append(idx)
                bar.advance(task)
    finally:
        cache.close()
    return pd.DataFrame(rows, index=index, columns=["path", "domain", "source", "problem", *FEATURE_NAMES])


class _LazyModels:
    """dlib's models, loaded on the first crop that needs landmarks (a re-run from the cache needs none)."""

    @cached_property
    def models(self):
        from p2d.faces import FaceModels

        return FaceModels()

    def landmarks(self, image, box):
        return self.models.landmarks(image, box)


def _analyse(path: Path, row: dict, hold: bool, models) -> dict:
    from p2d.images import try_read_image

    rgb, why = try_read_image(path)
    if rgb is None:
        return {"problem": why or "unreadable"}
    points = None
    if hold:
        points = models.landmarks(rgb, _box_in_crop(row, rgb.shape[1]))
    rec = {"features": {k: round(float(v), 5) for k, v in measure_image(rgb, points).items()}}
    if points is not None:
        rec["points"] = points.astype(int).reshape(-1).tolist()
    return rec


# ----------------------------------------------------------------------------- the inspection


def _domain_values(features: pd.DataFrame, domain: str, feature: Feature) -> np.ndarray:
    col = features.loc[(features["domain"] == domain) & (features["problem"] == ""), feature.name]
    return col.astype(str).to_numpy(dtype=object) if feature.category else col.to_numpy(dtype=np.float64)


def score_rows(features: pd.DataFrame, rare_share: float = RARE_SHARE,
               min_rows: int = MIN_ROWS) -> pd.DataFrame:
    """Per row: typicality on each feature in the other domain, the mismatch score, and the
    features it lacks a counterpart on (most lacking first)."""
    if not 0 < rare_share < 1:
        raise P2DError(f"rare_share {rare_share} must be between 0 and 1 (e.g. 0.02)")
    typ = pd.DataFrame(np.nan, index=features.index, columns=list(FEATURE_NAMES))
    ok = features["problem"] == ""
    for domain, other in (("drawing", "photo"), ("photo", "drawing")):
        mine = ok & (features["domain"] == domain)
        for f in FEATURES:
            col = features.loc[mine, f.name]
            values = col.astype(str).to_numpy(dtype=object) if f.category else col.to_numpy(dtype=np.float64)
            typ.loc[mine, f.name] = typicality(values, _domain_values(features, other, f), f.resolution,
                                               f.category, min_rows)
    out = features.copy()
    lowest = typ.min(axis=1, skipna=True)
    out["mismatch"] = (1.0 - lowest).fillna(0.0).round(4)  # nothing judged: no evidence of a mismatch
    out["unmatched"] = [",".join(sorted((n for n in FEATURE_NAMES if t[n] < rare_share), key=lambda n: t[n]))
                        for _, t in typ.iterrows()]
    for n in FEATURE_NAMES:
        out[f"typical_{n}"] = typ[n].round(4)
    return out


def differences(scored: pd.DataFrame) -> list[Difference]:
    """Every feature's distance between the domains, largest first."""
    out = []
    for f in FEATURES:
        d, p = _domain_values(scored, "drawing", f), _domain_values(scored, "photo", f)
        dist, sig = compare(d, p, f)
        lacking = scored["unmatched"].str.split(",").map(lambda names, n=f.name: n in names)
        unmatched = {dom: int((lacking & (scored["domain"] == dom)).sum()) for dom in ("drawing", "photo")}
        out.append(Difference(f, dist, sig, d, p, unmatched))
    return sorted(out, key=lambda x: -x.distance if math.isfinite(x.distance) else 1.0)


@dataclass
class Inspection:
    """What `p2d inspect` found: per-row features and scores, per-feature differences, files."""

    manifest: Path
    rows: pd.DataFrame
    diffs: list[Difference]
    rare_share: float
    files: list[Path] = field(default_factory=list)

    SUMMARY_COLUMNS = ("feature", "drawings", "photos", "distance", "no counterpart (drawings/photos)")

    def summary_rows(self) -> list[tuple]:
        return [(d.feature.label, d.describe(d.drawings), d.describe(d.photos),
                 round(d.distance, 3) if math.isfinite(d.distance) else "-",
                 f"{d.unmatched['drawing']}/{d.unmatched['photo']}") for d in self.diffs]

    def notes(self, limit: int | None = None) -> list[str]:
        """The actionable lines, for the notable differences (largest first)."""
        notable = [d for d in self.diffs if d.notable]
        lines = [advice(d) for d in notable[:limit]]
        ok = self.rows[self.rows["problem"] == ""]
        counts = {dom: int((ok["domain"] == dom).sum()) for dom in ("drawing", "photo")}
        if not lines:
            far = [d for d in self.diffs if math.isfinite(d.distance) and d.distance >= MIN_DISTANCE]
            if far:
                lines = [f"no difference is beyond chance with {counts['drawing']} drawings and "
                         f"{counts['photo']} photos (largest: {far[0].feature.label}, distance "
                         f"{far[0].distance:.2f}): too few rows to tell (significance {SIGNIFICANCE})"]
            else:
                lines = [f"the drawings and the photos differ by less than {MIN_DISTANCE} on every feature"]
        small = [f"{dom}s ({n})" for dom, n in counts.items() if n < MIN_ROWS]
        if small:
            lines.append(f"rows are checked for a counterpart only against a domain of at least {MIN_ROWS} "
                         f"rows: not against the {' and the '.join(small)}")
        problems = int((self.rows["problem"] != "").sum())
        if problems:
            lines.append(f"{problems} kept row(s) could not be read: see the problem column of features.csv")
        return lines

    def source_rows(self, top: int = 3) -> tuple[list[str], list[tuple]]:
        """Per source: its rows and the median (or main share) of the most different features."""
        shown = [d for d in self.diffs if math.isfinite(d.distance)][:top]
        cols = ["domain", "source", "rows"] + [d.feature.name for d in shown]
        rows = []
        for (domain, source), part in self.rows.groupby(["domain", "source"], sort=True):
            good = part[part["problem"] == ""]
            cells = [d.describe(good[d.feature.name].astype(str).to_numpy(dtype=object) if d.feature.category
                                else good[d.feature.name].to_numpy(dtype=np.float64)) for d in shown]
            rows.append((domain, source, len(part), *cells))
        return cols, rows

    def unmatched_rows(self, features: tuple[str, ...]) -> pd.DataFrame:
        """Rows lacking a counterpart on any of `features`, with the first such feature."""
        first = self.rows["unmatched"].map(
            lambda u: next((n for n in u.split(",") if n in features), "") if u else "")
        return self.rows.assign(drop_feature=first)[first != ""]


def check_features(names: tuple[str, ...]) -> tuple[str, ...]:
    """Validated --drop-unmatched feature names."""
    bad = [n for n in names if n not in FEATURE_NAMES]
    if bad:
        raise P2DError(
            f"unknown feature(s) {', '.join(bad)} for --drop-unmatched: use {', '.join(FEATURE_NAMES)}")
    return names


def parse_features(text: str | None) -> tuple[str, ...]:
    """'facing,smile' -> ('facing', 'smile'), validated."""
    return check_features(tuple(n.strip() for n in (text or "").split(",") if n.strip()))


def _missing_domain_message(manifest: Path, df: pd.DataFrame, missing: list[str]) -> str:
    """Why inspect cannot compare: a domain absent from the manifest, or present with no kept row
    (then its drop reasons, as the fix lies in its curation: for drawings, --boxes and the proposed
    boxes crop-drawings writes)."""
    from p2d.manifest import kept_mask

    kept = kept_mask(df)
    why = []
    for domain in missing:
        rows = df[df["domain"] == domain]
        if rows.empty or kept[rows.index].any():
            continue
        reasons = rows["reason"].astype(str).str.split(":").str[0].value_counts()
        why.append(f"its {len(rows)} {domain} row(s) are all dropped ("
                   + ", ".join(f"{r} {n}" for r, n in reasons.items()) + ")")
    if why:
        hint = ("; for drawings without a face give boxes with `p2d crop-drawings ... --boxes` (it writes "
                "proposed_boxes.csv to start from)" if "drawing" in missing else "")
        return f"{manifest}: inspect compares the two domains, but " + "; ".join(why) + hint
    return (f"{manifest} has no readable kept {', '.join(missing)} rows: inspect compares the two domains, "
            "so build a manifest with both (`p2d manifest build --from ... --from ...`)")


def inspect_frame(manifest: Path, df: pd.DataFrame, cache_dir: Path, rare_share: float = RARE_SHARE,
                  models=None, quiet: bool = False) -> Inspection:
    """Measure and compare the kept rows of a manifest frame (no files written but the cache)."""
    features = measure_manifest(manifest, df, cache_dir, models=models, quiet=quiet)
    domains = set(features.loc[features["problem"] == "", "domain"])
    if not {"drawing", "photo"} <= domains:
        raise P2DError(_missing_domain_message(manifest, df, sorted({"drawing", "photo"} - domains)))
    scored = score_rows(features, rare_share)
    return Inspection(Path(manifest), scored, differences(scored), rare_share)


def default_out(manifest: Path) -> Path:
    """Where `p2d inspect MANIFEST` writes: MANIFEST's folder / <stem>_inspect."""
    return Path(manifest).with_name(Path(manifest).stem + "_inspect")


def inspect_manifest(manifest: Path | str, out: Path | str | None = None, rare_share: float = RARE_SHARE,
                     sheet_rows: int = 24, models=None, quiet: bool = False) -> Inspection:
    """`p2d inspect`: measure, compare, and write features.csv, histograms.png and unmatched.png."""
    from p2d.images import write_text_atomic
    from p2d.manifest import read_manifest

    manifest = Path(manifest)
    out = Path(out) if out else default_out(manifest)
    result = inspect_frame(manifest, read_manifest(manifest), out / "cache", rare_share, models, quiet)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "features.csv"
    write_text_atomic(table, result.rows.to_csv(index=False, float_format="%.5g", lineterminator="\n"))
    result.files = [table, plot_histograms(result, out / "histograms.png"),
                    write_unmatched_sheet(result, out / "unmatched.png", sheet_rows)]
    return result


# ----------------------------------------------------------------------------- pictures


def plot_histograms(result: Inspection, path: Path) -> Path:
    """One panel per feature: the drawings' and the photos' distributions overlaid (shares)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from p2d.images import atomic_path

    cols = 4
    rows = -(-len(FEATURES) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows))
    by_name = {d.feature.name: d for d in result.diffs}
    for ax, f in zip(axes.flat, FEATURES):
        d = by_name[f.name]
        title = f"{f.label}\ndistance {d.distance:.2f}" if math.isfinite(d.distance) else f.label
        if f.category:
            keys = sorted(set(shares(d.drawings)) | set(shares(d.photos)))
            x = np.arange(len(keys))
            for k, (values, name) in enumerate(((d.drawings, "drawings"), (d.photos, "photos"))):
                s = shares(values)
                ax.bar(x + (k - 0.5) * 0.4, [s.get(key, 0.0) for key in keys], width=0.4, label=name,
                       color=f"C{k}")
            ax.set_xticks(x, keys, fontsize=8)
        else:
            both = np.concatenate([d.drawings, d.photos])
            both = both[np.isfinite(both)]
            if len(both):
                lo, hi = float(both.min()), float(both.max())
                bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 25)
                for k, (values, name) in enumerate(((d.drawings, "drawings"), (d.photos, "photos"))):
                    v = values[np.isfinite(values)]
                    if len(v):
                        ax.hist(v, bins=bins, weights=np.full(len(v), 1 / len(v)), alpha=0.5, label=name,
                                color=f"C{k}")
            ax.set_xlabel(f.unit, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(FEATURES):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"{result.manifest.name}: drawings vs photos (share of each set per bin)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path


def write_unmatched_sheet(result: Inspection, path: Path, count: int = 24) -> Path:
    """A contact sheet of the rows that most lack a counterpart, highest mismatch score first."""
    from p2d.images import try_read_image
    from p2d.manifest import resolve_path
    from p2d.sheets import write_sheet

    ok = result.rows[result.rows["problem"] == ""]
    # the rows that lack a counterpart somewhere; when none does, the least matched ones anyway
    worst = (ok[ok["unmatched"] != ""] if (ok["unmatched"] != "").any() else ok)
    worst = worst.sort_values("mismatch", ascending=False, kind="stable").head(count)
    images = [try_read_image(resolve_path(result.manifest, p))[0] for p in worst["path"]]
    labels = [f"{r.domain} {r.mismatch:.2f} {Path(r.path).name}\nno match: {r.unmatched or '-'}"
              for r in worst.itertuples()]
    return write_sheet(path, images, labels, cell=150, cols=6)
