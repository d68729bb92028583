"""`p2d curate celeba`: find CelebA (either layout), read its annotation files, select and curate.

Two layouts exist in the wild and both work:
- official: ROOT/img_align_celeba/000001.jpg ... and ROOT/list_attr_celeba.txt,
  list_landmarks_align_celeba.txt, list_eval_partition.txt (a count line, a header line, then
  space-padded rows);
- CSV (as re-packaged on Kaggle): ROOT/img_align_celeba/img_align_celeba/*.jpg and
  list_attr_celeba.csv, list_landmarks_align_celeba.csv, list_eval_partition.csv with `image_id`.
Every annotation file is optional. With the landmark file the fast path takes each face box from
CelebA's own five points; without it, from the fixed aligned geometry; `detect=True` runs dlib's
HOG detector on every image instead (and can then count faces).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from p2d.curate.pipeline import CurateOptions, Item, RunResult, RunSettings, run
from p2d.errors import P2DError
from p2d.framing import CELEBA_HEIGHT, CELEBA_WIDTH
from p2d.images import IMAGE_EXTENSIONS, check_output_dir

CELEBA_ENV = "P2D_CELEBA"
DEFAULT_OUT = Path("curated") / "celeba"
PARTITIONS = {"train": 0, "val": 1, "test": 2}
ANNOTATIONS = {
    "attr": "list_attr_celeba",
    "landmarks": "list_landmarks_align_celeba",
    "partition": "list_eval_partition",
}


@dataclass
class CelebaLayout:
    root: Path
    images_dir: Path
    files: dict[str, Path] = field(default_factory=dict)  # "attr"/"landmarks"/"partition" -> file

    @property
    def kind(self) -> str:
        if any(p.suffix == ".csv" for p in self.files.values()):
            return "csv"
        return "official" if self.files else "images only"


# ------------------------------------------------------------------ finding the data


def _has_images(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS for e in it)
    except OSError:
        return False


def _images_dir(root: Path) -> Path | None:
    for cand in (root / "img_align_celeba" / "img_align_celeba", root / "img_align_celeba",
                 root / "celeba" / "img_align_celeba" / "img_align_celeba",
                 root / "celeba" / "img_align_celeba"):
        if cand.is_dir() and _has_images(cand):
            return cand
    if root.name == "img_align_celeba" and _has_images(root):
        return root
    return None


def find_layout(root: Path) -> CelebaLayout | None:
    """The CelebA layout under `root` (or None): images folder and whichever annotation files exist."""
    root = Path(root)
    images = _images_dir(root)
    if images is None:
        return None
    files: dict[str, Path] = {}
    search = [root, root / "celeba", images.parent, images.parent.parent]
    for key, stem in ANNOTATIONS.items():
        for folder in search:
            hit = next((folder / f"{stem}{ext}" for ext in (".txt", ".csv")
                        if (folder / f"{stem}{ext}").is_file()), None)
            if hit:
                files[key] = hit
                break
    return CelebaLayout(root, images, files)


def default_roots() -> list[tuple[str, Path | None]]:
    """Where p2d looks for CelebA when no ROOT is given, in order (label, path)."""
    env = os.environ.get(CELEBA_ENV)
    return [
        (f"${CELEBA_ENV}", Path(env) if env else None),
        ("./celeba", Path("celeba")),
        ("./data/celeba (torchvision's layout)", Path("data") / "celeba"),
        ("./img_align_celeba", Path("img_align_celeba")),
        ("~/data/celeba", Path.home() / "data" / "celeba"),
    ]


def locate(root: Path | str | None) -> CelebaLayout:
    """The CelebA layout at `root`, or found in the usual places; P2DError says where it looked."""
    if root is not None:
        layout = find_layout(Path(root))
        if layout is None:
            raise P2DError(
                f"no CelebA images under {root}: expected {root}/img_align_celeba/*.jpg (official "
                f"layout) or {root}/img_align_celeba/img_align_celeba/*.jpg (CSV layout). "
                "Give the folder that holds img_align_celeba/"
            )
        return layout
    looked = []
    for label, path in default_roots():
        if path is None:
            looked.append(f"{label} (not set)")
            continue
        looked.append(f"{label} ({path.resolve()})" if not label.startswith("./") else label)
        if path.is_dir():
            layout = find_layout(path)
            if layout is not None:
                return layout
    raise P2DError(
        "CelebA not found. Looked in: " + "; ".join(looked) + ". Download the aligned images "
        "(img_align_celeba.zip) and optionally the list_*.txt annotation files, unpack them into "
        f"one of those folders, or give the folder: `p2d curate celeba PATH` (or set {CELEBA_ENV}=PATH)."
    )


# ------------------------------------------------------------------ annotation files


def read_annotation(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Column names and rows (image name -> values) of a CelebA annotation file, .txt or .csv.

    .txt: an optional count line, an optional header line, then `000001.jpg -1  1 ...` rows.
    .csv: a header whose first column is image_id.
    """
    path = Path(path)
    rows: dict[str, list[str]] = {}
    try:
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                if not header or header[0].strip() != "image_id":
                    raise P2DError(f"{path}: the first column must be image_id (CelebA's CSV layout); "
                                   "re-download the file or remove it (annotation files are optional)")
                columns = [h.strip() for h in header[1:]]
                for n, rec in enumerate(reader, start=2):
                    if not rec:
                        continue
                    if len(rec) != len(columns) + 1:
                        raise P2DError(f"{path} line {n}: {len(rec)} fields, expected {len(columns) + 1}; "
                                       "the file is damaged: re-download it or remove it")
                    rows[rec[0].strip()] = [v.strip() for v in rec[1:]]
            return columns, rows
        with path.open(encoding="utf-8-sig") as fh:
            lines = [ln.split() for ln in fh]
    except UnicodeDecodeError:
        raise P2DError(f"{path} is not a text file: re-download it or remove it") from None
    lines = [ln for ln in lines if ln]
    if lines and len(lines[0]) == 1 and lines[0][0].isdigit():
        lines = lines[1:]  # the count line
    columns: list[str] = []
    if lines and not _is_image_name(lines[0][0]):
        columns, lines = lines[0], lines[1:]
    width = len(columns) + 1 if columns else (len(lines[0]) if lines else 0)
    if not columns:
        columns = [f"c{i}" for i in range(1, width)]
    for n, ln in enumerate(lines):
        if len(ln) != width:
            raise P2DError(f"{path}: row {n + 1} ({ln[0]}) has {len(ln)} fields, expected {width}; "
                           "the file is damaged: re-download it or remove it (annotation files are optional)")
        rows[ln[0]] = ln[1:]
    return columns, rows


def _is_image_name(token: str) -> bool:
    return os.path.splitext(token)[1].lower() in IMAGE_EXTENSIONS


@dataclass
class Annotations:
    attr_names: list[str] = field(default_factory=list)
    attrs: dict[str, list[str]] = field(default_factory=dict)
    landmarks: dict[str, list[list[float]]] = field(default_factory=dict)
    partition: dict[str, int] = field(default_factory=dict)


def load_annotations(layout: CelebaLayout, need: set[str]) -> Annotations:
    """Read the annotation files the run needs (landmarks always when present: the fast path)."""
    ann = Annotations()
    if "attr" in need and "attr" in layout.files:
        ann.attr_names, ann.attrs = read_annotation(layout.files["attr"])
    if "landmarks" in need and "landmarks" in layout.files:
        _, rows = read_annotation(layout.files["landmarks"])
        try:
            ann.landmarks = {
                k: [[float(v[j]), float(v[j + 1])] for j in range(0, 10, 2)] for k, v in rows.items()}
        except (ValueError, IndexError):
            raise P2DError(f"{layout.files['landmarks']}: rows must hold 10 numbers (five x, y points); "
                           "re-download it or remove it") from None
    if "partition" in need and "partition" in layout.files:
        _, rows = read_annotation(layout.files["partition"])
        ann.partition = {k: int(v[0]) for k, v in rows.items() if v and v[0].lstrip("-").isdigit()}
    return ann


# ------------------------------------------------------------------ selection and the run


def list_celeba_images(images_dir: Path) -> list[str]:
    """Image file names in the folder in file order (CelebA's names are zero-padded numbers)."""
    with os.scandir(images_dir) as it:
        names = [
            e.name for e in it if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(names)


def select(
    layout: CelebaLayout,
    first: int | None = None,
    partition: str | None = None,
    exclude_attrs: tuple[str, ...] | list[str] = (),
    use_landmarks: bool = True,
    need_attrs: bool = False,
) -> tuple[list[Item], Annotations]:
    """The selected images as pipeline items, with their CelebA annotations."""
    if first is not None and first < 1:
        raise P2DError(f"--first {first} must be at least 1")
    if partition is not None and partition not in PARTITIONS:
        raise P2DError(f"--partition {partition} is not known: use train, val or test")
    if partition is not None and "partition" not in layout.files:
        raise P2DError(f"--partition needs list_eval_partition.txt (or .csv) beside {layout.images_dir}: "
                       "download it from CelebA, or drop --partition")
    if (exclude_attrs or need_attrs) and "attr" not in layout.files:
        raise P2DError(f"--exclude-attr and --smile-source attr need list_attr_celeba.txt (or .csv) beside "
                       f"{layout.images_dir}: download it from CelebA, or drop those options")
    need = {"attr", "partition"} | ({"landmarks"} if use_landmarks else set())
    ann = load_annotations(layout, need)
    unknown = [a for a in exclude_attrs if a not in ann.attr_names]
    if unknown:
        raise P2DError(f"--exclude-attr {', '.join(unknown)}: no such CelebA attribute; known: "
                       f"{' '.join(ann.attr_names)}")
    names = list_celeba_images(layout.images_dir)
    if partition is not None:
        want = PARTITIONS[partition]
        names = [n for n in names if ann.partition.get(n) == want]
    if first is not None:
        names = names[:first]
    col = {a: i for i, a in enumerate(ann.attr_names)}
    items = []
    for name in names:
        values = ann.attrs.get(name)
        smiling = int(values[col["Smiling"]]) if values is not None and "Smiling" in col else None
        pre = ""
        if values is not None:
            pre = next((f"attr:{a}" for a in exclude_attrs if values[col[a]] == "1"), "")
        extra = {"image_id": name, "partition": ann.partition.get(name)}
        items.append(Item(name=name, path=layout.images_dir / name, out_stem=Path(name).stem,
                          points5=ann.landmarks.get(name), smiling=smiling, pre_reason=pre, extra=extra))
    return items, ann


def _first_image_size(items: list[Item]) -> tuple[int, int] | None:
    """(width, height) of the first selected image that opens (header only)."""
    from PIL import Image

    for it in items[:20]:
        try:
            with Image.open(it.path) as img:
                return img.size
        except (OSError, ValueError):
            continue
    return None


def _aligned_shape(width: int, height: int) -> bool:
    """CelebA's aligned aspect ratio (178:218), at any scale, within 3%."""
    return abs(width / height - CELEBA_WIDTH / CELEBA_HEIGHT) <= 0.03 * CELEBA_WIDTH / CELEBA_HEIGHT


def curate_celeba(
    root: Path | str | None = None,
    out: Path | str | None = None,
    options: CurateOptions = CurateOptions(),
    *,
    first: int | None = None,
    partition: str | None = None,
    exclude_attrs: tuple[str, ...] | list[str] = (),
    smile_source: str = "landmarks",
    detect: bool = False,
) -> RunResult:
    """Curate CelebA's aligned images into OUT/images/*.png and OUT/manifest.csv.

    Rows keep CelebA's file order; dropped images stay in the manifest with keep=false and a reason.
    OUT/overrides.csv, where the user has one (`p2d review`), keeps or drops single images.
    `first`, `partition`, `exclude_attrs`: which images (select); `smile_source`: what --drop-smiles
    reads, the smile score or CelebA's Smiling attribute; `detect`: dlib's HOG on every image.
    """
    options = replace(options, source=options.source or "celeba")
    layout = locate(root)
    out_dir = Path(out) if out is not None else DEFAULT_OUT
    check_output_dir(layout.images_dir, out_dir)
    items, _ = select(layout, first=first, partition=partition, exclude_attrs=tuple(exclude_attrs),
                      use_landmarks=not detect, need_attrs=options.drop_smiles and smile_source == "attr")
    notes = [f"CelebA at {layout.root} ({layout.kind} layout; images in {layout.images_dir})"]
    shape = _first_image_size(items)
    crop = "center"
    if not detect and "landmarks" not in layout.files and shape and not _aligned_shape(*shape):
        # Without CelebA's landmark file the fast path assumes the aligned 178x218 geometry; these
        # are not aligned crops (e.g. img_celeba, the in-the-wild images), so find the faces instead.
        detect, crop = True, "frame"
        notes.append(f"images are {shape[0]}x{shape[1]}, not CelebA's aligned 178x218: detecting faces "
                     "and framing them like CelebA's aligned faces")
    settings = RunSettings(
        out_dir=out_dir, options=options, face_box="detect" if detect else "known", crop=crop,
        smile_source=smile_source,
        # framing needs landmarks: an image without a face cannot be kept, whatever the filters
        need_face=crop == "frame",
    )
    result = run(items, settings, title="celeba")
    result.notes = notes + result.notes  # the run's own: what OUT/overrides.csv changed
    if detect:
        result.notes.append(f"full detection: dlib HOG (upsample {options.upsample}) on every image")
    elif "landmarks" in layout.files:
        result.notes.append(f"fast path: face boxes from {layout.files['landmarks'].name}; no detection "
                            "(no_face / multi_face need --detect)")
    else:
        result.notes.append("fast path: face boxes from CelebA's aligned geometry; no detection "
                            "(no_face / multi_face need --detect)")
    return result
