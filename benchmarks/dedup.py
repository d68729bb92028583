"""Dedup: phash distance and thumbnail similarity of planted copies vs distinct faces, and speed.

Usage: python -m benchmarks.dedup [--n 200000] [--skip-fixtures]

Part 1 takes 100 distinct faces (scikit-image's LFW subset, 25 px gray, upscaled to 128 px; no
download) and the 128 px face crops `p2d crop-drawings` makes of the bundled drawings, plants
copies (resized, JPEG-recompressed, mirrored, cropped a little) and prints, per kind of copy,
the phash distance (min over phash and mirror phash) and the thumbnail similarity to its original
(`thumb_similarity`, what confirms a candidate), then both over all distinct pairs.
Part 2 dedups --n face-like hashes (each bit drawn with the per-bit bias of the LFW faces'
phashes, so they cluster as aligned faces do) with 10% planted copies, thumbnail confirmation
included, and times it (target: 200,000 in <= 20 s on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from p2d.curate.dedup import (DEFAULT_MAX_HAMMING, DEFAULT_MIN_SIMILARITY, find_duplicates,
                              hex_to_uint64, thumb_similarity)
from p2d.curate.hashing import phash_hex, thumb_b64, thumbs_from_b64
from p2d.images import list_images, read_image

ROOT = Path(__file__).resolve().parents[1]

COPIES = {
    "resized 0.5x": lambda a: _resize(a, 0.5),
    "resized 2x": lambda a: _resize(a, 2.0),
    "JPEG q60": lambda a: _jpeg(a, 60),
    "JPEG q40": lambda a: _jpeg(a, 40),
    "mirrored": lambda a: a[:, ::-1],
    "mirrored+0.7x": lambda a: _resize(a[:, ::-1], 0.7),
    "mirrored+0.5x+JPEG": lambda a: _jpeg(_resize(a[:, ::-1], 0.5), 60),
    "cropped 2% a side": lambda a: _crop(a, 0.02),
    "cropped 3% a side": lambda a: _crop(a, 0.03),
    "cropped 3% one corner": lambda a: a[round(a.shape[0] * 0.03):, round(a.shape[1] * 0.03):],
    "cropped 5% a side": lambda a: _crop(a, 0.05),
}


def lfw_faces(size: int = 128) -> list[np.ndarray]:
    """The 100 faces of scikit-image's LFW subset (distinct pictures), upscaled to `size` px."""
    from skimage.data import lfw_subset

    return [np.asarray(
        Image.fromarray(np.round(f * 255).astype(np.uint8)).resize((size, size), Image.LANCZOS))
            for f in lfw_subset()[:100]]


def _resize(a, s):
    im = Image.fromarray(np.ascontiguousarray(a))
    return np.asarray(im.resize((max(8, round(im.width * s)), max(8, round(im.height * s))), Image.LANCZOS))


def _jpeg(a, q):
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf))


def _crop(a, f):
    h, w = a.shape[:2]
    return a[round(h * f):h - round(h * f), round(w * f):w - round(w * f)]


def signatures(images):
    """phash, mirror phash (uint64) and thumbnails of arrays, as a manifest would store them."""
    c = [np.ascontiguousarray(a) for a in images]
    h = hex_to_uint64([phash_hex(a) for a in c])
    m = hex_to_uint64([phash_hex(np.ascontiguousarray(a[:, ::-1])) for a in c])
    return h, m, thumbs_from_b64([thumb_b64(a) for a in c])[0]


def _bits(x: np.ndarray) -> np.ndarray:
    return np.array([bin(int(v)).count("1") for v in x])


def _hist(values: np.ndarray, edges) -> str:
    counts = np.histogram(values, bins=edges)[0]
    return " ".join(f"[{lo:g},{hi:g}):{c}" for lo, hi, c in zip(edges[:-1], edges[1:], counts) if c)


def distances(images: list[np.ndarray], title: str) -> None:
    h, m, t = signatures(images)
    n = len(images)
    print(f"\n{title}: {n} images; phash bits (min over mirror) | thumbnail similarity (confirmed >= "
          f"{DEFAULT_MIN_SIMILARITY})")
    for name, fn in COPIES.items():
        ch, _, ct = signatures([fn(a) for a in images])
        d = np.minimum(_bits(h ^ ch), _bits(m ^ ch))
        s = thumb_similarity(t, ct)
        print(f"  copy {name:22s} bits max {d.max():2d} median {int(np.median(d)):2d} | "
              f"similarity min {s.min():.4f} median {np.median(s):.4f}  confirmed "
              f"{int((s >= DEFAULT_MIN_SIMILARITY).sum())}/{n}")
    i, j = np.triu_indices(n, 1)
    d = np.minimum(_bits(h[i] ^ h[j]), _bits(m[i] ^ h[j]))
    s = thumb_similarity(t[i], t[j])
    print(f"  distinct pairs ({len(i)}): bits min {d.min()}, 1st percentile {np.percentile(d, 1):.0f}, "
          f"median {np.median(d):.0f}; {int((d <= 8).sum())} within 8 bits, {int((d <= 14).sum())} within 14")
    print(f"  distinct pairs: similarity max {s.max():.4f}, 99th percentile {np.percentile(s, 99):.4f}, "
          f"median {np.median(s):.3f}; confirmed {int((s >= DEFAULT_MIN_SIMILARITY).sum())}")
    print("  distinct similarity histogram: " + _hist(s,
                                                      [-1, 0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 1.01]))


def face_like(n: int, faces: list[np.ndarray], seed: int = 0):
    """n hashes with the LFW faces' per-bit bias (phash and mirror phash), thumbnails that are
    noisy blends of three LFW faces (distinct pictures), and the last 10% planted copies of earlier
    rows (hash bits flipped within max_hamming, thumbnail plus slight noise)."""
    rng = np.random.default_rng(seed)
    h, m, t = signatures(faces)
    bias_h = np.array([[(int(v) >> b) & 1 for b in range(64)] for v in h]).mean(axis=0)
    bias_m = np.array([[(int(v) >> b) & 1 for b in range(64)] for v in m]).mean(axis=0)
    weights = np.uint64(1) << np.arange(64, dtype=np.uint64)

    def draw(bias):
        bits = rng.random((n, 64)) < bias
        return np.bitwise_or.reduce(np.where(bits, weights, np.uint64(0)), axis=1)

    hashes, mirrors = draw(bias_h), draw(bias_m)
    # blends of three faces: two blends of the same two faces would be near the same picture
    mix = rng.dirichlet(np.ones(3), n).astype(np.float32)
    which = rng.integers(0, len(t), (n, 3))
    blend = np.einsum("nk,nkd->nd", mix, t[which])
    thumbs = np.clip(blend + rng.normal(0, 25, blend.shape), 0, 255).astype(np.uint8)
    planted = n // 10
    src = rng.integers(0, n - planted, planted)
    dst = np.arange(n - planted, n)
    for k, s in zip(dst, src):
        flip = np.uint64(
            sum(1 << int(x) for x in rng.choice(64, rng.integers(0, DEFAULT_MAX_HAMMING + 1), replace=False)))
        hashes[k], mirrors[k] = hashes[s] ^ flip, mirrors[s] ^ flip
    thumbs[dst] = np.clip(thumbs[src] + rng.normal(0, 2, (planted, t.shape[1])), 0, 255).astype(np.uint8)
    return hashes, mirrors, [thumb.tobytes() for thumb in thumbs], src, dst


def speed(n: int, faces: list[np.ndarray]) -> None:
    import base64

    hashes, mirrors, raw, src, dst = face_like(n, faces)
    texts = [base64.b64encode(r).decode("ascii") for r in raw]  # as the manifest column holds them
    pixels = np.full(n, 128 * 128)
    t0 = time.perf_counter()
    thumbs, _ = thumbs_from_b64(texts)
    keepers, rejected, candidates = find_duplicates(hashes, mirrors, thumbs, pixels)
    seconds = time.perf_counter() - t0
    dropped = keepers != np.arange(n)
    caught = int((keepers[dst] == keepers[src]).sum())
    wrong = int(dropped[: n - len(dst)].sum())  # equal pixels: the first row (the source) is kept
    print(f"\nspeed: {n} face-like hashes (+ mirror hashes, thumbnails), max_hamming={DEFAULT_MAX_HAMMING}, "
          f"min_similarity={DEFAULT_MIN_SIMILARITY}: {candidates} candidate pairs, {rejected} rejected by "
          f"confirmation, {int(dropped.sum())} rows dropped, {seconds:.2f} s incl. thumbnail decoding")
    print(f"  planted copies caught: {caught}/{len(dst)}; distinct rows dropped among the first "
          f"{n - len(dst)}: {wrong}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--skip-fixtures", action="store_true")
    args = ap.parse_args()
    faces = lfw_faces()
    if not args.skip_fixtures:
        distances(faces, "LFW faces (scikit-image), 128 px")
        data = ROOT / "p2d" / "samples"
        from p2d.curate.drawings import crop_drawings

        with tempfile.TemporaryDirectory() as tmp:
            r = crop_drawings(data / "drawings", Path(tmp) / "crops", show_progress=False)
            crops = [read_image(Path(tmp) / "crops" / row["path"]) for row in r.rows if row["keep"]]
        distances(crops, "128 px face crops of the bundled drawings")
        distances([read_image(p) for p in list_images(data)], "bundled originals (drawings and photos)")
    speed(args.n, faces)


if __name__ == "__main__":
    main()
