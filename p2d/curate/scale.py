"""`p2d scale`: aspect-preserving width scaling of drawings (the trainer takes random crops of them).

As was done for one artist's set: every image scaled to `--width`, height by the same ratio. An
image whose scaled height is below the training size cannot give a full random crop: it is padded
top and bottom with its background (same --pad choices as crop-drawings), or dropped with
`reason=too_short` (`--short drop`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from p2d.curate.hashing import phash_hex, thumb_b64
from p2d.padding import Pad, pad_image
from p2d.errors import P2DError
from p2d.images import input_images, output_stems, too_small, try_read_image, write_image
from p2d.manifest import new_rows, relative_path, write_manifest

SHORT_ACTIONS = ("pad", "drop")


def scale_to_width(image: np.ndarray, width_px: int) -> np.ndarray:
    """The image scaled to `width_px` wide, height by the same ratio (at least 1 px)."""
    h, w = image.shape[:2]
    height = max(1, int(round(h * width_px / w)))
    interp = cv2.INTER_AREA if width_px < w else cv2.INTER_CUBIC
    return cv2.resize(image, (width_px, height), interpolation=interp)


def pad_to_height(image: np.ndarray, min_height_px: int, pad: Pad) -> tuple[np.ndarray, float]:
    """The image padded top and bottom (half each) to `min_height_px`, and the padded fraction."""
    h = image.shape[0]
    if h >= min_height_px:
        return image, 0.0
    extra = min_height_px - h
    out = pad_image(image, extra // 2, extra - extra // 2, 0, 0, pad)
    return out, extra / min_height_px


@dataclass
class ScaleResult:
    manifest: Path
    rows: list[dict]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def summary_rows(self) -> list[tuple[str, object]]:
        kept = sum(1 for x in self.rows if x["keep"])
        padded = sum(1 for x in self.rows if x["keep"] and x.get("padded_fraction", 0) > 0)
        return [("images", len(self.rows)), ("kept", kept), ("padded", padded),
                ("dropped", len(self.rows) - kept), ("seconds", round(self.seconds, 1))]


@dataclass(frozen=True)
class ScaleOptions:
    """`p2d scale`'s options, checked on creation. `short`: what becomes of an image whose scaled
    height is below `min_height_px`, pad (with `pad`) or drop; `source`: the manifest's label (None:
    RAW's folder name); `manifest`: where it goes (None: OUT/manifest.csv)."""

    width_px: int = 128
    min_height_px: int = 128
    short: str = "pad"
    pad: Pad = Pad("auto")
    background: tuple[int, int, int] = (255, 255, 255)  # under transparent drawings
    source: str | None = None
    manifest: Path | str | None = None

    def __post_init__(self):
        if self.width_px < 8:
            raise P2DError(f"--width {self.width_px} is too small: use at least 8 pixels (128 for training)")
        if self.min_height_px > 0 and self.width_px < self.min_height_px:
            side = self.min_height_px
            raise P2DError(f"--width {self.width_px} is below the training size {side}: a random "
                           f"{side}x{side} crop needs the width to be at least that")
        if self.short not in SHORT_ACTIONS:
            raise P2DError(f"--short {self.short!r}: use pad or drop")


def scale_folder(raw: Path | str, out: Path | str, options: ScaleOptions = ScaleOptions()) -> ScaleResult:
    """Scale every image under `raw` to `options.width_px`, write PNGs and `out/manifest.csv`
    (crop=random)."""
    o = options
    raw, out = Path(raw), Path(out)
    files, root, left_out = input_images(raw, out, "drawings")
    source = o.source or root.resolve().name
    manifest_path = Path(o.manifest) if o.manifest else out / "manifest.csv"
    t0 = time.perf_counter()
    rows = []
    from p2d.ui import progress

    with progress() as bar:
        task = bar.add_task("scale", total=len(files), status="")
        for path, stem in zip(files, output_stems(files, root)):
            target = out / f"{stem}.png"
            row = {"path": relative_path(manifest_path, target), "domain": "drawing", "source": source,
                   "split": "train", "crop": "random", "width": "", "height": "", "phash": "",
                   "keep": False, "reason": "", "source_path": relative_path(manifest_path, path)}
            image, why = try_read_image(path, background=o.background)
            if image is None or too_small(image):
                row["reason"] = why or too_small(image)
            else:
                row.update(source_width=image.shape[1], source_height=image.shape[0])
                scaled = scale_to_width(image, o.width_px)
                fraction = 0.0
                if scaled.shape[0] < o.min_height_px and o.short == "drop":
                    row["reason"] = f"too_short:{scaled.shape[0]}px"
                else:
                    scaled, fraction = pad_to_height(scaled, o.min_height_px, o.pad)
                    write_image(target, scaled)
                    row.update(width=scaled.shape[1],
                               height=scaled.shape[0], phash=phash_hex(scaled),
                               phash_mirror=phash_hex(np.ascontiguousarray(scaled[:, ::-1])),
                               thumb=thumb_b64(scaled), keep=True, padded_fraction=round(fraction, 4))
            rows.append(row)
            bar.update(task, advance=1, status=row["reason"])
    write_manifest(new_rows(rows), manifest_path)
    return ScaleResult(manifest_path, rows, time.perf_counter() - t0, left_out)
