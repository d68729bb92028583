"""Tests for p2d.faces: model discovery, real dlib detection and landmarks, pure geometry."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from conftest import DATA
from p2d import faces
from p2d.errors import ModelFileMissing
from p2d.images import read_image



def _template() -> np.ndarray:
    """A frontal, symmetric 68-point face in IODs: eyes 1 apart on y=0, a closed neutral mouth.

    Neutral proportions as in faces.py: the mouth 0.84 wide, the inner upper lip's centre (62) 0.34
    below the nose base (33), the corners level with it, the inner lip lines flat."""
    p = np.zeros((68, 2))
    p[0:17, 0] = np.linspace(-1.0, 1.0, 17)  # jaw, ear to ear
    p[0:17, 1] = 0.2 + 1.3 * (1 - np.linspace(-1, 1, 17) ** 2)
    p[17:22] = [(x, -0.25) for x in (-0.8, -0.65, -0.5, -0.35, -0.2)]
    p[22:27] = [(x, -0.25) for x in (0.2, 0.35, 0.5, 0.65, 0.8)]
    for i, x in zip(range(36, 42), (-0.7, -0.6, -0.4, -0.3, -0.4, -0.6)):
        p[i] = (x, 0.0)
    for i, x in zip(range(42, 48), (0.3, 0.4, 0.6, 0.7, 0.6, 0.4)):
        p[i] = (x, 0.0)
    p[27:31] = [(0, 0.1), (0, 0.25), (0, 0.4), (0, 0.55)]
    p[31:36] = [(x, 0.61) for x in (-0.12, -0.06, 0.0, 0.06, 0.12)]
    p[48:55] = [(-0.42, 0.95), (-0.25, 0.9), (-0.1, 0.87), (0, 0.89), (0.1, 0.87), (0.25, 0.9), (0.42, 0.95)]
    p[55:60] = [(0.25, 1.02), (0.1, 1.05), (0, 1.06), (-0.1, 1.05), (-0.25, 1.02)]
    p[60:68] = [(-0.375, 0.95), (-0.12, 0.95), (0, 0.95), (0.12, 0.95), (0.375, 0.95), (0.12, 0.95),
                (0, 0.95), (-0.12, 0.95)]
    return p


def _mouth(corner_x: float, corner_y: float, upper_centre_y: float, upper_sides_y: float,
           lower_drop: float) -> np.ndarray:
    """The template with its mouth reshaped: corners (48, 54) at (-+corner_x, corner_y), the inner
    upper lip's centre (62) and sides (61, 63) at the given heights, the lower lip dropped."""
    p = _template()
    p[48], p[54] = (-corner_x, corner_y), (corner_x, corner_y)
    p[60], p[64] = (-corner_x + 0.045, corner_y), (corner_x - 0.045, corner_y)
    p[62, 1], p[61, 1], p[63, 1] = upper_centre_y, upper_sides_y, upper_sides_y
    p[49:54, 1] += upper_sides_y - 0.95  # the outer upper lip follows the inner one
    p[55:60, 1] += lower_drop
    p[65:68, 1] += lower_drop
    return p


# Each face's score worked out by hand from smile_score's formula: spread + lift, where
# lift = 0.34 - (62's height below the nose base at 0.61) = 0.95 - y(62).
FACES = {
    # closed neutral mouth: 0.84 + 0
    "neutral": (_template(), 0.84),
    # corners out to 1.06 wide and 0.06 up, the upper lip raised 0.02, closed: 1.06 + 0.02
    "closed smile": (_mouth(0.53, 0.89, 0.93, 0.91, 0.0), 1.08),
    # the same corners, the upper lip raised 0.07 off the teeth, the lower lip dropped 0.25: 1.06 + 0.07
    "open smile": (_mouth(0.53, 0.89, 0.88, 0.86, 0.25), 1.13),
    # a mild closed smile: 0.94 wide, the lip raised 0.01: 0.95, kept (below the threshold)
    "mild smile": (_mouth(0.47, 0.92, 0.94, 0.935, 0.0), 0.95),
    # talking: lower lip dropped 0.25, the jaw taking the corners 0.1 down and the mouth a little
    # narrower, the upper lip where it was: 0.78 + 0
    "open mouth, level corners": (_mouth(0.39, 1.05, 0.95, 0.95, 0.25), 0.78),
    # talking with the upper teeth showing (the lip up 0.04), mouth at neutral width: 0.84 + 0.04
    "talking, upper teeth": (_mouth(0.42, 1.0, 0.91, 0.92, 0.2), 0.88),
    # yawn: narrow (0.6), tall, corners far down, the upper lip drawn up 0.03: 0.6 + 0.03
    "yawn": (_mouth(0.3, 1.16, 0.92, 0.95, 0.45), 0.63),
}
SMILES = {"closed smile", "open smile"}  # above the default threshold; the rest below

# Index of each point's mirror image in the 68-point scheme (left and right swap in a mirror).
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
)


def _rotate(points: np.ndarray, deg: float) -> np.ndarray:
    t = math.radians(deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return points @ rot.T


def _mirror(points: np.ndarray) -> np.ndarray:
    """The landmarks dlib would give on the mirrored image: x flipped, left and right relabelled."""
    flipped = points * [-1.0, 1.0]
    return flipped[MIRROR]


def test_template_geometry():
    p = _template() * 50 + 100
    assert faces.inter_ocular(p) == pytest.approx(50.0)
    assert faces.roll_deg(p) == pytest.approx(0.0)
    assert faces.yaw_deg(p) == pytest.approx(0.0, abs=1e-9)
    assert faces.mouth_width_ratio(p) == pytest.approx(faces.NEUTRAL_MOUTH_WIDTH)
    assert faces.mouth_open_ratio(p) == pytest.approx(0.0)
    assert faces.upper_lip_lift(p) == pytest.approx(0.0, abs=1e-12)
    assert faces.smile_score(p) == pytest.approx(faces.NEUTRAL_MOUTH_WIDTH)


def test_mirror_map_is_an_involution_and_flips_the_template():
    assert sorted(MIRROR) == list(range(68)) and (MIRROR[MIRROR] == np.arange(68)).all()
    assert np.allclose(_mirror(_template()), _template())  # the template is symmetric


@pytest.mark.parametrize("name", FACES)
def test_smile_score_known_answers(name):
    points, expected = FACES[name]
    assert faces.smile_score(points) == pytest.approx(expected)
    assert (faces.smile_score(points) > faces.SMILE_THRESHOLD) == (name in SMILES)


def test_opening_never_raises_the_score():
    """The old score's failure: a mouth that opens by dropping the jaw scores no higher than
    closed, however wide it opens; with the corners carried down and in, it scores lower."""
    closed = _mouth(0.42, 0.95, 0.95, 0.95, 0.0)
    previous = faces.smile_score(closed)
    for drop in (0.1, 0.25, 0.4, 0.6):
        level = _mouth(0.42, 0.95 + drop / 2, 0.95, 0.95, drop)  # corners down, width kept
        assert faces.mouth_open_ratio(level) == pytest.approx(drop)
        assert faces.smile_score(level) == pytest.approx(faces.smile_score(closed))
        narrowed = _mouth(0.42 - drop / 4, 0.95 + drop / 2, 0.95, 0.95, drop)
        assert faces.smile_score(narrowed) < previous
        previous = faces.smile_score(narrowed)


def test_each_term_moves_the_score_its_way():
    base = faces.smile_score(_template())
    wider, raised, lowered = (_mouth(0.47, 0.95, 0.95, 0.95, 0), _mouth(0.42, 0.95, 0.9, 0.9, 0),
                              _mouth(0.42, 0.95, 0.98, 0.98, 0))
    assert faces.smile_score(wider) == pytest.approx(base + 0.1)
    assert faces.upper_lip_lift(raised) == pytest.approx(0.05)
    assert faces.smile_score(raised) == pytest.approx(base + 0.05)
    assert faces.smile_score(lowered) == pytest.approx(base - 0.03)


def test_corner_height_and_lower_lip_are_not_read():
    """Only 48, 54, 62 and the nose base (33) matter, with the eyes for scale."""
    base = faces.smile_score(_template())
    p = _template()
    p[[48, 54], 1] += 0.07  # a down-turned mouth at rest
    p[55:60, 1] += 0.3
    p[65:68, 1] += 0.3
    assert faces.smile_score(p) == pytest.approx(base)


def _lopsided(points: np.ndarray) -> np.ndarray:
    """A face made asymmetric (one corner higher, the nose off centre), so mirroring changes it."""
    p = points.copy()
    p[54] += (0.03, -0.04)
    p[63, 1] -= 0.01
    p[30:36, 0] += 0.05
    return p


@pytest.mark.parametrize("name", FACES)
@pytest.mark.parametrize("deg", [-20.0, -7.5, 0.0, 11.0, 20.0])
@pytest.mark.parametrize("scale", [0.37, 40.0, 230.0])
@pytest.mark.parametrize("mirror", [False, True])
def test_smile_score_invariant_to_mirror_scale_rotation(name, deg, scale, mirror):
    points = _lopsided(FACES[name][0])
    expected = faces.smile_score(points)
    moved = _mirror(points) if mirror else points
    moved = _rotate(moved, deg) * scale + (321.0, 123.0)
    assert faces.smile_score(moved) == pytest.approx(expected, abs=1e-9)
    assert faces.landmark_features(moved)["smile_score"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("deg", [-30.0, -5.0, 12.0, 40.0])
def test_roll_measured_and_other_features_invariant(deg):
    p = _rotate(_template(), deg) * 30 + 200
    assert faces.roll_deg(p) == pytest.approx(deg)
    assert faces.smile_score(p) == pytest.approx(0.84)
    assert faces.yaw_deg(p) == pytest.approx(0.0, abs=1e-9)


def test_threshold_derivation():
    """The default is halfway from a neutral mouth to a full smile: 27% wider, upper lip 28% higher."""
    full = _mouth(0.42 * 1.27, 0.9, 0.95 - 0.34 * 0.28, 0.95 - 0.34 * 0.28, 0.2)
    assert faces.smile_score(full) == pytest.approx(0.84 * 1.27 + 0.34 * 0.28)
    halfway = (faces.smile_score(_template()) + faces.smile_score(full)) / 2
    assert faces.SMILE_THRESHOLD == pytest.approx(halfway, abs=0.005)
    assert faces.SMILE_THRESHOLD == 1.0


@pytest.mark.parametrize("shift,expected", [(0.5, 30.0), (-0.5, -30.0), (0.2, math.degrees(math.asin(0.2)))])
def test_yaw_from_nose_offset(shift, expected):
    p = _template()
    p[30, 0] += shift  # jaw ends at x=-1 and x=1: (L - R) / (L + R) = shift = sin(yaw)
    assert faces.yaw_deg(p) == pytest.approx(expected)


def test_face_box_and_features_keys():
    p = _template() * 10 + 5
    assert faces.face_box(p) == pytest.approx((-5.0, 2.5, 20.0, 17.5))
    assert set(faces.landmark_features(p)) == {"smile_score", "mouth_width", "mouth_open", "yaw_deg",
                                               "roll_deg", "iod_px"}


def test_find_model_from_package_and_env(tmp_path, monkeypatch):
    found = faces.find_model(faces.SHAPE_68)
    assert found.is_file() and found.name == faces.SHAPE_68
    (tmp_path / faces.SHAPE_68).write_bytes(b"not really a model")
    monkeypatch.setenv(faces.MODELS_ENV, str(tmp_path))
    assert faces.find_model(faces.SHAPE_68) == tmp_path / faces.SHAPE_68
    other = tmp_path / "mine"
    other.mkdir()
    (other / faces.SHAPE_68).write_bytes(b"x")
    assert faces.find_model(faces.SHAPE_68, models_dir=other) == other / faces.SHAPE_68


def test_missing_model_message_names_the_fix(tmp_path):
    with pytest.raises(ModelFileMissing, match="pip install face_recognition_models"):
        faces.find_model("no_such_model.dat", models_dir=tmp_path)


@pytest.fixture(scope="module")
def models(face_models):
    return face_models  # conftest: the session's one set of dlib models


def test_real_detection_and_landmarks_on_photo(models):
    image = read_image(DATA / "photos" / "a_youngster_01.png")
    found = models.detect_hog(image, upsample=0)
    assert len(found) == 1 and found[0].detector == "dlib_hog"
    points = models.landmarks(image, found[0].box)
    assert points.shape == (68, 2)
    x, y, w, h = found[0].box
    # the eyes lie inside the detected box, in its upper half
    for eye in faces.eye_centers(points):
        assert x < eye[0] < x + w and y < eye[1] < y + h * 0.6
    assert abs(faces.yaw_deg(points)) < 15 and abs(faces.roll_deg(points)) < 10
    assert faces.smile_score(points) < faces.SMILE_THRESHOLD  # a neutral face


def _image_score(models, image: np.ndarray) -> float:
    best = max(models.detect_hog(image, upsample=0) or models.detect_hog(image, upsample=1),
               key=lambda d: d.score)
    return faces.smile_score(models.landmarks(image, best.box))


def _photo_score(models, name: str) -> float:
    return _image_score(models, read_image(DATA / "photos" / name))


def test_fixture_photos_keep_their_verdicts(models):
    """The astronaut's broad smile is above the default, the neutral boy and King well below."""
    smiling = _photo_score(models, "astronaut.png")
    assert smiling > faces.SMILE_THRESHOLD + 0.1
    for neutral in ("a_youngster_01.png", "martin_luther_king_jr._h_02.png"):
        assert _photo_score(models, neutral) < faces.SMILE_THRESHOLD - 0.03


def _transformed(image: np.ndarray, how: str) -> np.ndarray:
    h, w = image.shape[:2]
    if how == "mirror":
        return np.ascontiguousarray(image[:, ::-1])
    if how.startswith("rotate"):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(how[6:]), 1.0)
        return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    scale = float(how[5:])
    return cv2.resize(image, None, fx=scale, fy=scale,
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


@pytest.mark.parametrize("how", ["mirror", "rotate-20", "rotate20", "scale0.6", "scale1.5"])
def test_fixture_photo_verdicts_survive_mirror_rotation_scale(models, how):
    """Real dlib landmarks on the moved photo: the score moves by landmark noise only (measured
    up to 0.04), never across the default threshold."""
    for name in ("astronaut.png", "a_youngster_01.png", "martin_luther_king_jr._h_02.png"):
        image = read_image(DATA / "photos" / name)
        original, score = _image_score(models, image), _image_score(models, _transformed(image, how))
        assert score == pytest.approx(original, abs=0.06)
        assert (score > faces.SMILE_THRESHOLD) == (name == "astronaut.png")


def test_no_face_on_nonface_drawing(models):
    image = read_image(DATA / "nonfaces" / "fire_engine_mimooh_01.png")
    assert models.detect_hog(image, upsample=0) == []


@pytest.mark.parametrize("seed", range(5))
def test_landmark_features_match_single_functions(seed):
    rng = np.random.default_rng(seed)
    p = _rotate(_template(), rng.uniform(-30, 30)) * rng.uniform(10, 100) + rng.uniform(0, 300, 2)
    p += rng.normal(0, 0.02 * faces.inter_ocular(p), p.shape)
    f = faces.landmark_features(p)
    assert f["smile_score"] == pytest.approx(faces.smile_score(p))
    assert f["mouth_width"] == pytest.approx(faces.mouth_width_ratio(p))
    assert f["mouth_open"] == pytest.approx(faces.mouth_open_ratio(p))
    assert f["yaw_deg"] == pytest.approx(faces.yaw_deg(p))
    assert f["roll_deg"] == pytest.approx(faces.roll_deg(p))
    assert f["iod_px"] == pytest.approx(faces.inter_ocular(p))


def test_hog_detector_from_p2ds_cache_is_dlibs_own(tmp_path, monkeypatch):
    """frontal_detector saves dlib's embedded detector once and loads that file afterwards: the same
    boxes and scores (scores down to -0.5, both upsamplings) on photos and drawings."""
    import dlib

    from p2d.images import list_images
    from p2d.shape_predictor import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    first = faces.frontal_detector(dlib)  # built, and written to the cache
    saved = list(tmp_path.glob("dlib-*-frontal_face_detector.svm"))
    assert len(saved) == 1 and saved[0].stat().st_size > 100_000
    loaded = faces.frontal_detector(dlib)  # read from the file
    reference = dlib.get_frontal_face_detector()
    images = [read_image(p) for p in list_images(DATA / "photos")] + [
        read_image(p) for p in list_images(DATA / "drawings")[:6]]
    boxes = 0
    for image in images:
        for upsample in (0, 1):
            want = reference.run(image, upsample, -0.5)
            for detector in (first, loaded):
                got = detector.run(image, upsample, -0.5)
                assert [(r.left(), r.top(), r.right(), r.bottom()) for r in got[0]] == \
                       [(r.left(), r.top(), r.right(), r.bottom()) for r in want[0]]
                assert list(got[1]) == list(want[1]) and list(got[2]) == list(want[2])
            boxes += len(want[0])
    assert boxes >= len(images)  # faces were found: the comparison compared something
    saved[0].write_bytes(b"not a detector")  # a damaged file is replaced, not trusted
    assert len(faces.frontal_detector(dlib).run(images[0], 0, 0)[0]) == len(reference.run(images[0], 0, 0)[0])
    assert saved[0].stat().st_size > 100_000
