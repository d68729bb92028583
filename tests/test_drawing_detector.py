"""Tests for p2d.drawings.fhog: its pure geometry, the shipped model files, and tiny or odd inputs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from p2d.drawings import WEIGHTS_DIR
from p2d.drawings.fhog import (
    MIN_SCORE, MODEL_FILES, VIEWS, DrawingFaceDetector, DrawnFace, box_iou, clip_box, mirror_box,
    model_paths, suppress_overlaps, view_from_scores, work_scale,
)
from p2d.errors import ModelFileMissing
from p2d.images import read_image

DATA = Path(__file__).parent / "data"
SAMPLES = Path(__file__).resolve().parent.parent / "p2d" / "samples"
LABELS = WEIGHTS_DIR / "drawing_faces_labels.csv"


@pytest.mark.parametrize("shape,expected", [((200, 100), 2.0), ((800, 1600, 3), 0.25), ((400, 400), 1.0)])
def test_work_scale_brings_the_longer_side_to_work_size(shape, expected):
    assert work_scale(shape, work_side_px=400) == pytest.approx(expected)


@pytest.mark.parametrize("box", [(0, 0, 10, 10), (12.5, 3, 40, 20), (90, 5, 10, 10)])
def test_mirror_box_is_its_own_inverse_and_keeps_size(box):
    once = mirror_box(box, 100)
    assert once[2:] == box[2:] and once[1] == box[1]
    assert once[0] + once[2] / 2 == pytest.approx(100 - (box[0] + box[2] / 2))
    assert mirror_box(once, 100) == pytest.approx(box)


@pytest.mark.parametrize(
    "box,expected",
    [((10, 10, 20, 20), (10, 10, 20, 20)), ((-5, 90, 20, 20), (0, 90, 15, 10)),
     ((120, 5, 10, 10), (100, 5, 0, 10))],
)
def test_clip_box_keeps_the_part_inside(box, expected):
    assert clip_box(box, 100, 100) == pytest.approx(expected)


@pytest.mark.parametrize(
    "a,b,expected",
    [((0, 0, 10, 10), (0, 0, 10, 10), 1.0), ((0, 0, 10, 10), (5, 0, 10, 10), 50 / 150),
     ((0, 0, 10, 10), (20, 20, 5, 5), 0.0)],
)
def test_box_iou(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)


def test_suppress_overlaps_keeps_the_strongest_of_overlapping_boxes():
    faces = [DrawnFace(0, 0, 10, 10, "frontal", 0.2), DrawnFace(1, 1, 10, 10, "left", 0.9),
             DrawnFace(50, 50, 10, 10, "right", -0.1)]
    kept = suppress_overlaps(faces, max_iou=0.3)
    assert [f.view for f in kept] == ["left", "right"]


def test_missing_model_files_name_the_fix(tmp_path):
    with pytest.raises(ModelFileMissing, match="p2d.drawings.build_fhog"):
        model_paths(tmp_path)


def test_shipped_models_are_small_and_listed_in_package_data():
    paths = model_paths()
    assert set(paths) == set(MODEL_FILES)
    assert sum(p.stat().st_size for p in paths.values()) < 5 * 2**20
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert "drawings/weights/*.svm" in pyproject and "drawings/weights/*.csv" in pyproject


def test_label_csv_has_disjoint_splits_and_known_views():
    with open(LABELS, newline="") as f:
        rows = list(csv.DictReader(f))
    split_of: dict[str, set[str]] = {}
    for r in rows:
        split_of.setdefault(r["path"], set()).add(r["split"])
        assert r["view"] in {"none", "frontal", "left", "right", "three_quarter_left", "three_quarter_right"}
        assert len(r["sha256"]) == 64
    assert all(len(s) == 1 for s in split_of.values()), "a file is in both train and eval"
    splits = [next(iter(s)) for s in split_of.values()]
    assert {"train", "eval"} <= set(splits)


def test_painted_figure_labels_are_well_formed_and_apart_from_the_training_labels():
    """benchmarks/painted_faces_labels.csv (detect_drawings.py --painted): a face per portrait, a box
    inside a plausible portrait, a known view or blank, the half its hash gives it, and no file that
    the detector's label CSV trains on."""
    painted = Path(__file__).resolve().parent.parent / "benchmarks" / "painted_faces_labels.csv"
    with open(painted, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(LABELS, newline="") as f:
        trained = {r["sha256"] for r in csv.DictReader(f)}
    assert len(rows) == len({r["path"] for r in rows}) == 129
    for r in rows:
        x, y, w, h = (float(r[k]) for k in "xywh")
        assert 0 <= x and 0 <= y and 10 < w < 300 and 10 < h < 300 and x + w <= 500 and y + h <= 500
        assert r["view"] in {"", "frontal", "left", "right", "three_quarter_left", "three_quarter_right"}
        assert r["split"] == ("a" if int(r["sha256"][:2], 16) < 128 else "b")
        assert r["sha256"] not in trained


@pytest.fixture(scope="module")
def detector():
    return DrawingFaceDetector()


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 2, 3), (500, 1, 3), (3, 5000, 3), (15, 40)])
def test_tiny_and_thin_images_give_no_box_and_no_error(detector, shape):
    assert detector.detect(np.full(shape, 255, np.uint8)) == []


def test_blank_and_noise_images_give_no_box(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(np.full((300, 300, 3), 255, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)) == []


def fixture_truth() -> dict[str, tuple[float, float, float, float]]:
    with open(DATA / "drawing_face_boxes.csv", newline="") as f:
        return {r["path"]: tuple(float(r[k]) for k in "xywh") for r in csv.DictReader(f)}


def test_boxes_lie_in_the_image_with_a_known_view(detector):
    img = read_image(SAMPLES / "drawings" / "head1.png")
    faces = detector.detect(img, min_score=-1.0)
    assert faces, "a low threshold gives candidates on a drawn head"
    h, w = img.shape[:2]
    for f in faces:
        assert f.view in VIEWS
        assert 0 <= f.x and f.x + f.w <= w and 0 <= f.y and f.y + f.h <= h
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_gray_input_gives_the_same_boxes_as_rgb(detector):
    img = read_image(SAMPLES / "drawings" / "head2.png")
    gray = read_image(SAMPLES / "drawings" / "head2.png", mode="L")
    rgb_boxes = [f.box for f in detector.detect(np.stack([gray] * 3, -1), min_score=-1.0)]
    assert rgb_boxes
    gray_boxes = [f.box for f in detector.detect(gray, min_score=-1.0)]
    # flat lists: pytest >= 9.1's approx no longer compares nested sequences
    assert len(gray_boxes) == len(rgb_boxes)
    assert [v for b in gray_boxes for v in b] == pytest.approx([v for b in rgb_boxes for v in b])
    assert img.shape[:2] == gray.shape


# Measured with benchmarks/eval_drawing_detector.py on the fixtures (none of them in the label CSV,
# so never trained on; the threshold was set on the CSV's eval split): at MIN_SCORE the top box
# is right (IoU >= 0.3 with the hand box) on 10 of the 18 fixture faces and wrong on none, with no
# box on the fire engine. (The C=10 filters: 8 right; those before the card-deck labels: 9 right, 1 wrong.)
MIN_FIXTURES_FOUND = 10
MAX_FIXTURES_WRONG = 0


def test_fixture_detection_rate_does_not_regress(detector):
    truth = fixture_truth()
    found = wrong = 0
    for name, box in truth.items():
        faces = detector.detect(read_image(SAMPLES / name))
        if faces:
            ok = box_iou(faces[0].box, box) >= 0.3
            found += ok
            wrong += not ok
    assert found >= MIN_FIXTURES_FOUND
    assert wrong <= MAX_FIXTURES_WRONG
    assert detector.detect(read_image(SAMPLES / "nonfaces" / "fire_engine_mimooh_01.png")) == []


@pytest.mark.parametrize(
    "scores,margin,expected",
    [({"frontal": -0.5, "left": -0.9, "right": -2.0}, 0.0, "frontal"),
     ({"frontal": -0.9, "left": -0.6, "right": -0.95}, 0.2, "left"),
     ({"frontal": -0.9, "left": -0.8, "right": -0.85}, 0.1, ""),  # no clear winner
     ({"frontal": -2.0, "left": -2.0, "right": -2.0}, 0.0, "")],
)
def test_view_from_scores_needs_a_clear_winner(scores, margin, expected):
    assert view_from_scores(scores, margin) == expected


def test_view_scores_give_every_view_a_score_and_the_floor_off_the_face(detector):
    img = read_image(SAMPLES / "drawings" / "head1.png")
    box = fixture_truth()["drawings/head1.png"]
    scores = detector.view_scores(img, box, floor=-2.0)
    assert set(scores) == set(VIEWS)
    assert max(scores.values()) > -2.0, "some filter puts a window on a drawn head"
    blank = np.full((200, 200, 3), 255, np.uint8)
    assert max(detector.view_scores(blank, (50, 50, 60, 60), floor=-2.0).values()) < MIN_SCORE
    assert detector.view_scores(img, (10, 10, 0, 0), floor=-2.0) == {v: -2.0 for v in VIEWS}
