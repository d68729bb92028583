"""Framing faces like CelebA's aligned images: the geometry (pure numpy), photo face detection, crops.

CelebA's "aligned & cropped" images (178x218) were made by a similarity transform that puts the
eyes, nose tip and mouth corners of every face near fixed positions. The template below is the
mean of `list_landmarks_align_celeba.txt` (image-left eye, image-right eye, nose tip, image-left
mouth corner, image-right mouth corner). Training uses the centred 178x178 square of each image
(rows 20..198), so "framed like CelebA" means: these five points land where they land in that square.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from p2d.faces import FaceModels, eye_centers
from p2d.images import downscale

CELEBA_WIDTH, CELEBA_HEIGHT = 178, 218
CELEBA_TEMPLATE_5 = np.array(
    [[69.0, 111.0], [108.0, 111.0], [88.0, 136.0], [72.0, 152.0], [105.0, 152.0]]
)
# The square that `center_crop_square` takes out of a 178x218 image starts at this row.
CELEBA_SQUARE_TOP = (CELEBA_HEIGHT - CELEBA_WIDTH) // 2

# dlib's HOG detector box for a face with the template's five points, measured on CelebA-framed
# faces (x, y, w, h in 178x218 pixels). The shape predictor was trained on HOG boxes, so on the
# fast path it gets the box HOG would have given instead of running HOG.
CELEBA_HOG_BOX = (47.0, 94.0, 83.0, 83.0)

# The same framing in units of the crop side (the centred 178x178 square): the face box width over
# the side, the box centre, the eye and mouth heights and the five points' centre.
_BX, _BY, _BW, _BH = CELEBA_HOG_BOX
CELEBA_FACE_FRACTION = _BW / CELEBA_WIDTH  # 0.466
_BOX_CENTRE = ((_BX + _BW / 2) / CELEBA_WIDTH, (_BY + _BH / 2 - CELEBA_SQUARE_TOP) / CELEBA_WIDTH)
_EYES_Y = (CELEBA_TEMPLATE_5[:2, 1].mean() - CELEBA_SQUARE_TOP) / CELEBA_WIDTH  # 0.511
_MOUTH_Y = (CELEBA_TEMPLATE_5[3:, 1].mean() - CELEBA_SQUARE_TOP) / CELEBA_WIDTH  # 0.742
_EYES_MOUTH = _MOUTH_Y - _EYES_Y  # 0.230 of the side
_FACE_CENTRE = (CELEBA_TEMPLATE_5[:, 0].mean() / CELEBA_WIDTH, (_EYES_Y + _MOUTH_Y) / 2)

DETECT_MAX_SIDE_PX = 1024  # photo face detection runs on a copy no larger than this (see detect_faces)


def five_points(points68: np.ndarray) -> np.ndarray:
    """CelebA's five landmarks from dlib's 68: eye centres, nose tip, mouth corners (5, 2)."""
    p = np.asarray(points68, dtype=np.float64)
    return np.array([p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[30], p[48], p[54]])


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) taking `src` points closest to
    `dst` in least squares (Umeyama's solution; in 2-D it has a closed form in complex numbers:
    rotation-and-scale a = sum(conj(s) d) / sum(|s|^2) over the centred points)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    mu_s, mu_d = zs.mean(), zd.mean()
    s, d = zs - mu_s, zd - mu_d
    norm = float((s.real**2 + s.imag**2).sum())
    if norm <= 1e-12:
        raise ValueError("similarity_fit: source points coincide")
    a = (np.conj(s) * d).sum() / norm
    t = mu_d - a * mu_s
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]])


def transform_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]


def transform_scale(m: np.ndarray) -> float:
    """The uniform scale factor of a similarity matrix."""
    return float(math.hypot(m[0, 0], m[1, 0]))


def box_from_five(points5: np.ndarray) -> tuple[float, float, float, float]:
    """The HOG-style face box (x, y, w, h) for a face whose five CelebA points are `points5`:
    the template's box moved and scaled with the face (boxes stay axis-aligned, as HOG's are)."""
    m = similarity_fit(CELEBA_TEMPLATE_5, points5)
    x, y, w, h = CELEBA_HOG_BOX
    cx, cy = transform_points(m, np.array([[x + w / 2, y + h / 2]]))[0]
    s = transform_scale(m)
    return (float(cx - s * w / 2), float(cy - s * h / 2), float(s * w), float(s * h))


def center_crop_square(image: np.ndarray) -> np.ndarray:
    """The centred square of side min(h, w) (CelebA's 178x218 -> rows 20..198)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size: area averaging when shrinking (no aliasing), cubic when growing."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)


def frame_matrix(points68: np.ndarray, size: int) -> np.ndarray:
    """The similarity that maps a face (its 68 landmarks) into a size x size frame laid out like
    the centred square of a CelebA aligned image."""
    target = (CELEBA_TEMPLATE_5 - [0.0, CELEBA_SQUARE_TOP]) * (size / CELEBA_WIDTH)
    return similarity_fit(five_points(points68), target)


def frame_face(image: np.ndarray, points68: np.ndarray, size: int = 128) -> np.ndarray:
    """The face with these 68 landmarks, rotated upright and scaled so that its eyes, nose and
    mouth sit where CelebA's aligned faces have them, as a size x size image (same channels).

    Parts of the frame outside the photo are filled by reflecting the photo at its border (as
    CelebA's own aligned images do; `curate photos --pad` and `translate --crop-faces` fill with
    `padding.frame_padded` instead), so no black wedges enter training.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    return warp_similarity(image, frame_matrix(points68, size), (size, size))


def frame_padded_fraction(m: np.ndarray, width: int, height: int, size: int, samples: int = 64) -> float:
    """The share of a size x size frame (warped from a width x height image by the similarity `m`)
    that lies past the image's edge: pixel centres on a samples x samples grid mapped back into
    the image (1/samples^2 resolution; the share does not depend on `size`)."""
    grid = (np.arange(samples) + 0.5) * (size / samples) - 0.5
    gx, gy = np.meshgrid(grid, grid)
    inv = cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))
    src = transform_points(inv, np.stack([gx.ravel(), gy.ravel()], axis=1))
    inside = ((src[:, 0] >= -0.5) & (src[:, 0] <= width - 0.5)
              & (src[:, 1] >= -0.5) & (src[:, 1] <= height - 0.5))
    return float(1.0 - inside.mean())


# Past this share of filled frame the fill must cover part of the face box itself: the frame
# outside CelebA's face box is 1 - 0.466^2 = 78% of it (any filled area beyond that overlaps the
# face). A tight crop such as LFW's (face box ~ the whole photo) fills ~70% and stays under it.
MAX_PADDED_FRACTION = round(1.0 - CELEBA_FACE_FRACTION**2, 2)


def warp_similarity(image: np.ndarray, m: np.ndarray, size_wh: tuple[int, int],
                    border: int = cv2.BORDER_REFLECT_101, value: tuple[int, ...] = (0, 0, 0)) -> np.ndarray:
    """Warp by a similarity into a (width, height) frame; outside the image, OpenCV's `border`
    mode fills (reflection by default; `value` is the colour of BORDER_CONSTANT)."""
    scale = transform_scale(m)
    src = image
    if scale < 0.5:
        # warpAffine samples bilinearly: a large shrink would alias. Area-average the image down
        # first so the remaining warp shrinks by at most 2x.
        h, w = image.shape[:2]
        new_w, new_h = max(1, round(w * scale * 2)), max(1, round(h * scale * 2))
        src = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        m = m @ np.linalg.inv(np.diag([new_w / w, new_h / h, 1.0]))  # frame <- original <- resized
    return cv2.warpAffine(
        np.ascontiguousarray(src), m, size_wh, flags=cv2.INTER_LINEAR, borderMode=border,
        borderValue=tuple(float(v) for v in value),
    )


def face_patch(gray: np.ndarray, points68: np.ndarray, side_px: int = 64) -> np.ndarray:
    """The landmarks' bounding box cut from a gray image and resized to side_px x side_px: the
    face at a fixed scale, so blur and brightness are measured on the face alone, the same way
    for a 178 px CelebA image and a 4000 px photo."""
    p = np.asarray(points68)
    h, w = gray.shape[:2]
    x0, y0 = np.floor(p.min(axis=0)).astype(int)
    x1, y1 = np.ceil(p.max(axis=0)).astype(int) + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((side_px, side_px), dtype=np.uint8)
    crop = gray[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if min(crop.shape) > side_px else cv2.INTER_LINEAR
    return cv2.resize(crop, (side_px, side_px), interpolation=interp)


def framing_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The known face box (x, y, w, h) in pixels of a curated face image of this size: the box
    dlib's HOG detector gives on CelebA's aligned faces (`CELEBA_HOG_BOX`), moved into the centred
    square that curated faces are framed like, and scaled to the image."""
    x, y, w, h = CELEBA_HOG_BOX
    sx, sy = width / CELEBA_WIDTH, height / CELEBA_WIDTH
    return (x * sx, (y - CELEBA_SQUARE_TOP) * sy, w * sx, h * sy)


def square_from_box(box: tuple[float, float, float, float], face_fraction: float = CELEBA_FACE_FRACTION
                    ) -> tuple[float, float, float]:
    """(cx, cy, side) of the crop that frames a dlib-style face box like CelebA does."""
    x, y, w, h = box
    side = max(w, h) / face_fraction
    zoom = face_fraction / CELEBA_FACE_FRACTION
    cx = x + w / 2 - (_BOX_CENTRE[0] - 0.5) * zoom * side
    cy = y + h / 2 - (_BOX_CENTRE[1] - 0.5) * zoom * side
    return cx, cy, side


def square_from_landmarks(points: np.ndarray, face_fraction: float = CELEBA_FACE_FRACTION
                          ) -> tuple[float, float, float]:
    """(cx, cy, side) of the crop putting the eyes and mouth where CelebA's framing puts them."""
    eyes = np.mean(eye_centers(points), axis=0)
    mouth = points[48:68].mean(axis=0)
    zoom = face_fraction / CELEBA_FACE_FRACTION
    side = float(np.linalg.norm(mouth - eyes)) / (_EYES_MOUTH * zoom)
    mid = (eyes + mouth) / 2
    cx = mid[0] - (_FACE_CENTRE[0] - 0.5) * zoom * side
    cy = mid[1] - (_FACE_CENTRE[1] - 0.5) * zoom * side
    return float(cx), float(cy), side


# ------------------------------------------------------------------ photos: detect, then frame


def detect_faces(image: np.ndarray, models: FaceModels, upsample: int) -> list[list[float]]:
    """dlib HOG faces [x, y, w, h, score] in image pixels, largest first.

    Photos larger than DETECT_MAX_SIDE_PX are searched on a shrunken copy (HOG's cost grows with
    the pixel count: a 12-megapixel photo at upsample 1 takes seconds) and the boxes scaled back;
    the landmarks still come from the full-resolution photo.
    """
    small, f = downscale(image, DETECT_MAX_SIDE_PX)
    found = [[d.x / f, d.y / f, d.w / f, d.h / f, d.score] for d in models.detect_hog(small, upsample)]
    return sorted(found, key=lambda b: (-b[2] * b[3], -b[4]))
