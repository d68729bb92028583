"""Dedup: phash distances of planted copies vs distinct images (justifies --max-hamming), and speed.

Usage: python benchmarks/dedup.py [--n 200000]

Part 1 takes every sample image in p2d/samples (originals) and the 128 px face crops
`p2d crop-drawings` makes of the drawings, plants copies (resized, JPEG-recompressed, mirrored,
cropped a little) and prints the distance (min over phash and mirror phash) of each kind of copy
to its original, and the distances between distinct images. Part 2 groups --n random hashes with
planted near duplicates and times it (target: 200,000 in <= 20 s on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from p2d.curate.dedup import DEFAULT_MAX_HAMMING, group_labels, near_pairs  # noqa: E402
from p2d.curate.hashing import phash_hex  # noqa: E402
from p2d.images import list_images, read_image  # noqa: E402

COPIES = {
    "resized 0.5x": lambda a: _resize(a, 0.5),
    "resized 2x": lambda a: _resize(a, 2.0),
    "JPEG q60": lambda a: _jpeg(a, 60),
    "JPEG q30": lambda a: _jpeg(a, 30),
    "mirrored": lambda a: a[:, ::-1],
    "mirrored+0.5x+JPEG": lambda a: _jpeg(_resize(a[:, ::-1], 0.5), 60),
    "cropped 2% a side": lambda a: _crop(a, 0.02),
    "cropped 3% one corner": lambda a: a[int(a.shape[0] * 0.03):, int(a.shape[1] * 0.03):],
    "cropped 5% a side": lambda a: _crop(a, 0.05),
}


def _resize(a, s):
    im = Image.fromarray(np.ascontiguousarray(a))
    return np.asarray(im.resize((max(8, round(im.width * s)), max(8, round(im.height * s))), Image.LANCZOS))


def _jpeg(a, q):
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def _crop(a, f):
    h, w = a.shape[:2]
    return a[int(h * f):h - int(h * f), int(w * f):w - int(w * f)]


def dist(a_hash, a_mirror, b_hash):
    x = int(a_hash, 16)
    return min(bin(x ^ int(b_hash, 16)).count("1"), bin(int(a_mirror, 16) ^ int(b_hash, 16)).count("1"))


def distances(images: list[np.ndarray], title: str) -> None:
    h = [phash_hex(np.ascontiguousarray(a)) for a in images]
    m = [phash_hex(np.ascontiguousarray(a[:, ::-1])) for a in images]
    print(f"\n{title}: {len(images)} images")
    for name, fn in COPIES.items():
        d = sorted(dist(h[i], m[i], phash_hex(np.ascontiguousarray(fn(a)))) for i, a in enumerate(images))
        print(f"  copy {name:24s} max {d[-1]:2d}  median {d[len(d) // 2]:2d}  all {d}")
    d = sorted(dist(h[i], m[i], h[j]) for i in range(len(h)) for j in range(i + 1, len(h)))
    print(f"  distinct pairs ({len(d)}): min {d[0]}, 1st percentile {np.percentile(d, 1):.0f}, "
          f"median {np.median(d):.0f}; smallest: {d[:10]}")


def speed(n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2) + rng.integers(0, 2, n).astype(np.uint64)
    mirrors = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
    planted = n // 10  # the last 10% are copies of earlier hashes with 0..max bits flipped
    src = rng.integers(0, n - planted, size=planted)
    flips = rng.integers(0, DEFAULT_MAX_HAMMING + 1, size=planted)
    for k, (s, f) in enumerate(zip(src, flips)):
        bits = rng.choice(64, size=f, replace=False)
        base[n - planted + k] = base[s] ^ np.uint64(sum(1 << int(b) for b in bits))
    t0 = time.perf_counter()
    pairs = near_pairs(base, mirrors, DEFAULT_MAX_HAMMING)
    labels = group_labels(n, pairs)
    seconds = time.perf_counter() - t0
    found = len(set(map(tuple, pairs.tolist())) & {(int(s), n - planted + k) for k, s in enumerate(src)})
    print(f"\nspeed: {n} hashes (+{n} mirror hashes), max_hamming={DEFAULT_MAX_HAMMING}: "
          f"{len(pairs)} pairs, {n - len(np.unique(labels))} duplicates, {seconds:.2f} s "
          f"({found}/{planted} planted pairs found)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--skip-fixtures", action="store_true")
    args = ap.parse_args()
    if not args.skip_fixtures:
        data = ROOT / "p2d" / "samples"
        distances([read_image(p) for p in list_images(data)], "fixture originals")
        from p2d.curate.drawings import crop_drawings

        with tempfile.TemporaryDirectory() as tmp:
            r = crop_drawings(data / "drawings", Path(tmp) / "crops", show_progress=False)
            crops = [read_image(Path(tmp) / "crops" / row["path"]) for row in r.rows if row["keep"]]
        distances(crops, "128 px face crops of the drawings")
    speed(args.n)


if __name__ == "__main__":
    main()
