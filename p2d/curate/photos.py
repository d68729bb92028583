"""`p2d curate photos`: any folder of face photos, framed like CelebA's aligned faces.

Each photo goes through dlib's HOG detector and the 68-point predictor; the largest face is rotated
upright and scaled from its landmarks (eyes, nose, mouth corners) so that it sits in the frame as
CelebA's aligned faces do, at --size. The same filters as `p2d curate celeba` apply.

The framing itself (`p2d.framing.frame_matrix`, `p2d.padding.crop_face`) is shared with translate
--crop-faces.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from p2d.padding import Pad
from p2d.curate.pipeline import CurateOptions, Item, RunResult, RunSettings, run
from p2d.framing import MAX_PADDED_FRACTION
from p2d.images import input_images, output_stems

__all__ = ["curate_photos", "DEFAULT_OUT"]

DEFAULT_OUT = Path("curated")


def curate_photos(
    folder: Path | str,
    out: Path | str | None = None,
    options: CurateOptions = CurateOptions(),
    *,
    pad: Pad = Pad("blur"),
    max_padded_fraction: float = MAX_PADDED_FRACTION,
) -> RunResult:
    """Detect, landmark, filter and frame every photo under `folder` into OUT/images and
    OUT/manifest.csv (source: `options.source`, default photos; OUT default: curated/SOURCE). Photos
    without a face are kept in the manifest as keep=false, reason no_face; photos whose frame is
    filled past their edge (`pad`) more than `max_padded_fraction` of its area, as reason padded.
    OUT/overrides.csv, where the user has one (`p2d review`), keeps or drops single photos whatever
    the filters say."""
    folder = Path(folder)
    options = replace(options, source=options.source or "photos")
    out_dir = Path(out) if out is not None else DEFAULT_OUT / options.source
    files, root, left_out = input_images(folder, out_dir, "face photos")
    items = [
        Item(name=f.relative_to(root).as_posix(), path=f, out_stem=stem)
        for f, stem in zip(files, output_stems(files, root))
    ]
    settings = RunSettings(out_dir=out_dir, options=options, face_box="detect", crop="frame", need_face=True,
                           pad=pad, max_padded_fraction=max_padded_fraction)
    result = run(items, settings, title=options.source)
    # the folder's notes first, then the run's own (what OUT/overrides.csv changed)
    result.notes = [f"{len(items)} photos under {folder}; faces found by dlib HOG (upsample "
                    f"{options.upsample}), framed like CelebA's aligned faces"] + left_out + result.notes
    return result
