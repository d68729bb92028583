"""Filling the part of a crop that lies past the image edge: --pad auto|edge|blur|reflect|inpaint|COLOUR.

Drawings sit on a background (white paper, a flat colour); a crop that runs past the edge should
continue that background, not add a black bar the model would learn. `auto` takes the median
colour of the image's outer ring; `edge` repeats the edge pixels, `blur` repeats them and blurs
the repeated part (no streaks), `reflect` mirrors the image (on a tight face photo: mirrored
eyes and mouths), `inpaint` lets OpenCV (Telea) fill the gap from its surroundings; a colour name
or `#rrggbb` or `r,g,b` fills with that colour. Drawings crop axis-aligned squares (`crop_square`),
photos warp the face upright (`frame_padded`). All pure numpy/OpenCV functions on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import ImageColor

from p2d.errors import P2DError
from p2d.faces import FaceModels
from p2d.framing import detect_faces, frame_matrix, warp_similarity

PAD_MODES = ("auto", "edge", "blur", "reflect", "inpaint")
INPAINT_RADIUS_PX = 5  # Telea's neighbourhood: a few pixels, as OpenCV's examples use
BLUR_SIGMA_OF_SIDE = 0.08  # `blur`: Gaussian sigma as a share of the crop side (5 px at 64 px)


@dataclass(frozen=True)
class Pad:
    """A parsed --pad value: a mode, and the colour when the mode is `color`."""

    mode: str  # auto | edge | blur | reflect | inpaint | color
    color: tuple[int, int, int] | None = None

    def __str__(self) -> str:
        return self.mode if self.color is None else "#%02x%02x%02x" % self.color


def parse_pad(spec: str) -> Pad:
    """`auto`, `edge`, `blur`, `reflect`, `inpaint`, a colour name (`white`), `#rrggbb` or `r,g,b`."""
    text = str(spec).strip().lower()
    if text in PAD_MODES:
        return Pad(text)
    try:
        if "," in text and not text.startswith("rgb"):
            parts = tuple(int(v) for v in text.split(","))
            if len(parts) != 3 or not all(0 <= v <= 255 for v in parts):
                raise ValueError(text)
            return Pad("color", parts)
        return Pad("color", tuple(ImageColor.getrgb(text)[:3]))
    except ValueError:
        raise P2DError(
            f"--pad {spec!r} is not understood: use one of {', '.join(PAD_MODES)}, "
            "a colour name (white), #rrggbb or r,g,b"
        ) from None


def border_color(image: np.ndarray, ring_px: int = 2) -> tuple[int, ...]:
    """Median colour of the image's outer ring `ring_px` wide: the drawing's background."""
    h, w = image.shape[:2]
    r = max(1, min(ring_px, h // 2, w // 2))
    ring = np.concatenate([
        image[:r].reshape(-1, *image.shape[2:]), image[-r:].reshape(-1, *image.shape[2:]),
        image[:, :r].reshape(-1, *image.shape[2:]), image[:, -r:].reshape(-1, *image.shape[2:]),
    ])
    med = np.median(ring, axis=0)
    return tuple(int(round(v)) for v in np.atleast_1d(med))


def padded_fraction(box: tuple[float, float, float, float], width: int, height: int) -> float:
    """Fraction of the (x, y, w, h) box's area that lies outside a width x height image."""
    x, y, w, h = box
    ix = max(0.0, min(x + w, width) - max(x, 0.0))
    iy = max(0.0, min(y + h, height) - max(y, 0.0))
    area = w * h
    return float(1.0 - ix * iy / area) if area > 0 else 0.0


def pad_image(image: np.ndarray, top: int, bottom: int, left: int, right: int, pad: Pad) -> np.ndarray:
    """The image with that many pixels added on each side, filled as `pad` says."""
    if min(top, bottom, left, right) < 0:
        raise ValueError("pad amounts must be >= 0")
    if top == bottom == left == right == 0:
        return image.copy()
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (image.ndim - 2)
    if pad.mode in ("edge", "blur"):
        out = np.pad(image, widths, mode="edge")
        if pad.mode == "blur":
            inside = np.zeros(out.shape[:2], np.uint8)
            inside[top:top + image.shape[0], left:left + image.shape[1]] = 255
            out = fill_outside(out, inside, pad)
        return out
    if pad.mode == "reflect":
        return np.pad(image, widths, mode="symmetric")
    color = pad.color if pad.mode == "color" else border_color(image)
    out = np.empty((image.shape[0] + top + bottom, image.shape[1] + left + right, *image.shape[2:]),
                   dtype=image.dtype)
    out[...] = np.array(color[: image.shape[2]] if image.ndim == 3 else color[0], dtype=image.dtype)
    out[top:top + image.shape[0], left:left + image.shape[1]] = image
    if pad.mode == "inpaint":
        mask = np.full(out.shape[:2], 255, dtype=np.uint8)
        mask[top:top + image.shape[0], left:left + image.shape[1]] = 0
        out = cv2.inpaint(out, mask, INPAINT_RADIUS_PX, cv2.INPAINT_TELEA)
    return out


def fill_outside(image: np.ndarray, inside: np.ndarray, pad: Pad) -> np.ndarray:
    """`image` with the pixels outside the source (where the uint8 mask `inside` is below 255)
    refilled for the `blur` and `inpaint` modes; other modes' fills are left as they are."""
    if pad.mode not in ("blur", "inpaint") or inside.min() == 255:
        return image
    if pad.mode == "inpaint":
        return cv2.inpaint(image, (inside < 255).astype(np.uint8) * 255, INPAINT_RADIUS_PX, cv2.INPAINT_TELEA)
    sigma = BLUR_SIGMA_OF_SIDE * max(image.shape[:2])
    blurred = cv2.GaussianBlur(image, (0, 0), sigma)
    # Feather over `sigma` pixels inside the edge, so no hard seam marks where the photo ends.
    dist = cv2.distanceTransform((inside == 255).astype(np.uint8), cv2.DIST_L2, 3)
    w = np.clip(dist / sigma, 0.0, 1.0).reshape(*inside.shape, *([1] * (image.ndim - 2)))
    return np.clip(image * w + blurred * (1.0 - w) + 0.5, 0, 255).astype(image.dtype)


def frame_padded(image: np.ndarray, m: np.ndarray, size: int, pad: Pad) -> np.ndarray:
    """The size x size frame that the similarity `m` warps out of `image` (a photo's face set
    upright), its part past the image edge filled as `pad` says."""
    border = {"edge": cv2.BORDER_REPLICATE, "blur": cv2.BORDER_REPLICATE,
              "reflect": cv2.BORDER_REFLECT_101}.get(pad.mode, cv2.BORDER_CONSTANT)
    color = (0, 0, 0)  # only a constant border has a colour: the ring's median is not read otherwise
    if border == cv2.BORDER_CONSTANT:
        color = pad.color if pad.mode == "color" else border_color(image)
    out = warp_similarity(image, m, (size, size), border, color)
    if pad.mode in ("blur", "inpaint"):
        ones = np.full(image.shape[:2], 255, np.uint8)
        out = fill_outside(out, warp_similarity(ones, m, (size, size), cv2.BORDER_CONSTANT, (0,)), pad)
    return out


def crop_square(
    image: np.ndarray, cx: float, cy: float, side: float, size: int, pad: Pad
) -> tuple[np.ndarray, float, tuple[int, int, int]]:
    """The side x side square centred on (cx, cy), padded where it leaves the image, resized to
    size x size. Returns (crop, padded fraction, (x0, y0, side_px) in source pixels).

    Inpainting runs after the resize (a 128 px gap fills in milliseconds, a 2000 px one in
    seconds); the other modes pad at source resolution.
    """
    h, w = image.shape[:2]
    side_px = max(1, int(round(side)))
    x0, y0 = int(round(cx - side_px / 2)), int(round(cy - side_px / 2))
    x1, y1 = x0 + side_px, y0 + side_px
    inside = image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    fraction = padded_fraction((x0, y0, side_px, side_px), w, h)
    if inside.size == 0:
        raise P2DError("the crop lies entirely outside the image: check the face box")
    amounts = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    fill = Pad("color", border_color(image)) if pad.mode in ("auto", "inpaint") else pad
    square = pad_image(inside, *amounts, fill)
    interp = cv2.INTER_AREA if side_px > size else cv2.INTER_CUBIC
    out = cv2.resize(square, (size, size), interpolation=interp)
    if pad.mode == "inpaint" and fraction > 0:
        mask = np.full((side_px, side_px), 255, dtype=np.uint8)
        t, _, le, _ = amounts
        mask[t:t + inside.shape[0], le:le + inside.shape[1]] = 0
        small = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
        out = cv2.inpaint(out, small, 5, cv2.INPAINT_TELEA)
    return out, fraction, (x0, y0, side_px)


def crop_face(
    image: np.ndarray, models: FaceModels, size: int = 128, pad: Pad = Pad("blur"), upsample: int = 1
) -> tuple[np.ndarray | None, str | None]:
    """The largest face in `image` framed like CelebA's aligned faces at size x size (same channels
    as the input), the frame's part past the photo filled as `pad` says; or (None, "no_face") when
    dlib's HOG detector finds none. This is the framing `p2d curate photos` applies (its default
    `blur` fill too), for `p2d translate --crop-faces`.

    Detection runs on a copy at most DETECT_MAX_SIDE_PX wide, so in very large photos faces need
    to be ~4% of the longer side or more; landmarks use the full resolution."""
    found = detect_faces(image, models, upsample)
    if not found:
        return None, "no_face"
    points = models.landmarks(image, tuple(found[0][:4]))
    return frame_padded(image, frame_matrix(points, size), size, pad), None
