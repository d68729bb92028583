"""Photo filters: named, defaulted thresholds and the pure decision of why a face photo is dropped.

Every number a filter looks at is computed once per image (and cached); the decision below is a
pure function of those numbers and the thresholds, so a re-run with other thresholds only re-judges.

Why the defaults are what they are (faces in general, not tuned to any fixture):
- smile_threshold 1.00 (p2d.faces.SMILE_THRESHOLD, derived there from face proportions): the
  smile score is the mouth's corner spread over the inter-ocular distance (IOD) plus how far the
  upper lip has risen towards the nose. A closed neutral mouth scores ~0.84 (54 mm over 64 mm), a
  full smile ~1.16 (27% wider, upper lip 28% higher); 1.00 is halfway. Opening the mouth by
  dropping the jaw moves neither term up, so talking faces stay. Use the agreement table against
  CelebA's `Smiling` attribute to move it.
- max_yaw_deg 30: beyond ~30 degrees the far cheek is foreshortened and the jaw outline that
  the yaw estimate (and the drawing domain's mostly frontal faces) rely on breaks down; the
  estimate itself is good to ~10 degrees.
- max_roll_deg 20: CelebA faces are already levelled; a large roll there means the landmarks
  failed. User photos are levelled by the framing, so only strong tilts are dropped.
- min_iod_px 20: a face whose eyes are under 20 px apart has to be enlarged to frame it at 128 px
  (where the eyes sit ~28 px apart): it would train on upsampled mush.
- min_laplacian_var 50: variance of the Laplacian on the face alone, resampled to 64x64 gray (so
  the figure means the same for a 178 px CelebA image and a 12-megapixel photo). Sharp
  CelebA-framed faces give ~700-1600, a Gaussian blur of sigma 1 px ~200-280, 1.5 px ~100-130,
  2 px ~50-75, 2.5 px ~30-50: 50 drops faces that are plainly soft, not merely JPEG-soft.
- min_mean_gray 40 / max_mean_gray 220: mean gray level of that face patch. Well exposed faces
  of every skin tone fall roughly within 70-200; outside 40-220 the face is under- or overexposed.
- second_face_min_ratio 0.5 and second_face_min_score 0.5: another detection counts as a second
  face when it is at least half as wide as the main face and the HOG detector is confident in it
  (its false positives on textures score near 0); tiny background faces do not cost an image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from p2d.errors import P2DError
from p2d.faces import SMILE_THRESHOLD

if TYPE_CHECKING:  # the CLI reads Thresholds for its options: importing this module stays light
    import numpy as np

PATCH_PX = 64  # side of the face patch blur and brightness are measured on


@dataclass(frozen=True)
class Thresholds:
    """Every filter threshold, with its unit in the name; echoed in each run's summary."""

    # `help` is the CLI's option text (`p2d curate celeba/photos --smile-threshold` ...).
    smile_threshold: float = field(default=SMILE_THRESHOLD, metadata={
        "help": "Smile score (mouth corners' spread plus the upper lip's rise towards the nose, in "
                "inter-ocular distances) above which a face counts as a wide smile."})
    max_yaw_deg: float = field(default=30.0, metadata={"help": "Drop faces turned more than this (degrees)."})
    max_roll_deg: float = field(default=20.0,
                                metadata={"help": "Drop faces tilted more than this (degrees)."})
    min_iod_px: float = field(default=20.0, metadata={
        "help": "Drop faces whose eye centres are closer than this (pixels in the source)."})
    min_laplacian_var: float = field(default=50.0, metadata={
        "help": "Drop faces whose variance of the Laplacian (64 px face patch) is below this: blur."})
    min_mean_gray: float = field(default=40.0,
                                 metadata={"help": "Drop faces darker than this mean gray level (0-255)."})
    max_mean_gray: float = field(default=220.0,
                                 metadata={"help": "Drop faces brighter than this mean gray level (0-255)."})
    second_face_min_ratio: float = field(default=0.5, metadata={
        "help": "Another detection this wide relative to the main face counts as a second face."})
    second_face_min_score: float = field(default=0.5,
                                         metadata={"help": "...and needs at least this dlib HOG score."})

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise P2DError(f"threshold {f.name}={value!r} must be a non-negative number")
        if self.min_mean_gray >= self.max_mean_gray:
            raise P2DError(
                f"min_mean_gray ({self.min_mean_gray}) must be below max_mean_gray ({self.max_mean_gray})"
            )
        if self.max_mean_gray > 255:
            raise P2DError(f"max_mean_gray={self.max_mean_gray} must be at most 255 (gray levels)")
        if self.max_yaw_deg > 90 or self.max_roll_deg > 180:
            raise P2DError("max_yaw_deg must be at most 90 and max_roll_deg at most 180 (degrees)")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# ------------------------------------------------------------------ image measures (pure)


def laplacian_var(gray: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian: low when the image has no fine detail (blur)."""
    import cv2
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def mean_gray(gray: np.ndarray) -> float:
    return float(gray.mean())


# ------------------------------------------------------------------ the decision (pure)

OUTLIER_REASONS = ("no_face", "multi_face", "face_small", "yaw", "roll", "dark", "bright", "blur")


def second_faces(faces: list[list[float]], thresholds: Thresholds) -> int:
    """How many detections besides the main one (faces[0], the largest) count as another face."""
    if len(faces) < 2:
        return 0
    main_w = faces[0][2]
    return sum(
        1 for f in faces[1:]
        if f[2] >= thresholds.second_face_min_ratio * main_w and f[4] >= thresholds.second_face_min_score
    )


def drop_reason(
    record: dict,
    thresholds: Thresholds,
    drop_smiles: bool = False,
    drop_outliers: bool = False,
    smile_source: str = "landmarks",
    smiling_attr: int | None = None,
    need_face: bool = False,
) -> str:
    """Why this image is dropped ("" to keep it), from its cached analysis record.

    One reason per image, the first that applies in this order: unreadable, too_small, error, no_face,
    multi_face, face_small, yaw, roll, dark, bright, blur, smile. `need_face` drops faceless images even
    without --drop-outliers (a photo cannot be framed without landmarks).
    """
    status = record.get("status", "")
    if status.startswith(("unreadable", "too_small", "error:")):
        return status
    if status == "no_face":
        return "no_face" if (drop_outliers or need_face) else ""
    f = record.get("features") or {}
    if drop_outliers:
        if second_faces(record.get("faces") or [], thresholds):
            return "multi_face"
        if f["iod_px"] < thresholds.min_iod_px:
            return "face_small"
        if abs(f["yaw_deg"]) > thresholds.max_yaw_deg:
            return "yaw"
        if abs(f["roll_deg"]) > thresholds.max_roll_deg:
            return "roll"
        # Exposure before blur: a dark face has little contrast, so its Laplacian is small too.
        if f["mean_gray"] < thresholds.min_mean_gray:
            return "dark"
        if f["mean_gray"] > thresholds.max_mean_gray:
            return "bright"
        if f["laplacian_var"] < thresholds.min_laplacian_var:
            return "blur"
    if drop_smiles:
        if smile_source == "attr":
            if smiling_attr == 1:
                return "smile"
        elif f["smile_score"] > thresholds.smile_threshold:
            return "smile"
    return ""


# What each filter reason measured: (manifest column, threshold, how the value fails it). `padded`'s
# limit is the run's max_padded_fraction, not a Thresholds field; the review page shows these.
REASON_MEASURES = {
    "multi_face": ("n_faces", "second_face_min_ratio", "faces"),
    "face_small": ("iod_px", "min_iod_px", "<"),
    "yaw": ("yaw_deg", "max_yaw_deg", "|x| >"),
    "roll": ("roll_deg", "max_roll_deg", "|x| >"),
    "dark": ("mean_gray", "min_mean_gray", "<"),
    "bright": ("mean_gray", "max_mean_gray", ">"),
    "blur": ("laplacian_var", "min_laplacian_var", "<"),
    "smile": ("smile_score", "smile_threshold", ">"),
    "padded": ("padded_fraction", "max_padded_fraction", ">"),
}


def reason_measure(reason: str, row: dict, limits: dict | None,
                   smile_source: str = "landmarks") -> dict | None:
    """For a filter's drop `reason`: the manifest column it measured, that row's value, the threshold
    it failed (from `limits`: Thresholds.as_dict() plus max_padded_fraction; None when the run did
    not record them) and the rule as a sentence. None for reasons no threshold decides."""
    if reason == "smile" and smile_source == "attr":
        return {"column": "smiling_attr", "value": _number(row.get("smiling_attr")), "threshold_name": None,
                "threshold": None, "rule": "CelebA's Smiling attribute is 1 (--smile-source attr)"}
    if reason not in REASON_MEASURES:
        return None
    column, name, compare = REASON_MEASURES[reason]
    value = _number(row.get(column))
    threshold = _number((limits or {}).get(name))
    shown = "?" if value is None else f"{abs(value) if compare == '|x| >' else value:g}"
    limit = "?" if threshold is None else f"{threshold:g}"
    if compare == "faces":
        score = (limits or {}).get("second_face_min_score")
        rule = (f"{shown} faces found; another face counts when at least {limit} of the main face's width "
                f"with a HOG score of at least {'?' if score is None else f'{score:g}'}")
    elif compare == "|x| >":
        rule = f"|{column}| {shown} > {name} {limit}"
    else:
        rule = f"{column} {shown} {compare} {name} {limit}"
    return {"column": column, "value": value, "threshold_name": name, "threshold": threshold, "rule": rule}


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def smile_agreement(scores: list[float], smiling: list[int], smile_threshold: float) -> dict[str, int]:
    """How the landmark smile score (above the threshold = smiling) agrees with CelebA's
    `Smiling` attribute (1 / -1): counts of the four cases."""
    out = {"both_smile": 0, "landmarks_only": 0, "attr_only": 0, "neither": 0}
    for s, a in zip(scores, smiling):
        lm = s > smile_threshold
        at = a == 1
        key = "both_smile" if lm and at else "landmarks_only" if lm else "attr_only" if at else "neither"
        out[key] += 1
    return out
