"""Runs `p2d demo` and copies its picture to docs/demo.png (shown at the top of README.md).

Usage: python docs/demo_picture.py [--out docs/demo.png] [--work p2d-demo]

The demo trains for ~3 minutes on 2 quiet CPU cores; --work keeps its folder (a re-run there resumes
and only redraws the picture). The demo's own summary prints how long it took.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "demo.png")
    parser.add_argument("--work", type=Path, default=Path("p2d-demo"))
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "p2d", "demo", "--out", str(args.work)], check=True)
    shutil.copy2(args.work / "demo.png", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
