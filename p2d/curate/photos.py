"""`p2d curate photos`: any folder of face photos, framed like CelebA's aligned faces.

Each photo goes through dlib's HOG detector and the 68-point predictor; the largest face is rotated
upright and scaled from its landmarks (eyes, nose, mouth corners) so that it sits in the frame as
CelebA's aligned faces do, at --size. The same filters as `p2d curate celeba` apply.

The framing itself (`p2d.framing.frame_matrix`, `p2d.padding.crop_face`) is shared with translate --crop-faces.
"""

from __future__ import annotations

from pathlib import Path

from p2d.curate.filters import Thresholds
from p2d.padding import Pad
from p2d.curate.pipeline import Item, RunResult, RunSettings, run
from p2d.errors import P2DError
from p2d.framing import MAX_PADDED_FRACTION
from p2d.images import input_images, output_stems

__all__ = ["curate_photos", "DEFAULT_OUT"]

DEFAULT_OUT = Path("curated")


def curate_photos(
    folder: Path | str,
    out: Path | str | None = None,
    *,
    source: str = "photos",
    drop_smiles: bool = False,
    drop_outliers: bool = False,
    thresholds: Thresholds | None = None,
    size: int = 128,
    fmt: str = "png",
    upsample: int = 1,
    workers: int = 1,
    models_dir: Path | str | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    pad: Pad = Pad("blur"),
    max_padded_fraction: float = MAX_PADDED_FRACTION,
) -> RunResult:
    """Detect, landmark, filter and frame every photo under `folder` into OUT/images and
    OUT/manifest.csv (source = `source`). Photos without a face are kept in the manifest as
    keep=false, reason no_face; photos whose frame is filled past their edge (`pad`) more than
    `max_padded_fraction` of its area, as reason padded. OUT/overrides.csv, where the user has one
    (`p2d review`), keeps or drops single photos whatever the filters say."""
    folder = Path(folder)
    if not str(source).strip() or any(c in source for c in ",\n\r"):
        raise P2DError(f"--source {source!r} must be a short label without commas, e.g. my_photos")
    out_dir = Path(out) if out is not None else DEFAULT_OUT / source
    files, root, left_out = input_images(folder, out_dir, "face photos")
    items = [
        Item(name=f.relative_to(root).as_posix(), path=f, out_stem=stem)
        for f, stem in zip(files, output_stems(files, root))
    ]
    settings = RunSettings(
        out_dir=out_dir, source=source, face_box="detect", crop="frame", size=size, fmt=fmt,
        thresholds=thresholds or Thresholds(), drop_smiles=drop_smiles, drop_outliers=drop_outliers,
        need_face=True, upsample=upsample, workers=workers, models_dir=models_dir,
        engine=engine, ray_address=ray_address, pad=pad, max_padded_fraction=max_padded_fraction,
    )
    result = run(items, settings, title=source)
    result.notes = [f"{len(items)} photos under {folder}; faces found by dlib HOG (upsample {upsample}), "
                    "framed like CelebA's aligned faces"] + left_out + result.notes  # the run's: overrides
    return result
