"""Takes the screenshot of `p2d review` shown in README.md (docs/review.png) with the browser test itself.

Usage: python docs/review_picture.py [--out docs/review.png]
Runs tests/test_review_browser.py's drawing test in headless Chromium, which saves the page as it shows a
proposed box to accept (needs Debian's chromium and chromium-driver, and the dev extra).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "review.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "review.png"
        test = "tests/test_review_browser.py::test_fix_drawings_in_the_browser"
        subprocess.run([sys.executable, "-m", "pytest", "-q", test], check=True, cwd=ROOT,
                       env={**os.environ, "P2D_REVIEW_SCREENSHOT": str(shot)})
        if not shot.is_file():
            sys.exit(
                "the test ran but took no screenshot: is Chromium installed (the test skips without it)?")
        # A 64-colour palette chosen on the page (fast octree: keeps the status dots' small colours).
        picture = Image.open(shot).convert("RGB").quantize(64, method=Image.Quantize.FASTOCTREE)
        picture.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
