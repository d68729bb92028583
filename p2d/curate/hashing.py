"""Perceptual hashes of image arrays: the manifest's 64-bit `phash` as 16 lowercase hex digits."""

from __future__ import annotations

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
