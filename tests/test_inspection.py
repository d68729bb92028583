"""p2d.inspection: per-feature known answers, the comparison statistics, and inspections of real
drawing crops against CelebA-shaped photo sets (frontal, planted wide smiles, colour vs gray)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import DATA
from p2d.errors import P2DError
from p2d.inspection import (
    FRONTAL_MAX_YAW_DEG,
    NEAR_GRAY_MAX_COLOURFULNESS,
    brightness,
    colourfulness,
    contrast,
    facing_from_yaw,
    frame_features,
    inspect_frame,
    inspect_manifest,
    ks_distance,
    landmark_shape_features,
    padded_share,
    parse_features,
    row_features,
    typicality,
)
from p2d.images import read_image, write_image
from p2d.manifest import read_manifest, relative_path, write_manifest

DRAWINGS = Path(__file__).parent / "data" / "inspect" / "drawings"
YOUNGSTER, ASTRONAUT, MLK = 0, 1, 2  # sorted file names of DATA/photos


# ----------------------------------------------------------------------------- known answers


@pytest.fixture(scope="module")
def photo():
    return read_image(DATA / "photos" / "astronaut.png")


def test_brightened_copy_raises_brightness(photo):
    brighter = np.clip(photo.astype(np.float64) * 1.25, 0, 255).astype(np.uint8)
    assert brightness(brighter) > brightness(photo) + 0.05
    darker = (photo.astype(np.float64) * 0.5).round().astype(np.uint8)  # no clipping: exactly half
    assert brightness(darker) == pytest.approx(brightness(photo) / 2, abs=0.005)
    assert brightness(np.zeros((8, 8, 3), np.uint8)) == 0.0
    assert brightness(np.full((8, 8, 3), 255, np.uint8)) == pytest.approx(1.0)


def test_flattened_copy_lowers_contrast(photo):
    mean = photo.mean()
    flat = np.clip(mean + (photo.astype(np.float64) - mean) * 0.5, 0, 255).astype(np.uint8)
    assert contrast(flat) == pytest.approx(contrast(photo) * 0.5, rel=0.05)
    half = np.zeros((8, 8, 3), np.uint8)
    half[:4] = 255
    assert contrast(half) == pytest.approx(0.5)


def test_gray_copy_has_no_colour(photo):
    gray = np.repeat(photo.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    assert colourfulness(gray) == pytest.approx(0.0, abs=1e-9)
    assert colourfulness(photo) > NEAR_GRAY_MAX_COLOURFULNESS
    row = row_features({"domain": "drawing"}, {"colourfulness": colourfulness(gray)})
    assert row["gray"] == "gray"


def test_padded_crop_reports_its_padded_share(photo):
    from p2d.padding import crop_square, parse_pad

    h, w = photo.shape[:2]
    # a crop square running past the left and top edges, filled with one colour
    crop, fraction, _ = crop_square(photo, w * 0.3, h * 0.35, min(h, w) * 0.9, 128, parse_pad("white"))
    assert fraction > 0.1
    assert padded_share(crop) == pytest.approx(fraction, abs=0.03)
    assert padded_share(photo) < 0.02  # a photo runs to its edges


def test_mirrored_face_flips_facing(face_models):
    # Martin Luther King Jr.'s head is turned ~33 degrees (beyond FRONTAL_MAX_YAW_DEG)
    image = read_image(DATA / "photos" / "martin_luther_king_jr._h_02.png")
    facings = []
    for img in (image, np.ascontiguousarray(image[:, ::-1])):
        det = max(face_models.detect_hog(img, upsample=1), key=lambda d: d.w)
        yaw = landmark_shape_features(face_models.landmarks(img, det.box))["yaw"]
        facings.append(facing_from_yaw(yaw))
    assert set(facings) == {"left", "right"}


@pytest.mark.parametrize("yaw, facing", [(0.0, "frontal"), (FRONTAL_MAX_YAW_DEG, "frontal"), (45.0, "right"),
                                         (-45.0, "left"), (float("nan"), "unknown"), (None, "unknown")])
def test_facing_from_yaw(yaw, facing):
    assert facing_from_yaw(yaw) == facing


def test_facing_column_wins_over_yaw():
    assert row_features({"domain": "drawing", "facing": "left"}, {"yaw": 0.0})["facing"] == "left"
    assert row_features({"domain": "drawing", "facing": ""}, {"yaw": 50.0})["facing"] == "right"


def _face_points(face_models):
    image = read_image(DATA / "photos" / "a_youngster_01.png")
    det = max(face_models.detect_hog(image, upsample=1), key=lambda d: d.w)
    return face_models.landmarks(image, det.box), image.shape[1]


def test_face_size_centre_and_eye_size(face_models):
    points, side = _face_points(face_models)
    base = frame_features(points, side)
    half = frame_features(points * 0.5, side)  # the same face at half size, towards the corner
    assert half["face_size"] == pytest.approx(base["face_size"] / 2)
    assert half["face_x"] == pytest.approx(base["face_x"] / 2)
    assert half["eye_size"] == pytest.approx(base["eye_size"])  # a ratio within the face
    shifted = frame_features(points + [side * 0.1, 0.0], side)
    assert shifted["face_x"] == pytest.approx(base["face_x"] + 0.1)
    big_eyes = points.copy()
    for eye in (slice(36, 42), slice(42, 48)):
        c = big_eyes[eye].mean(axis=0)
        big_eyes[eye] = c + (big_eyes[eye] - c) * 1.5
    assert frame_features(big_eyes, side)["eye_size"] == pytest.approx(base["eye_size"] * 1.5, rel=0.02)


def test_shape_features_are_curations(face_models):
    from p2d.faces import landmark_features

    points, _ = _face_points(face_models)
    f, g = landmark_shape_features(points), landmark_features(points)
    assert (f["yaw"], f["smile"], f["mouth_open"], f["roll"]) == (g["yaw_deg"], g["smile_score"],
                                                                  g["mouth_open"],
                                                                 g["roll_deg"])


# ----------------------------------------------------------------------------- statistics


def test_ks_distance_known_answers():
    a = np.arange(100.0)
    assert ks_distance(a, a) == 0.0
    assert ks_distance(a, a + 1000) == 1.0
    assert ks_distance(a, a + 50) == pytest.approx(0.5)


def test_typicality_of_numbers():
    rng = np.random.default_rng(0)
    other = rng.normal(0.0, 1.0, 2000)
    # for a normal distribution the answer is P(|Z| > |x|): 1, 0.317, 0.012, 0 (kernel noise aside)
    t = typicality(np.array([0.0, 1.0, 2.5, 8.0, np.nan]), other, resolution=0.1)
    assert t[0] > 0.9 and 0.25 < t[1] < 0.35 and t[2] < 0.03 and t[3] == 0.0 and np.isnan(t[4])
    # the other domain's own rows: about a share q of them fall below q
    own = typicality(other, other, resolution=0.1)
    assert np.mean(own < 0.1) == pytest.approx(0.1, abs=0.03)


def test_typicality_of_categories_and_small_sets():
    other = np.array(["frontal"] * 95 + ["left"] * 5, dtype=object)
    t = typicality(np.array(["frontal", "left", "right", "unknown"], dtype=object), other, category=True)
    assert t[0] == 1.0 and t[1] == pytest.approx(0.05) and t[2] == 0.0 and np.isnan(t[3])
    assert np.isnan(typicality(np.array([5.0]), np.array([0.0, 0.1]))).all()  # too few to judge


def test_parse_features():
    assert parse_features("facing, smile") == ("facing", "smile")
    assert parse_features("") == ()
    with pytest.raises(P2DError, match="--drop-unmatched"):
        parse_features("smiles")


# ----------------------------------------------------------------------------- real sets


def _celeba_photos(root: Path, face_models, variants) -> pd.DataFrame:
    from celeba_synth import load_source_faces, write_celeba_folder
    from p2d.curate.celeba import curate_celeba
    from p2d.images import list_images

    faces = load_source_faces(list_images(DATA / "photos"), face_models)
    write_celeba_folder(root / "celeba", variants, faces, [], layout="txt")
    curate_celeba(root / "celeba", out=root / "photos")
    return read_manifest(root / "photos" / "manifest.csv")


def _variants(source: int, n: int, start: int = 0):
    """n distinct, frontal views of one source face: small shifts, scales and exposures."""
    from celeba_synth import Variant

    return [Variant(source, shift_px=((k % 5) - 2, (k % 3) - 1), scale=0.96 + 0.01 * (k % 7),
                    brightness=0.9 + 0.02 * (k % 6)) for k in range(start, start + n)]


def _joined(root: Path, photos: pd.DataFrame, photos_manifest: Path, drawings: Path = DRAWINGS) -> Path:
    """One manifest (at root/exp.csv) of the drawing crops and the photos, paths made relative to it."""
    out = root / "exp.csv"
    parts = []
    for df, src in ((read_manifest(drawings / "manifest.csv"), drawings / "manifest.csv"),
                    (photos, photos_manifest)):
        df = df.copy()
        df["path"] = [relative_path(out, src.parent / p) for p in df["path"]]
        parts.append(df)
    write_manifest(pd.concat(parts, ignore_index=True), out)
    return out


@pytest.fixture(scope="module")
def frontal_photos(tmp_path_factory, face_models):
    root = tmp_path_factory.mktemp("frontal")
    return root, _celeba_photos(root, face_models, _variants(YOUNGSTER, 16))


@pytest.fixture(scope="module")
def smiling_photos(tmp_path_factory, face_models):
    root = tmp_path_factory.mktemp("smiling")
    return root, _celeba_photos(root, face_models, _variants(YOUNGSTER, 6) + _variants(ASTRONAUT, 18))


def test_turned_drawings_lack_a_counterpart_among_frontal_photos(frontal_photos, tmp_path):
    root, photos = frontal_photos
    manifest = _joined(tmp_path, photos, root / "photos" / "manifest.csv")
    result = inspect_manifest(manifest, out=tmp_path / "inspect", quiet=True)
    rows = result.rows
    assert (rows.loc[rows["domain"] == "photo", "facing"] == "frontal").all()
    drawings = rows[rows["domain"] == "drawing"]
    turned = drawings["facing"].isin(["left", "right"])
    assert turned.sum() >= 2  # head1, happy_woman: turned per their landmarks
    lacks = drawings["unmatched"].str.split(",").map(lambda u: "facing" in u)
    assert (lacks == turned).all()
    assert (drawings.loc[turned, "mismatch"] == 1.0).all()
    # the contact sheet shows the least matched rows; the histograms one panel per feature
    assert [p.name for p in result.files] == ["features.csv", "histograms.png", "unmatched.png"]
    assert all(p.stat().st_size > 1000 for p in result.files)


def test_profile_drawings_by_their_facing_column(frontal_photos, tmp_path):
    """crop-drawings' `facing` column (where present) says profile where the landmarks cannot."""
    root, photos = frontal_photos
    drawings = tmp_path / "drawings"
    shutil.copytree(DRAWINGS, drawings)
    df = read_manifest(drawings / "manifest.csv")
    df["facing"] = ["left" if p == "head13.png" else "frontal" for p in df["path"]]
    write_manifest(df, drawings / "manifest.csv")
    result = inspect_manifest(_joined(tmp_path, photos, root / "photos" / "manifest.csv", drawings),
                              out=tmp_path / "inspect", quiet=True)
    flagged = result.rows[result.rows["unmatched"].str.contains("facing")]
    assert list(flagged["path"].map(lambda p: Path(p).name)) == ["head13.png"]


def test_planted_wide_smiles_are_told_to_drop_smiles(smiling_photos, tmp_path):
    root, photos = smiling_photos
    result = inspect_manifest(_joined(tmp_path, photos, root / "photos" / "manifest.csv"), out=tmp_path / "i",
                              quiet=True)
    lines = result.notes()
    smile = [line for line in lines if "smile widely" in line]
    assert smile and "of the photos smile widely" in smile[0] and "--drop-smiles" in smile[0]


def test_gray_drawings_beside_colour_photos_are_told_so(frontal_photos, tmp_path):
    root, photos = frontal_photos
    drawings = tmp_path / "drawings"
    shutil.copytree(DRAWINGS, drawings)
    for png in drawings.glob("*.png"):
        img = read_image(png)
        write_image(png, np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8))
    result = inspect_manifest(_joined(tmp_path, photos, root / "photos" / "manifest.csv", drawings),
                              out=tmp_path / "inspect", quiet=True)
    gray = [line for line in result.notes() if "nearly gray" in line]
    assert gray and gray[0].startswith("100% of the drawings are nearly gray, 0% of the photos")
    assert "channels = 1" in gray[0]


def test_one_domain_only_is_an_error_naming_the_fix(frontal_photos, tmp_path):
    root, photos = frontal_photos
    with pytest.raises(P2DError, match="no readable kept drawing rows"):
        inspect_frame(root / "photos" / "manifest.csv", photos, tmp_path / "cache", quiet=True)


def test_a_domain_whose_rows_are_all_dropped_is_named_with_its_reasons(frontal_photos, tmp_path):
    root, photos = frontal_photos
    dropped = photos.iloc[:2].copy()
    dropped["domain"], dropped["keep"], dropped["reason"] = "drawing", False, [
        "no_face", "unreadable:empty_file"]
    with pytest.raises(P2DError,
                       match=r"2 drawing row\(s\) are all dropped \(no_face 1, unreadable 1\).*--boxes"):
        inspect_frame(root / "photos" / "manifest.csv", pd.concat([photos, dropped], ignore_index=True),
                      tmp_path / "cache", quiet=True)


def test_rerun_reads_the_cache(frontal_photos, tmp_path):
    root, photos = frontal_photos
    manifest = _joined(tmp_path, photos, root / "photos" / "manifest.csv")
    first = inspect_frame(manifest, read_manifest(manifest), tmp_path / "cache", quiet=True)

    class NoModels:
        def landmarks(self, image, box):
            raise AssertionError("a re-run must take the landmarks from the cache")

    again = inspect_frame(manifest, read_manifest(manifest), tmp_path / "cache", models=NoModels(),
                          quiet=True)
    pd.testing.assert_frame_equal(first.rows, again.rows)


# ----------------------------------------------------------------------------- acting on it: manifest build


# The fixture's photos are views of one face, which dedup rightly calls copies: it is turned off
# here (no candidate pairs, and none would confirm) so that the photo domain keeps its 16 rows.
NO_DEDUP = {"max_hamming": 0, "min_similarity": 1.0}


def _build(tmp_path: Path, frontal_photos, **kwargs):
    from p2d.curate.build import BuildOptions, build_manifest

    root, _ = frontal_photos
    recipe = tmp_path / "exp.toml"
    shutil.copy(Path(__file__).parent.parent / "p2d" / "recipes" / "tiny.toml", recipe)
    return build_manifest(recipe, [DRAWINGS / "manifest.csv", root / "photos" / "manifest.csv"],
                          options=BuildOptions(test_count=1, **NO_DEDUP, **kwargs))


def test_build_drops_nothing_unless_asked(frontal_photos, tmp_path):
    r = _build(tmp_path, frontal_photos)
    assert not r.frame["reason"].str.startswith("unmatched").any() and r.moved == []
    assert r.inspection is not None and r.inspection.notes()


def test_build_drop_unmatched_facing(frontal_photos, tmp_path):
    r = _build(tmp_path, frontal_photos, drop_unmatched=("facing",))
    inspected = r.inspection.rows
    turned = inspected.index[inspected["facing"].isin(["left", "right"]) & (inspected["domain"] == "drawing")]
    assert len(turned) >= 2
    dropped = r.frame.index[r.frame["reason"] == "unmatched:facing"]
    assert sorted(dropped) == sorted(turned)
    assert r.moved == [("drawing", "facing", len(turned))]
    assert not r.frame.loc[dropped, "keep"].any()


def test_recipe_key_drop_unmatched(frontal_photos, tmp_path):
    from p2d.curate.build import BuildOptions, build_manifest

    root, _ = frontal_photos
    recipe = tmp_path / "exp.toml"
    text = (Path(__file__).parent.parent / "p2d" / "recipes" / "tiny.toml").read_text()
    recipe.write_text(text.replace("[data]\n", '[data]\ndrop_unmatched = ["facing"]\n'))
    r = build_manifest(recipe, [DRAWINGS / "manifest.csv", root / "photos" / "manifest.csv"],
                       options=BuildOptions(test_count=1, **NO_DEDUP))
    assert r.drop_unmatched == ("facing",) and r.moved and r.moved[0][:2] == ("drawing", "facing")
    recipe.write_text(text.replace("[data]\n", '[data]\ndrop_unmatched = ["smiles"]\n'))
    with pytest.raises(P2DError, match="unknown feature"):
        build_manifest(recipe, [DRAWINGS / "manifest.csv"], options=BuildOptions(test_count=1))


def test_cli_inspect_and_build(frontal_photos, tmp_path):
    from typer.testing import CliRunner

    from p2d.cli import app

    root, _ = frontal_photos
    recipe = tmp_path / "exp.toml"
    shutil.copy(Path(__file__).parent.parent / "p2d" / "recipes" / "tiny.toml", recipe)
    res = CliRunner().invoke(app, ["manifest", "build", "--recipe", str(recipe), "--from",
                                   str(DRAWINGS / "manifest.csv"),
                                   "--from", str(root / "photos" / "manifest.csv"), "--test-count", "1",
                                   "--drop-unmatched", "facing", "--max-hamming", "0", "--min-similarity",
                                   "1"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "drawings vs photos" in res.output and "dropped as unmatched" in res.output
    res = CliRunner().invoke(app, ["inspect", str(tmp_path / "exp.csv")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "per source" in res.output and (tmp_path / "exp_inspect" / "histograms.png").is_file()
