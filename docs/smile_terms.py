"""Draws the smile score's terms on real fixture photos' landmarks: writes docs/smile_terms.png (used by README.md).

Usage: python docs/smile_terms.py [--out docs/smile_terms.png]

Each panel is a public-domain photo from p2d/samples/photos, levelled (eye line
horizontal) and scaled so the eyes are 100 px apart, with dlib's 68 landmarks and the terms of
p2d.faces.smile_score drawn on it: the corner spread (48-54) against the eye distance, and the
upper lip's inner centre (62) against its neutral height below the nose base (33), whose rise is
the lift term.
"""  # noqa: E501 (the first line is the script's --help description)

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from p2d import faces
from p2d.images import read_image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "p2d" / "samples" / "photos"
PANELS = (("astronaut.png", "wide smile (astronaut)"), ("a_youngster_01.png", "neutral (a youngster)"))
IOD_PX = 100  # eye distance in the drawing
CANVAS, CANVAS_EYES = (400, 420), (200.0, 140.0)
BOX = dict(facecolor="black", alpha=0.55, pad=1.5, lw=0)  # labels stay legible on skin


def levelled(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image and points rotated so the eye line is horizontal and scaled to IOD_PX."""
    a, b = faces.eye_centers(points)
    scale = IOD_PX / faces.inter_ocular(points)
    mid = (a + b) / 2
    m = cv2.getRotationMatrix2D(tuple(map(float, mid)), faces.roll_deg(points), scale)
    m[:, 2] += np.array(CANVAS_EYES) - mid  # the eyes' midpoint lands at CANVAS_EYES
    out = cv2.warpAffine(image, m, CANVAS, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return out, points @ m[:, :2].T + m[:, 2]


def landmarks(name: str, models: faces.FaceModels) -> tuple[np.ndarray, np.ndarray]:
    image = read_image(PHOTOS / name)
    found = models.detect_hog(image, 0) or models.detect_hog(image, 1)
    best = max(found, key=lambda d: d.score)
    return image, models.landmarks(image, best.box)


def draw(ax, image: np.ndarray, points: np.ndarray, title: str) -> None:
    score = faces.smile_score(points)
    spread, lift = faces.mouth_width_ratio(points), faces.upper_lip_lift(points)
    img, p = levelled(image, points)
    eye_y = faces.eye_centers(p)[0][1]
    x0, x1 = p[:, 0].min() - 15, p[:, 0].max() + 75
    y0, y1 = eye_y - 40, p[8, 1] + 16
    ax.imshow(img)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    ax.axis("off")
    ax.plot(*p[48:60].T, ".", color="white", ms=3)
    ax.plot(*p[60:68].T, ".", color="yellow", ms=3)
    a, b = faces.eye_centers(p)
    ax.annotate("", b, a, arrowprops=dict(arrowstyle="<->", color="cyan", lw=1.5))
    ax.text((a[0] + b[0]) / 2, a[1] - 6, "IOD (scale)", color="cyan", ha="center", fontsize=8)
    ax.annotate("", p[54], p[48], arrowprops=dict(arrowstyle="<->", color="lime", lw=1.5))
    ax.text(p[48, 0], p[8, 1] + 2, f"spread {spread:.2f}", color="lime", fontsize=8, bbox=BOX)
    neutral_y = p[33, 1] + faces.NEUTRAL_UPPER_LIP * IOD_PX
    ax.plot([p[48, 0] - 10, p[54, 0] + 10], [neutral_y] * 2, "--", color="orange", lw=1)
    ax.plot([p[33, 0] - 25, p[33, 0] + 25], [p[33, 1]] * 2, "-", color="orange", lw=0.8)
    ax.plot(*p[33], "o", color="orange", ms=4)
    ax.plot(*p[62], "o", color="magenta", ms=4)
    ax.annotate("", (p[62, 0], p[62, 1]), (p[62, 0], neutral_y),
                arrowprops=dict(arrowstyle="->", color="magenta", lw=1.2, shrinkA=0, shrinkB=0))
    ax.text(p[54, 0] + 12, neutral_y, f"neutral upper lip\n({faces.NEUTRAL_UPPER_LIP} IOD below nose)",
            color="orange", fontsize=6.5, va="center")
    ax.text(p[54, 0] + 12, p[33, 1], "nose base (33)", color="orange", fontsize=6.5, va="center")
    ax.text(p[48, 0], p[8, 1] + 12, f"lift of 62 {lift:+.3f}", color="#ff8cff", fontsize=8, bbox=BOX)
    ax.set_title(f"{title}\nscore {spread:.2f} + {lift:+.3f} = {score:.2f}"
                 f" ({'>' if score > faces.SMILE_THRESHOLD else '<='} {faces.SMILE_THRESHOLD})", fontsize=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "smile_terms.png")
    args = ap.parse_args()
    models = faces.FaceModels()
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 4.6))
    for ax, (name, title) in zip(axes, PANELS):
        draw(ax, *landmarks(name, models), title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
