"""`p2d detector train`: a drawing-face detector from a boxes CSV and a folder of drawings.

The training itself (boxes checked, cut out with context, dlib's fHOG filter learned) is
p2d.drawings.learn's; this reads the user's files for it and writes the detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from p2d.curate.drawings import match_box, read_boxes
from p2d.drawings.learn import MAX_ASPECT, MIN_BOXES, train_detector
from p2d.errors import P2DError
from p2d.images import list_images, try_read_image


@dataclass
class TrainResult:
    model: Path
    boxes: int
    skipped: list[tuple[str, str]]  # (boxes-file path, why)

    def summary_rows(self) -> list[tuple[str, object]]:
        return [("boxes trained on", self.boxes), ("rows skipped", len(self.skipped)),
                ("model", str(self.model))]


def train_from_boxes(boxes_csv: Path | str, raw: Path | str, out: Path | str, c: float = 5.0,
                     min_boxes: int = MIN_BOXES, max_aspect: float = MAX_ASPECT) -> TrainResult:
    """`p2d detector train`: a detector from a boxes CSV (path,x,y,w,h; paths relative to `raw`),
    saved to `out` (a dlib .svm file, written atomically). Unreadable or unmatched rows are listed."""
    out = Path(out)
    if out.suffix != ".svm":
        raise P2DError(f"-o {out}: name the detector file with .svm (e.g. my_detector.svm)")
    boxes = read_boxes(boxes_csv)
    raw = Path(raw)
    files = list_images(raw)
    root = raw if raw.is_dir() else raw.parent
    key_of = {id(box): key for key, box in boxes.items()}
    examples, used, skipped = [], set(), []
    for path in files:
        rel = path.relative_to(root).as_posix()
        box = match_box(boxes, rel)
        if box is None:
            continue
        used.add(key_of[id(box)])
        image, why = try_read_image(path)
        if image is None:
            skipped.append((rel, why))
            continue
        examples.append((image, box))
    skipped += [(key, "no such drawing under RAW") for key in boxes if key not in used]
    detector = train_detector(examples, c=c, min_boxes=min_boxes, max_aspect=max_aspect)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    detector.save(str(tmp))
    tmp.replace(out)
    return TrainResult(out, len(examples), skipped)
