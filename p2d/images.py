"""Safe image reading (every format, every bad file) and atomic writing.

Reading never raises in the middle of a batch: `try_read_image` returns a reason string for a bad
file, so a run over thousands of images records it and carries on. `read_image` is the raising
form for single files. Writes go to a temporary file in the same folder and are renamed into
place, so an interrupted run never leaves a half-written image or manifest behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from p2d.errors import P2DError

# a GIF: its first frame
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

# Refuse images larger than this before decoding them (a decompression bomb, or a scan far
# larger than any face crop needs). 100 megapixels is ~10000x10000.
MAX_PIXELS = 100_000_000


class BadImage(P2DError):
    """An image file that cannot be used; `reason` is the short code written to manifests."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: cannot read image ({reason})")
        self.path = Path(path)
        self.reason = reason


def _split_files(root: Path, recursive: bool) -> tuple[list[Path], list[Path]]:
    """One walk of the folder `root`: its image files (by extension, case-insensitive) sorted for a
    stable order, and the other files that are not hidden (no part of their path starts with ".").
    A broken symbolic link with an image's extension counts as an image file, so that a batch
    command records it (`unreadable:broken_link`) instead of losing it without a word."""
    images, others = [], []
    for p in root.glob("**/*" if recursive else "*"):
        if not p.is_file() and not (p.is_symlink() and not p.exists()):
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(p)
        elif not any(part.startswith(".") for part in p.relative_to(root).parts):
            others.append(p)
    return sorted(images), others


def list_images(root: Path | str, recursive: bool = True) -> list[Path]:
    """Image files under `root` (by extension, case-insensitive), sorted for a stable order."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise P2DError(f"{root} does not exist: give a folder of images (or an image file)")
    return _split_files(root, recursive)[0]


def _left_out_sentence(root: Path, others: list[Path]) -> list[str]:
    if not others:
        return []
    counts = Counter(p.suffix.lower() or "(no extension)" for p in others)
    kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    readable = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    return [f"{len(others)} file(s) under {root} left out, not an image type p2d reads ({kinds}): "
            f"convert any image among them to one of {readable}"]


def left_out_notes(root: Path | str, recursive: bool = True) -> list[str]:
    """A note (a list of one sentence, empty when there is nothing to say) naming the files under
    `root` that a folder-walking command does not read (their extension is not in
    IMAGE_EXTENSIONS; hidden files aside), by extension: a drawing saved as .svg or .heic must not
    vanish from a run without a word. (`input_images` gives the same note from its own walk.)"""
    root = Path(root)
    return _left_out_sentence(root, _split_files(root, recursive)[1]) if root.is_dir() else []


def output_stems(files: list[Path], root: Path) -> list[str]:
    """Output names (without extension) that mirror the input tree under `root`. Files that would
    share a name (`a.jpg` beside `a.png`, or `a.JPG` beside `a.jpg`: the same file on a
    case-insensitive disk) get their extension added: `a_jpg`, `a_png`."""
    rel = [f.relative_to(root) if root.is_dir() else Path(f.name) for f in files]
    stems = [r.with_suffix("").as_posix() for r in rel]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s.lower()] = seen.get(s.lower(), 0) + 1
    return [s if seen[s.lower()] == 1 else f"{s}_{r.suffix.lstrip('.')}" for s, r in zip(stems, rel)]


def _to_8bit(img: Image.Image) -> Image.Image:
    """16- and 32-bit gray images to 8-bit gray by scaling (PIL's convert would clip)."""
    arr = np.asarray(img)
    if arr.dtype == np.uint16 or img.mode.startswith("I;16"):
        arr = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    elif img.mode == "I":
        top = max(int(arr.max()), 1)
        shift = 8 if top > 255 else 0
        arr = (arr.astype(np.int64) >> shift).clip(0, 255).astype(np.uint8)
    elif img.mode == "F":
        top = float(arr.max()) or 1.0
        arr = (arr / (top if top > 1.0 else 1.0) * 255).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr, "L")


def _decode(path: Path, mode: str, background: tuple[int, int, int], max_pixels: int) -> np.ndarray:
    if not path.exists():
        raise BadImage(path, "broken_link" if path.is_symlink() else "missing")
    if path.stat().st_size == 0:
        raise BadImage(path, "empty_file")
    with warnings.catch_warnings():
        # PIL warns (and at 2x raises) for large images; we apply our own limit instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                if img.width * img.height > max_pixels:
                    raise BadImage(path, f"too_large:{img.width}x{img.height}")
                img.load()
                img = ImageOps.exif_transpose(img)
        except BadImage:
            raise
        except UnidentifiedImageError:
            raise BadImage(path, "not_an_image") from None
        except Image.DecompressionBombError:
            raise BadImage(path, "too_large") from None
        except (OSError, SyntaxError, ValueError) as exc:
            text = str(exc).lower()
            reason = "truncated" if "truncat" in text or "broken" in text else "decode_error"
            raise BadImage(path, reason) from None
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _to_8bit(img)
    if img.mode == "P" or img.mode == "PA" or img.mode == "LA":
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        # Transparent drawings go onto a background colour (white by default).
        canvas = Image.new("RGBA", img.size, (*background, 255))
        canvas.alpha_composite(img)
        img = canvas.convert("RGB")
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")  # CMYK, YCbCr, 1-bit ...
    target = "L" if mode == "L" else "RGB"
    if img.mode != target:
        img = img.convert(target)
    return np.asarray(img, dtype=np.uint8).copy()


def read_image(
    path: Path | str,
    mode: str = "RGB",
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Decode an image to uint8 HxWx3 (mode "RGB") or HxW (mode "L"); raise BadImage if unusable.

    EXIF orientation is applied; palette, CMYK, 16-bit and gray files are converted; transparent
    pixels are composited onto `background`.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    return _decode(Path(path), mode, background, max_pixels)


def try_read_image(
    path: Path | str,
    mode: str = "RGB",
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = MAX_PIXELS,
) -> tuple[np.ndarray | None, str | None]:
    """Like read_image, but returns (None, "unreadable:<why>") for a bad file instead of raising."""
    try:
        return read_image(path, mode, background, max_pixels), None
    except BadImage as exc:
        return None, f"unreadable:{exc.reason}"


MIN_SIDE_PX = 16  # below this on its shorter side an image holds no usable face, drawing or photo


def too_small(image: np.ndarray, min_side_px: int = MIN_SIDE_PX) -> str:
    """"too_small:WxH" when the image's shorter side is under `min_side_px`, else "": the reason
    a folder-walking command records for a file it cannot use (a detector may even raise on it)."""
    h, w = image.shape[:2]
    return f"too_small:{w}x{h}" if min(h, w) < min_side_px else ""


def error_reason(exc: BaseException, max_chars: int = 120) -> str:
    """"error:<Type>: <last line of the message>": what one file's unexpected failure becomes in
    its manifest row, so that the batch goes on. The last line: dlib puts its sentence there,
    after the C++ file and line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"error:{type(exc).__name__}: {lines[-1] if lines else ''}"[:max_chars].rstrip()


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes as hex, read in 1 MiB chunks (checkpoints are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def downscale(image: np.ndarray, max_side_px: int) -> tuple[np.ndarray, float]:
    """The image shrunk (area averaging) so its longer side is at most `max_side_px`, and the
    scale applied (1.0: the image itself, unchanged)."""
    h, w = image.shape[:2]
    s = min(1.0, max_side_px / max(h, w))
    if s >= 1.0:
        return image, 1.0
    import cv2  # only the callers that shrink need OpenCV

    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), s


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); outputs get the usual umask-based mode instead
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write `data` to a new file beside `path`, then rename it onto `path` (a reader never sees
    half a file). Fewer system calls than atomic_path (curation writes one file per image): the
    kernel applies the umask to the new file's 0666 mode, no chmod is needed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_image(path: Path | str, image: np.ndarray, quality: int = 95) -> None:
    """Write a uint8 HxW or HxWx3 array atomically; the format follows the file extension."""
    path = Path(path)
    if image.dtype != np.uint8:
        raise ValueError(f"write_image needs uint8 pixels, got {image.dtype}")
    pil = Image.fromarray(image)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise P2DError(f"{path}: unknown image extension; use .png or .jpg")
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_path(path) as tmp:
        pil.save(tmp, format=fmt, **options)


def input_images(source: Path | str, out: Path | str,
                 what: str = "images") -> tuple[list[Path], Path, list[str]]:
    """The image files of a batch command's input (a folder, searched recursively, or one file),
    the folder their names are relative to, and the note on the files left out (`left_out_notes`),
    from one walk of the folder; refuses an output folder inside the input and an input without
    images."""
    source = Path(source)
    check_output_dir(source, out)
    if source.is_dir():
        files, others = _split_files(source, recursive=True)
        notes = _left_out_sentence(source, others)
    else:
        files, notes = list_images(source), []
    if not files:
        kinds = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
        raise P2DError(f"no images under {source} (looked for {kinds} files): give a folder of {what}")
    return files, source if source.is_dir() else source.parent, notes


def check_output_dir(input_dir: Path | str, output_dir: Path | str) -> None:
    """Refuse an output folder inside (or equal to) the input folder: a re-run would read its own
    outputs as inputs, and source images must never be overwritten."""
    src = Path(input_dir).resolve()
    out = Path(output_dir).resolve()
    if src.is_file():
        src = src.parent
    if out == src or src in out.parents:
        raise P2DError(
            f"output folder {output_dir} is inside the input folder {input_dir}: "
            "choose an output folder outside it (e.g. a sibling folder)"
        )
    if out in src.parents:
        # outputs written under OUT could land on (and replace) source files
        raise P2DError(
            f"input folder {input_dir} is inside the output folder {output_dir}: "
            "choose an output folder beside the input, not above it"
        )
