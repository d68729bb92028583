"""The label CSV of the drawing-face detector and the drawings it names (read, hash-checked, rendered),
and the score of the faces the vote chooses against hand boxes (`score_choices`).

Two sources, both public-domain or free Debian packages that p2d never needs at run time:
- openclipart-png (`apt-get install openclipart-png`): `path` relative to /usr/share/openclipart/png;
- aisleriot's card decks (`apt-get install gnome-cards-data librsvg2-bin`): `path` is
  `aisleriot/<deck>.svgz#<suit>_<rank>`, the upper half of that face card (the lower half is the same
  head upside down) from the deck's SVG rendered at twice its size by `rsvg-convert` (a deck is a grid
  of 13 x 5 cards); `sha256` is the deck file's.
Boxes are pixels of the image as loaded here. This module imports without either package (the build_*
modules, benchmarks/ and research/ read the drawings through it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np

from p2d.drawings import WEIGHTS_DIR

LABELS = WEIGHTS_DIR / "drawing_faces_labels.csv"
CLIPART = Path("/usr/share/openclipart/png")
CARDS = Path("/usr/share/aisleriot/cards")
CARD_PREFIX = "aisleriot/"
DECK_GRID = (13, 5)  # columns (ace .. king), rows (clubs, diamonds, hearts, spades, extras)
SUITS = ("club", "diamond", "heart", "spade")
RANKS = ("jack", "queen", "king")  # columns 11, 12, 13
RENDER_ZOOM = 2
# A label's view as crop-drawings' `facing` column says it: three-quarter views count as left / right
# ("": a fixture box without a view).
FACING = {"frontal": "frontal", "left": "left", "right": "right",
          "three_quarter_left": "left", "three_quarter_right": "right", "": ""}


def read_labels(path: Path = LABELS) -> dict[str, dict]:
    """{path: {"sha256", "split", "boxes": [(x, y, w, h, view)]}} from the label CSV."""
    files: dict[str, dict] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            entry = files.setdefault(r["path"], {"sha256": r["sha256"], "split": r["split"], "boxes": []})
            if r["view"] != "none":
                entry["boxes"].append((*(float(r[k]) for k in "xywh"), r["view"]))
    return files


def source_file(path: str, clipart: Path = CLIPART, cards: Path = CARDS) -> Path:
    """The packaged file a label path comes from (the deck for a card)."""
    if path.startswith(CARD_PREFIX):
        return cards / path[len(CARD_PREFIX):].split("#")[0]
    return clipart / path


def sha256_of(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


@lru_cache(maxsize=4)
def _rendered_deck(deck: Path) -> np.ndarray:
    from PIL import Image

    svg = subprocess.run(["zcat", "-f", str(deck)], capture_output=True, check=True).stdout
    try:
        png = subprocess.run(["rsvg-convert", "-z", str(RENDER_ZOOM), "-b", "white"], input=svg,
                             capture_output=True, check=True).stdout
    except FileNotFoundError as exc:
        raise SystemExit("rsvg-convert missing: apt-get install librsvg2-bin") from exc
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def card_image(deck: Path, card: str) -> np.ndarray:
    """The upper half of one face card (`<suit>_<rank>`) of a rendered aisleriot deck."""
    suit, rank = card.split("_")
    sheet = _rendered_deck(deck)
    cw, ch = sheet.shape[1] / DECK_GRID[0], sheet.shape[0] / DECK_GRID[1]
    r, c = SUITS.index(suit), 10 + RANKS.index(rank)
    x0, x1, y0, y1 = round(c * cw), round((c + 1) * cw), round(r * ch), round((r + 1) * ch)
    cell = sheet[y0:y1, x0:x1]
    return np.ascontiguousarray(cell[: cell.shape[0] // 2])


def load(path: str, sha256: str, clipart: Path = CLIPART, cards: Path = CARDS,
         excluded: frozenset[str] = frozenset()) -> np.ndarray:
    """The RGB image a label path names; SystemExit when its file's SHA-256 differs from the CSV's
    (another package release) or is on the exclude list."""
    from p2d.images import read_image

    file = source_file(path, clipart, cards)
    if sha256 in excluded:
        raise SystemExit(f"{path} is on the exclude list: remove it from the label CSV")
    if sha256_of(file) != sha256:
        raise SystemExit(f"{path}: SHA-256 differs from the label CSV (another package release?)")
    if path.startswith(CARD_PREFIX):
        return card_image(file, path.split("#")[1])
    return read_image(file)


def available(clipart: Path = CLIPART, cards: Path = CARDS) -> dict[str, bool]:
    return {"openclipart": clipart.is_dir(), "cards": cards.is_dir()}


def labelled_set(split: str, clipart: Path = CLIPART, cards: Path = CARDS,
                 labels: Path = LABELS) -> dict[str, tuple[np.ndarray, list]]:
    """{path: (image, [(box, view)])} for one split, from the sources that are installed."""
    have = available(clipart, cards)
    out = {}
    for path, e in read_labels(labels).items():
        if e["split"] != split or not have["cards" if path.startswith(CARD_PREFIX) else "openclipart"]:
            continue
        out[path] = (load(path, e["sha256"], clipart, cards), [(tuple(b[:4]), b[4]) for b in e["boxes"]])
    return out


def score_choices(
    candidates: dict,
    truth: dict[str, tuple[float, float, float, float] | None],
    detectors: tuple[str, ...] | None = None,
    min_iou_truth: float = 0.4,
) -> dict[str, object]:
    """Apply `choose_with_rotations` to each image's candidates (only those of `detectors`, if given) and
    compare with hand boxes: `truth[name]` is the face box (or a list of them: any counts), or
    None (or []) for an image without a face.

    Returns counts: `correct` (face images whose chosen box overlaps the hand box by
    `min_iou_truth`), `faces` (face images), `false` (a box on a no-face image, or a box that
    misses the face), `nonfaces`, and `per_image` {name: "correct"|"missed"|"wrong_box"|
    "false_box"|"none"}.
    """
    from p2d.drawings.detect import choose_with_rotations, iou

    out = {"correct": 0, "faces": 0, "false": 0, "nonfaces": 0, "per_image": {}}
    for name, c in candidates.items():
        face = choose_with_rotations(c.only(detectors))
        boxes = truth.get(name) or []
        boxes = [boxes] if boxes and np.isscalar(boxes[0]) else boxes
        if not boxes:
            out["nonfaces"] += 1
            verdict = "none" if face is None else "false_box"
        else:
            out["faces"] += 1
            if face is None:
                verdict = "missed"
            elif max(iou(face.box.box, b) for b in boxes) >= min_iou_truth:
                verdict = "correct"
            else:
                verdict = "wrong_box"
        out["correct"] += verdict == "correct"
        out["false"] += verdict in ("false_box", "wrong_box")
        out["per_image"][name] = verdict
    return out
