"""Figures behind `p2d evaluate`'s defaults: HOG detection on curated faces at several sizes, how
close the framing-box fallback's landmarks come to HOG's, per-image cost of each measurement, and
the KID scale on dlib features. Run: python -m benchmarks.evaluate [PHOTOS_DIR] (default: the
bundled public-domain photos, each also mirrored and shifted to get a few more faces)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from p2d import evaluate as ev
from p2d.faces import FaceModels
from p2d.framing import frame_face, framing_box
from p2d.images import list_images, read_image

ROOT = Path(__file__).resolve().parents[1]


def framed_faces(folder: Path, models: FaceModels, size: int = 128) -> list[np.ndarray]:
    faces = []
    for path in list_images(folder):
        img = read_image(path)
        found = models.detect_hog(img, 0) or models.detect_hog(img, 1)
        if not found:
            continue
        points = models.landmarks(img, max(found, key=lambda d: d.w * d.h).box)
        face = frame_face(img, points, size)
        faces += [face, np.ascontiguousarray(face[:, ::-1]), np.roll(face, (3, -2), axis=(0, 1))]
    return faces


def timed(fn, *args, repeat: int = 5) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    return (time.perf_counter() - start) / repeat * 1000


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "p2d" / "samples" / "photos"
    models = FaceModels()
    probe = ev.FaceProbe(models)
    faces = framed_faces(folder, models, 128)
    print(f"{len(faces)} framed faces from {folder}")
    print("\nHOG detection on CelebA-framed faces (share found) by image side and upsampling:")
    for side in (128, 64, 32):
        small = [np.asarray(Image.fromarray(f).resize((side, side), Image.BICUBIC)) for f in faces]
        cells = []
        for up in range(4):
            found = sum(bool(models.detect_hog(f, up)) for f in small)
            cells.append(f"upsample {up}: {found}/{len(small)}")
        print(f"  {side:>3} px (default upsample {ev.detect_upsample(side)}): " + ", ".join(cells))

    print("\nFraming-box fallback: landmark error vs landmarks in HOG's own box (inter-ocular units):")
    errors = []
    for f in faces:
        hog = probe.face(f, fallback=False)
        if hog.hog_found:
            framed = models.landmarks(f, framing_box(*f.shape[1::-1]))
            errors.append(ev.landmark_error(hog.points, framed))
    if errors:
        print(f"  n={len(errors)} mean {np.mean(errors):.3f} max {np.max(errors):.3f}")

    f = faces[0]
    face = probe.face(f, fallback=True)
    print("\nPer-image cost on one core-share of this machine (ms):")
    print(f"  HOG, upsample {ev.detect_upsample(128)} (128 px): {timed(models.detect_hog, f, 1):.1f}")
    print(f"  68 landmarks: {timed(models.landmarks, f, framing_box(128, 128)):.1f}")
    print(f"  identity embedding (aligned chip): {timed(probe.embedding, f, face.points):.1f}")
    print(f"  KID feature (150x150 chip): {timed(probe.features, [f]):.1f}")

    feats = probe.features(faces)
    blurred = probe.features(
        [np.asarray(Image.fromarray(x).resize((16, 16)).resize((128, 128))) for x in faces])
    print("\nKID on scaled dlib features (mean +- std over subsets):")
    half = len(faces) // 2
    print("  faces vs other faces: %.4f +- %.4f" % ev.kid(feats[:half], feats[half:]))
    print("  faces vs the same faces blurred: %.4f +- %.4f" % ev.kid(feats, blurred))


if __name__ == "__main__":
    main()
