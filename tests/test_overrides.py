"""p2d.curate.overrides: the user's keep/drop overrides and not-duplicate pairs, honoured by curate,
dedup and build, and the functions the review page calls; on the bundled public-domain photos."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DATA
from p2d.curate.build import BuildOptions, build_manifest
from p2d.curate.dedup import NOT_DUPLICATES, dedup_manifests, read_not_duplicates
from p2d.curate.filters import Thresholds, reason_measure
from p2d.curate.hashing import output_hashes, phash_hex
from p2d.curate.overrides import (Override, dropped_path, duplicate_groups, keep_refusal, match_overrides,
                                  overridden, overrides_version, photo_review_items, read_curate_settings,
                                  read_overrides, save_overrides, split_duplicate)
from p2d.curate.photos import curate_photos
from p2d.curate.pipeline import CurateOptions
from p2d.errors import P2DError, VersionConflict
from p2d.images import list_images, read_image, write_image
from p2d.manifest import new_rows, read_manifest, validate, write_manifest

ROOT = Path(__file__).resolve().parent.parent
SMILE, TURNED, NEUTRAL = "images/astronaut.png", "images/mlk.png", "images/boy.png"
NO_FACE = "images/engine.png"
# the options the photo folder is curated with
MINE = CurateOptions(source="mine", drop_smiles=True, drop_outliers=True)


# ------------------------------------------------------------------ pure decisions


@pytest.mark.parametrize("reason,decision,crop,expected", [
    ("", "drop", "frame", "override"),
    ("smile", "drop", "frame", "smile"),  # dropped already: its own reason stays
    ("smile", "keep", "frame", ""),
    ("padded", "keep", "frame", ""),
    ("attr:Eyeglasses", "keep", "center", ""),
    ("no_face", "keep", "frame", "no_face"),  # nothing to frame it by
    ("no_face", "keep", "center", ""),  # CelebA's square needs no landmarks
    ("unreadable:truncated", "keep", "center", "unreadable:truncated"),
    ("dup_of:a.png", "keep", None, "dup_of:a.png"),
    ("yaw", "", "frame", "yaw"),
])
def test_overridden(reason, decision, crop, expected):
    assert overridden(reason, decision, crop) == expected
    assert bool(keep_refusal(reason, crop)) == (decision == "keep" and expected != "")


def test_overrides_match_their_row_across_a_format_change():
    ov = {"images/a.png": Override("keep"), "images/b.png": Override("drop"),
          "images/gone.png": Override("drop")}
    found, unmatched = match_overrides(["images/a.png", "images/b.jpg", "images/c.png"], ov)
    assert [o.decision if o else None for o in found] == ["keep", "drop", None]
    assert unmatched == ["images/gone.png"]


@pytest.mark.parametrize("reason,row,expected_rule", [
    ("smile", {"smile_score": 1.17}, "smile_score 1.17 > smile_threshold 1"),
    ("yaw", {"yaw_deg": -33.5}, "|yaw_deg| 33.5 > max_yaw_deg 30"),
    ("blur", {"laplacian_var": 12.0}, "laplacian_var 12 < min_laplacian_var 50"),
    ("padded", {"padded_fraction": 0.4}, "padded_fraction 0.4 > max_padded_fraction 0.25"),
])
def test_reason_measure_names_column_value_and_threshold(reason, row, expected_rule):
    limits = {**Thresholds(smile_threshold=1.0).as_dict(), "max_padded_fraction": 0.25}
    m = reason_measure(reason, row, limits)
    assert m["rule"] == expected_rule and m["value"] == next(iter(row.values()))
    assert reason_measure("no_face", {}, limits) is None
    assert reason_measure(reason, row, None)["threshold"] is None  # a run that recorded none


# ------------------------------------------------------------------ the overrides file


@pytest.mark.parametrize("text,message", [
    ("path,decision,note\nimages/a.png,kep,\n",
     "overrides.csv line 2: decision 'kep' for images/a.png is not keep or drop"),
    ("file,decision\nimages/a.png,keep\n", "line 1: the header must be path,decision,note"),
    ("path,decision,note\nimages/a.png,keep,\n,drop,\n", "line 3: the path is empty"),
    ("path,decision,note\nimages/a.png,keep,\nimages/a.png,drop,\n",
     "line 3: images/a.png is already decided on line 2"),
    ("path,decision,note\nimages/a.png,keep,sharp,really\n", "line 2: more fields than the header"),
])
def test_a_bad_overrides_file_names_the_file_and_line(tmp_path, text, message):
    (tmp_path / "overrides.csv").write_text(text)
    with pytest.raises(P2DError, match=message):
        read_overrides(tmp_path)


# ------------------------------------------------------------------ curate photos honours overrides


@pytest.fixture(scope="module")
def photo_input(tmp_path_factory):
    """A smiling astronaut, a turned head (MLK, ~33 degrees of yaw), a neutral boy, no face, a broken file."""
    root = tmp_path_factory.mktemp("review") / "in"
    root.mkdir()
    shutil.copy(DATA / "photos" / "astronaut.png", root / "astronaut.png")
    for src, name in (("a_youngster_01.png", "boy.png"), ("martin_luther_king_jr._h_02.png", "mlk.png")):
        img = Image.open(DATA / "photos" / src)  # half size keeps detection fast; faces stay ~100 px wide
        img.resize((img.width // 2, img.height // 2), Image.LANCZOS).save(root / name)
    shutil.copy(DATA / "nonfaces" / "fire_engine_mimooh_01.png", root / "engine.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def curated_once(photo_input, tmp_path_factory):
    """The folder curated once (its cache filled): tests copy it and re-run from the cache."""
    out = tmp_path_factory.mktemp("review-out") / "out"
    curate_photos(photo_input, out, MINE)
    return out


@pytest.fixture()
def curated(curated_once, tmp_path):
    return Path(shutil.copytree(curated_once, tmp_path / "out"))


def aside(folder: Path, path: str) -> Path:
    """Where curate puts the frame of a dropped photo."""
    return folder / dropped_path(path)


def rows_by_path(manifest: Path) -> dict[str, dict]:
    df = read_manifest(manifest)
    for col in ("override", "filter_reason"):  # empty cells read as missing
        if col in df.columns:
            df[col] = df[col].astype(object).where(df[col].notna(), "")
    return {row["path"]: row for row in df.to_dict("records")}


def test_curate_records_its_thresholds_and_frames_what_a_filter_dropped(curated, photo_input):
    rows = rows_by_path(curated / "manifest.csv")
    assert rows[SMILE]["reason"] == "smile" and rows[TURNED]["reason"] == "yaw" and rows[NEUTRAL]["keep"]
    # the frame of a photo a filter dropped is written beside images/ (which holds exactly the kept set)
    assert aside(curated, SMILE).is_file() and aside(curated, TURNED).is_file()
    assert not (curated / SMILE).exists()
    assert sorted(p.relative_to(curated).as_posix() for p in (curated / "images").rglob("*.png")) == sorted(
        p for p, row in rows.items() if row["keep"])
    assert not aside(curated, NO_FACE).exists()  # no face: nothing to frame
    assert rows[SMILE]["phash"] == "" and "override" not in rows[SMILE]  # no overrides.csv: no new columns
    settings = read_curate_settings(curated)
    assert settings["crop"] == "frame" and settings["thresholds"]["max_yaw_deg"] == 30.0
    # a stricter run with a looser yaw removes nothing a later keep would need, and records its threshold
    again = curate_photos(photo_input, curated, replace(MINE, thresholds=Thresholds(max_yaw_deg=40)))
    assert again.analyzed == 0 and rows_by_path(again.manifest)[TURNED]["keep"]
    assert read_curate_settings(curated)["thresholds"]["max_yaw_deg"] == 40.0


def test_review_items_show_value_and_threshold_of_each_drop(curated):
    items = {item["path"]: item for item in photo_review_items(curated)}
    assert set(items) == set(rows_by_path(curated / "manifest.csv"))
    smile, turned, boy, none = items[SMILE], items[TURNED], items[NEUTRAL], items[NO_FACE]
    assert smile["column"] == "smile_score" and smile["threshold_name"] == "smile_threshold"
    assert smile["value"] > smile["threshold"] == pytest.approx(1.0)
    assert turned["column"] == "yaw_deg" and abs(turned["value"]) > turned["threshold"] == 30.0
    assert turned["rule"].startswith("|yaw_deg| 3") and "> max_yaw_deg 30" in turned["rule"]
    assert Path(smile["image"]).is_file() and Path(smile["source_image"]).name == "astronaut.png"
    assert smile["can_keep"] == "" and "no face" in none["can_keep"] and none["image"] is None
    assert boy["keep"] and boy["column"] is None and boy["override"] == ""
    assert set(smile) == {"path", "image", "source_image", "keep", "reason", "filter_reason", "override",
                          "note", "can_keep", "column", "value", "threshold_name", "threshold", "rule"}


def test_a_second_curate_run_honours_the_overrides(curated, photo_input):
    framed = aside(curated, SMILE).read_bytes()
    boy_before = (curated / NEUTRAL).read_bytes()
    (curated / "overrides.csv").write_text(
        "path,decision,note\n"
        f"{SMILE},keep,\"a grin, not a laugh\"\n{NEUTRAL},drop,\n{NO_FACE},keep,\nimages/gone.png,drop,\n")
    r = curate_photos(photo_input, curated, MINE)
    assert r.analyzed == 0
    rows = rows_by_path(r.manifest)
    smile, boy, none = rows[SMILE], rows[NEUTRAL], rows[NO_FACE]
    assert smile["keep"] and smile["reason"] == "" and smile["override"] == "keep"
    assert smile["filter_reason"] == "smile"
    assert (curated / SMILE).read_bytes() == framed and not aside(curated, SMILE).exists()
    assert smile["phash"] == phash_hex(read_image(curated / SMILE))
    assert not boy["keep"] and boy["reason"] == "override" and boy["filter_reason"] == ""
    assert aside(curated, NEUTRAL).read_bytes() == boy_before and not (curated / NEUTRAL).exists()
    assert none["reason"] == "no_face" and none["override"] == "keep"
    assert any("keep refused for images/engine.png" in n and "no face" in n for n in r.notes)
    assert any("images/gone.png" in n for n in r.notes)
    assert validate(read_manifest(r.manifest), r.manifest) == []


def test_a_bad_overrides_file_stops_curate_with_its_line(curated, photo_input):
    (curated / "overrides.csv").write_text(f"path,decision,note\n{SMILE},maybe,\n")
    with pytest.raises(P2DError, match=r"overrides.csv line 2: decision 'maybe'"):
        curate_photos(photo_input, curated, MINE)


def test_save_overrides_rewrites_the_manifest_at_once_and_checks_the_version(curated):
    v0 = overrides_version(curated)
    v1 = save_overrides(curated, {SMILE: "keep", NEUTRAL: "drop"}, v0)
    assert v1 != v0 and v1 == overrides_version(curated)
    rows = rows_by_path(curated / "manifest.csv")
    assert rows[SMILE]["keep"] and rows[SMILE]["phash"] == output_hashes(read_image(curated / SMILE))[0]
    assert rows[NEUTRAL]["reason"] == "override"
    # files sit where a curate run would leave them: the kept in images/, a dropped frame in dropped/
    assert not aside(curated, SMILE).exists()
    assert aside(curated, NEUTRAL).is_file() and not (curated / NEUTRAL).exists()
    assert validate(read_manifest(curated / "manifest.csv"), curated / "manifest.csv") == []
    with pytest.raises(VersionConflict):
        save_overrides(curated, {TURNED: "keep"}, v0)  # a second tab that read v0
    with pytest.raises(P2DError, match="cannot keep images/engine.png: no face"):
        save_overrides(curated, {NO_FACE: "keep"}, v1)
    assert overrides_version(curated) == v1  # a refused keep writes nothing
    v2 = save_overrides(curated, {SMILE: None, NEUTRAL: None, TURNED: "keep"}, v1)
    rows = rows_by_path(curated / "manifest.csv")
    assert rows[SMILE]["reason"] == "smile" and rows[NEUTRAL]["keep"] and rows[TURNED]["keep"]
    assert aside(curated, SMILE).is_file() and (curated / NEUTRAL).is_file() and (curated / TURNED).is_file()
    assert read_overrides(curated) == {TURNED: Override("keep", "", 2)}
    assert "images/astronaut.png,keep" in (curated / "overrides.prev.csv").read_text()
    items = {i["path"]: i for i in photo_review_items(curated)}
    assert items[TURNED]["override"] == "keep" and items[TURNED]["filter_reason"] == "yaw"
    assert items[TURNED]["column"] == "yaw_deg"  # a forced keep still shows what the filter measured
    assert v2 == overrides_version(curated)


def recipe(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "manifests" / "exp4.toml", tmp_path / "r.toml")
    return tmp_path / "r.toml"


def test_build_honours_an_override_saved_after_curating(curated, tmp_path):
    (curated / "overrides.csv").write_text(
        f"path,decision,note\n{SMILE},keep,\n{NEUTRAL},drop,\n{NO_FACE},keep,\n")
    built = build_manifest(recipe(tmp_path), [curated / "manifest.csv"],
                           options=BuildOptions(test_count=0, inspect=False))
    rows = {Path(p).name: row for p, row in zip(built.frame["path"], built.frame.to_dict("records"))}
    assert rows["astronaut.png"]["keep"] and rows["astronaut.png"]["override"] == "keep"
    assert "/dropped/" in rows["astronaut.png"]["path"]  # kept by the frame curate set aside
    assert rows["boy.png"]["reason"] == "override"
    assert rows["engine.png"]["reason"] == "no_face"  # no frame to keep
    assert any("keep refused for images/engine.png: no face" in n for n in built.notes)
    assert validate(read_manifest(built.output), built.output) == []


def test_a_celeba_keep_saved_on_the_page_cuts_the_square_a_curate_run_writes(celeba, tmp_path):
    from p2d.curate.celeba import curate_celeba

    out = tmp_path / "celeba-out"
    curate_celeba(celeba.official, out, CurateOptions(drop_smiles=True), first=3)
    smiling = "images/000002.png"
    assert not (out / smiling).exists()  # CelebA's squares of dropped images are not written
    save_overrides(out, {smiling: "keep"}, overrides_version(out))
    saved = (out / smiling).read_bytes()
    assert rows_by_path(out / "manifest.csv")[smiling]["keep"]
    r = curate_celeba(celeba.official, out, CurateOptions(drop_smiles=True), first=3)
    assert rows_by_path(r.manifest)[smiling]["override"] == "keep" and (out / smiling).read_bytes() == saved


# ------------------------------------------------------------------ duplicates


def _resize(a, size):
    return np.asarray(Image.fromarray(a).resize((size, size), Image.LANCZOS))


@pytest.fixture()
def dup_folder(tmp_path):
    """Four distinct drawings and two copies of d0 (resized, mirrored): one group of three."""
    folder = tmp_path / "drawings"
    files = [p for p in list_images(DATA / "drawings") if not p.name.startswith("boy_astrid")][:4]
    images = {f"d{i}.png": _resize(read_image(p), 128) for i, p in enumerate(files)}
    images["small.png"] = _resize(_resize(images["d0.png"], 64), 128)
    images["mirror.png"] = np.ascontiguousarray(images["d0.png"][:, ::-1])
    rows = []
    for name, img in images.items():
        write_image(folder / name, img)
        rows.append({"path": name, "domain": "drawing", "source": "drawings", "split": "train",
                     "crop": "center", "width": 128, "height": 128, "phash": phash_hex(img), "keep": True,
                     "reason": ""})
    write_manifest(new_rows(rows), folder / "manifest.csv")
    return folder


def test_duplicate_groups_show_each_member_with_its_similarity(dup_folder):
    dedup_manifests([dup_folder / "manifest.csv"])
    groups = duplicate_groups(dup_folder)
    assert len(groups) == 1
    keeper, members = groups[0]["keeper"], groups[0]["members"]
    assert keeper["path"] == "d0.png" and keeper["image"] == str(dup_folder / "d0.png")
    assert sorted(m["path"] for m in members) == ["mirror.png", "small.png"]
    assert all(m["similarity"] >= 0.94 for m in members)
    assert set(members[0]) == {"path", "manifest", "image", "domain", "source", "similarity"}


def test_a_split_member_stays_split_through_dedup_and_build(dup_folder, tmp_path):
    manifest = dup_folder / "manifest.csv"
    dedup_manifests([manifest])
    v0 = overrides_version(dup_folder)
    v1 = split_duplicate(dup_folder, "small.png", v0)
    assert v1 != v0
    with pytest.raises(VersionConflict):
        split_duplicate(dup_folder, "mirror.png", v0)
    pairs = {frozenset(Path(p).name for p in pair) for pair in read_not_duplicates(dup_folder)}
    assert pairs == {frozenset({"small.png", "d0.png"}), frozenset({"small.png", "mirror.png"})}
    assert (dup_folder / NOT_DUPLICATES).read_text().splitlines()[0] == "a,b"

    def reasons():
        return dict(zip(read_manifest(manifest)["path"], read_manifest(manifest)["reason"]))

    assert reasons()["small.png"] == "" and reasons()["mirror.png"] == "dup_of:d0.png"
    r = dedup_manifests([manifest])  # `p2d dedup` again
    assert reasons()["small.png"] == "" and r.report.kept_apart == 2
    built = build_manifest(recipe(tmp_path), [manifest], options=BuildOptions(test_count=0, inspect=False))
    rows = dict(zip(built.frame["path"].map(lambda p: Path(p).name), built.frame["reason"]))
    assert rows["small.png"] == "" and rows["mirror.png"].startswith("dup_of:")
    with pytest.raises(P2DError, match="in no duplicate group"):
        split_duplicate(dup_folder, "d1.png", None)


def test_a_bad_not_duplicates_file_names_its_line(dup_folder):
    (dup_folder / NOT_DUPLICATES).write_text("a,b\nd0.png\n")
    with pytest.raises(P2DError, match="not_duplicates.csv line 2: give two image paths"):
        dedup_manifests([dup_folder / "manifest.csv"])
