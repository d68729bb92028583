"""One epoch measured on the test split: dlib's landmarks and face descriptors of photos, drawings
and their translations, the reference statistics of the real test images, and the settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from p2d.errors import P2DError
from p2d.evaluate.metrics import (
    DETECT_MIN_PX, DLIB_CHIP_PX, DLIB_FEATURE_DIM, DLIB_FEATURE_SCALE, detect_upsample, embedding_distance,
    kid, kid_ci, l1_error, landmark_error, mean_ci, mean_gap_ci, standardize, tone_texture_features,
    Translator, wilson_interval,
)
from p2d.evaluate.rule import SHARE_COLUMNS
from p2d.faces import FaceModels, smile_score
from p2d.framing import detect_faces, framing_box



@dataclass
class FaceLandmarks:
    """What dlib sees in one image: landmarks (None if no box at all) and whether HOG found it."""

    points: np.ndarray | None
    hog_found: bool


class FaceProbe:
    """dlib detection, landmarks and descriptors for evaluation, on uint8 gray or RGB images.

    A curated face's HOG box is ~60 px in a 128 px frame, at the lower limit of dlib's 80 px window,
    so images are upsampled to at least `min_detect_px` before detection. Where HOG misses an input
    photo, its landmarks are taken in the known framing box, so identity covers every photo; the
    structure measures count only faces HOG confirms, since for an output "a face is found" is the
    measurement itself."""

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
        # largest first
        found = detect_faces(image, self.models, detect_upsample(min(h, w), self.min_detect_px))
        if found:
            return FaceLandmarks(self.models.landmarks(image, tuple(found[0][:4])), True)
        if fallback:
            return FaceLandmarks(self.models.landmarks(image, framing_box(w, h)), False)
        return FaceLandmarks(None, False)

    def embedding(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """dlib's 128-d identity embedding of the face aligned by these landmarks."""
        return self.models.embedding(self.rgb(image), points)

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """KID features: dlib's descriptor of each whole image resized to a 150x150 chip, scaled.
        Not Inception's: its weights would have to be downloaded, and dlib's face-recognition network
        ships with p2d. It was trained to tell people apart and to ignore lighting, colour and texture,
        so this KID sees face shape and layout but not darkening (hence the brightness gap), and its
        values do not compare with published KIDs."""
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
    photo_tone_raw: np.ndarray  # tone/texture features of the real test images: the standard
    drawing_tone_raw: np.ndarray

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
            photo_tone_raw=np.array([tone_texture_features(im) for im in photos]),
            drawing_tone_raw=np.array([tone_texture_features(im) for im in drawings]),
        )

    def tone(self, images: Sequence[np.ndarray], domain: str) -> tuple[np.ndarray, np.ndarray]:
        """Tone/texture features of translated images into `domain` and of its real test images,
        both standardized by the real ones."""
        real = self.photo_tone_raw if domain == "photo" else self.drawing_tone_raw
        translated = np.array([tone_texture_features(im) for im in images])
        return standardize(translated, real), standardize(real, real)


@dataclass(frozen=True)
class EvalSettings:
    """Settings that change the numbers; saved with each row so cached rows are reused only when
    they match."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    min_detect_px: int = DETECT_MIN_PX
    max_images: int | None = None
    seed: int = 0
    bootstrap: int = 200  # resamples of the test images behind every metric's 95% interval

    def __post_init__(self):
        if self.kid_subsets < 1:
            raise P2DError(f"kid_subsets={self.kid_subsets}: give at least 1 subset")
        if self.kid_subset_size < 2:
            raise P2DError(f"kid_subset_size={self.kid_subset_size}: give at least 2 images per subset")
        if self.min_detect_px < 32:
            raise P2DError(f"min_detect_px={self.min_detect_px}: give at least 32 "
                           "(dlib's HOG window is 80 px)")
        if self.bootstrap < 20:
            raise P2DError(f"bootstrap={self.bootstrap}: give at least 20 resamples "
                           "(200 gives stable 95% intervals)")
        if self.max_images is not None and self.max_images < 1:
            raise P2DError(f"max_images={self.max_images}: give at least 1 (or leave it unset for all)")

    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in asdict(self).items())


def _face_measures(ref: Reference, fake_drawings, back_photos, fake_photos,
                   probe: FaceProbe) -> dict[str, list]:
    """Per-image structure and identity values. `face_found_drawing`: of the test photos in which HOG
    finds a face, whether the drawing still has one (HOG again); `face_found_photo`: the same for
    drawing->photo. `landmark_nme`: the mean distance between the photo's 68 landmarks and its
    drawing's, over the photo's inter-ocular distance, where HOG finds both; `smile_drift`:
    smile_score(drawing) - smile_score(photo) over the same pairs (positive: the model adds a smile).
    `identity_drawing`, `identity_cycle`: the distance between dlib's embedding of the photo and of
    its drawing / its photo->drawing->photo round trip, all aligned with the PHOTO's landmarks, so it
    measures what the generator changed inside the face and is defined where no face is found in
    the output (dlib calls two faces the same person below 0.6)."""
    found, nme, smile, id_drawing, id_cycle = [], [], [], [], []
    backs = back_photos if back_photos is not None else [None] * len(fake_drawings)  # one-sided: no cycle
    for photo_face, emb, drawing, back in zip(ref.photo_faces, ref.photo_embeddings, fake_drawings, backs):
        id_drawing.append(embedding_distance(emb, probe.embedding(drawing, photo_face.points)))
        if back is not None:
            id_cycle.append(embedding_distance(emb, probe.embedding(back, photo_face.points)))
        if not photo_face.hog_found:
            continue  # no detector-confirmed face in the input: "still found" has no meaning
        seen = probe.face(drawing, fallback=False)
        found.append(float(seen.hog_found))
        if seen.hog_found:
            nme.append(landmark_error(photo_face.points, seen.points))
            smile.append(smile_score(seen.points) - smile_score(photo_face.points))
    found_photo = [
        float(probe.face(fake, fallback=False).hog_found)
        for face, fake in zip(ref.drawing_faces, fake_photos or []) if face.hog_found
    ]
    return {"face_found_drawing": found, "face_found_photo": found_photo, "landmark_nme": nme,
            "smile_drift": smile, "identity_drawing": id_drawing, "identity_cycle": id_cycle}


def measure(
    ref: Reference,
    photo2drawing: Translator,
    drawing2photo: Translator | None,
    probe: FaceProbe,
    settings: EvalSettings | None = None,
    fake_drawings: list[np.ndarray] | None = None,
    fake_photos: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """All metrics of one pair of generators (given as batch functions on uint8 images);
    `fake_drawings`, `fake_photos`: photo2drawing(ref.photos), drawing2photo(ref.drawings) where
    the caller has them already. A one-sided model (cut, fastcut) has no `drawing2photo`: the
    measures of the way back (cycles, identity cycle, photo realism, face found in photos) are NaN.

    `redraw_drawing`: |photo2drawing(drawing) - drawing| (0..1) on the real test drawings, what the
    generator changes in an image that is a drawing already. It needs no reverse generator, so it
    is what one-sided runs score in place of the cross cycle (rule.ONE_SIDED_SCORE_GROUPS)."""
    settings = settings or EvalSettings()
    fake_drawings = photo2drawing(ref.photos) if fake_drawings is None else fake_drawings
    redrawn = photo2drawing(ref.drawings)
    if drawing2photo is not None:
        back_photos = drawing2photo(fake_drawings)
        if fake_photos is None or not len(fake_photos):
            fake_photos = drawing2photo(ref.drawings)
        back_drawings = photo2drawing(fake_photos)
    else:
        back_photos = fake_photos = back_drawings = None
    per_image = _face_measures(ref, fake_drawings, back_photos, fake_photos, probe)
    per_image["cycle_l1_photo"] = [l1_error(a, b) for a, b in zip(ref.photos, back_photos or [])]
    per_image["cycle_l1_drawing"] = [l1_error(a, b) for a, b in zip(ref.drawings, back_drawings or [])]
    per_image["redraw_drawing"] = [l1_error(a, b) for a, b in zip(ref.drawings, redrawn)]
    boot = dict(n_boot=settings.bootstrap, seed=settings.seed)
    out: dict[str, float] = {"n_photos": len(ref.photos), "n_drawings": len(ref.drawings),
                             "landmark_pairs": len(per_image["landmark_nme"])}
    for col, values in per_image.items():
        out[col], out[col + "_lo"], out[col + "_hi"] = mean_ci(values, **boot)
    for col in SHARE_COLUMNS:  # shares of yes/no: the Wilson interval (never empty), over n images
        out[col + "_n"] = len(per_image[col])
        out[col + "_lo"], out[col + "_hi"] = wilson_interval(sum(per_image[col]), len(per_image[col]))
    realism = {  # column: (translated features, real features)
        "kid_drawing": (probe.features(fake_drawings), ref.drawing_features),
        "kid_tone_drawing": ref.tone(fake_drawings, "drawing"),
    }
    if fake_photos is not None:
        realism["kid_photo"] = (probe.features(fake_photos), ref.photo_features)
        realism["kid_tone_photo"] = ref.tone(fake_photos, "photo")
    else:
        for col in ("kid_photo", "kid_tone_photo"):
            out[col] = out[col + "_std"] = out[col + "_lo"] = out[col + "_hi"] = float("nan")
    for col, (fake, real) in realism.items():
        out[col], out[col + "_std"] = kid(fake, real, settings.kid_subsets, settings.kid_subset_size,
                                          settings.seed)
        out[col + "_lo"], out[col + "_hi"] = kid_ci(fake, real, **boot)
    # Tone gaps to the real drawings (0..1; negative brightness: darker, the drift the experiments saw).
    gaps = {"brightness_gap_drawing": np.mean, "contrast_gap_drawing": np.std}
    for col, stat in gaps.items():
        out[col], out[col + "_lo"], out[col + "_hi"] = mean_gap_ci(
            [stat(d) / 255.0 for d in fake_drawings], [stat(d) / 255.0 for d in ref.drawings], **boot)
    return out
