"""Perceptual hashes of image arrays (the manifest's 64-bit `phash`) and the gray thumbnail that confirms
them."""

from __future__ import annotations

import base64

import imagehash
import numpy as np
from PIL import Image


def phash_hex(image: np.ndarray) -> str:
    """imagehash.phash of a uint8 HxW or HxWx3 array, as 16 lowercase hex digits.

    Mirrored or resized copies of an image land within a few bits of each other (mirrored ones
    only for symmetric content): compare with `hamming(a, b)`.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"phash_hex needs a uint8 HxW or HxWx3 array, got {image.dtype} {image.shape}")
    return str(imagehash.phash(Image.fromarray(image)))


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes of the same length."""
    return int(bin(int(a, 16) ^ int(b, 16)).count("1"))


THUMB_PX = 16  # side of the stored gray thumbnail that confirms phash candidates (p2d.curate.dedup)


def thumb_b64(image: np.ndarray) -> str:
    """A 16x16 grayscale thumbnail (Lanczos) of a uint8 HxW or HxWx3/4 array, as base64 of 256 bytes.

    Stored per row at curation time (manifest column `thumb`) so that dedup can confirm phash
    candidates without reading the images again.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"thumb_b64 needs a uint8 HxW or HxWx3 array, got {image.dtype} {image.shape}")
    gray = Image.fromarray(np.ascontiguousarray(image if image.ndim == 2 else image[..., :3])).convert("L")
    small = np.asarray(gray.resize((THUMB_PX, THUMB_PX), Image.LANCZOS), dtype=np.uint8)
    return base64.b64encode(small.tobytes()).decode("ascii")


def output_hashes(image: np.ndarray) -> tuple[str, str, str]:
    """phash_hex of an RGB (or gray) uint8 image, phash_hex of its mirror image, and thumb_b64, the
    same strings as those three calls give, from one gray conversion and one 32x32 reduction:
    curation's hot loop stores all three for every kept image. Mirroring commutes with the gray
    conversion (per pixel) and with PIL's Lanczos reduction (its weights are symmetric and summed in
    fixed point: the mirrored image's 32x32 pixels are the mirrored 32x32 pixels; tests compare), so
    the mirror's hash comes from the flipped 32x32 pixels."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"output_hashes needs a uint8 HxW or HxWx3 array, got {image.dtype} {image.shape}")
    gray = Image.fromarray(np.ascontiguousarray(image if image.ndim == 2 else image[..., :3])).convert("L")
    side = PHASH_BITS * PHASH_FACTOR
    reduced = np.asarray(gray.resize((side, side), Image.LANCZOS))
    small = np.asarray(gray.resize((THUMB_PX, THUMB_PX), Image.LANCZOS), dtype=np.uint8)
    return (_phash_of_reduced(reduced), _phash_of_reduced(np.ascontiguousarray(reduced[:, ::-1])),
            base64.b64encode(small.tobytes()).decode("ascii"))


PHASH_BITS, PHASH_FACTOR = 8, 4  # imagehash.phash's defaults: 8x8 bits from a 32x32 reduction


def _phash_of_reduced(pixels: np.ndarray) -> str:
    """imagehash.phash's steps after its reduction to 32x32 gray: the 2-D DCT, and each of the 8x8
    lowest frequencies against their median."""
    import scipy.fftpack

    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:PHASH_BITS, :PHASH_BITS]
    return str(imagehash.ImageHash(low > np.median(low)))


def thumbs_from_b64(texts) -> tuple[np.ndarray, np.ndarray]:
    """(N, 256) float32 thumbnails from `thumb_b64` strings, and a bool mask of the valid ones
    (rows of older manifests without the column, or damaged cells, are zeros and False)."""
    out = np.zeros((len(texts), THUMB_PX * THUMB_PX), dtype=np.float32)
    ok = np.zeros(len(texts), dtype=bool)
    for i, t in enumerate(texts):
        if isinstance(t, str) and len(t) == 344:
            try:
                raw = base64.b64decode(t, validate=True)
            except ValueError:
                continue
            if len(raw) == THUMB_PX * THUMB_PX:
                out[i] = np.frombuffer(raw, dtype=np.uint8)
                ok[i] = True
    return out, ok
