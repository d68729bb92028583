"""How p2d/samples/drawing_faces (the drawings `p2d demo` trains on) was made from Debian's openclipart-png.

Usage: python docs/bundle_drawing_faces.py docs/bundle_drawing_faces.csv
       --exclude ../shared/eval-exclude.sha256 [--root /usr/share/openclipart/png]

PICKED_CSV has the columns source,x,y,w,h: a file under --root and a face box in its pixels. The
boxes are the face candidates `p2d crop-drawings` found (its detections cache, OUT/.p2d_detections.json)
in openclipart files copied out after leaving out every file whose SHA-256 is in
../shared/eval-exclude.sha256 and the drawing detector's eval split; a person looked at every
candidate's crop on contact sheets and listed only real faces (one box per face). Each is cut from
its source like `crop-drawings` frames a box, with CONTEXT times the side (so `p2d demo` can crop
again, at 1:1 for 64 px), stored as a small palette PNG, with its face box in boxes.csv and its
source, hash and licence in PROVENANCE.md.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pandas as pd
from PIL import Image

from p2d.padding import Pad, crop_square
from p2d.framing import square_from_box
from p2d.images import read_image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "p2d" / "samples" / "drawing_faces"
SIZE_PX = 96
CONTEXT = 1.5  # the bundled cut is 1.5x the CelebA-framed crop: the demo's 64 px crop is its centre
COLOURS = 64  # clip art has flat colours: a 64-colour palette keeps it and makes files ~4x smaller
PACKAGE, VERSION = "openclipart-png", "1:0.18+dfsg-19"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("picked", type=Path)
    parser.add_argument("--root", type=Path, default=Path("/usr/share/openclipart/png"))
    parser.add_argument("--exclude", type=Path, required=True,
                        help="the project's eval-exclude.sha256: files that must never be training data")
    args = parser.parse_args()
    picked = pd.read_csv(args.picked)
    excluded = {line.split()[0] for line in args.exclude.read_text().splitlines() if line.strip()}
    OUT.mkdir(parents=True, exist_ok=True)
    boxes, sources, names = ["path,x,y,w,h"], [], set()
    for row in picked.itertuples():
        original = args.root / row.source
        digest = hashlib.sha256(original.read_bytes()).hexdigest()
        if digest in excluded:
            raise SystemExit(f"{row.source} is on the eval-exclude list: take it out of {args.picked}")
        image = read_image(original)  # transparent drawings on white, as crop-drawings reads them
        cx, cy, side = square_from_box((row.x, row.y, row.w, row.h))
        crop, _, (x0, y0, side_px) = crop_square(image, cx, cy, side * CONTEXT, SIZE_PX, Pad("auto"))
        k = SIZE_PX / side_px
        box = [(row.x - x0) * k, (row.y - y0) * k, row.w * k, row.h * k]
        name, n = Path(row.source).name, 2
        while name in names:  # a second face in the same drawing
            name, n = f"{Path(row.source).stem}_face{n}.png", n + 1
        names.add(name)
        Image.fromarray(crop).quantize(COLOURS).save(OUT / name, optimize=True)
        boxes.append(f"{name}," + ",".join(f"{v:.1f}" for v in box))
        sources.append(f"| {name} | {row.source} | {digest[:16]} |")
    (OUT / "boxes.csv").write_text("\n".join(boxes) + "\n")
    (OUT / "PROVENANCE.md").write_text(PROVENANCE.format(n=len(picked), package=PACKAGE, version=VERSION,
                                                         size=SIZE_PX, table="\n".join(sources)))
    print(f"wrote {len(picked)} drawings to {OUT}")


PROVENANCE = """# Drawn faces for `p2d demo`

{n} face crops from the Open Clip Art Library, release 0.18, as packaged by Debian
(`{package}` {version}, files under /usr/share/openclipart/png), dedicated to the public domain
(Creative Commons Public Domain Dedication 1.0; see the package's debian/copyright). p2d needs no
openclipart at run or test time: these files are the copies.

Made by `docs/bundle_drawing_faces.py`: openclipart files whose SHA-256 is not in the project's
eval-exclude list and that are not in the drawing detector's eval split
(p2d/drawings/weights/drawing_faces_labels.csv) went through `p2d crop-drawings` (`people/` but `smilies/`
and `stickmen/`; files elsewhere named like people; the larger files of recreation, special,
unsorted, education, office and food); a person looked at every face candidate its detectors
gave and kept only real drawn human faces (no photos, no faceless icons, no animals, one box per face).
The 13 hand-labelled train-split face boxes of that label CSV not picked above
were added as labelled. The picked boxes are docs/bundle_drawing_faces.csv. Each is stored at {size}x{size}
px with 1.5x the crop's context (64-colour palette PNG); `boxes.csv` gives its face box in those
pixels, so `p2d crop-drawings --boxes` crops it again without detecting.

| file | source path (under png/) | SHA-256 of the source (first 16 hex) |
|---|---|---|
{table}
"""

if __name__ == "__main__":
    main()
