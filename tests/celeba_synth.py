"""Build CelebA-shaped folders from a few face photos (test and benchmark fixtures, not part of the package).

Tests and the benchmark need CelebA's layouts and file formats without CelebA itself (it cannot
be shipped). Each photo's face is found with dlib, then warped by a similarity transform into
CelebA's aligned geometry, exactly as CelebA's own images were made, with variants (mirrored,
shifted, scaled, brighter, darker, blurred) and the annotation files written in both layouts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from p2d.framing import (
    CELEBA_HEIGHT,
    CELEBA_TEMPLATE_5,
    CELEBA_WIDTH,
    five_points,
    similarity_fit,
    warp_similarity,
    transform_points,
)
from p2d.errors import P2DError
from p2d.faces import SMILE_THRESHOLD, FaceModels
from p2d.images import read_image, write_bytes_atomic, write_text_atomic

ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
LANDMARK_COLUMNS = (
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
    "rightmouth_y"
).split()


@dataclass
class Variant:
    """How one synthetic image is made from a source face (or a non-face picture)."""

    source: int  # index into the source faces (or non-faces when nonface=True)
    mirror: bool = False
    shift_px: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    rotate_deg: float = 0.0
    brightness: float = 1.0  # pixel values multiplied by this
    blur_sigma_px: float = 0.0
    nonface: bool = False
    second_face: int | None = None  # put this source face beside the first: a two-face image
    attrs: dict[str, int] = field(default_factory=dict)  # attribute overrides (1 / -1)
    partition: int = 0  # 0 train, 1 val, 2 test


@dataclass
class SourceFace:
    image: np.ndarray
    points5: np.ndarray  # CelebA's five points in the source photo
    smiling: bool


def load_source_faces(photos: list[Path], models: FaceModels,
                      smile_threshold: float = SMILE_THRESHOLD) -> list[SourceFace]:
    """Each photo's largest face and its five points (dlib HOG + 68-point predictor)."""
    from p2d.faces import smile_score

    faces = []
    for path in photos:
        img = read_image(path)
        found = models.detect_hog(img, 0) or models.detect_hog(img, 1)
        if not found:
            raise P2DError(f"{path}: no face found; give photos with one clear frontal face")
        det = max(found, key=lambda d: d.w * d.h)
        pts = models.landmarks(img, det.box)
        faces.append(SourceFace(img, five_points(pts), smile_score(pts) > smile_threshold))
    return faces


def _placement(points5: np.ndarray, v: Variant, width: int, centre_x: float,
               shrink: float = 1.0) -> np.ndarray:
    """Similarity from the source photo to the 178x218 frame for this variant's jitter."""
    target = CELEBA_TEMPLATE_5.copy()
    c = np.array([CELEBA_WIDTH / 2, 120.0])
    a = np.deg2rad(v.rotate_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    target = (target - c) @ rot.T * v.scale * shrink + c + np.array(v.shift_px)
    target[:, 0] += centre_x - CELEBA_WIDTH / 2
    src = points5.copy()
    if v.mirror:
        # Mirror the photo first: x -> width-1-x, and the left/right points swap roles.
        src[:, 0] = width - 1 - src[:, 0]
        src = src[[1, 0, 2, 4, 3]]
    return similarity_fit(src, target)


def render(v: Variant, faces: list[SourceFace], nonfaces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The 178x218 RGB image for a variant and its five points in that image."""
    size = (CELEBA_WIDTH, CELEBA_HEIGHT)
    if v.nonface:
        pic = nonfaces[v.source % len(nonfaces)]
        img = cv2.resize(pic, size, interpolation=cv2.INTER_AREA)
        points = CELEBA_TEMPLATE_5.copy()  # CelebA's files list five points for every image
    else:
        face = faces[v.source % len(faces)]
        src = face.image[:, ::-1] if v.mirror else face.image
        if v.second_face is None:
            m = _placement(face.points5, v, src.shape[1], CELEBA_WIDTH / 2)
            img = warp_similarity(src, m, size)
        else:
            m = _placement(face.points5, v, src.shape[1], CELEBA_WIDTH * 0.27, shrink=0.62)
            other = faces[v.second_face % len(faces)]
            m2 = _placement(other.points5, Variant(v.second_face), other.image.shape[1], CELEBA_WIDTH * 0.73,
                            shrink=0.62)
            img = warp_similarity(src, m, size)
            img[:, CELEBA_WIDTH // 2 :] = warp_similarity(other.image, m2, size)[:, CELEBA_WIDTH // 2 :]
        pts5 = face.points5.copy()
        if v.mirror:
            pts5[:, 0] = src.shape[1] - 1 - pts5[:, 0]
            pts5 = pts5[[1, 0, 2, 4, 3]]
        points = transform_points(m, pts5)
    if v.blur_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), v.blur_sigma_px)
    if v.brightness != 1.0:
        img = np.clip(img.astype(np.float32) * v.brightness, 0, 255).astype(np.uint8)
    return img, points


def jittered_variants(n: int, n_faces: int, n_nonfaces: int, seed: int = 0) -> list[Variant]:
    """n variants cycling over the faces with random small jitter (for benchmarks), one non-face
    in every 50 images."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if n_nonfaces and i % 50 == 49:
            out.append(Variant(i, nonface=True, partition=i % 3))
            continue
        out.append(
            Variant(
                source=i % n_faces,
                mirror=rng.random() < 0.5,
                shift_px=(rng.uniform(-4, 4), rng.uniform(-4, 4)),
                scale=rng.uniform(0.94, 1.06),
                rotate_deg=rng.uniform(-3, 3),
                brightness=rng.uniform(0.8, 1.2),
                partition=0 if i % 10 < 8 else (1 if i % 10 == 8 else 2),
            )
        )
    return out


def write_celeba_folder(
    root: Path,
    variants: list[Variant],
    faces: list[SourceFace],
    nonfaces: list[np.ndarray],
    layout: str = "txt",
    annotations: bool = True,
    jpeg_quality: int = 90,
) -> list[str]:
    """Write a CelebA-shaped folder: layout "txt" (img_align_celeba/ + list_*.txt) or "csv"
    (img_align_celeba/img_align_celeba/ + list_*.csv with image_id). Returns the image names."""
    if layout not in ("txt", "csv"):
        raise ValueError(f"layout must be 'txt' or 'csv', not {layout!r}")
    root = Path(root)
    images_dir = root / "img_align_celeba"
    if layout == "csv":
        images_dir = images_dir / "img_align_celeba"
    images_dir.mkdir(parents=True, exist_ok=True)
    names, attr_rows, lm_rows, part_rows = [], [], [], []
    for i, v in enumerate(variants, start=1):
        name = f"{i:06d}.jpg"
        img, pts = render(v, faces, nonfaces)
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        assert ok
        write_bytes_atomic(images_dir / name, buf.tobytes())
        attrs = {a: -1 for a in ATTRIBUTES}
        if not v.nonface:
            attrs["Smiling"] = 1 if faces[v.source % len(faces)].smiling else -1
            attrs["Blurry"] = 1 if v.blur_sigma_px >= 1.5 else -1
        attrs.update(v.attrs)
        names.append(name)
        attr_rows.append([attrs[a] for a in ATTRIBUTES])
        lm_rows.append([int(round(c)) for c in pts.reshape(-1)])
        part_rows.append(v.partition)
    if annotations:
        _write_annotations(root, layout, names, attr_rows, lm_rows, part_rows)
    return names


def _write_annotations(root: Path, layout: str, names, attr_rows, lm_rows, part_rows) -> None:
    if layout == "txt":
        # The official files: a count line, a header line, then space-padded rows.
        attr = [str(len(names)), " ".join(ATTRIBUTES) + " "]
        attr += [name + " " + " ".join(f"{v:>2}" for v in row) for name, row in zip(names, attr_rows)]
        lms = [str(len(names)), " ".join(LANDMARK_COLUMNS)]
        lms += [f"{name:<10}" + "".join(f"{v:>5}" for v in row) for name, row in zip(names, lm_rows)]
        parts = [f"{name} {p}" for name, p in zip(names, part_rows)]
        write_text_atomic(root / "list_attr_celeba.txt", "\n".join(attr) + "\n")
        write_text_atomic(root / "list_landmarks_align_celeba.txt", "\n".join(lms) + "\n")
        write_text_atomic(root / "list_eval_partition.txt", "\n".join(parts) + "\n")
    else:
        attr = ["image_id," + ",".join(ATTRIBUTES)]
        attr += [name + "," + ",".join(str(v) for v in row) for name, row in zip(names, attr_rows)]
        lms = ["image_id," + ",".join(LANDMARK_COLUMNS)]
        lms += [name + "," + ",".join(str(v) for v in row) for name, row in zip(names, lm_rows)]
        parts = ["image_id,partition"] + [f"{name},{p}" for name, p in zip(names, part_rows)]
        write_text_atomic(root / "list_attr_celeba.csv", "\n".join(attr) + "\n")
        write_text_atomic(root / "list_landmarks_align_celeba.csv", "\n".join(lms) + "\n")
        write_text_atomic(root / "list_eval_partition.csv", "\n".join(parts) + "\n")
