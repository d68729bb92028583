"""Shrunken copies of the images the review page shows, made on first request and kept on disk."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, ImageOps

from p2d.images import write_bytes_atomic

SIZES = (160, 720)  # the list's cards, the editor


class Thumbnails:
    """JPEG thumbnails under `folder`, keyed by the source file's path, size, mtime and the side asked for:
    a changed drawing gets a new thumbnail, an unchanged one is read from disk."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def get(self, path: Path, side: int) -> bytes:
        if side not in SIZES:
            raise ValueError(f"thumbnail side must be one of {SIZES}")
        st = path.stat()
        key = hashlib.sha1(f"{path}:{st.st_size}:{st.st_mtime_ns}:{side}".encode()).hexdigest()
        cached = self.folder / key[:2] / f"{key}.jpg"
        if cached.is_file():
            return cached.read_bytes()
        data = shrink(path, side)
        write_bytes_atomic(cached, data)
        return data


def shrink(path: Path, side: int) -> bytes:
    """The image at most `side` pixels on its longer side, transparency on white, as JPEG bytes."""
    with Image.open(path) as im:
        im.draft("RGB", (side, side))  # JPEG: decode at a reduced scale, much cheaper for big photos
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im)
        im = im.convert("RGB")
        im.thumbnail((side, side), Image.Resampling.LANCZOS if side <= 200 else Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
