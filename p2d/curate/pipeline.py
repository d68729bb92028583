"""The photo curation engine shared by `p2d curate celeba` and `p2d curate photos`.

Per image: decode, landmarks (fast path: the face box is known, only the shape predictor runs;
detect path: dlib HOG first), features, the filters' decision, and for kept images the output
crop (CelebA's centre square, or the face framed like CelebA from its landmarks) written as PNG.
A worker takes images in batches and finds the landmarks of a whole batch in one call
(p2d.shape_predictor: dlib's model and dlib's points, a fraction of the time per face).
Analyses and outputs are cached in OUT/cache/, so a re-run (other thresholds, or after an
interruption) recomputes nothing it already has. The per-image work (`_Worker`) runs where
p2d.curate.engine sends it (this process, `workers` processes, or Ray actors); results come back in
input order, so the manifest is the same for any engine and number of workers.

The user's decisions in OUT/overrides.csv (p2d.curate.overrides) are part of the judgement: a
`keep` keeps a photo a filter dropped (and writes its output), a `drop` drops a kept one (reason
`override`). Where faces are framed, a photo a filter dropped gets its frame written too, under
OUT/dropped/ (images/ holds exactly the kept set, which users translate whole): the review page
shows what a keep would train on, and a keep saved there needs no landmarks again. Each run records
its settings in OUT/curate_settings.json.
"""

from __future__ import annotations

import functools
import io
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from p2d.curate.engine import Engine, map_jobs
from p2d.facecache import FaceCache, file_signature
from p2d.curate.filters import Thresholds, drop_reason, laplacian_var, mean_gray, smile_agreement
from p2d.curate.hashing import output_hashes
from p2d.curate.overrides import (CURATE_SETTINGS, OVERRIDES, dropped_path, keep_refusal, match_overrides,
                                  overridden, read_overrides)
from p2d.padding import Pad, frame_padded
from p2d.errors import P2DError
from p2d.faces import SHAPE_68, FaceModels, find_model, landmark_features
from p2d.framing import (
    CELEBA_HEIGHT,
    CELEBA_TEMPLATE_5,
    CELEBA_WIDTH,
    box_from_five,
    center_crop_square,
    MAX_PADDED_FRACTION,
    detect_faces,
    face_patch,
    frame_matrix,
    frame_padded_fraction,
    resize_square,
)
from p2d.images import (MAX_PIXELS, error_reason, too_small, try_read_image, write_bytes_atomic,
                        write_text_atomic)

# zlib level 1 with run-length matching, and libpng's "up" filter on every row instead of trying all
# five per row: measured on 128 px CelebA crops (OpenCV 4.14), 0.67 ms CPU a file against 1.06 ms
# with the adaptive filters, for files 8% larger (24.3 KB against 22.5 KB). PNG is lossless: the
# pixels, and so the manifest's hashes, are the same either way. (The filter option is OpenCV >= 4.11's.)
PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):
    PNG_OPTIONS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
# Where a worker's time goes, per image (RunResult.stage_seconds sums them; benchmarks print them).
STAGES = ("decode", "detect", "landmarks", "features", "crop", "encode", "write", "hashes")
BATCH = 32  # images per worker call when this process does the work: their landmarks are predicted together
FEATURE_COLUMNS = ("smile_score", "mouth_width", "mouth_open", "yaw_deg", "roll_deg", "iod_px",
                   "laplacian_var", "mean_gray")


@dataclass
class Item:
    """One selected image: its cache key `name`, where it is, and what is known about it."""

    name: str  # unique within the run, e.g. "000001.jpg" or "trip/beach.jpg"
    path: Path
    out_stem: str  # output file under OUT/images/, without extension
    points5: list[list[float]] | None = None  # CelebA's five points: the fast path's face box
    smiling: int | None = None  # CelebA's Smiling attribute (1 / -1) when known
    pre_reason: str = ""  # dropped before analysis (e.g. "attr:Eyeglasses")
    extra: dict = field(default_factory=dict)  # more manifest columns (image_id, partition ...)
    override: str = ""  # the user's "keep" or "drop" from OUT/overrides.csv


@dataclass
class Job:
    """One image for a worker: where it is, how its face box is found, what the cache already has."""

    index: int  # position in the run's items
    path: str
    name: str
    sig: list[int] | None  # file signature (size, mtime): the cache key with `name` and `detector`
    detector: str  # detector_name(): "fast:template", "fast:landmarks" or "hog:upN"
    points5: list[list[float]] | None
    cached: dict | None  # the cached analysis, when only the output image is missing
    pre_reason: str
    smiling: int | None
    out_file: str  # under the output folder, e.g. images/000001.png (dropped/000001.png when dropped)
    override: str = ""  # the user's "keep" or "drop"


@dataclass(frozen=True)
class CurateOptions:
    """What every `p2d curate` command takes besides its input and its own options (the CLI's shared
    curate options and the thresholds): the manifest's source label, the output's size and format,
    the filters, dlib's settings, and where the per-image work runs. Checked on creation."""

    source: str | None = None  # the manifest's `source` label; None: the command's own (celeba, photos)
    size: int = 128
    fmt: str = "png"
    thresholds: Thresholds = field(default_factory=Thresholds)
    drop_smiles: bool = False
    drop_outliers: bool = False
    upsample: int = 1
    models_dir: Path | str | None = None
    workers: int = 1
    engine: str = "local"  # see p2d.curate.engine
    ray_address: str | None = None

    def __post_init__(self):
        if self.source is not None and (not self.source.strip() or any(c in self.source for c in ",\n\r")):
            raise P2DError(f"--source {self.source!r} must be a short label without commas, e.g. my_photos")
        if not 16 <= self.size <= 1024:
            raise P2DError(f"--size {self.size} is out of range: give 16 to 1024 pixels "
                           "(CelebA training used 128)")
        if self.fmt not in ("png", "jpg"):
            raise P2DError(f"--format {self.fmt} is not supported: use png or jpg")
        if not 0 <= self.upsample <= 3:
            raise P2DError(f"--upsample {self.upsample} is out of range: give 0 to 3")
        self.engine_spec.validate()

    @property
    def engine_spec(self) -> Engine:
        return Engine(self.engine, self.workers, self.ray_address)


@dataclass
class RunSettings:
    """One run: the user's options (`options.source` set) and how the command finds and crops faces."""

    out_dir: Path
    options: CurateOptions = field(default_factory=CurateOptions)
    # "known" (CelebA's face position: template or its landmarks) or "detect" (dlib HOG)
    face_box: str = "known"
    crop: str = "center"  # "center" (CelebA's square) or "frame" (landmark framing)
    smile_source: str = "landmarks"  # or "attr": CelebA's Smiling attribute
    need_face: bool = False
    quiet: bool = False
    pad: Pad = Pad("blur")  # fill of a framed photo past the image edge (crop "frame")
    max_padded_fraction: float = MAX_PADDED_FRACTION  # frames filled more than this: reason "padded"

    def validate(self) -> None:
        if not self.options.source:
            raise P2DError("a curate run needs its source label (options.source)")
        if self.face_box not in ("known", "detect"):
            raise P2DError(f"face_box must be 'known' or 'detect', not {self.face_box!r}")
        if self.crop not in ("center", "frame"):
            raise P2DError(f"crop must be 'center' or 'frame', not {self.crop!r}")
        if self.smile_source not in ("landmarks", "attr"):
            raise P2DError(f"--smile-source {self.smile_source} is not known: use landmarks or attr")
        if not 0.0 <= self.max_padded_fraction <= 1.0:
            raise P2DError(f"--max-padded-fraction {self.max_padded_fraction} is out of range: give 0 to 1 "
                           f"(default {MAX_PADDED_FRACTION}: more filled frame than that covers part of "
                           "the face)")


@dataclass
class RunResult:
    """What a run did: the manifest, counts for the summary table, and the smile agreement."""

    manifest: Path
    out_dir: Path
    rows: object  # the manifest DataFrame
    selected: int
    kept: int
    dropped: dict[str, int]
    analyzed: int  # images whose landmarks were computed in this run (shape predictor calls)
    cache_hits: int  # images whose analysis came from the cache
    written: int  # output images written in this run
    seconds: float
    thresholds: Thresholds
    agreement: dict[str, int] | None = None
    notes: list[str] = field(default_factory=list)  # what the run did, for the summary
    # seconds the workers spent in each of STAGES, summed over the images analysed or written here
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.selected / self.seconds if self.seconds > 0 else float("inf")

    def summary_rows(self) -> list[tuple[str, object]]:
        rows: list[tuple[str, object]] = [("selected", self.selected), ("kept", self.kept)]
        rows += [(f"dropped: {k}", v) for k, v in sorted(self.dropped.items(), key=lambda kv: -kv[1])]
        rows += [("landmarks computed", self.analyzed), ("landmarks from cache", self.cache_hits),
                 ("images written", self.written), ("seconds", round(self.seconds, 2)),
                 ("images/s", round(self.images_per_s, 1))]
        return rows

    def agreement_rows(self) -> list[tuple[str, int, int]]:
        """The smile agreement as a 2x2 table: landmark verdict by CelebA's Smiling attribute."""
        a = self.agreement or {}
        thr = self.thresholds.smile_threshold
        return [(f"smile_score > {thr}", a.get("both_smile", 0), a.get("landmarks_only", 0)),
                (f"smile_score <= {thr}", a.get("attr_only", 0), a.get("neither", 0))]


# ------------------------------------------------------------------ per-image work (worker side)


def decode(path: Path, fast: bool = True) -> tuple[np.ndarray | None, str | None]:
    """RGB pixels of a photo, or (None, "unreadable:<why>").

    JPEGs go through OpenCV where it gives p2d.images' pixels, faster (0.55 against 1.0 ms on
    CelebA's small JPEGs; 0.62 against 0.97 s for 2,500 JPEGs of all sizes): with `fast` (CelebA:
    no EXIF, colour) every complete one, else a plain one (`plain_jpeg`: colour or gray, not
    turned by EXIF, not too large). Both decoders are libjpeg-turbo with the same settings:
    identical pixels on every one of ~3,300 JPEGs compared (LFW faces, CelebA-shaped, 2,500 taken
    at random from this machine's disk, colour and gray; tests/test_pipeline.py checks the
    kinds). A JPEG without its end marker (truncated), anything else, or anything OpenCV
    cannot read, goes to p2d.images, which knows every format and names the reason (EXIF
    orientation, CMYK, transparency onto white, 16-bit).
    """
    if path.suffix.lower() in (".jpg", ".jpeg"):
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        complete = data.rstrip(b"\0\r\n ")[-2:] == b"\xff\xd9"
        if complete and len(data) < 20_000_000 and (fast or plain_jpeg(data)):
            arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if arr is not None:
                return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB), None
    return try_read_image(path)


EXIF_ORIENTATION = 0x0112


def plain_jpeg(data: bytes) -> bool:
    """Whether PIL reads these bytes (header only) as a JPEG in colour (RGB) or gray (L), not
    turned by an EXIF orientation and within p2d.images' pixel limit: what OpenCV decodes to
    p2d.images' own pixels."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return (im.format == "JPEG" and im.mode in ("RGB", "L") and im.width * im.height <= MAX_PIXELS
                    and im.getexif().get(EXIF_ORIENTATION, 1) == 1)
    except Exception:  # PIL cannot read its header: p2d.images names the reason
        return False


def template_points(width: int, height: int) -> np.ndarray:
    """CelebA's mean five points scaled to an aligned image of another size (same layout)."""
    s = width / CELEBA_WIDTH
    return CELEBA_TEMPLATE_5 * s + [0.0, (height - CELEBA_HEIGHT * s) / 2]


class StageClock:
    """Seconds spent in each of STAGES since the last lap; `lap(stage)` books the time since the
    previous lap to `stage`. A few perf_counter calls per image: always on."""

    def __init__(self):
        self.seconds = [0.0] * len(STAGES)
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[STAGES.index(stage)] += now - self.t
        self.t = now


def locate(image: np.ndarray, models: FaceModels, face_box: str, points5,
           upsample: int) -> tuple[dict, tuple | None]:
    """The analysis record begun, and the face box the landmarks are looked for in (None: no face,
    the record says so)."""
    h, w = image.shape[:2]
    rec: dict = {"status": "ok", "width": w, "height": h, "faces": []}
    if face_box == "known":
        if points5 is None:
            five = template_points(w, h)
        else:  # CelebA's file gives 178x218 coordinates; follow a copy that was resized
            five = np.asarray(points5, dtype=np.float64) * (w / CELEBA_WIDTH)
        return rec, box_from_five(five)
    found = detect_faces(image, models, upsample)
    rec["faces"] = [[round(v, 2) for v in f[:4]] + [round(f[4], 4)] for f in found]
    if not found:
        rec["status"] = "no_face"
        return rec, None
    return rec, tuple(found[0][:4])


def describe(rec: dict, image: np.ndarray, box, points: np.ndarray) -> None:
    """Completes the record with the face box, the 68 points and the features measured from them."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    patch = face_patch(gray, points)
    features = landmark_features(points)
    features["laplacian_var"] = laplacian_var(patch)
    features["mean_gray"] = mean_gray(patch)
    rec["box"] = [round(float(v), 2) for v in box]
    rec["points"] = points.astype(int).reshape(-1).tolist()
    rec["features"] = {k: round(float(v), 5) for k, v in features.items()}


def _refresh_landmark_features(rec: dict) -> None:
    """Recompute a cached analysis' landmark features from its cached 68 points (dlib's points are
    whole pixels, so this equals a fresh analysis): a cache written before a change of formula
    (the smile score's, say) must not judge with the old one. Costs ~0.05 ms a face."""
    if rec.get("points") and rec.get("features") is not None:
        points = np.asarray(rec["points"], dtype=np.float64).reshape(-1, 2)
        rec["features"].update({k: round(float(v), 5) for k, v in landmark_features(points).items()})


def render_output(image: np.ndarray, rec: dict, crop: str, size: int, pad: Pad = Pad("blur")) -> np.ndarray:
    if crop == "center":
        return resize_square(center_crop_square(image), size)
    points = np.asarray(rec["points"], dtype=np.float64).reshape(68, 2)
    return frame_padded(image, frame_matrix(points, size), size, pad)


def padded_share(rec: dict | None, crop: str) -> float | None:
    """The share of the output frame that lies past the source image (and is filled by --pad):
    0 for CelebA's centre square, from the landmarks for a framed face; None without landmarks."""
    if not rec or not rec.get("points") or not rec.get("width"):
        return None
    if crop == "center":
        return 0.0
    points = np.asarray(rec["points"], dtype=np.float64).reshape(68, 2)
    return round(frame_padded_fraction(frame_matrix(points, 64), rec["width"], rec["height"], 64), 4)


def encode(image: np.ndarray, fmt: str) -> tuple[bytes, np.ndarray]:
    """File bytes of an RGB image and the pixels a reader will get back (for the phash)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, PNG_OPTIONS)
        decoded = image
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        decoded = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise P2DError(f"could not encode a {image.shape} image as {fmt}")
    return buf.tobytes(), decoded


_MODELS: dict[str, FaceModels] = {}


def shared_models(models_dir: Path | str | None = None) -> FaceModels:
    """One FaceModels per process and models folder: the 100 MB predictor loads once, not per run."""
    key = str(models_dir or "")
    if key not in _MODELS:
        _MODELS[key] = FaceModels(models_dir)
    return _MODELS[key]


class _Worker:
    """Per-process state: the dlib models (loaded once per process) and the run's settings."""

    def __init__(self, settings: RunSettings):
        self.s = settings
        self.models = shared_models(settings.options.models_dir)

    def __call__(self, job: Job) -> tuple:
        return self.batch([job])[0]

    def batch(self, jobs: list[Job]) -> list[tuple]:
        """Per job, in order: (index, the analysis to cache or None, drop reason, the output record
        or None, seconds per stage). The faces of all the jobs get their 68 landmarks in one call
        (p2d.shape_predictor: dlib's landmarks, many faces at a time); the rest is per image. Each
        result carries an equal share of the batch's stage times."""
        clock = StageClock()
        located = [self._locate(job, clock) for job in jobs]  # (image, why unreadable, record, box)
        todo = [k for k, (_, _, _, box) in enumerate(located) if box is not None]
        found = self._landmarks([located[k][0] for k in todo], [located[k][3] for k in todo])
        clock.lap("landmarks")
        for k, points in zip(todo, found):
            image, why, rec, box = located[k]
            try:
                if isinstance(points, Exception):
                    raise points
                describe(rec, image, box, points)
            except Exception as exc:  # as with dlib: this image is an error, the others go on
                located[k] = (image, why, {"status": error_reason(exc), "faces": []}, None)
        clock.lap("features")
        results = [self._finish(job, *loc[:3], clock) for job, loc in zip(jobs, located)]
        share = [v / len(jobs) for v in clock.seconds]
        return [(*r, share) for r in results]

    def _locate(self, job: Job, clock: StageClock) -> tuple:
        """(pixels or None, why they are None, the analysis record, the face box whose landmarks
        are wanted or None)."""
        s = self.s
        image, why = decode(Path(job.path), fast=s.crop == "center")  # CelebA: every JPEG by OpenCV
        clock.lap("decode")
        if job.cached is not None:
            return image, why, job.cached, None
        if image is None:
            return image, why, {"status": why, "faces": []}, None
        if too_small(image):
            return image, why, {"status": too_small(image), "faces": []}, None
        try:
            rec, box = locate(image, self.models, s.face_box, job.points5, s.options.upsample)
        except Exception as exc:  # one image that breaks dlib must not stop the batch
            rec, box = {"status": error_reason(exc), "faces": []}, None
        clock.lap("detect")
        return image, why, rec, box

    def _landmarks(self, images: list[np.ndarray], boxes: list) -> list:
        """Each face's 68 points, or the exception of a face whose prediction failed (the batch
        is then done one face at a time, so the others still get theirs)."""
        try:
            return self.models.landmarks_batch(images, boxes)
        except Exception:
            out = []
            for image, box in zip(images, boxes):
                try:
                    out.append(self.models.landmarks_batch([image], [box])[0])
                except Exception as exc:
                    out.append(exc)
            return out

    def _finish(self, job: Job, image: np.ndarray | None, why: str | None, rec: dict,
                clock: StageClock) -> tuple:
        """Judge one image and write its output: (index, analysis to cache or None, reason, output or
        None)."""
        s = self.s
        if job.cached is None:  # the cache calls the detector name its analysis "method"
            rec.update(name=job.name, sig=job.sig, method=job.detector)
        reason = verdict(rec, s, job.pre_reason, job.smiling, job.override)
        out = None
        out_file = dropped_path(job.out_file) if reason else job.out_file
        if wants_output(reason, rec, s):
            if image is None:  # cached analysis, but the file went bad since
                reason = reason or why or "unreadable:decode_error"
            else:
                clock.lap("features")
                crop = render_output(image, rec, s.crop, s.options.size, s.pad)
                clock.lap("crop")
                data, pixels = encode(crop, s.options.fmt)
                clock.lap("encode")
                write_bytes_atomic(s.out_dir / out_file, data)
                clock.lap("write")
                # the mirror's hash too, so dedup/build need not read every image again
                phash, phash_mirror, thumb = output_hashes(pixels)
                # `pad` too: _output_current compares it, so a framed output is reused on a re-run
                out = {"name": job.name, "file": out_file, "size": s.options.size, "crop": s.crop,
                       "src_sig": job.sig, "method": job.detector, "pad": str(s.pad), "phash": phash,
                       "phash_mirror": phash_mirror, "thumb": thumb}
                clock.lap("hashes")
        clock.lap("features")
        # an error is not cached: a re-run tries the image again
        fresh = job.cached is None and not rec["status"].startswith("error:")
        return job.index, (rec if fresh else None), reason, out


def judge(rec: dict, s: RunSettings, smiling: int | None) -> str:
    o = s.options
    reason = drop_reason(rec, o.thresholds, drop_smiles=o.drop_smiles, drop_outliers=o.drop_outliers,
                         smile_source=s.smile_source, smiling_attr=smiling, need_face=s.need_face)
    share = padded_share(rec, s.crop) if not reason else None
    return "padded" if share is not None and share > s.max_padded_fraction else reason


def verdict(rec: dict, s: RunSettings, pre_reason: str, smiling: int | None, override: str = "") -> str:
    """The row's drop reason: its annotations' or the filters', then the user's override."""
    return overridden(pre_reason or judge(rec, s, smiling), override, s.crop)


def wants_output(reason: str, rec: dict | None, s: RunSettings) -> bool:
    """Whether the image's output file is written: every kept image; where faces are framed, also
    one a filter (or the user) dropped that has landmarks, for the review page and a later keep."""
    if not reason:
        return True
    return s.crop == "frame" and bool(rec and rec.get("points")) and not keep_refusal(reason, s.crop)


def ready_worker(settings: RunSettings) -> _Worker:
    """The per-image callable of a worker process or Ray actor, its models loaded now (not inside
    the first chunk of work)."""
    worker = _Worker(settings)
    if worker.models.batched_is_faster:
        worker.models.batch_predictor.warm()
    else:
        worker.models.predictor
    if settings.face_box == "detect":
        worker.models.hog
    # imagehash imports scipy.fftpack on its first phash (~0.65 s here): start-up, not the first
    # image's hashes
    output_hashes(np.zeros((8, 8, 3), np.uint8))
    return worker


# ------------------------------------------------------------------ the run (main process)


def detector_name(s: RunSettings, item: Item) -> str:
    """How an image's face box is found, as the manifest's `detector` column names it."""
    if s.face_box == "known":
        return "fast:landmarks" if item.points5 is not None else "fast:template"
    return f"hog:up{s.options.upsample}"


def _output_current(out: dict | None, out_file: str, s: RunSettings, sig, detector: str) -> bool:
    if (not out or out.get("file") != out_file or out.get("size") != s.options.size
            or out.get("crop") != s.crop):
        return False
    if (out.get("src_sig") != sig
            or (s.crop == "frame" and (out.get("method"), out.get("pad")) != (detector, str(s.pad)))):
        return False
    return (s.out_dir / out_file).is_file()


@dataclass
class _Plan:
    """What the cache already answers for each item, and the jobs left for the workers."""

    recs: list[dict | None]
    reasons: list[str]
    outs: list[dict | None]
    jobs: list[Job]
    cache_hits: int


def _plan(items: list[Item], s: RunSettings, cache: FaceCache) -> _Plan:
    """Judge the items whose analysis is cached (and whose output is current) here; the rest become jobs."""
    n = len(items)
    plan = _Plan([None] * n, [""] * n, [None] * n, [], 0)
    for i, it in enumerate(items):
        sig = file_signature(it.path)
        detector = detector_name(s, it)
        out_file = f"images/{it.out_stem}.{s.options.fmt}"
        rec = cache.analysis(it.name, sig, detector)
        if sig is None:
            rec = {"name": it.name, "status": "unreadable:missing", "faces": []}
        if rec is None and it.pre_reason and it.override != "keep":
            plan.reasons[i] = it.pre_reason  # excluded by its annotations: no need to look at it
            continue
        if rec is not None:
            plan.cache_hits += sig is not None
            _refresh_landmark_features(rec)
            plan.recs[i] = rec
            plan.reasons[i] = verdict(rec, s, it.pre_reason, it.smiling, it.override)
            prev = cache.output(it.name)
            want = wants_output(plan.reasons[i], rec, s)
            now_file = dropped_path(out_file) if plan.reasons[i] else out_file
            current = want and _output_current(prev, now_file, s, sig, detector)
            if current or not want:
                plan.outs[i] = prev if current else None
                continue
        plan.jobs.append(Job(i, str(Path(it.path).absolute()), it.name, sig, detector, it.points5, rec,
                             it.pre_reason, it.smiling, out_file, it.override))
    return plan


def _remove_stale_outputs(items: list[Item], files_now: list[str | None], previous_files: list,
                          s: RunSettings, cache: FaceCache) -> None:
    """Outputs of images that no longer get one (`wants_output`: dropped now, by stricter thresholds)
    or that went elsewhere (another --format; images/ <-> dropped/) are removed, so images/ holds
    exactly the kept set, and dropped/ the frames of the framed photos dropped."""
    for i, it in enumerate(items):
        before = previous_files[i]
        if before and before != files_now[i]:
            (s.out_dir / before).unlink(missing_ok=True)
        if files_now[i] is None:
            cache.outputs.drop(it.name)


def _dropped_counts(reasons: list[str]) -> dict[str, int]:
    dropped: dict[str, int] = {}
    for r in reasons:
        if r:
            key = r.split(":")[0] if r.startswith("unreadable") else r
            dropped[key] = dropped.get(key, 0) + 1
    return dropped


def _agreement(items: list[Item], recs: list[dict | None], smile_threshold: float) -> dict[str, int] | None:
    """The landmark smile verdict against CelebA's Smiling attribute, where both are known."""
    pairs = [(rec["features"]["smile_score"], it.smiling) for it, rec in zip(items, recs)
             if it.smiling is not None and rec and rec.get("features")]
    if not pairs:
        return None
    return smile_agreement([p[0] for p in pairs], [p[1] for p in pairs], smile_threshold)


def run(items: list[Item], s: RunSettings, title: str = "curate") -> RunResult:
    """Analyse, filter and write every item; write OUT/manifest.csv; return the counts."""
    from p2d import ui
    from p2d.manifest import write_manifest  # pandas: main process only, workers never need it

    s.validate()
    if not items:
        raise P2DError(
            "no images selected: check the folder and the selection options (--first, --partition)")
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        raise P2DError("two selected images have the same name: give each image a unique path")
    start = time.perf_counter()
    if not s.quiet:
        ui.console.print(f"{title}: {len(items)} images -> {s.out_dir}")
    s.out_dir.mkdir(parents=True, exist_ok=True)
    cache = FaceCache(s.out_dir / "cache")
    manifest_path = s.out_dir / "manifest.csv"
    n = len(items)
    previous_files = [(cache.output(it.name) or {}).get("file") for it in items]
    with_overrides = (s.out_dir / OVERRIDES).is_file()
    notes = _attach_overrides(items, s) if with_overrides else []
    plan = _plan(items, s, cache)
    recs, reasons, outs, jobs = plan.recs, plan.reasons, plan.outs, plan.jobs
    analyzed = written = 0
    stage_seconds = [0.0] * len(STAGES)
    bar = ui.progress(transient=s.quiet)
    try:
        with bar:
            task = bar.add_task(title, total=n, completed=n - len(jobs), status="")
            for i, new_rec, reason, out, seconds in _map(jobs, s):
                stage_seconds = [a + b for a, b in zip(stage_seconds, seconds)]
                if new_rec is not None:
                    cache.analyses.add(new_rec)
                    recs[i] = new_rec
                    analyzed += 1
                if out is not None:
                    cache.outputs.add(out)
                    written += 1
                reasons[i] = reason
                outs[i] = out
                bar.advance(task)
                if i % 256 == 0 or i == jobs[-1].index:
                    cache.flush()
                    bar.update(task, status=f"analysed {analyzed}, written {written}")
    except BaseException:
        cache.close(compact=False)  # an interrupted run keeps every result it received
        raise
    _remove_stale_outputs(items, [o["file"] if o else None for o in outs], previous_files, s, cache)
    cache.close()
    df = _manifest_rows(items, recs, reasons, outs, s, manifest_path, with_overrides)
    write_manifest(df, manifest_path)
    write_text_atomic(s.out_dir / CURATE_SETTINGS, json.dumps(settings_record(s), indent=2) + "\n")
    write_review_sheet(s.out_dir / "review.png", items, reasons, recs, s)
    notes += [f"{OVERRIDES}: keep refused for images/{it.out_stem}.{s.options.fmt}: {keep_refusal(r, s.crop)}"
              for it, r in zip(items, reasons) if it.override == "keep" and r]
    return RunResult(manifest_path, s.out_dir, df, n, sum(1 for r in reasons if not r),
                     _dropped_counts(reasons),
                     analyzed, plan.cache_hits, written, time.perf_counter() - start, s.options.thresholds,
                     _agreement(items, recs, s.options.thresholds.smile_threshold), notes=notes,
                     stage_seconds=dict(zip(STAGES, stage_seconds)))


def _attach_overrides(items: list[Item], s: RunSettings) -> list[str]:
    """Each item's decision from OUT/overrides.csv (a bad line stops the run: the user's file),
    and notes on what the file holds."""
    overrides = read_overrides(s.out_dir)
    found, unmatched = match_overrides([f"images/{it.out_stem}.{s.options.fmt}" for it in items], overrides)
    for it, o in zip(items, found):
        it.override = o.decision if o else ""
    decided = [it.override for it in items if it.override]
    notes = [f"{OVERRIDES}: {decided.count('keep')} keep, {decided.count('drop')} drop honoured"]
    if unmatched:
        # folders change: a decision for a photo no longer selected is not an error
        notes.append(f"{OVERRIDES}: {len(unmatched)} path(s) not in this run, ignored: "
                     f"{', '.join(unmatched[:5])}")
    return notes


def settings_record(s: RunSettings) -> dict:
    """What a run decided with, as OUT/curate_settings.json records it (the review page shows each
    drop against its threshold; a keep saved there cuts CelebA's square at this size)."""
    o = s.options
    return {"source": o.source, "face_box": s.face_box, "crop": s.crop, "size": o.size, "format": o.fmt,
            "pad": str(s.pad), "upsample": o.upsample, "drop_smiles": o.drop_smiles,
            "drop_outliers": o.drop_outliers, "smile_source": s.smile_source, "need_face": s.need_face,
            "max_padded_fraction": s.max_padded_fraction, "thresholds": o.thresholds.as_dict()}


def write_center_crop(source: Path, out_file: Path, size: int) -> None:
    """CelebA's centre square of `source` at `size`, written to `out_file` (format by its
    extension) with the bytes a curate run writes: a keep saved by the review page."""
    image, why = decode(Path(source), fast=True)
    if image is None:
        raise P2DError(f"cannot keep {out_file.name}: its source {source} cannot be read ({why})")
    data, _ = encode(render_output(image, {}, "center", size), "jpg" if out_file.suffix == ".jpg" else "png")
    write_bytes_atomic(out_file, data)


REVIEW_PER_REASON = 6


def write_review_sheet(path: Path, items: list[Item], reasons: list[str], recs: list[dict | None],
                       s: RunSettings) -> Path:
    """A contact sheet: a few kept images, then a few per drop reason (most frequent reason first),
    so a person can check at a glance what each threshold removed. Each source image has beside it
    what will be trained on: the output crop (for a `padded` drop, the frame it would have been)."""
    from p2d.sheets import side_by_side, write_sheet

    groups: dict[str, list[int]] = {}
    for i, reason in enumerate(reasons):
        key = reason.split(":")[0] if reason.startswith("unreadable") else (reason or "kept")
        groups.setdefault(key, []).append(i)
    order = ["kept"] + sorted((k for k in groups if k != "kept"), key=lambda k: -len(groups[k]))
    images, labels = [], []
    for key in order:
        for i in groups.get(key, [])[:REVIEW_PER_REASON]:
            img, _ = decode(items[i].path, fast=s.crop == "center")  # the pixels the workers read
            if img is not None and key in ("kept", "padded") and recs[i] and recs[i].get("points"):
                img = side_by_side(img, render_output(img, recs[i], s.crop, s.options.size, s.pad))
            images.append(img)
            labels.append(f"{key} ({len(groups[key])})\n{Path(items[i].name).name}")
    return write_sheet(path, images, labels, cell=192, cols=REVIEW_PER_REASON)


def _map(jobs: list[Job], s: RunSettings):
    """Results of the jobs in input order, from the engine `s` names. Paths go absolute: a worker
    process or Ray node may not share this process' working folder."""
    if not jobs:
        return
    ws = replace(s, out_dir=s.out_dir.absolute())
    if any(job.cached is None for job in jobs):
        _prepare_models(s)
    if s.options.workers == 1 and s.options.engine == "local":
        worker = _Worker(ws)  # models load on first use: a run with nothing to analyse loads none
        for k in range(0, len(jobs), BATCH):
            yield from worker.batch(jobs[k:k + BATCH])
        return
    yield from map_jobs(jobs, functools.partial(ready_worker, ws), s.options.engine_spec,
                        shared=[ws.out_dir, Path(jobs[0].path), Path(jobs[-1].path)])


def _prepare_models(s: RunSettings) -> None:
    """Once per machine, here rather than in every worker at the same time: dlib's model converted
    for batches (p2d.shape_predictor), which predictor is faster here (p2d.faces.landmark_speeds)
    and, where faces are detected, the HOG detector's cached copy (p2d.faces.frontal_detector)."""
    from p2d.shape_predictor import cached_path, ensure_cached

    models = shared_models(s.options.models_dir)
    dat = find_model(SHAPE_68, s.options.models_dir)
    if not cached_path(dat).is_file() and not s.quiet:
        from p2d.ui import console

        console.print(
            f"preparing dlib's 68-point model for batches (once per machine) -> {cached_path(dat).parent}")
    ensure_cached(dat)
    models.batched_is_faster
    if s.face_box == "detect":
        models.hog  # its cached copy written once (p2d.faces.frontal_detector), not by every worker


def _filter_reason(it: Item, rec: dict | None, reason: str, s: RunSettings) -> str:
    """What the annotations or filters said of an item, before the user's override."""
    if not it.override or (reason and reason != "override"):
        return reason
    return it.pre_reason or (judge(rec, s, it.smiling) if rec else "")


def _manifest_rows(items, recs, reasons, outs, s: RunSettings, manifest_path: Path,
                   with_overrides: bool = False):
    from p2d.manifest import new_rows

    base = manifest_path.resolve().parent
    folders: dict[Path, str] = {}  # resolve each source folder once, not each of 200k files

    def source_path(path: Path) -> str:
        folder = folders.get(path.parent)
        if folder is None:
            folder = folders[path.parent] = Path(os.path.relpath(path.parent.resolve(), base)).as_posix()
        return path.name if folder == "." else f"{folder}/{path.name}"

    rows = []
    for it, rec, reason, out in zip(items, recs, reasons, outs):
        rec = rec or {}
        feats = rec.get("features") or {}
        box = rec.get("box") or [None] * 4
        kept = not reason
        row = {
            "path": f"images/{it.out_stem}.{s.options.fmt}",
            "domain": "photo",
            "source": s.options.source,
            "split": "train",
            "crop": "center",
            "width": s.options.size if kept else None,
            "height": s.options.size if kept else None,
            "phash": (out or {}).get("phash", "") if kept else "",
            "phash_mirror": (out or {}).get("phash_mirror", "") if kept else "",
            "thumb": (out or {}).get("thumb", "") if kept else "",
            "keep": kept,
            "reason": reason,
            **it.extra,
            "source_path": source_path(Path(it.path)),
            "detector": rec.get("method", ""),
            "n_faces": len(rec["faces"]) if rec.get("method", "").startswith("hog") else None,
            "face_x": box[0], "face_y": box[1], "face_w": box[2], "face_h": box[3],
            "padded_fraction": padded_share(rec, s.crop),
        }
        if s.crop == "frame":
            row["pad"] = str(s.pad)
        for col in FEATURE_COLUMNS:
            row[col] = feats.get(col)
        if it.smiling is not None:
            row["smiling_attr"] = it.smiling
        if with_overrides:  # only then: a folder without overrides keeps its manifest's columns
            row["override"] = it.override
            row["filter_reason"] = _filter_reason(it, rec, reason, s)
        rows.append(row)
    df = new_rows(rows)
    for col in ("width", "height", "n_faces"):
        df[col] = df[col].astype("Int64")
    return df
