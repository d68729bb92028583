"""Contact sheets: a grid of labelled thumbnails as one uint8 image (review sheets, duplicate groups)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def contact_sheet(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    cell: int = 160,
    cols: int = 6,
    label_lines: int = 2,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """A uint8 HxWx3 grid: each image fitted (aspect kept) into a cell x cell square, with its label
    (up to `label_lines` lines, PIL's default font) under it. Gray images are shown as gray."""
    if cell < 16 or cols < 1:
        raise ValueError("cell must be >= 16 pixels and cols >= 1")
    labels = list(labels) if labels is not None else [""] * len(images)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    font = ImageFont.load_default()
    line_h = 12
    cell_h = cell + line_h * label_lines + 4
    n = max(1, len(images))
    cols = min(cols, n)
    rows = -(-n // cols)
    sheet = Image.new("RGB", (cols * cell, rows * cell_h), background)
    draw = ImageDraw.Draw(sheet)
    for i, (img, label) in enumerate(zip(images, labels)):
        x, y = (i % cols) * cell, (i // cols) * cell_h
        arr = np.asarray(img)
        pil = Image.fromarray(arr if arr.ndim == 3 else np.stack([arr] * 3, axis=-1))
        pil.thumbnail((cell - 4, cell - 4))
        sheet.paste(pil, (x + (cell - pil.width) // 2, y + (cell - pil.height) // 2))
        for k, text in enumerate(str(label).splitlines()[:label_lines]):
            # Keep the text inside the cell: cut long names (the default font is ~6 px a char).
            limit = max(4, cell // 6)
            text = text if len(text) <= limit else text[: limit - 1] + "~"
            draw.text((x + 3, y + cell + k * line_h), text, fill=(0, 0, 0), font=font)
    return np.asarray(sheet, dtype=np.uint8)


def side_by_side(left: np.ndarray, right: np.ndarray, gap_px: int = 4) -> np.ndarray:
    """Two images in one RGB row, both scaled to the taller's height, a white gap between."""
    rgb = [np.asarray(im if im.ndim == 3 else np.stack([im] * 3, axis=-1), np.uint8) for im in (left, right)]
    h = max(im.shape[0] for im in rgb)
    scaled = [np.asarray(Image.fromarray(im).resize((max(1, round(im.shape[1] * h / im.shape[0])), h)))
              for im in rgb]
    gap = np.full((h, gap_px, 3), 255, np.uint8)
    return np.concatenate([scaled[0], gap, scaled[1]], axis=1)


def placeholder(side_px: int = 64, level: int = 200) -> np.ndarray:
    """A flat gray square standing in for an image that could not be read."""
    return np.full((side_px, side_px, 3), level, np.uint8)


def write_sheet(path: Path | str, images: Sequence[np.ndarray | None], labels: Sequence[str], cell: int = 160,
                cols: int = 6) -> Path:
    """Write a contact sheet (atomically); an image that could not be read (None) shows as a gray square."""
    from p2d.images import write_image

    cells = [placeholder() if img is None else img for img in images]
    write_image(path, contact_sheet(cells, labels, cell=cell, cols=cols))
    return Path(path)


def draw_box(
    image: np.ndarray, box: tuple[float, float, float, float], color: tuple[int, int, int] = (255, 0, 0)
) -> np.ndarray:
    """A copy of an RGB image with an (x, y, w, h) rectangle drawn on it, line ~1% of the size."""
    pil = Image.fromarray(image if image.ndim == 3 else np.stack([image] * 3, axis=-1))
    x, y, w, h = box
    width = max(2, max(pil.size) // 100)
    ImageDraw.Draw(pil).rectangle([x, y, x + w, y + h], outline=color, width=width)
    return np.asarray(pil)
