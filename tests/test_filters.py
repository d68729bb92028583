"""Pure tests of the photo filters, thresholds, smile agreement, hashing and the landmark cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from p2d.facecache import FaceCache
from p2d.curate.filters import (Thresholds, drop_reason, laplacian_var, mean_gray, second_faces,
                                smile_agreement)
from p2d.curate.hashing import hamming, phash_hex
from p2d.errors import P2DError
from p2d.faces import SMILE_THRESHOLD, landmark_features
from test_faces import FACES, SMILES, _rotate

GOOD = {"smile_score": 0.8, "mouth_width": 0.78, "mouth_open": 0.02, "yaw_deg": 3.0, "roll_deg": -1.0,
        "iod_px": 39.0, "laplacian_var": 800.0, "mean_gray": 150.0}
MAIN = [40.0, 90.0, 90.0, 90.0, 1.4]


def record(faces=None, status="ok", **features):
    return {"status": status, "faces": faces if faces is not None else [MAIN],
            "features": {**GOOD, **features}}


@pytest.mark.parametrize("rec,reason", [
    (record(), ""),
    (record(status="unreadable:truncated"), "unreadable:truncated"),
    (record(status="no_face", faces=[]), "no_face"),
    (record(faces=[MAIN, [0, 0, 60, 60, 0.9]]), "multi_face"),
    (record(faces=[MAIN, [0, 0, 30, 30, 0.9]]), ""),  # a small background face does not count
    (record(faces=[MAIN, [0, 0, 90, 90, 0.1]]), ""),  # nor a weak (likely false) detection
    (record(iod_px=12.0), "face_small"),
    (record(yaw_deg=-31.0), "yaw"),
    (record(roll_deg=25.0), "roll"),
    (record(mean_gray=20.0, laplacian_var=10.0), "dark"),  # dark first: darkness also lowers the Laplacian
    (record(mean_gray=240.0), "bright"),
    (record(laplacian_var=20.0), "blur"),
    (record(smile_score=1.2), "smile"),
    (record(smile_score=1.2, yaw_deg=40.0), "yaw"),  # one reason, the first in order
])
def test_drop_reason_with_both_filters(rec, reason):
    assert drop_reason(rec, Thresholds(), drop_smiles=True, drop_outliers=True) == reason


def test_filters_apply_only_when_asked():
    rec = record(smile_score=1.3, yaw_deg=50.0)
    assert drop_reason(rec, Thresholds()) == ""
    assert drop_reason(rec, Thresholds(), drop_smiles=True) == "smile"
    assert drop_reason(rec, Thresholds(), drop_outliers=True) == "yaw"
    nf = record(status="no_face", faces=[])
    assert drop_reason(nf, Thresholds()) == ""  # a CelebA centre crop needs no landmarks
    assert drop_reason(nf, Thresholds(), need_face=True) == "no_face"  # framing a photo does


@pytest.mark.parametrize("smiling,reason", [(1, "smile"), (-1, ""), (None, "")])
def test_smile_source_attr(smiling, reason):
    rec = record(smile_score=0.5)
    assert drop_reason(rec, Thresholds(), drop_smiles=True, smile_source="attr",
                       smiling_attr=smiling) == reason


@pytest.mark.parametrize("threshold,expected", [(1.0, "smile"), (1.1, "")])
def test_smile_threshold_is_used(threshold, expected):
    rec = record(smile_score=1.05)
    assert drop_reason(rec, Thresholds(smile_threshold=threshold), drop_smiles=True) == expected


@pytest.mark.parametrize("kwargs,match", [
    ({"max_yaw_deg": -1.0}, "max_yaw_deg"),
    ({"min_mean_gray": 200.0, "max_mean_gray": 100.0}, "below max_mean_gray"),
    ({"max_mean_gray": 300.0}, "at most 255"),
    ({"smile_threshold": float("nan")}, "smile_threshold"),
    ({"max_yaw_deg": 120.0}, "at most 90"),
])
def test_thresholds_are_validated(kwargs, match):
    with pytest.raises(P2DError, match=match):
        Thresholds(**kwargs)


def test_second_faces_counts_by_width_and_score():
    t = Thresholds()
    assert second_faces([MAIN], t) == 0
    faces = [MAIN, [0, 0, 46, 46, 0.6], [0, 0, 44, 44, 2.0], [0, 0, 80, 80, 0.4]]
    assert second_faces(faces, t) == 1
    assert second_faces(faces, Thresholds(second_face_min_ratio=0.4, second_face_min_score=0.3)) == 3


def test_default_smile_threshold_is_the_derived_one():
    import inspect

    from p2d import cli

    assert Thresholds().smile_threshold == SMILE_THRESHOLD
    # the CLI keeps a literal for a fast --help
    for command in (cli.curate_celeba_cmd, cli.curate_photos_cmd):
        assert inspect.signature(command).parameters["smile_threshold"].default == SMILE_THRESHOLD


@pytest.mark.parametrize("name", FACES)
def test_drop_smiles_on_constructed_faces(name):
    """Through landmark_features and drop_reason: smiles go, open mouths and yawns stay."""
    points = _rotate(FACES[name][0], 15.0) * 60 + 100
    rec = record(**landmark_features(points))
    assert drop_reason(rec, Thresholds(), drop_smiles=True) == ("smile" if name in SMILES else "")


def test_smile_agreement_four_cases():
    scores = [1.3, 1.2, 0.8, 0.9, 0.7, 1.1]
    smiling = [1, -1, 1, -1, -1, 1]
    assert smile_agreement(scores, smiling, 1.05) == {"both_smile": 2, "landmarks_only": 1, "attr_only": 1,
                                                      "neither": 2}


def test_image_measures():
    flat = np.full((64, 64), 90, np.uint8)
    assert laplacian_var(flat) == 0.0 and mean_gray(flat) == 90.0
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert laplacian_var(checker) > 1e5
    import cv2

    noise = np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8)
    assert laplacian_var(cv2.GaussianBlur(noise, (0, 0), 2.0)) < laplacian_var(noise) / 10


def test_phash_hex_format_and_distance():
    rng = np.random.default_rng(1)
    img = cv2_blur(rng.integers(0, 256, (96, 96, 3)).astype(np.uint8))
    h = phash_hex(img)
    assert len(h) == 16 and int(h, 16) >= 0 and h == h.lower()
    assert hamming(h, phash_hex(img[::2, ::2].copy())) <= 6  # resized copy: nearly the same hash
    other = cv2_blur(rng.integers(0, 256, (96, 96, 3)).astype(np.uint8))
    assert hamming(h, phash_hex(other)) > 12
    assert hamming("ffffffffffffffff", "0000000000000000") == 64
    with pytest.raises(ValueError):
        phash_hex(img.astype(np.float32))


def cv2_blur(img):
    import cv2

    return cv2.GaussianBlur(img, (0, 0), 3.0)


def test_face_cache_survives_a_cut_line_and_compacts(tmp_path):
    cache = FaceCache(tmp_path)
    cache.analyses.add({"name": "a.jpg", "sig": [1, 2], "method": "fast:template", "status": "ok"})
    cache.analyses.add({"name": "b.jpg", "sig": [3, 4], "method": "fast:template", "status": "ok"})
    cache.analyses.add({"name": "a.jpg", "sig": [1, 5], "method": "fast:template", "status": "ok"})
    cache.flush()
    with (tmp_path / "landmarks.jsonl").open("a") as fh:
        fh.write('{"v":1,"name":"c.jp')  # an interrupted write
    again = FaceCache(tmp_path)
    assert again.analysis("a.jpg", [1, 5], "fast:template") is not None
    assert again.analysis("a.jpg", [1, 2], "fast:template") is None  # the file changed since
    assert again.analysis("b.jpg", [3, 4], "hog:up1") is None  # another method
    again.analyses.add({"name": "c.jpg", "sig": [9, 9], "method": "hog:up1", "status": "no_face"})
    again.close()
    lines = (tmp_path / "landmarks.jsonl").read_text().splitlines()
    assert [json.loads(x)["name"] for x in lines] == ["a.jpg", "b.jpg", "c.jpg"]
