"""`p2d curate photos`, the CelebA framing (`crop_face`, `frame_face`) and the aligned geometry."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import DATA
from p2d.cli import app
from p2d.curate.hashing import phash_hex
from p2d.curate.photos import curate_photos
from p2d.curate.pipeline import CurateOptions, template_points
from p2d.errors import P2DError
from p2d.framing import (
    CELEBA_HOG_BOX, CELEBA_SQUARE_TOP, CELEBA_TEMPLATE_5, CELEBA_WIDTH, box_from_five, center_crop_square,
    five_points, frame_face, frame_matrix, similarity_fit, transform_points,
)
from p2d.images import read_image
from p2d.padding import Pad, crop_face, frame_padded
from p2d.manifest import read_manifest, validate


def similarity(angle_deg, scale, tx, ty):
    a = math.radians(angle_deg)
    return np.array(
        [[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]])


# ------------------------------------------------------------------ pure geometry


@pytest.mark.parametrize("angle,scale,tx,ty", [(0, 1, 0, 0), (12, 0.5, 30, -4), (-40, 3.2, -100, 250)])
def test_similarity_fit_recovers_a_known_transform(angle, scale, tx, ty):
    m = similarity(angle, scale, tx, ty)
    src = CELEBA_TEMPLATE_5
    assert np.allclose(similarity_fit(src, transform_points(m, src)), m, atol=1e-9)


def test_template_box_is_the_hog_box():
    assert np.allclose(box_from_five(CELEBA_TEMPLATE_5), CELEBA_HOG_BOX)
    # The box moves and scales with the face (and stays axis-aligned).
    x, y, w, h = box_from_five(CELEBA_TEMPLATE_5 * 2 + [10, 20])
    assert (x, y, w, h) == pytest.approx((CELEBA_HOG_BOX[0] * 2 + 10, CELEBA_HOG_BOX[1] * 2 + 20,
                                          CELEBA_HOG_BOX[2] * 2, CELEBA_HOG_BOX[3] * 2))
    assert np.allclose(template_points(178, 218), CELEBA_TEMPLATE_5)
    assert np.allclose(template_points(356, 436), CELEBA_TEMPLATE_5 * 2)


@pytest.mark.parametrize("shape,expected", [((218, 178, 3), (178, 178, 3)), ((100, 300), (100, 100))])
def test_center_crop_square(shape, expected):
    img = np.arange(np.prod(shape)).reshape(shape)
    out = center_crop_square(img)
    assert out.shape == expected
    if shape[0] == 218:
        assert out[0, 0, 0] == img[CELEBA_SQUARE_TOP, 0, 0]


def points68_with_five(five: np.ndarray) -> np.ndarray:
    """68 points whose five CelebA points are `five` (eye rings around the centres, nose, mouth)."""
    p = np.zeros((68, 2))
    ring = np.array([[-4, 0], [-2, -2], [2, -2], [4, 0], [2, 2], [-2, 2]], dtype=float)
    p[36:42] = five[0] + ring
    p[42:48] = five[1] + ring
    p[30], p[48], p[54] = five[2], five[3], five[4]
    return p


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("angle,scale,tx,ty", [(0, 1, 0, 0), (20, 2.5, 60, 40), (-15, 0.9, 5, 30)])
def test_frame_face_puts_the_five_points_where_celeba_has_them(size, angle, scale, tx, ty):
    five = transform_points(similarity(angle, scale, tx, ty), CELEBA_TEMPLATE_5)
    pts = points68_with_five(five)
    assert np.allclose(five_points(pts), five)
    target = (CELEBA_TEMPLATE_5 - [0, CELEBA_SQUARE_TOP]) * size / CELEBA_WIDTH
    assert np.allclose(transform_points(frame_matrix(pts, size), five), target, atol=1e-6)
    # Pixels follow: a bright dot on each eye lands on the template's eyes.
    img = np.zeros((600, 600), np.uint8)
    for x, y in five[:2]:
        cv2.circle(img, (int(round(x)), int(round(y))), max(2, int(3 * scale)), 255, -1)
    out = frame_face(img, pts, size)
    assert out.shape == (size, size)
    for x, y in target[:2]:
        assert out[int(round(y)), int(round(x))] > 100


# ------------------------------------------------------------------ crop_face with real models


def test_crop_face_frames_a_real_photo_like_celeba(face_models):
    img = read_image(DATA / "photos" / "astronaut.png")
    out, reason = crop_face(img, face_models, size=128)
    assert reason is None and out.shape == (128, 128, 3) and out.dtype == np.uint8
    # The framed face's own landmarks sit near CelebA's template (scaled to 128).
    found = face_models.detect_hog(out, 1)
    pts = face_models.landmarks(out, max(found, key=lambda d: d.w).box)
    target = (CELEBA_TEMPLATE_5 - [0, CELEBA_SQUARE_TOP]) * 128 / CELEBA_WIDTH
    assert np.abs(five_points(pts) - target).max() < 5


def test_crop_face_keeps_channels_and_reports_no_face(face_models):
    gray = read_image(DATA / "photos" / "a_youngster_01.png", mode="L")
    out, reason = crop_face(gray, face_models, size=64)
    assert reason is None and out.shape == (64, 64)
    none, reason = crop_face(read_image(DATA / "nonfaces" / "fire_engine_mimooh_01.png"), face_models)
    assert none is None and reason == "no_face"


def test_crop_face_fills_past_the_edge_as_asked(face_models, tmp_path):
    from p2d.demo import write_lfw_photos
    from p2d.framing import detect_faces

    # a tight crop: the frame passes its edge
    img = read_image(write_lfw_photos(tmp_path, count=1)[0], mode="L")
    blurred, _ = crop_face(img, face_models, size=64)
    mirrored, _ = crop_face(img, face_models, size=64, pad=Pad("reflect"))
    points = face_models.landmarks(img, tuple(detect_faces(img, face_models, 1)[0][:4]))
    # the default
    assert np.array_equal(blurred, frame_padded(img, frame_matrix(points, 64), 64, Pad("blur")))
    assert np.array_equal(mirrored, frame_face(img, points, 64))  # reflect is frame_face's own fill
    assert np.abs(blurred.astype(int) - mirrored).mean() > 1


# ------------------------------------------------------------------ curate photos


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos") / "in"
    (root / "trip").mkdir(parents=True)
    shutil.copy(DATA / "photos" / "astronaut.png", root / "astronaut.png")
    # Half-size copies of the 794x1123 photos keep detection fast; faces stay ~100 px wide.
    boy = Image.open(DATA / "photos" / "a_youngster_01.png")
    boy = boy.resize((boy.width // 2, boy.height // 2), Image.LANCZOS)
    boy.save(root / "trip" / "boy.png")
    boy.convert("RGB").save(root / "trip" / "boy.jpg", quality=92)
    mlk = Image.open(DATA / "photos" / "martin_luther_king_jr._h_02.png")
    mlk.resize((mlk.width // 2, mlk.height // 2), Image.LANCZOS).save(root / "mlk.png")
    shutil.copy(DATA / "nonfaces" / "fire_engine_mimooh_01.png", root / "engine.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_curate_photos_frames_filters_and_records(photo_folder, tmp_path):
    r = curate_photos(photo_folder, tmp_path / "out", CurateOptions(source="family", drop_smiles=True))
    df = read_manifest(r.manifest)
    assert validate(df, r.manifest) == []
    rows = {row["source_path"].split("in/")[-1]: row for row in df.to_dict("records")}
    assert (set(df["source"]) == {"family"} and set(df["domain"]) == {"photo"}
            and set(df["split"]) == {"train"})
    # no face: nothing to frame, even without --drop-outliers
    assert rows["engine.png"]["reason"] == "no_face"
    assert rows["broken.jpg"]["reason"].startswith("unreadable:")
    assert rows["astronaut.png"]["reason"] == "smile"
    assert rows["mlk.png"]["keep"]  # turned, but --drop-outliers was not asked for
    # Two files with the same stem get distinct outputs.
    assert rows["trip/boy.png"]["path"] == "images/trip/boy_png.png"
    assert rows["trip/boy.jpg"]["path"] == "images/trip/boy_jpg.png"
    for row in df[df["keep"]].to_dict("records"):
        assert Image.open(r.out_dir / row["path"]).size == (128, 128)
        pixels = read_image(r.out_dir / row["path"])
        assert row["phash"] == phash_hex(pixels)
        assert row["phash_mirror"] == phash_hex(np.ascontiguousarray(pixels[:, ::-1]))
    # Outliers now, from the cache: the turned head goes.
    options = CurateOptions(source="family", drop_smiles=True, drop_outliers=True)
    again = curate_photos(photo_folder, tmp_path / "out", options)
    assert again.analyzed == 0 and again.cache_hits == again.selected
    assert {row["source_path"].split("in/")[-1]: row
            for row in again.rows.to_dict("records")}["mlk.png"]["reason"] == "yaw"


def test_a_cached_analysis_is_judged_with_todays_landmark_formulas(photo_folder, tmp_path):
    """A cache written by an older smile-score formula must not decide today's verdict: the
    landmark features are recomputed from the cached points on every run."""
    import json

    first = curate_photos(photo_folder, tmp_path / "out", CurateOptions(source="family"))
    fresh = read_manifest(first.manifest).set_index("path")
    for log in (tmp_path / "out" / "cache").glob("*.jsonl"):
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        for rec in lines:
            if rec.get("features"):
                rec["features"]["smile_score"] = 99.0  # what a different formula once wrote
        log.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    again = curate_photos(photo_folder, tmp_path / "out", CurateOptions(source="family", drop_smiles=True))
    assert again.analyzed == 0
    df = read_manifest(again.manifest).set_index("path")
    assert (df["smile_score"].dropna() < 99).all()
    assert df.loc["images/trip/boy_png.png", "keep"]  # a neutral face stays: judged with today's score
    assert df["smile_score"].dropna().equals(fresh["smile_score"].dropna())


def test_curate_photos_refuses_bad_input(photo_folder, tmp_path):
    with pytest.raises(P2DError, match="does not exist"):
        curate_photos(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(P2DError, match="inside the input folder"):
        curate_photos(photo_folder, photo_folder / "out")
    with pytest.raises(P2DError, match="--source"):
        curate_photos(photo_folder, tmp_path / "out", CurateOptions(source="a,b"))


def test_cli_curate_photos(photo_folder, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["curate", "photos", str(photo_folder), "-o", str(out), "--source", "mine",
                                   "--drop-outliers", "--size", "64", "--max-yaw-deg", "40"])
    assert res.exit_code == 0, res.output
    assert "max_yaw_deg=40.0" in res.output and "dropped: no_face" in res.output
    df = read_manifest(out / "manifest.csv")
    kept = df[df["keep"]]
    assert set(df["source"]) == {"mine"} and len(kept) == 4  # astronaut, both boys, mlk (yaw 33 < 40)
    assert Image.open(out / kept["path"].iloc[0]).size == (64, 64)


def test_tiny_photos_are_rows_not_failures(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for w, h in [(1, 1), (2, 2), (1, 500), (5000, 3)]:
        Image.new("RGB", (w, h), (120, 100, 90)).save(root / f"t_{w}x{h}.png")
    r = curate_photos(root, tmp_path / "out")
    reasons = {Path(p).name: why for p, why in zip(r.rows["source_path"], r.rows["reason"])}
    assert reasons == {
        f"t_{w}x{h}.png": f"too_small:{w}x{h}" for w, h in [(1, 1), (2, 2), (1, 500), (5000, 3)]}
