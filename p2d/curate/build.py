"""`p2d manifest build`: join per-source manifests into one experiment manifest beside its recipe.

Steps: read every `--from` manifest and apply the overrides.csv beside it (p2d.curate.overrides:
a decision saved after curating counts without curating again); rewrite paths relative to the
output; dedup across all of them (`p2d.curate.dedup`, keeping apart the pairs of each source's
not_duplicates.csv); assign the train/test split per domain; validate; write atomically.

The split is a pure function of each row's content, so it is stable on re-runs and when rows are
added: each kept row gets a rank u in [0, 1) from SHA-256 of its domain and phash (the path if it
has no phash). `--test-fraction f`: a row is test when u < f, decided row by row, so adding rows
never moves an existing row (a domain of 2+ kept rows that would get none gets its lowest-ranked
row, so every domain has a test image to sample). `--test-count n`: the n lowest-ranked rows of each domain
are test; adding rows moves at most as many old rows out of test as new rows with a lower rank come in.
Neither given: 5% per domain, but at least DEFAULT_MIN_TEST rows where the domain can spare them
(at most MAX_TEST_SHARE of it): `p2d evaluate` needs ~50 test photos to separate epochs beyond the
noise (a 10-photo split left KID's noise as large as the differences between late epochs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from p2d.curate.dedup import (DEFAULT_MAX_HAMMING, DEFAULT_MIN_SIMILARITY, DedupReport, LabelView,
                              dedup_frame, not_duplicate_pairs)
from p2d.curate.overrides import apply_overrides, read_curate_settings, read_overrides
from p2d.errors import ManifestError, P2DError, RecipeError
from p2d.inspection import Inspection, check_features, default_out, inspect_frame
from p2d.manifest import (kept_mask, new_rows, read_manifest, relative_path, resolve_path, validate,
                          write_manifest)


def split_rank(domain: str, key: str) -> float:
    """A row's stable rank in [0, 1): SHA-256 of `domain:key` as a fraction."""
    digest = hashlib.sha256(f"{domain}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


DEFAULT_TEST_FRACTION = 0.05
DEFAULT_MIN_TEST = 50
MAX_TEST_SHARE = 0.2  # the minimum never takes more than this share of a domain's kept rows


def assign_split(df: pd.DataFrame, test_count: int | None = None, test_fraction: float | None = None,
                 min_test: int = 0) -> pd.Series:
    """`train`/`test` for every row (dropped rows are train), per domain, as the module docstring
    says; with `test_fraction`, at least min(min_test, MAX_TEST_SHARE of the kept rows) per domain."""
    if (test_count is None) == (test_fraction is None):
        raise P2DError("give exactly one of --test-count N or --test-fraction F")
    if test_fraction is not None and not 0.0 <= test_fraction < 1.0:
        raise P2DError(f"--test-fraction {test_fraction} is out of range: use 0 <= F < 1 (e.g. 0.05)")
    if test_count is not None and test_count < 0:
        raise P2DError(f"--test-count {test_count} must be >= 0")
    keys = [
        p if len(str(p)) == 16 else path for p, path in zip(df["phash"].astype(str), df["path"].astype(str))]
    rank = np.array([split_rank(d, k) for d, k in zip(df["domain"], keys)])
    keep = df["keep"].astype(bool).to_numpy()
    split = np.full(len(df), "train", dtype=object)
    for domain in df["domain"].unique():
        rows = np.flatnonzero((df["domain"] == domain).to_numpy() & keep)
        if test_fraction is not None:
            chosen = rows[rank[rows] < test_fraction]
            if len(chosen) == 0 and test_fraction > 0 and len(rows) >= 2:
                # A small domain would get no test row at all, and training would have nothing
                # to draw samples from: take its lowest-ranked row (still a pure function of content).
                chosen = rows[np.argsort(rank[rows], kind="stable")[:1]]
            floor = min(min_test, int(MAX_TEST_SHARE * len(rows)))
            if len(chosen) < floor:  # the lowest-ranked rows: a superset of those below the fraction
                chosen = rows[np.argsort(rank[rows], kind="stable")[:floor]]
        else:
            chosen = rows[np.argsort(rank[rows], kind="stable")[:test_count]]
        split[chosen] = "test"
    return pd.Series(split, index=df.index)


def read_recipe(path: Path | str) -> dict:
    """The recipe, validated by the trainer's loader (unknown keys and bad values are errors)."""
    from p2d.recipe import load_recipe

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} not found: give a TOML recipe, e.g. manifests/exp4.toml")
    return load_recipe(path).to_dict()


@dataclass
class BuildResult:
    output: Path
    frame: pd.DataFrame
    report: DedupReport
    summary: list[tuple[str, str, int, int, int, int]]  # domain, source, rows, kept, train, test
    inspection: Inspection | None = None  # drawings vs photos, before any unmatched row was dropped
    drop_unmatched: tuple[str, ...] = ()
    # domain, feature, rows dropped as unmatched
    moved: list[tuple[str, str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def drop_unmatched_rows(df: pd.DataFrame, inspection: Inspection, features: tuple[str, ...]
                        ) -> tuple[pd.DataFrame, list[tuple[str, str, int]]]:
    """Rows lacking a counterpart on any of `features` become keep=false, reason `unmatched:<feature>`
    (the first of `features` they lack); also (domain, feature, rows) of what moved."""
    lacking = inspection.unmatched_rows(features)
    df = df.copy()
    df.loc[lacking.index, "keep"] = False
    df.loc[lacking.index, "reason"] = ["unmatched:" + f for f in lacking["drop_feature"]]
    moved = [(domain, feature, len(part)) for (domain, feature), part in
             lacking.groupby(["domain", "drop_feature"], sort=True)]
    return df, moved


# The short summary every build prints reads each measured image once (~14 ms a crop): on all of
# CelebA that would be most of an hour, so without --drop-unmatched (which must judge every row) it
# looks at a fixed sample of this many kept rows per domain, enough for its shares and KS distances.
SUMMARY_SAMPLE_ROWS = 2000


def _summary_sample(df: pd.DataFrame, rows: int = SUMMARY_SAMPLE_ROWS) -> pd.DataFrame:
    """At most `rows` kept rows per domain, the same ones on every run (seeded), in file order."""
    kept = df[kept_mask(df)]
    if kept.groupby("domain").size().max() <= rows:
        return df
    parts = [g if len(g) <= rows else g.sample(n=rows, random_state=0) for _, g in kept.groupby("domain")]
    return pd.concat(parts).sort_index()


def _inspect(output: Path, df: pd.DataFrame,
             features: tuple[str, ...]) -> tuple[Inspection | None, list[str]]:
    """The drawings-vs-photos inspection of the kept rows, or why there is none (it cannot be had
    without both domains; unmatched rows cannot then be told, which is an error only when asked for)."""
    if not features:
        df = _summary_sample(df)
    try:
        return inspect_frame(output, df, default_out(output) / "cache", quiet=True), []
    except P2DError as exc:
        if features:
            raise P2DError(f"--drop-unmatched {','.join(features)}: {exc}") from None
        return None, [f"no inspection: {exc}"]


@dataclass(frozen=True)
class BuildOptions:
    """`p2d manifest build`'s choices: the test split (at most one of test_count, test_fraction; neither:
    the module docstring's default), dedup's thresholds, the features whose unmatched rows are dropped
    (None: the recipe's data.drop_unmatched), and whether the drawings are compared with the photos."""

    test_count: int | None = None
    test_fraction: float | None = None
    max_hamming: int = DEFAULT_MAX_HAMMING
    min_similarity: float = DEFAULT_MIN_SIMILARITY
    drop_unmatched: tuple[str, ...] | None = None
    inspect: bool = True


def build_manifest(recipe: Path | str, sources: list[Path | str], output: Path | str | None = None,
                   options: BuildOptions = BuildOptions()) -> BuildResult:
    """Join, dedup, drop rows without a counterpart (`options.drop_unmatched` features), split,
    validate and write the experiment manifest (default: recipe path .csv). With `options.inspect`,
    the drawings are compared with the photos (`p2d inspect`)."""
    o = options
    test_count, test_fraction, drop_unmatched = o.test_count, o.test_fraction, o.drop_unmatched
    recipe = Path(recipe)
    recipe_dict = read_recipe(recipe)
    if drop_unmatched is None:
        drop_unmatched = tuple(recipe_dict.get("data", {}).get("drop_unmatched", ()))
    drop_unmatched = check_features(tuple(drop_unmatched))
    if not sources:
        raise P2DError("give the per-source manifests: --from data/drawings/manifest.csv --from ...")
    min_test = 0
    if test_count is None and test_fraction is None:
        test_fraction, min_test = DEFAULT_TEST_FRACTION, DEFAULT_MIN_TEST
    output = Path(output) if output else recipe.with_suffix(".csv")
    # Paths like ../data/x.png resolve through the output folder, so it must exist to check them.
    output.parent.mkdir(parents=True, exist_ok=True)
    frames, files, notes = [], [], []
    for src in map(Path, sources):
        df = read_manifest(src)
        problems = validate(df, src, check_files=False)
        if problems:
            raise ManifestError(f"{src} has {len(problems)} invalid row(s), first: {problems[0]}; "
                                f"run `p2d manifest check {src}`")
        overrides = read_overrides(src.parent)
        if overrides:
            crop = (read_curate_settings(src.parent) or {}).get("crop")
            df, override_notes = apply_overrides(df, src, overrides, crop)
            notes += override_notes
        df = df.copy()
        abs_files = [resolve_path(src, p) for p in df["path"].astype(str)]
        for col in ("path", "source_path"):  # paths are relative to the manifest that holds them
            if col in df.columns:
                df[col] = [relative_path(output, resolve_path(src, p)) if str(p).strip() else ""
                           for p in df[col].astype(str)]
        df["from_manifest"] = relative_path(output, src)
        frames.append(df)
        files += abs_files
    df = pd.concat(frames, ignore_index=True)
    dup = df["path"].duplicated(keep="first") & (df["path"] != "")
    if dup.any():
        # The same file listed twice (e.g. one manifest given twice): keep the first row.
        df.loc[dup, ["keep", "reason"]] = [False, "listed_twice"]
    # A kept row whose file is gone is recorded and dropped, not fatal to the whole build.
    gone = df["keep"].astype(bool).to_numpy() & np.array([not f.is_file() for f in files])
    df.loc[gone, ["keep", "reason"]] = [False, "unreadable:missing"]
    labels = LabelView(output, files)
    df, report = dedup_frame(df, files, [labels] * len(df), o.max_hamming, o.min_similarity,
                             not_duplicate_pairs(list(map(Path, sources))))
    inspection, moved = None, []
    if o.inspect or drop_unmatched:
        inspection, inspect_notes = _inspect(output, df, drop_unmatched)
        notes += inspect_notes
    if drop_unmatched and inspection is not None:
        df, moved = drop_unmatched_rows(df, inspection, drop_unmatched)
    df["split"] = assign_split(df, test_count, test_fraction, min_test)
    df = new_rows(df.to_dict("records"))
    problems = validate(df, output)
    if problems:
        raise ManifestError(f"the joined manifest has {len(problems)} invalid row(s), first: {problems[0]}: "
                            "fix the source manifest it came from and rebuild")
    write_manifest(df, output)
    summary = []
    for (domain, source), part in df.groupby(["domain", "source"], sort=True):
        kept = part["keep"].astype(bool)
        summary.append((domain, source, len(part), int(kept.sum()),
                        int((kept & (part["split"] == "train")).sum()),
                        int((kept & (part["split"] == "test")).sum())))
    return BuildResult(output, df, report, summary, inspection, drop_unmatched, moved, notes)
