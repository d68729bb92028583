"""Tests for p2d.faces: model discovery, real dlib detection and landmarks, pure geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import DATA
from p2d import faces
from p2d.errors import ModelFileMissing
from p2d.images import read_image



def _template() -> np.ndarray:
    """A frontal, symmetric 68-point face: eyes 1 apart on y=0, nose below, neutral mouth."""
    p = np.zeros((68, 2))
    p[0:17, 0] = np.linspace(-1.0, 1.0, 17)  # jaw, ear to ear
    p[0:17, 1] = 0.2 + 1.0 * (1 - np.linspace(-1, 1, 17) ** 2)
    for i, x in zip(range(36, 42), (-0.7, -0.6, -0.4, -0.3, -0.4, -0.6)):
        p[i] = (x, 0.0)
    for i, x in zip(range(42, 48), (0.3, 0.4, 0.6, 0.7, 0.6, 0.4)):
        p[i] = (x, 0.0)
    p[27:31] = [(0, 0.1), (0, 0.3), (0, 0.5), (0, 0.7)]
    p[48] = (-0.4, 1.2)
    p[54] = (0.4, 1.2)
    p[62] = (0.0, 1.2)
    p[66] = (0.0, 1.2)
    return p


def _rotate(points: np.ndarray, deg: float) -> np.ndarray:
    t = math.radians(deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return points @ rot.T


def test_template_geometry():
    p = _template() * 50 + 100
    assert faces.inter_ocular(p) == pytest.approx(50.0)
    assert faces.roll_deg(p) == pytest.approx(0.0)
    assert faces.yaw_deg(p) == pytest.approx(0.0, abs=1e-9)
    assert faces.mouth_width_ratio(p) == pytest.approx(0.8)
    assert faces.mouth_open_ratio(p) == pytest.approx(0.0)
    assert faces.smile_score(p) == pytest.approx(0.8)


@pytest.mark.parametrize("deg", [-30.0, -5.0, 12.0, 40.0])
def test_roll_measured_and_other_features_invariant(deg):
    p = _rotate(_template(), deg) * 30 + 200
    assert faces.roll_deg(p) == pytest.approx(deg)
    assert faces.smile_score(p) == pytest.approx(0.8)
    assert faces.yaw_deg(p) == pytest.approx(0.0, abs=1e-9)


def test_smile_grows_with_width_and_opening():
    p = _template()
    wide = p.copy()
    wide[48, 0], wide[54, 0] = -0.55, 0.55
    opened = wide.copy()
    opened[66, 1] = 1.45
    assert faces.smile_score(p) < faces.smile_score(wide) < faces.smile_score(opened)
    assert faces.smile_score(opened) == pytest.approx(1.1 + 0.25)


@pytest.mark.parametrize("shift,expected", [(0.5, 30.0), (-0.5, -30.0), (0.2, math.degrees(math.asin(0.2)))])
def test_yaw_from_nose_offset(shift, expected):
    p = _template()
    p[30, 0] += shift  # jaw ends at x=-1 and x=1: (L - R) / (L + R) = shift = sin(yaw)
    assert faces.yaw_deg(p) == pytest.approx(expected)


def test_face_box_and_features_keys():
    p = _template() * 10 + 5
    assert faces.face_box(p) == pytest.approx((-5.0, 5.0, 20.0, 12.0))
    assert set(faces.landmark_features(p)) == {"smile_score", "mouth_width", "mouth_open", "yaw_deg", "roll_deg", "iod_px"}


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
    assert faces.smile_score(points) < 1.0  # a neutral face


def test_smiling_photo_scores_higher(models):
    image = read_image(DATA / "photos" / "astronaut.png")
    best = max(models.detect_hog(image, upsample=1), key=lambda d: d.score)
    smiling = faces.smile_score(models.landmarks(image, best.box))
    neutral_img = read_image(DATA / "photos" / "a_youngster_01.png")
    neutral = faces.smile_score(models.landmarks(neutral_img, models.detect_hog(neutral_img)[0].box))
    assert smiling > 1.1 > neutral


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
