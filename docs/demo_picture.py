"""Runs `p2d demo` and copies its picture to docs/demo.png (shown at the top of README.md).

Usage: python docs/demo_picture.py [--out docs/demo.png] [--work p2d-demo]
(The picture in the repository came from this script on a quiet 2-core machine.)

The demo takes 1.5 to 5.5 minutes on 2 quiet CPU cores (about three quarters of it training); --work keeps its
folder (a re-run there resumes and only redraws the picture). The demo's own summary prints how long it took.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "demo.png")
    parser.add_argument("--work", type=Path, default=Path("p2d-demo"))
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "p2d", "demo", "--out", str(args.work)], check=True)
    # A 256-colour palette keeps the picture's look at a third of the bytes in the repository.
    Image.open(args.work / "demo.png").convert("RGB").quantize(256).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
