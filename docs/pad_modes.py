"""Compares `p2d curate photos --pad` modes on tight face crops: writes docs/pad_modes.png (README.md).

Usage: python docs/pad_modes.py [--out docs/pad_modes.png] [--count 6]

LFW's photos (scikit-image's subset, scaled up 4x as `p2d demo` does) fill the picture with the
face, so most of a CelebA-like frame lies past the edge. Each row: the source, then the 64 px frame
`p2d curate photos` writes with each fill. reflect mirrors eyes and mouths around the face; edge
streaks; inpaint (OpenCV Telea) draws rays; blur (the default) leaves a soft background.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2

from p2d.padding import parse_pad
from p2d.curate.photos import curate_photos
from p2d.curate.pipeline import CurateOptions
from p2d.demo import write_lfw_photos
from p2d.images import read_image
from p2d.sheets import write_sheet

ROOT = Path(__file__).resolve().parents[1]
MODES = ("reflect", "edge", "inpaint", "auto", "blur")
SHOW_PX = 128  # each 64 px frame shown at twice its size (nearest neighbour: the pixels as trained)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "pad_modes.png")
    parser.add_argument("--count", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "lfw"
        write_lfw_photos(photos, count=args.count + 2)
        runs = {m: curate_photos(photos, Path(tmp) / m, CurateOptions(size=64), pad=parse_pad(m)).rows
                for m in MODES}
        kept = runs["blur"][runs["blur"]["keep"]].head(args.count)
        images, labels = [], []
        for row in kept.itertuples():
            src = read_image(photos / Path(row.source_path).name)
            images.append(cv2.resize(src, (SHOW_PX, SHOW_PX), interpolation=cv2.INTER_AREA))
            labels.append(f"source ({row.padded_fraction:.0%} filled)")
            for mode in MODES:
                framed = read_image(Path(tmp) / mode / row.path)
                images.append(cv2.resize(framed, (SHOW_PX, SHOW_PX), interpolation=cv2.INTER_NEAREST))
                labels.append(mode + (" (default)" if mode == "blur" else ""))
        write_sheet(args.out, images, labels, cell=SHOW_PX + 4, cols=len(MODES) + 1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
