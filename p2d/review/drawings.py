"""A `crop-drawings` output folder as the review page sees it: one item per drawing, the user's boxes saved
to `boxes.csv` (the `--boxes` format), Apply through crop-drawings itself, and proposals from `--learn`."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from p2d.curate.drawings import (
    FACINGS,
    read_crop_settings,
    read_hand_boxes,
    rerun_crop_drawings,
    write_hand_boxes,
)
from p2d.errors import P2DError, VersionConflict

BOXES = "boxes.csv"  # what the page saves, in the folder; Apply passes it as --boxes
PREVIOUS_BOXES = "boxes.prev.csv"  # the version before the last save
# The order the page lists drawings in: the work first.
STATUS_ORDER = ("none", "proposed", "low", "facing", "dropped", "rejected", "hand", "ok")
VIEWS = FACINGS[:3]  # what a user may set: frontal, left, right
MAX_DROP_TEXT = 80


def file_version(path: Path) -> str:
    """The version a save is checked against: the file's SHA-256 ("" while it does not exist)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def _box(row, prefix: str = "box_") -> list[float] | None:
    values = [row.get(prefix + k) for k in ("x", "y", "w", "h")]
    try:
        box = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return box if all(math.isfinite(v) for v in box) else None


def _number(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def status_of(row: dict, hand_drop: str) -> str:
    """Where a drawing stands (STATUS_ORDER): no face, a proposal, found by one detector alone (low),
    facing unknown or read from weak evidence, dropped, rejected by hand, boxed by hand, fine."""
    if hand_drop:
        return "rejected"
    if not row["keep"]:
        if row["reason"] == "no_face":
            return "proposed" if row.get("proposal") else "none"
        return "dropped" if row["detector"] != "hand" else "hand"
    if row["detector"] == "hand":
        return "hand"
    if (_number(row.get("votes")) or 0) < 2:
        return "low"
    if row.get("facing") in ("unknown", "", None) or row.get("facing_from") in ("landmarks", "detector"):
        return "facing"
    return "ok"


def validate_box(box, width: int | None, height: int | None) -> tuple[float, float, float, float]:
    """A box from the page, checked as --boxes checks it, and required to overlap its image."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise P2DError("a box is [x, y, w, h]: four numbers")
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise P2DError(f"a box is four numbers, got {box!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise P2DError(f"box {box!r} has a value that is not a finite number")
    if w <= 0 or h <= 0:
        raise P2DError(f"box {box!r}: w and h must be positive")
    if width and height and (x >= width or y >= height or x + w <= 0 or y + h <= 0):
        raise P2DError(f"box {box!r} lies outside its {width}x{height} image")
    return x, y, w, h


@dataclass
class Edit:
    """One drawing's decision from the page: a box (with a view), a view alone, or a drop reason."""

    box: tuple[float, float, float, float] | None = None
    view: str = ""
    drop: str = ""


class DrawingsFolder:
    """A crop-drawings output folder: the items for the page, and the writes the page asks for."""

    def __init__(self, out: Path | str):
        self.out = Path(out).resolve()
        self.settings = read_crop_settings(self.out)
        self.raw = Path(os.path.abspath(self.settings["raw"]))
        self.manifest = Path(self.settings.get("manifest") or self.out / "manifest.csv")
        self.boxes_path = self.out / BOXES
        self.learned: dict[str, dict] = {}  # rel -> proposal from the page's Learn, until Apply
        self._models = None  # dlib's models, loaded at the first Apply or Learn and kept
        self.lock = threading.Lock()  # one write (save, apply, learn) at a time
        self.items: list[dict] = []
        self.sources: dict[int, str] = {}  # item -> its drawing's path, and its crop's, as strings: cheap
        self.crops: dict[int, str] = {}
        self.reload()

    # ------------------------------------------------------------------------- reading

    def reload(self) -> None:
        """Read the manifest and the hand boxes again. Plain csv and string paths: a folder of thousands
        of drawings opens in a fraction of a second (files are resolved and checked when served)."""
        hand = self.hand_boxes()
        base, raw = os.path.dirname(os.path.abspath(self.manifest)), str(self.raw)
        items, sources, crops = [], {}, {}
        for i, row in enumerate(_manifest_rows(self.manifest)):
            row["keep"] = row.get("keep", "").strip().lower() in ("true", "1", "yes")
            row.setdefault("detector", "")
            source = os.path.normpath(os.path.join(base, row.get("source_path", "")))
            rel = os.path.relpath(source, raw).replace(os.sep, "/") if source.startswith(raw + os.sep) else ""
            sources[i] = source  # rel "": not under RAW, shown but not boxed
            crop = os.path.normpath(os.path.join(base, row["path"]))
            crop_version = _mtime(crop) if row["keep"] else 0
            if crop_version:
                crops[i] = crop
            _, hand_view, drop = hand.entry(rel) if hand and rel else (None, "", "")
            proposal = _box_text(row.get("proposal"))
            learned = self.learned.get(rel)
            items.append({
                "id": i, "rel": rel, "name": os.path.basename(source),
                "status": status_of(row, drop), "keep": row["keep"], "reason": row["reason"],
                "detector": row["detector"], "score": _number(row.get("score")),
                "votes": _number(row.get("votes")),
                "facing": row.get("facing") or "", "facing_from": row.get("facing_from") or "",
                "box": _box(row) if row["keep"] or row["detector"] == "hand" else None,
                "proposal": learned["box"] if learned else proposal,
                "proposal_score": learned["score"] if learned else _number(row.get("proposal_score")),
                "proposal_from": "learned" if learned else ("drawn_cnn" if proposal else ""),
                "width": _number(row.get("source_width")), "height": _number(row.get("source_height")),
                "hand_view": hand_view, "drop": drop, "crop_version": crop_version,
            })
        self.items, self.sources, self.crops = items, sources, crops
        self.version = file_version(self.boxes_path)

    def models(self):
        if self._models is None:
            from p2d.faces import FaceModels

            self._models = FaceModels()
        return self._models

    def hand_boxes(self):
        """The hand boxes in force: the page's boxes.csv once saved, else the --boxes file the run used."""
        first = self.settings.get("boxes")
        for path in (self.boxes_path, Path(first) if first else None):
            if path is not None and path.is_file():
                return read_hand_boxes(path)
        return None

    def state(self) -> dict:
        counts = {s: 0 for s in STATUS_ORDER}
        for item in self.items:
            counts[item["status"]] += 1
        with_face = sum(1 for x in self.items if x["keep"])
        left = counts["none"] + counts["proposed"]
        return {"kind": "drawings", "folder": str(self.out), "raw": str(self.raw), "version": self.version,
                "items": self.items, "counts": counts, "order": STATUS_ORDER,
                "status": {"total": len(self.items), "with_face": with_face, "by_hand": counts["hand"],
                           "rejected": counts["rejected"], "left": left}}

    def item(self, i: int) -> dict:
        if not 0 <= i < len(self.items):
            raise KeyError(i)
        return self.items[i]

    # ------------------------------------------------------------------------- writing

    def parse_edits(self, edits) -> dict[str, Edit]:
        """The page's edits ({rel: {box, view, drop} or null to forget the hand entry}), validated."""
        if not isinstance(edits, dict):
            raise P2DError("`edits` must be an object {drawing path: edit}")
        by_rel = {x["rel"]: x for x in self.items if x["rel"]}
        out: dict[str, Edit | None] = {}
        for rel, edit in edits.items():
            item = by_rel.get(rel)
            if item is None:
                raise P2DError(f"{rel!r} is not a drawing of this folder")
            if edit is None:
                out[rel] = None
                continue
            if not isinstance(edit, dict):
                raise P2DError(f"the edit for {rel} must be an object with box, view or drop")
            view = str(edit.get("view") or "")
            if view and view not in VIEWS:
                raise P2DError(f"view for {rel} must be one of {', '.join(VIEWS)}, got {view!r}")
            drop = " ".join(str(edit.get("drop") or "").split())[:MAX_DROP_TEXT]
            box = edit.get("box")
            if drop and box is not None:
                raise P2DError(f"{rel}: a drawing has a box or is marked no face, not both")
            if box is not None:
                box = validate_box(box, item["width"], item["height"])
            elif not drop:
                box = item["box"] and tuple(item["box"])  # a view on a found face keeps the found box
                if not box:
                    raise P2DError(f"{rel}: give a box first, then a facing")
            out[rel] = Edit(box, "" if drop else view, drop)
        return out

    def save(self, edits, version: str | None) -> str:
        """Merge the edits into boxes.csv (the previous file kept as boxes.prev.csv); the new version.
        A version other than the file's (another tab saved since) raises VersionConflict."""
        parsed = self.parse_edits(edits)
        with self.lock:
            if version is not None and version != file_version(self.boxes_path):
                raise VersionConflict(f"{self.boxes_path} changed since this page loaded it (another tab or "
                                      "a command saved it): reload the page, then redo the last changes")
            boxes, views, drops = {}, {}, {}
            hand = self.hand_boxes()
            for item in self.items if hand else ():  # keyed by the path under RAW, whatever the file wrote
                box, view, drop = hand.entry(item["rel"]) if item["rel"] else (None, "", "")
                if box is not None:
                    boxes[item["rel"]] = box
                if drop:
                    drops[item["rel"]] = drop
                if view:
                    views[item["rel"]] = view
            for rel, edit in parsed.items():
                for table in (boxes, views, drops):
                    table.pop(rel, None)
                if edit is None:
                    continue
                if edit.drop:
                    drops[rel] = edit.drop
                else:
                    boxes[rel] = edit.box
                    if edit.view:
                        views[rel] = edit.view
            if self.boxes_path.is_file():
                shutil.copyfile(self.boxes_path, self.out / PREVIOUS_BOXES)
            write_hand_boxes(self.boxes_path, boxes, views, drops)
            for rel in parsed:
                self.learned.pop(rel, None)
            self.reload()
            return self.version

    def apply(self) -> dict:
        """Re-crop through crop-drawings with boxes.csv and the folder's own settings: only the drawings
        whose boxes changed are worked again (its row cache); the manifest and crops are updated."""
        with self.lock:
            result = rerun_crop_drawings(self.out,
                                         boxes=self.boxes_path if self.boxes_path.is_file() else None,
                                         models=self.models())
            self.reload()
            # a learned proposal is kept only for a drawing still without a face after this Apply
            without_face = {x["rel"] for x in self.items if not x["keep"]}
            self.learned = {rel: p for rel, p in self.learned.items() if rel in without_face}
            self.reload()
            return {"kept": result.kept, "total": len(result.rows), "notes": result.notes}

    def learn(self) -> dict:
        """Train a detector on this folder's hand boxes and the faces two detectors agree on, run it on
        the drawings still without a face, and hold its best boxes as proposals (nothing is kept)."""
        from p2d.drawings.detect import USER, DrawingDetector
        from p2d.drawings.learn import MIN_BOXES, train_detector
        from p2d.images import try_read_image

        with self.lock:
            background = tuple(self.settings.get("background", (255, 255, 255)))
            examples = []
            for item in self.items:
                confirmed = item["keep"] and (item["detector"] == "hand" or (item["votes"] or 0) >= 2)
                if confirmed and item["box"]:
                    image, _ = try_read_image(self.sources[item["id"]], background=background)
                    if image is not None:
                        examples.append((image, tuple(item["box"])))
            if len(examples) < MIN_BOXES:
                raise P2DError(f"Learn needs at least {MIN_BOXES} confirmed faces (hand boxes or faces two "
                               f"detectors agree on), this folder has {len(examples)}: box a few "
                               "more by hand")
            model = train_detector(examples)
            detector = DrawingDetector(self.models(), detectors=(), user_model=model, rotations_deg=())
            found = 0
            todo = [x for x in self.items if not x["keep"] and x["reason"] == "no_face" and x["rel"]]
            for item in todo:
                image, _ = try_read_image(self.sources[item["id"]], background=background)
                boxes = [] if image is None else [d for d in detector.candidates(image) if d.detector == USER]
                best = max(boxes, key=lambda d: d.score, default=None)
                if best is not None:
                    self.learned[item["rel"]] = {"box": [round(v, 1) for v in best.box],
                                                 "score": round(best.score, 3)}
                    found += 1
            self.reload()
            return {"trained_on": len(examples), "searched": len(todo), "proposed": found}


def _manifest_rows(path: Path) -> list[dict[str, str]]:
    if not Path(path).is_file():
        raise P2DError(f"{path} not found: run `p2d crop-drawings RAW OUT` into this folder first")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"path", "keep", "reason", "source_path"} <= rows[0].keys():
        raise P2DError(f"{path} is not a crop-drawings manifest (it lacks path, keep, reason or source_path)")
    return rows


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _box_text(text) -> list[float] | None:
    """A `proposal` cell ("x y w h") as a box."""
    try:
        box = [float(v) for v in str(text).split()]
    except ValueError:
        return None
    return box if len(box) == 4 and all(math.isfinite(v) for v in box) else None
