"""Test support for the trainer tests: small real manifests built from real image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import DATA as PD_FACES  # the bundled samples
from p2d.curate.hashing import phash_hex
from p2d.images import read_image, write_image
from p2d.manifest import new_rows, write_manifest

TINY_RECIPE = Path(__file__).parent.parent / "p2d" / "recipes" / "tiny.toml"


def lfw_faces() -> np.ndarray:
    """scikit-image's 100 real 25x25 gray face crops (shipped in its wheel: no download), as uint8."""
    from skimage.data import lfw_subset

    return (lfw_subset()[:100] * 255).round().astype(np.uint8)


def row(manifest: Path, path: Path, domain: str, split: str, crop: str = "center", keep: bool = True) -> dict:
    img = read_image(path, "RGB")
    return {
        "path": str(path.resolve()), "domain": domain, "source": "test", "split": split, "crop": crop,
        "width": img.shape[1], "height": img.shape[0], "phash": phash_hex(img), "keep": keep,
        "reason": "" if keep else "blur",
    }


def make_manifest(folder: Path, photos_train: int = 5, photos_test: int = 2, drawings_train: int = 4,
                  drawings_test: int = 2, name: str = "faces", recipe: Path | None = TINY_RECIPE) -> Path:
    """A manifest of real faces: LFW face crops (photos, gray 25x25, plus the colour astronaut
    photo) and public-domain drawings (one as a crop=random row); a dropped row as well. With
    `recipe`, a copy is written beside it (same stem), as `p2d train` expects."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{name}.csv"
    faces = lfw_faces()
    rows = []
    for i in range(photos_train + photos_test):
        path = folder / "photos" / f"lfw_{i:03d}.png"
        write_image(path, faces[i])
        rows.append(row(manifest, path, "photo", "train" if i < photos_train else "test"))
    if photos_train:
        rows.append(row(manifest, PD_FACES / "photos" / "astronaut.png", "photo", "train"))
    drawings = sorted((PD_FACES / "drawings").glob("*.png"))
    for i in range(drawings_train + drawings_test):
        split = "train" if i < drawings_train else "test"
        rows.append(row(manifest, drawings[i], "drawing", split, crop="random" if i == 1 else "center"))
    rows.append(
        row(manifest, PD_FACES / "nonfaces" / "fire_engine_mimooh_01.png", "drawing", "train", keep=False))
    write_manifest(new_rows(rows), manifest)
    if recipe is not None:
        (folder / f"{name}.toml").write_text(Path(recipe).read_text())
    return manifest
