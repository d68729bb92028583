"""`p2d crop-drawings`: find the face in each drawing, crop it square like CelebA's framing, pad, review.

Framing: CelebA's aligned faces, in the 178x178 square that training uses, have dlib's face box
(brows to chin, cheek to cheek) 83 px wide, i.e. 0.466 of the side (`framing.CELEBA_HOG_BOX`), its
centre at (0.497, 0.649) of the square; the eye midpoint sits at 0.511 of the height and the mouth
at 0.742 (`framing.CELEBA_TEMPLATE_5`). `--face-fraction` is the face box width over the crop side
(default 0.466); other values zoom about the crop centre. Where the 68 landmarks look sane the crop
is centred and scaled from the eyes and mouth; otherwise from the detector's box. No rotation.

Pose: every kept drawing gets `facing` (frontal, left, right or unknown) and, where the landmarks
are sane, `yaw_deg` and `roll_deg` from `p2d.faces.landmark_features`, as photos get them (yaw
positive: the nose points to the image right, so the face looks `right`); "sane" here also asks
that something is drawn at both eyes (`eyes_drawn`: a profile's far eye is blank cheek). On
drawings the predictor often returns a near-mean shape placed by the box, so its yaw is weak
evidence (on the fixtures' hand boxes it stays within 11 degrees of 0 for three-quarter heads).
Facing comes from, in order: the boxes file's `view` column; the view p2d's drawing CNN gives the
face where it voted for it, or for a hand box where it has a box on it that would (p2d.drawings.cnn:
one centre map per view); p2d's facing classifier
(p2d.drawings.facing: HOG of the box with some context, a logistic regression trained on the label
CSV's train split, mirror-consistent), which answers for any box whoever found it; the landmarks'
yaw where sane (frontal within `max_frontal_yaw_deg`, the photo filter's default turn limit; kept
for callers that give no classifier view); the view of a detector that knows one (Haar's
profile cascade, see p2d.drawings.detect); else unknown (`facing_from` says which; see
choose_facing for why the classifier comes first). A
profile (left or right) is framed on its box, the head, never on landmarks that would look for a
second eye. `--drop-profiles` drops them with reason `profile`.

Proposed boxes: where the vote finds no face, drawn_cnn's best upright box, if it scores at least
`PROPOSAL_MIN_SCORE`, is written to `OUT/proposed_boxes.csv` (the --boxes format) and drawn in yellow
on the review sheet; nothing is kept from it. Delete the wrong lines, correct the rest, and pass the
file as `--boxes`: a missed face then costs a look instead of a hand-drawn box. (Out of fold on the
label CSV's train split the proposal sat on the face for 10-13 of the 19-20 drawings the vote missed,
three seeds; on the eval split for 5 of its 7 misses: p2d/drawings/weights/README.md.)

`--learn`: after the pass, a dlib fHOG detector (p2d.drawings.learn) is trained on this set's
confirmed boxes (hand boxes, and faces found by two or more detectors or by one firm one) and run
on the drawings still without a face; it votes as `user` (thresholds in p2d.drawings.detect).

The boxes file (`path,x,y,w,h[,view][,drop]`, paths relative to RAW; read_hand_boxes, write_hand_boxes):
a row with a `drop` text and no box marks a drawing without a usable face; no detector runs on it and
its row is dropped with reason `rejected:<text>` (detector `hand`).

Re-runs: each drawing's first-pass row is cached in OUT (`.p2d_rows.json`, beside the detections),
keyed by everything that decides it (_row_key), so a run that changes a few hand boxes redoes those
few; the manifest is the one a fresh run writes. `OUT/crop_settings.json` keeps the run's settings:
rerun_crop_drawings repeats it with a new boxes file (what `p2d review`'s Apply does).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from p2d.curate.engine import Engine, map_jobs
from p2d.curate.hashing import phash_hex, thumb_b64
from p2d.drawings import WEIGHTS_DIR
from p2d.drawings.detect import DEFAULT_DETECTORS, Candidates, DrawingDetector, choose_with_rotations
from p2d.padding import Pad, crop_square
from p2d.errors import P2DError
from p2d.faces import (
    MAX_FRONTAL_YAW_DEG,
    Detection,
    FaceModels,
    eye_centers,
    facing_from_yaw,
    inter_ocular,
    landmark_features,
    roll_deg,
)
from p2d.framing import CELEBA_FACE_FRACTION, square_from_box, square_from_landmarks
from p2d.images import (
    downscale,
    error_reason,
    input_images,
    output_stems,
    too_small,
    try_read_image,
    write_image,
    write_text_atomic,
)
from p2d.manifest import new_rows, relative_path, write_manifest

CACHE_NAME = ".p2d_detections.json"
CACHE_VERSION = 4  # 2: boxes carry the detector's view; 3: the candidates say which detectors searched;
# 4: the fallback (dlib's CNN) no longer searches the rotated copies
ROWS_CACHE_NAME = ".p2d_rows.json"
# Part of every row's cache key: bump it with any change to the code that changes a drawing's row or crop.
ROWS_CACHE_VERSION = 1
SETTINGS_NAME = "crop_settings.json"
SETTINGS_VERSION = 1
SETTINGS_KEYS = ("version", "raw", "manifest", "boxes", "size", "face_fraction", "pad", "background",
                 "source", "detectors", "min_iou", "min_votes", "rotate", "detector_model", "learn",
                 "drop_profiles", "max_frontal_yaw_deg", "workers")
FACINGS = ("frontal", "left", "right", "unknown")
PROFILES = ("left", "right")
# A face found by one detector alone is confirmed for --learn when its score is this many of that
# detector's spreads above its `alone` threshold (a clear, not a borderline, hit).
FIRM_STRENGTH = 0.5
LEARNED_MODEL = "learned_detector.svm"
PROPOSALS = "proposed_boxes.csv"
# drawn_cnn's score (0..1) from which its best box on a drawing without a face is proposed: the lowest
# at which no proposal that sat on the face was lost against 0.05, out of fold on train (models README).
PROPOSAL_MIN_SCORE = 0.1
SHEET_CELLS = 48  # thumbnails per review sheet


# ----------------------------------------------------------------------------- pure framing


def landmarks_sane(points: np.ndarray, box: tuple[float, float, float, float],
                   max_roll_deg: float = 30.0) -> bool:
    """Do the 68 points look like a face in this box? On a drawing the predictor always answers,
    often with a mean-ish shape in the wrong place; these checks catch the usual failures:
    eye distance 0.25-0.75 of the box width (CelebA: 0.47), eyes-to-mouth 0.6-1.6 eye distances
    (CelebA: 1.05), mouth below the eyes, eye line within `max_roll_deg`, and the eye-mouth
    midpoint inside the box."""
    x, y, w, h = box
    iod = inter_ocular(points)
    eyes = np.mean(eye_centers(points), axis=0)
    mouth = points[48:68].mean(axis=0)
    em = float(np.linalg.norm(mouth - eyes))
    mid = (eyes + mouth) / 2
    return bool(
        w > 0 and 0.25 <= iod / w <= 0.75
        and iod > 0 and 0.6 <= em / iod <= 1.6
        and mouth[1] > eyes[1]
        and abs(roll_deg(points)) <= max_roll_deg
        and x <= mid[0] <= x + w and y <= mid[1] <= y + h
    )


def choose_facing(hand_view: str, yaw: float | None, detector_view: str,
                  max_frontal_yaw_deg: float = MAX_FRONTAL_YAW_DEG, classifier_view: str = "",
                  cnn_view: str = "") -> tuple[str, str]:
    """(facing, where it came from): the hand box's view, else drawn_cnn's view where it voted for
    the face or has a box that would (`cnn_view`), else the facing classifier's view of the box
    (`classifier_view`, p2d.drawings.facing), else the sane landmarks' yaw, else the view of the
    detector that found the face, else unknown. The order is the one measured best: on the label
    CSV's train split's 313 hand-boxed faces, each scored by models that never saw its drawing or
    deck (benchmarks/facing_oof.py, three seeds of drawn_cnn), drawn_cnn first and the classifier
    where it has no box are right on 229 on average (73%), the classifier alone on 220 (70%); the
    landmarks, where they hold, on 64% (157 of 246 of the first 293 faces): on drawings the
    predictor often returns a near-mean shape whose yaw is noise (benchmarks/drawing_rules.py facing)."""
    if hand_view in FACINGS[:3]:
        return hand_view, "hand"
    if cnn_view in FACINGS[:3]:
        return cnn_view, "cnn"
    if classifier_view in FACINGS[:3]:
        return classifier_view, "classifier"
    if yaw is not None:
        return facing_from_yaw(yaw, max_frontal_yaw_deg), "landmarks"
    if detector_view in FACINGS[:3]:
        return detector_view, "detector"
    return "unknown", ""


def eye_contrasts(gray: np.ndarray, points: np.ndarray,
                  box: tuple[float, float, float, float]) -> tuple[float, float]:
    """How much is drawn where the landmarks put each eye: the gray-level spread in a square of
    half an eye distance around each eye centre, over the spread in the whole face box. On a
    profile the predictor still places a second eye, on blank cheek or hair: ~0 there, while a drawn
    eye (lines, iris) is about as varied as the face (~1; 0.7-1.8 on the fixtures' frontal eyes)."""
    iod = inter_ocular(points)
    x, y, w, h = (int(round(v)) for v in box)
    face = gray[max(0, y):max(0, y + h), max(0, x):max(0, x + w)]
    spread = float(face.std()) if face.size else 0.0
    out = []
    for cx, cy in eye_centers(points):
        r = max(2, int(round(iod / 4)))
        patch = gray[max(0, int(cy) - r):max(0, int(cy) + r), max(0, int(cx) - r):max(0, int(cx) + r)]
        out.append(float(patch.std()) / spread if patch.size and spread > 0 else 0.0)
    return out[0], out[1]


def eyes_drawn(gray: np.ndarray, points: np.ndarray, box: tuple[float, float, float, float],
               min_eye_contrast: float = 0.1) -> bool:
    """Is something drawn at both eyes (see eye_contrasts)? Below `min_eye_contrast` of the face's
    own spread a patch is flat colour: no eye there, so the landmarks are not this face's."""
    return min(eye_contrasts(gray, points, box)) >= min_eye_contrast


# ----------------------------------------------------------------------------- hand boxes


def read_boxes(path: Path | str) -> dict[str, tuple[float, float, float, float]]:
    """A --boxes CSV (`path,x,y,w,h`) as {path as written: box}; a bad row is an error naming it."""
    return read_hand_boxes(path).boxes


def _view(text: str, path: Path, line: int) -> str:
    """A `view` cell: frontal, left, right (three_quarter_left/right count as left/right), or empty."""
    view = (text or "").strip().lower().removeprefix("three_quarter_")
    if view not in ("", *FACINGS):
        raise P2DError(f"{path} line {line}: view must be frontal, left, right or empty, got {text!r}")
    return "" if view == "unknown" else view


@dataclass(frozen=True)
class HandBoxes:
    """A --boxes file: face boxes, their `view` where given, and the drawings marked by hand as having no
    usable face (`drop`: why, e.g. "two faces"), each by its path relative to RAW as written."""

    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)
    drops: dict[str, str] = field(default_factory=dict)

    def entry(self, rel: str) -> tuple[tuple[float, float, float, float] | None, str, str]:
        """(box or None, view, drop reason) for the drawing at `rel` (matched as match_box does)."""
        key = match_key(self.boxes.keys() | self.drops.keys(), rel)
        if key is None:
            return None, "", ""
        return self.boxes.get(key), self.views.get(key, ""), self.drops.get(key, "")


def _box_cells(row: dict, path: Path, line: int) -> tuple[float, float, float, float]:
    try:
        box = tuple(float(row[k]) for k in "xywh")
    except (TypeError, ValueError):
        raise P2DError(f"{path} line {line}: x,y,w,h must be numbers (or empty, with the reason in `drop`), "
                       f"got {row}") from None
    if not all(math.isfinite(v) for v in box):
        raise P2DError(f"{path} line {line}: x,y,w,h must be finite numbers, got {box}")
    if box[2] <= 0 or box[3] <= 0:
        raise P2DError(f"{path} line {line}: w and h must be positive")
    return box


def read_hand_boxes(path: Path | str) -> HandBoxes:
    """A --boxes CSV: `path,x,y,w,h` and optional `view` (which way the face looks: frontal, left: the
    nose points to the image left, right) and `drop` (this drawing has no usable face: why; its
    x,y,w,h stay empty). A later row for the same path wins."""
    path = Path(path)
    if not path.is_file():
        raise P2DError(f"boxes file {path} not found: give a CSV with columns path,x,y,w,h")
    hand = HandBoxes()
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(f)
        missing = {"path", "x", "y", "w", "h"} - set(reader.fieldnames or [])
        if missing:
            raise P2DError(f"boxes file {path} lacks the column(s) {', '.join(sorted(missing))}: "
                           "its header must be path,x,y,w,h")
        for line, row in enumerate(reader, start=2):
            key = Path(row["path"]).as_posix()
            drop = " ".join((row.get("drop") or "").split())  # one line: it becomes a manifest reason
            if drop and any((row[k] or "").strip() for k in "xywh"):
                raise P2DError(f"{path} line {line}: a row gives a box (x,y,w,h) or a `drop` reason, "
                               "not both: empty one of them")
            hand.boxes.pop(key, None)
            hand.drops.pop(key, None)
            if drop:
                hand.drops[key] = drop
            else:
                hand.boxes[key] = _box_cells(row, path, line)
            view = _view(row.get("view"), path, line)
            if view:
                hand.views[key] = view
            else:
                hand.views.pop(key, None)
    return hand


def write_hand_boxes(path: Path | str, boxes: dict[str, tuple[float, float, float, float]],
                     views: dict[str, str] | None = None, drops: dict[str, str] | None = None) -> Path:
    """Write a --boxes CSV atomically (`path,x,y,w,h,view,drop`, numbers to 0.1 px, rows sorted by
    path), what read_hand_boxes reads back; a row that could not be read back is an error."""
    views, drops = views or {}, drops or {}
    both = sorted(boxes.keys() & drops.keys())
    if both:
        raise P2DError(f"{', '.join(both)}: a drawing has a box or a drop reason, not both")
    lines = []
    for key in sorted(boxes.keys() | drops.keys()):
        view = _view(views.get(key, ""), Path(path), len(lines) + 2)
        if key in drops:
            drop = " ".join(str(drops[key]).split())
            if not drop:
                raise P2DError(f"{key}: a drop needs a reason (e.g. \"two faces\")")
            lines.append([key, "", "", "", "", view, drop])
            continue
        cells = [f"{float(v):.1f}" for v in boxes[key]]
        if not all(math.isfinite(float(v)) for v in cells) or min(float(cells[2]), float(cells[3])) <= 0:
            raise P2DError(f"{key}: box {boxes[key]} needs finite numbers and w, h of at least 0.1 px")
        lines.append([key, *cells, view, ""])
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([["path", "x", "y", "w", "h", "view", "drop"], *lines])
    write_text_atomic(path, text.getvalue())
    return Path(path)


def match_key(keys, rel: str) -> str | None:
    """The row path (among `keys`) that names the image at `rel` (relative to RAW): `rel` itself, else
    a row path that is a trailing part of it or it of the row path (e.g. `drawings/x.png` for `x.png`)."""
    if rel in keys:
        return rel
    found = [key for key in keys if rel.endswith("/" + key) or key.endswith("/" + rel)]
    if len(found) > 1:
        raise P2DError(f"the --boxes rows {', '.join(found)} all match {rel}: write the path relative "
                       "to the drawings folder (e.g. artist/1.png) so each row names one drawing")
    return found[0] if found else None


def match_box(boxes: dict[str, tuple], rel: str) -> tuple | None:
    """The hand box for an image at `rel` (relative to RAW): see match_key."""
    key = match_key(boxes, rel)
    return None if key is None else boxes[key]


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class CropOptions:
    """What a crop-drawings run is asked for (`p2d crop-drawings`' options), checked on creation. Saved
    in OUT/crop_settings.json (record), from which rerun_crop_drawings builds it again (from_record)."""

    size: int = 128
    face_fraction: float = CELEBA_FACE_FRACTION
    pad: Pad = Pad("auto")
    background: tuple[int, int, int] = (255, 255, 255)  # under transparent drawings
    boxes: Path | str | None = None  # the --boxes file (read_hand_boxes)
    source: str = "drawings"
    detectors: tuple[str, ...] = DEFAULT_DETECTORS
    min_iou: float = 0.3
    min_votes: int = 2
    rotate: bool = True
    detector_model: Path | str | None = None  # a user-trained detector (.svm); it votes as `user`
    learn: bool = False  # train a detector on this set's confirmed boxes (module docstring)
    drop_profiles: bool = False
    max_frontal_yaw_deg: float = MAX_FRONTAL_YAW_DEG
    manifest: Path | str | None = None  # default: OUT/manifest.csv
    workers: int = 1  # workers, engine, ray_address: where the per-drawing work runs (p2d.curate.engine)
    engine: str = "local"
    ray_address: str | None = None

    def __post_init__(self):
        self.engine_spec.validate()
        if not 16 <= self.size <= 4096:
            raise P2DError(f"--size {self.size} is out of range: use 16..4096 pixels")
        if not 0.05 <= self.face_fraction <= 1.0:
            raise P2DError(f"--face-fraction {self.face_fraction} is out of range: use 0.05..1.0 "
                           "(CelebA: 0.466)")
        if not 0 < self.max_frontal_yaw_deg <= 90:
            raise P2DError(f"--max-frontal-yaw-deg {self.max_frontal_yaw_deg} is out of range: "
                           "use 0..90 degrees")

    @property
    def engine_spec(self) -> Engine:
        return Engine(self.engine, self.workers, self.ray_address)

    def record(self, raw: Path | str) -> dict:
        """crop_settings.json of a run on `raw` (keys: SETTINGS_KEYS; paths absolute)."""
        return {"version": SETTINGS_VERSION, "raw": _absolute(raw), "manifest": _absolute(self.manifest),
                "boxes": _absolute(self.boxes), "size": self.size, "face_fraction": self.face_fraction,
                "pad": str(self.pad), "background": [int(v) for v in self.background], "source": self.source,
                "detectors": list(self.detectors), "min_iou": self.min_iou, "min_votes": self.min_votes,
                "rotate": self.rotate, "detector_model": _absolute(self.detector_model), "learn": self.learn,
                "drop_profiles": self.drop_profiles, "max_frontal_yaw_deg": self.max_frontal_yaw_deg,
                "workers": self.workers}

    @classmethod
    def from_record(cls, r: dict) -> CropOptions:
        """The options a crop_settings.json (read_crop_settings) saved; the engine is local."""
        from p2d.padding import parse_pad

        return cls(size=r["size"], face_fraction=r["face_fraction"], pad=parse_pad(r["pad"]),
                   background=tuple(r["background"]), boxes=r["boxes"], source=r["source"],
                   detectors=tuple(r["detectors"]), min_iou=r["min_iou"], min_votes=r["min_votes"],
                   rotate=r["rotate"], detector_model=r["detector_model"], learn=r["learn"],
                   drop_profiles=r["drop_profiles"], max_frontal_yaw_deg=r["max_frontal_yaw_deg"],
                   manifest=r["manifest"], workers=r["workers"])


@dataclass(frozen=True)
class CropSettings:
    """Everything one drawing's crop depends on besides the drawing itself: the run's options and
    what crop_drawings made of them, which worker processes and Ray actors receive."""

    options: CropOptions
    manifest_path: Path
    hand: HandBoxes  # the boxes file (read_hand_boxes): boxes, views, drops by path relative to RAW
    detector: DrawingDetector  # built from options.detectors, rotate and detector_model
    user_model: str = ""  # the user detector's identity, for the cache key
    extra: DrawingDetector | None = None  # --learn's detector: its boxes join the cached candidates


@dataclass
class DrawingsResult:
    manifest: Path
    rows: list[dict]
    sheets: list[Path]
    seconds: float
    notes: list[str] = field(default_factory=list)
    learned: int | None = None  # faces the --learn detector added (None: no --learn)
    proposed: int = 0  # proposed boxes written to OUT/proposed_boxes.csv
    reused: int = 0  # rows taken from the row cache of an earlier run (nothing that decides them changed)

    @property
    def kept(self) -> int:
        return sum(1 for x in self.rows if x["keep"])

    def summary_rows(self) -> list[tuple[str, object]]:
        """Images per outcome: kept by which detector (or hand box), dropped for which reason;
        kept faces per facing."""
        counts: dict[str, int] = {}
        for x in self.rows:
            key = f"kept ({x['detector']})" if x["keep"] else f"dropped ({x['reason'].split(':')[0]})"
            counts[key] = counts.get(key, 0) + 1
        for x in self.rows:
            if x.get("facing"):
                key = f"facing {x['facing']}"
                counts[key] = counts.get(key, 0) + 1
        learned = [] if self.learned is None else [("added by --learn", self.learned)]
        reused = [("reused from the last run", self.reused)] if self.reused else []
        return (sorted(counts.items()) + learned + reused
                + [("total", len(self.rows)), ("seconds", round(self.seconds, 1))])


def _cache_key(path: Path, *settings) -> str:
    """Detections are reused while the file (size, mtime) and the detection settings are unchanged."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{settings!r}"


def _detections_key(path: Path, s: CropSettings) -> str:
    d, o = s.detector, s.options
    return _cache_key(path, CACHE_VERSION, o.background, d.detectors, d.fallback, d.rotations_deg, o.min_iou,
                      o.min_votes, s.user_model)


def _shipped_models_stamp() -> str:
    """p2d's version and the name, size and mtime of each file in p2d/drawings/weights (its README aside): a
    stat per file, no read, so a re-run stays cheap, while a release or a model file replaced in
    place changes it. Changes to the code between releases bump ROWS_CACHE_VERSION instead."""
    from p2d import __version__

    files = sorted(p for p in WEIGHTS_DIR.iterdir() if p.is_file() and p.suffix != ".md")
    return __version__ + "".join(f";{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def _hand_entry(hand: HandBoxes, rel: str):
    """This drawing's (box, view, drop) in the boxes file; a match error stays the drawing's own (its
    row records it, see _one_drawing), so here it is just part of the key."""
    try:
        return hand.entry(rel)
    except P2DError as exc:
        return str(exc)


def _row_key(path: Path, rel: str, target: Path, s: CropSettings, stamp: str) -> str:
    """A drawing's first-pass row is reused while this is unchanged: the detections' key (file size and
    mtime, detector settings), the framing and output settings, where the row and crop go, the
    drawing's hand entry, and p2d's version and shipped models (_shipped_models_stamp)."""
    models_dir, o = s.detector.models.models_dir, s.options
    return _detections_key(path, s) + "|" + repr((
        ROWS_CACHE_VERSION, stamp, models_dir and str(Path(models_dir).absolute()), o.size, o.face_fraction,
        str(o.pad), o.source, o.drop_profiles, o.max_frontal_yaw_deg, str(s.manifest_path.resolve()),
        str(target.resolve()), _hand_entry(s.hand, rel)))


def _json_native(row: dict) -> bool:
    """Does the row survive JSON unchanged? Exact types: a numpy scalar would come back as another
    type and could print differently in the manifest, so such a row is not cached."""
    return all(type(v) in (str, int, float, bool, type(None)) for v in row.values())


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _candidates_to_json(c: Candidates) -> dict:
    def boxes(ds):
        return [[d.x, d.y, d.w, d.h, d.detector, d.score, d.view] for d in ds]

    return {"upright": boxes(c.upright), "rotated": [[a, boxes(ds)] for a, ds in c.rotated.items()],
            "searched": list(c.searched)}


def _candidates_from_json(data: dict) -> Candidates:
    return Candidates([Detection(*d) for d in data["upright"]],
                      {float(a): [Detection(*d) for d in ds] for a, ds in data["rotated"]},
                      tuple(data.get("searched", ())))


def _model_stamp(model) -> str:
    """What identifies a user detector in the cache key: its file's path, size and mtime."""
    if model is None:
        return ""
    st = Path(model).stat() if Path(model).is_file() else None
    return f"{Path(model).resolve()}:{st.st_size}:{st.st_mtime_ns}" if st else str(model)


def crop_drawings(raw: Path | str, out: Path | str, options: CropOptions = CropOptions(), *,
                  models: FaceModels | None = None, show_progress: bool = True) -> DrawingsResult:
    """Crop the face of every drawing under `raw` into `out`, write `out/manifest.csv` and review
    sheets. Detections and each drawing's first-pass row are cached in `out`: an interrupted or
    repeated run redoes only the drawings whose file, hand entry or settings changed (_row_key).
    The options go to `out/crop_settings.json`, from which rerun_crop_drawings repeats the run.
    `models`: dlib's models already loaded (default: loaded here)."""
    o = options
    raw, out = Path(raw), Path(out)
    files, root, left_out = input_images(raw, out, "drawings")
    hand = read_hand_boxes(o.boxes) if o.boxes else HandBoxes()
    manifest_path = Path(o.manifest) if o.manifest else out / "manifest.csv"
    detector = DrawingDetector(models, detectors=o.detectors, user_model=o.detector_model,
                               **({} if o.rotate else {"rotations_deg": ()}))
    settings = CropSettings(o, manifest_path, hand, detector, _model_stamp(o.detector_model))
    t0 = time.perf_counter()
    items = [(path, path.relative_to(root).as_posix(), out / f"{stem}.png")
             for path, stem in zip(files, output_stems(files, root))]
    cache = _read_json(out / CACHE_NAME)
    rows, review, found, reused = _first_pass(out, items, settings, cache, o.engine_spec, show_progress)
    notes, learned = list(detector.notes) + left_out, None
    if o.learn:
        learned = _learn_and_retry(out, rows, review, found, items, settings, cache, notes)
    write_manifest(new_rows(rows), manifest_path)
    sheets = _write_review(out, rows, review)
    proposed = write_proposals(out / PROPOSALS, rows, [rel for _, rel, _ in items], o.boxes)
    if proposed:
        notes.append(f"{proposed} drawing(s) without a face have a proposed box (yellow on the review sheet) "
                     f"in {out / PROPOSALS}: delete the wrong lines, correct the rest, and run again with "
                     f"--boxes {out / PROPOSALS} (or add them to your boxes file)")
    write_text_atomic(out / SETTINGS_NAME, json.dumps(o.record(raw), indent=1) + "\n")
    seconds = time.perf_counter() - t0
    return DrawingsResult(manifest_path, rows, sheets, seconds, notes, learned, proposed, reused)


def _absolute(path: Path | str | None) -> str | None:
    return str(Path(path).absolute()) if path else None


def read_crop_settings(out: Path | str) -> dict:
    """The settings a crop-drawings run saved in `out` (crop_settings.json; keys: SETTINGS_KEYS)."""
    path = Path(out) / SETTINGS_NAME
    again = (f"run `p2d crop-drawings RAW {out}` once more with this p2d (with the options of the first "
             "run), then try again")
    if not path.is_file():
        raise P2DError(f"{out} has no {SETTINGS_NAME}: it was made by an older p2d, or is not a "
                       f"crop-drawings output folder; {again}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise P2DError(f"{path} is not readable JSON ({exc}): {again}") from None
    missing = sorted(set(SETTINGS_KEYS) - set(record)) if isinstance(record, dict) else ["all"]
    if missing:
        raise P2DError(f"{path} lacks {', '.join(missing)}: {again}")
    if record["version"] > SETTINGS_VERSION:
        raise P2DError(f"{path} was written by a newer p2d (settings version {record['version']}): "
                       "upgrade p2d, or run crop-drawings once more with this one")
    return record


def rerun_crop_drawings(out: Path | str, boxes: Path | str | None = None, show_progress: bool = False,
                        models: FaceModels | None = None) -> DrawingsResult:
    """Run crop-drawings again into `out` with the settings its last run saved, and `boxes` (default:
    the boxes file that run read, if any). Only the drawings whose hand entry (or file) changed are
    recomputed, and the manifest is the one a fresh run would write. It runs here (engine local).
    `models`: dlib's models already loaded (a long-lived caller saves their load, seconds, per call)."""
    r = read_crop_settings(out)
    options = CropOptions.from_record(r)
    if boxes is not None:
        options = replace(options, boxes=boxes)
    return crop_drawings(r["raw"], out, options, models=models, show_progress=show_progress)


def _first_pass(out: Path, items: list, s: CropSettings, cache: dict, engine: Engine,
                show_progress: bool) -> tuple[list, list, list, int]:
    """Every drawing's row, review cell and confirmed box (None: none to learn from), taken from the
    row cache where its key (_row_key) is unchanged and, for a kept row, its crop is still there, else
    computed on `engine`; and how many were reused. `cache` (the detections) is updated in place;
    both caches are saved every 20 drawings, so an interrupted run keeps what it did."""
    from p2d.ui import progress

    old = _read_json(out / ROWS_CACHE_NAME)
    stamp = _shipped_models_stamp()
    keys = [_row_key(path, rel, target, s, stamp) for path, rel, target in items]
    done: list = [None] * len(items)

    def save():
        rows_cache = {items[i][1]: {"key": keys[i], "row": d[0], "box": d[2]}
                      for i, d in enumerate(done) if d is not None and _json_native(d[0])}
        write_text_atomic(out / CACHE_NAME, json.dumps(cache))
        write_text_atomic(out / ROWS_CACHE_NAME, json.dumps(rows_cache))

    with progress(transient=not show_progress) as bar:
        task = bar.add_task("crop-drawings", total=len(items), status="")
        for i, (path, rel, target) in enumerate(items):
            hit = old.get(rel)
            if hit and hit["key"] == keys[i] and (not hit["row"]["keep"] or target.is_file()):
                image, _ = try_read_image(path, background=s.options.background)
                done[i] = (hit["row"], _review_cell(hit["row"], image), hit["box"] and tuple(hit["box"]))
                bar.update(task, advance=1, status="reused")
        todo = [i for i, d in enumerate(done) if d is None]
        # paths absolute: a worker process or Ray node may not share this process' working folder
        jobs = [(path.absolute(), rel, target.absolute(), cache.get(rel)) for path, rel, target in
                (items[i] for i in todo)]
        work = functools.partial(DrawingWorker, replace(s, manifest_path=s.manifest_path.absolute()))
        shared = [out, jobs[0][0], jobs[-1][0]] if jobs else [out]
        for j, (row, cell, box, detections) in enumerate(map_jobs(jobs, work, engine, shared=shared)):
            if detections is not None:
                cache[items[todo[j]][1]] = detections
            done[todo[j]] = (row, cell, box)
            bar.update(task, advance=1, status=row["reason"] or row["detector"])
            if j % 20 == 19:
                save()
    save()
    rows, review, found = (list(x) for x in zip(*done))
    return rows, review, found, len(items) - len(todo)


def write_proposals(path: Path, rows: list[dict], rels: list[str], boxes: Path | str | None) -> int:
    """Write the proposed boxes of the drawings without a face (`path,x,y,w,h,view,score`, paths
    relative to RAW, so the file works as --boxes as it is); the number written. A file left by an
    earlier run goes (it would propose boxes for drawings that now have a face), unless it is the
    --boxes file this run read: a user's edits are never overwritten."""
    if boxes is not None and Path(boxes).resolve() == path.resolve():
        return 0
    lines = [[rel, *row["proposal"].split(), "", row["proposal_score"]]
             for row, rel in zip(rows, rels) if row["reason"] == "no_face" and row.get("proposal")]
    if not lines:
        path.unlink(missing_ok=True)
        return 0
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([["path", "x", "y", "w", "h", "view", "score"], *lines])
    write_text_atomic(path, text.getvalue())
    return len(lines)


def confirmed(face: FoundFace | None) -> bool:
    """A box --learn may train on: a hand box, or a face two detectors agree on, or one firm one."""
    return face is not None and (face.detector == "hand" or face.votes >= 2 or face.strength >= FIRM_STRENGTH)


def _learn_and_retry(out: Path, rows: list, review: list, found: list, items: list, s: CropSettings,
                     cache: dict, notes: list[str]) -> int:
    """--learn: train on the confirmed boxes (`found`: each drawing's, or None), save the detector in
    `out`, run it on the drawings without a face (rows and review cells replaced in place); the
    number of faces it added."""
    from p2d.drawings.learn import MIN_BOXES, train_detector

    examples = []
    for (path, _, _), box in zip(items, found):
        if box is not None:
            image, _ = try_read_image(path, background=s.options.background)
            if image is not None:
                examples.append((image, box))
    if len(examples) < MIN_BOXES:
        notes.append(f"--learn: only {len(examples)} confirmed face box(es), at least {MIN_BOXES} are "
                     "needed: nothing learned (give more hand boxes with --boxes)")
        return 0
    try:
        model = train_detector(examples)
    except P2DError as exc:
        notes.append(f"--learn: nothing learned: {exc}")
        return 0
    model.save(str(out / LEARNED_MODEL))
    extra = DrawingDetector(s.detector.models, detectors=(), user_model=model, rotations_deg=())
    retry = replace(s, extra=extra)
    added = 0
    for i, item in enumerate(items):
        if rows[i]["reason"] != "no_face":
            continue
        row, image, _ = _one_drawing(*item, retry, cache)
        if row["keep"] or row["reason"] == "profile":
            rows[i], review[i] = row, _review_cell(row, image)
            added += 1
    notes.append(f"--learn: trained on {len(examples)} confirmed boxes (saved as {out / LEARNED_MODEL}); "
                 f"it found a face in {added} of the drawings that had none")
    return added


@dataclass(frozen=True)
class FoundFace:
    """The face box a drawing is cropped around, and who found it ("hand" for a hand box)."""

    box: tuple[float, float, float, float]
    detector: str
    score: float
    votes: int
    agreeing: str  # detectors that agree, joined with "+"
    rotation_deg: float
    view: str = ""  # the hand box's or the detectors' view ("" when none says)
    strength: float = math.inf  # the best normalised detector score (hand boxes: certain)
    cnn_view: str = ""  # drawn_cnn's view of the face where it voted for it (a hand box: where it would)


def _find_face(image: np.ndarray, path: Path, rel: str, s: CropSettings,
               cache: dict) -> tuple[FoundFace | None, Detection | None]:
    """The hand box when there is one, else the detectors' choice (their candidates cached by file);
    and where there is no face, the proposal (`proposal`), else None."""
    o = s.options
    box, view, _ = s.hand.entry(rel)
    if box is not None:
        cnn_view = "" if view else s.detector.cnn_view_of(image, box, o.min_iou)  # no view given: drawn_cnn's
        return FoundFace(box, "hand", math.nan, 1, "hand", 0.0, view=view, cnn_view=cnn_view), None
    d = s.detector
    key = _detections_key(path, s)
    hit = cache.get(rel)
    if hit and hit["key"] == key:
        found = _candidates_from_json(hit["candidates"])
    else:
        found = d.all_candidates(image, min_iou=o.min_iou, min_votes=o.min_votes)
        cache[rel] = {"key": key, "candidates": _candidates_to_json(found)}
    if s.extra is not None:
        found = Candidates(found.upright + s.extra.candidates(image), found.rotated, found.searched)
    face = choose_with_rotations(found, min_iou=o.min_iou, min_votes=o.min_votes)
    if face is None:
        return None, proposal(found.upright)
    return FoundFace(face.box.box, face.box.detector, face.box.score, face.votes, "+".join(face.detectors),
                     face.rotation_deg, face.view, face.strength, face.cnn_view), None


def proposal(upright: list[Detection], min_score: float = PROPOSAL_MIN_SCORE) -> Detection | None:
    """drawn_cnn's best upright box at `min_score` or above, proposed where the vote found no face."""
    boxes = [d for d in upright if d.detector == "drawn_cnn" and d.score >= min_score]
    return max(boxes, key=lambda d: d.score, default=None)


class DrawingWorker:
    """The per-drawing work of a worker process or Ray actor (or of this process): the detectors'
    models load once, in the constructor. A job is (path, rel, target, its cached detections or
    None); the result is its row, review cell, confirmed face box (for --learn; None: none), and the
    detections to cache (None: unchanged)."""

    def __init__(self, settings: CropSettings):
        self.s = settings
        models = settings.detector.models
        models.predictor  # load the models once per worker, before its first drawing (lazy properties)
        if "dlib_hog" in settings.detector.detectors:
            models.hog

    def __call__(self, job: tuple) -> tuple:
        path, rel, target, cached = job
        cache = {rel: cached} if cached is not None else {}
        row, image, face = _one_drawing(Path(path), rel, Path(target), self.s, cache)
        new = cache.get(rel)
        box = [float(v) for v in face.box] if confirmed(face) else None  # plain floats: it is cached as JSON
        return row, _review_cell(row, image), box, (new if new is not cached else None)


def _one_drawing(path: Path, rel: str, target: Path, s: CropSettings, cache: dict):
    """One drawing's manifest row (its crop written to `target` when kept), the image (None when
    unreadable; its review cell comes from both, _review_cell), and the face found (None when none)."""
    # Dropped rows name the file they would have had, as the other curate commands do.
    row = {"path": relative_path(s.manifest_path, target), "domain": "drawing", "source": s.options.source,
           "split": "train", "crop": "center", "width": "", "height": "", "phash": "", "keep": False,
           "reason": "", "source_path": relative_path(s.manifest_path, path)}
    image, why = try_read_image(path, background=s.options.background)
    if image is None:
        row["reason"] = why
        return row, None, None
    h, w = image.shape[:2]
    row.update(source_width=w, source_height=h)
    row["reason"] = too_small(image)
    if row["reason"]:
        return row, image, None
    try:
        return _crop_one(image, path, rel, target, row, s, cache)
    except Exception as exc:  # one drawing that breaks a detector must not stop the batch
        row.update(keep=False, reason=error_reason(exc))
        return row, image, None


def face_pose(image: np.ndarray, points: np.ndarray, box: tuple[float, float, float, float],
              hand_view: str = "", detector_view: str = "", max_frontal_yaw_deg: float = MAX_FRONTAL_YAW_DEG,
              classifier_view: str = "", cnn_view: str = "") -> dict:
    """facing, facing_from, landmarks_trusted, and yaw_deg / roll_deg where the landmarks are sane
    and sit on drawn eyes (else blank: a profile's landmarks fail the eyes check, its far eye is
    not drawn). See choose_facing for the order of the evidence."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    trusted = landmarks_sane(points, box) and eyes_drawn(gray, points, box)
    features = landmark_features(points) if trusted else None
    facing, source = choose_facing(hand_view, features["yaw_deg"] if features else None, detector_view,
                                   max_frontal_yaw_deg, classifier_view, cnn_view)
    return {"facing": facing, "facing_from": source, "landmarks_trusted": trusted,
            "yaw_deg": round(features["yaw_deg"], 2) if features else "",
            "roll_deg": round(features["roll_deg"], 2) if features else ""}


def _crop_one(image: np.ndarray, path: Path, rel: str, target: Path, row: dict, s: CropSettings, cache: dict):
    """Find the face of one readable drawing, write its crop, fill its row (see _one_drawing)."""
    o = s.options
    drop = s.hand.entry(rel)[2]
    if drop:  # the user saw no usable face there: no detector runs
        row.update(detector="hand", reason=f"rejected:{drop}")
        return row, image, None
    face, proposed = _find_face(image, path, rel, s, cache)
    if face is None:
        row["reason"] = "no_face"
        if proposed is not None:
            row.update(proposal=" ".join(f"{v:.1f}" for v in proposed.box),
                       proposal_score=round(proposed.score, 4))
        return row, image, None
    points = s.detector.models.landmarks(image, face.box)
    hand = face.detector == "hand"
    # drawn_cnn's view where it voted for the face (for a hand box without a view: where it has a box
    # that would vote for it), else the facing classifier's view of the box; failing that the
    # landmarks, then the view of the detector that found it (choose_facing).
    cnn_view = face.cnn_view
    classifier_view = "" if cnn_view else s.detector.view_of(image, face.box)  # the CNN's view comes first
    pose = face_pose(image, points, face.box, face.view if hand else "", "" if hand else face.view,
                     o.max_frontal_yaw_deg, classifier_view, cnn_view)
    profile = pose["facing"] in PROFILES
    if pose.pop("landmarks_trusted") and not profile:
        cx, cy, side = square_from_landmarks(points, o.face_fraction)
        centred = "landmarks"
    else:  # a profile is framed on the head: its landmarks would look for a second eye
        cx, cy, side = square_from_box(face.box, o.face_fraction)
        centred = "box"
    try:
        crop, fraction, (x0, y0, side_px) = crop_square(image, cx, cy, side, o.size, o.pad)
    except P2DError:
        # only a hand box can put the crop wholly outside the image: record it, go on with the rest
        row["reason"] = "bad_box:outside_image"
        return row, image, face
    row.update(
        detector=face.detector, detectors=face.agreeing, votes=face.votes, score=round(face.score, 4),
        found_rotated_deg=face.rotation_deg, **pose,
        box_x=round(face.box[0], 1), box_y=round(face.box[1], 1), box_w=round(face.box[2], 1),
        box_h=round(face.box[3], 1), centred_on=centred, crop_x=x0, crop_y=y0, crop_side=side_px,
        padded_fraction=round(fraction, 4), pad=str(o.pad),
    )
    if profile and o.drop_profiles:
        row["reason"] = "profile"
        return row, image, face
    write_image(target, crop)
    row.update(width=o.size, height=o.size, phash=phash_hex(crop),
               phash_mirror=phash_hex(np.ascontiguousarray(crop[:, ::-1])), thumb=thumb_b64(crop), keep=True)
    return row, image, face


REVIEW_SIDE_PX = 320  # longest side of a drawing on the review sheet


def _write_review(out: Path, rows: list[dict], review: list) -> list[Path]:
    """Review sheets: each input with its face box (red) and crop square (blue), failures first."""
    from p2d.sheets import draw_box, write_sheet

    order = sorted(range(len(rows)), key=lambda i: (bool(rows[i]["keep"]), rows[i]["source_path"]))
    cells, labels = [], []
    for i in order:
        r, item = rows[i], review[i]
        name = Path(r["source_path"]).name
        if item is None:  # unreadable: a gray placeholder
            cells.append(None)
            labels.append(f"{name}\n{r['reason']}")
            continue
        small, box, square = item
        if square is None and box is not None and r["reason"] == "no_face":  # a proposed box
            small = draw_box(small, box, (255, 200, 0))
            labels.append(f"{name}\nNO FACE: proposed {r['proposal_score']:.2f}")
        elif square is not None:
            small = draw_box(small, square, (0, 90, 255))
            small = draw_box(small, box, (255, 0, 0))
            score = "" if r["detector"] == "hand" else f" {r['score']:.2f}"
            turn = f" @{r['found_rotated_deg']:+.0f}deg" if r["found_rotated_deg"] else ""
            facing = "" if r.get("facing", "unknown") == "unknown" else f" {r['facing']}"
            labels.append(f"{name}\n{r['detector']}{score} v{r['votes']}{turn}{facing}")
        else:
            why = "NO FACE: use --boxes" if r["reason"] == "no_face" else r["reason"]
            labels.append(f"{name}\n{why}")
        cells.append(small)
    paths = []
    for k in range(0, len(cells), SHEET_CELLS):
        p = out / f"review_{k // SHEET_CELLS + 1:02d}.png"
        paths.append(write_sheet(p, cells[k:k + SHEET_CELLS], labels[k:k + SHEET_CELLS], cell=200, cols=8))
    return paths


def _review_cell(row: dict, image: np.ndarray | None, max_side_px: int = REVIEW_SIDE_PX):
    """What the review sheet draws for one drawing, from its row alone (so a row reused from the
    cache draws as it did): the image shrunk, the face box and crop square of a kept or profile
    row, the proposed box of one without a face; None for an unreadable file."""
    if image is None:
        return None
    box = square = None
    if row["reason"] in ("", "profile") and "crop_side" in row:
        box = (row["box_x"], row["box_y"], row["box_w"], row["box_h"])
        square = (row["crop_x"], row["crop_y"], row["crop_side"], row["crop_side"])
    elif row["reason"] == "no_face" and row.get("proposal"):
        box = tuple(float(v) for v in row["proposal"].split())
    return _thumbnail((image, box, square), max_side_px)


def _thumbnail(item, max_side_px: int = REVIEW_SIDE_PX):
    """What the review sheet needs of one drawing, at most max_side_px wide, with its box and
    square scaled to match: a batch of large scans must not stay in memory whole until the end."""
    if item is None:
        return None
    image, box, square = item
    small, scale = downscale(image, max_side_px)
    if box is None:
        return small, None, None
    return small, tuple(v * scale for v in box), None if square is None else tuple(v * scale for v in square)

