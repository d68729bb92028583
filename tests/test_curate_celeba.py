"""`p2d curate celeba` on CelebA-shaped folders (both layouts, with and without annotation files),
real dlib models and real JPEG/PNG files: selection, filters, cache, workers, bad files, CLI."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import (
    BAD_FILES, BLURRED, DARK, EYEGLASSES, LABELLED_NOT_SMILING, NEUTRAL, NO_FACE, SMILE_NOT_LABELLED,
    SMILING, TURNED, TWO_FACES,
)
from p2d.cli import app
from p2d.curate.celeba import find_layout, locate, read_annotation, curate_celeba
from p2d.curate.pipeline import CurateOptions
from p2d.facecache import FaceCache
from p2d.curate.filters import Thresholds
from p2d.curate.hashing import phash_hex
from p2d.errors import P2DError
from p2d.manifest import read_manifest, validate

OUTLIERS = CurateOptions(drop_smiles=True, drop_outliers=True)


def by_id(df):
    return {r["image_id"]: r for r in df.to_dict("records")}


@pytest.fixture(scope="module")
def official_run(celeba, tmp_path_factory):
    """One fast-path run over the official layout (bad files included) with both filters on."""
    out = tmp_path_factory.mktemp("official") / "out"
    return curate_celeba(celeba.official, out, OUTLIERS)


# ------------------------------------------------------------------ finding CelebA


@pytest.mark.parametrize("which,kind,nested", [("official", "official", False), ("csv", "csv", True),
                                               ("bare", "images only", False)])
def test_both_layouts_are_found(celeba, which, kind, nested):
    layout = find_layout(getattr(celeba, which))
    assert layout.kind == kind
    assert (layout.images_dir.parent.name == "img_align_celeba") == nested
    assert set(layout.files) == (set() if which == "bare" else {"attr", "landmarks", "partition"})


def test_no_root_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("P2D_CELEBA", raising=False)
    with pytest.raises(P2DError) as err:
        locate(None)
    msg = str(err.value)
    for place in ("./celeba", "./data/celeba", "P2D_CELEBA", "p2d curate celeba PATH"):
        assert place in msg


def test_default_roots_torchvision_and_env(celeba, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("P2D_CELEBA", raising=False)
    (tmp_path / "data").mkdir()
    os.symlink(celeba.csv, tmp_path / "data" / "celeba")  # torchvision: root=data -> data/celeba
    assert locate(None).images_dir.name == "img_align_celeba"
    monkeypatch.setenv("P2D_CELEBA", str(celeba.official))
    assert locate(None).root == celeba.official


def test_bad_root_names_the_expected_layout(tmp_path):
    with pytest.raises(P2DError, match="img_align_celeba"):
        locate(tmp_path)


@pytest.mark.parametrize("which,ext", [("official", ".txt"), ("csv", ".csv")])
def test_annotation_files_parse_in_both_formats(celeba, which, ext):
    root = getattr(celeba, which)
    cols, attrs = read_annotation(root / f"list_attr_celeba{ext}")
    assert len(cols) == 40 and "Smiling" in cols and "Wearing_Hat" in cols
    assert attrs[SMILING[0]][cols.index("Smiling")] == "1"
    assert attrs[EYEGLASSES][cols.index("Eyeglasses")] == "1"
    cols, lms = read_annotation(root / f"list_landmarks_align_celeba{ext}")
    assert cols[0] == "lefteye_x" and len(lms[NEUTRAL[0]]) == 10
    _, parts = read_annotation(root / f"list_eval_partition{ext}")
    assert parts[EYEGLASSES] == ["2"] and parts[NEUTRAL[0]] == ["0"]


def test_damaged_annotation_file_names_the_fix(tmp_path):
    bad = tmp_path / "list_attr_celeba.txt"
    bad.write_text("2\nA B\n000001.jpg 1 -1\n000002.jpg 1\n")
    with pytest.raises(P2DError, match="re-download it or remove it"):
        read_annotation(bad)


# ------------------------------------------------------------------ the fast path and the filters


def test_fast_path_filters_bad_files_and_manifest(official_run, celeba):
    r = official_run
    df = read_manifest(r.manifest)
    assert validate(df, r.manifest) == []
    rows = by_id(df)
    assert len(df) == len(celeba.names) + len(BAD_FILES)
    assert set(df["domain"]) == {"photo"} and set(df["source"]) == {"celeba"}
    assert set(df["split"]) == {"train"} and set(df["crop"]) == {"center"}
    for name, reason in BAD_FILES.items():
        assert rows[name]["reason"] == reason and not rows[name]["keep"]
    for name in NEUTRAL:
        assert rows[name]["keep"], rows[name]
        assert rows[name]["detector"] == "fast:landmarks"
    for name in SMILING:
        assert rows[name]["reason"] == "smile"
    assert rows[TURNED[0]]["reason"] == "yaw"
    assert rows[DARK]["reason"] == "dark"
    assert rows[BLURRED]["reason"] == "blur"
    # The fast path never detects, so it cannot see a missing or second face.
    assert rows[NO_FACE]["reason"] != "no_face" and rows[TWO_FACES]["reason"] != "multi_face"
    assert r.selected == len(df) and r.kept == int(df["keep"].sum())
    assert Image.open(r.out_dir / "review.png").width >= 6 * 112  # kept and dropped examples, by reason
    assert r.analyzed == len(df) and r.cache_hits == 0
    assert sum(r.dropped.values()) == r.selected - r.kept


def test_kept_images_are_center_crops_with_their_phash(official_run, celeba):
    df = read_manifest(official_run.manifest)
    kept = df[df["keep"]]
    files = sorted(p.name for p in (official_run.out_dir / "images").iterdir())
    assert files == sorted(Path(p).name for p in kept["path"])  # images/ holds exactly the kept set
    for row in kept.to_dict("records"):
        img = np.asarray(Image.open(official_run.out_dir / row["path"]))
        assert img.shape == (128, 128, 3) and row["width"] == row["height"] == 128
        assert row["phash"] == phash_hex(img)
        src = np.asarray(Image.open(celeba.official / "img_align_celeba" / row["image_id"]).convert("RGB"))
        centre = Image.fromarray(src[20:198]).resize((128, 128), Image.BILINEAR)
        assert np.abs(np.asarray(centre, dtype=float) - img).mean() < 6  # the centred 178x178 square


def test_smile_agreement_counts_all_four_cases(official_run):
    a = official_run.agreement
    # Smiling astronauts (both), the astronaut labelled -1 (landmarks only), the youngster
    # labelled 1 (attr only); everything else with landmarks and attributes: neither.
    assert a["landmarks_only"] >= 1 and a["attr_only"] >= 1 and a["both_smile"] >= 4 and a["neither"] >= 4
    df = read_manifest(official_run.manifest)
    rows = by_id(df)
    assert rows[SMILE_NOT_LABELLED]["smile_score"] > 1.05 and rows[SMILE_NOT_LABELLED]["smiling_attr"] == -1
    assert (rows[LABELLED_NOT_SMILING]["smile_score"] < 1.05
            and rows[LABELLED_NOT_SMILING]["smiling_attr"] == 1)
    assert sum(a.values()) == int(df["smile_score"].notna().sum())


def test_rerun_with_other_thresholds_uses_the_cache(official_run, celeba, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(official_run.out_dir, out)
    before = read_manifest(out / "manifest.csv")
    looser = replace(OUTLIERS, thresholds=Thresholds(smile_threshold=3.0, max_yaw_deg=45.0))
    r = curate_celeba(celeba.official, out, looser)
    assert r.analyzed == 0 and r.cache_hits == r.selected  # nothing recomputed, bad files included
    after = by_id(read_manifest(r.manifest))
    assert after[SMILING[0]]["keep"] and after[TURNED[0]]["keep"]  # looser thresholds keep them now
    assert r.written == len(SMILING) + len(TURNED) + 2  # the newly kept ones only
    cols = ["smile_score", "yaw_deg", "laplacian_var", "mean_gray"]
    assert np.allclose(before[cols].to_numpy(dtype=float),
                       read_manifest(r.manifest)[cols].to_numpy(dtype=float), equal_nan=True)
    # Back to the strict defaults: images dropped again lose their output files.
    r = curate_celeba(celeba.official, out, OUTLIERS)
    assert r.analyzed == 0 and r.written == 0
    assert not (out / "images" / SMILING[0].replace(".jpg", ".png")).exists()


def test_interrupted_run_continues(celeba, tmp_path):
    out = tmp_path / "out"
    part = curate_celeba(celeba.official, out, OUTLIERS, first=5)  # the run "stopped" after 5 images
    assert part.analyzed == 5
    # A kill mid-write leaves a half line in the cache; a lost output file is re-made.
    with (out / "cache" / "landmarks.jsonl").open("a") as fh:
        fh.write('{"v":1,"name":"000006.jpg","sta')
    (out / "images" / "000001.png").unlink()
    r = curate_celeba(celeba.official, out, OUTLIERS)
    assert r.cache_hits == 5 and r.analyzed == r.selected - 5
    assert (out / "images" / "000001.png").is_file()
    cache = FaceCache(out / "cache")
    assert len(cache.analyses.records) == r.selected and cache.analyses.lines == r.selected  # compacted


def test_ctrl_c_keeps_what_was_done(celeba, tmp_path, monkeypatch):
    import p2d.curate.pipeline as pipeline

    real_batch = pipeline._Worker.batch
    done = []

    def interrupt_after_six(self, jobs):
        if len(done) == 6:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the third batch of three images
        done.extend(job.name for job in jobs)
        return real_batch(self, jobs)

    monkeypatch.setattr(pipeline, "BATCH", 3)
    monkeypatch.setattr(pipeline._Worker, "batch", interrupt_after_six)
    with pytest.raises(KeyboardInterrupt):
        curate_celeba(celeba.official, tmp_path / "out", OUTLIERS)
    monkeypatch.setattr(pipeline._Worker, "batch", real_batch)
    assert len(FaceCache(tmp_path / "out" / "cache").analyses.records) == 6
    r = curate_celeba(celeba.official, tmp_path / "out", OUTLIERS)
    assert r.cache_hits == 6 and r.analyzed == r.selected - 6


def test_csv_layout_gives_the_same_features(official_run, celeba, tmp_path):
    r = curate_celeba(celeba.csv, tmp_path / "out", OUTLIERS)
    a, b = by_id(read_manifest(official_run.manifest)), by_id(read_manifest(r.manifest))
    for name in celeba.names:
        assert a[name]["reason"] == b[name]["reason"]
        assert a[name]["smile_score"] == pytest.approx(b[name]["smile_score"])
        assert a[name]["phash"] == b[name]["phash"]


def test_without_annotation_files_the_aligned_geometry_is_used(celeba, tmp_path):
    r = curate_celeba(celeba.bare, tmp_path / "out", OUTLIERS)
    rows = by_id(read_manifest(r.manifest))
    assert {rows[n]["detector"] for n in celeba.names} == {"fast:template"}
    assert "smiling_attr" not in read_manifest(r.manifest).columns and r.agreement is None
    assert all(rows[n]["keep"] for n in NEUTRAL) and rows[SMILING[0]]["reason"] == "smile"
    with pytest.raises(P2DError, match="list_attr_celeba"):
        curate_celeba(celeba.bare, tmp_path / "o2", exclude_attrs=["Eyeglasses"])
    with pytest.raises(P2DError, match="list_eval_partition"):
        curate_celeba(celeba.bare, tmp_path / "o3", partition="val")
    with pytest.raises(P2DError, match="list_attr_celeba"):
        curate_celeba(celeba.bare, tmp_path / "o4", CurateOptions(drop_smiles=True), smile_source="attr")


def test_unaligned_images_without_landmark_file_are_detected(celeba, tmp_path):
    # In-the-wild photos (not CelebA's aligned 178x218 crops): the fixed geometry would be wrong.
    wild = tmp_path / "wild" / "img_align_celeba"
    wild.mkdir(parents=True)
    for name in (NEUTRAL[0], SMILING[0]):
        img = Image.open(celeba.bare / "img_align_celeba" / name)
        canvas = Image.new("RGB", (400, 260), (128, 128, 128))
        canvas.paste(img, (150, 20))
        canvas.save(wild / name, quality=92)
    r = curate_celeba(wild.parent, tmp_path / "out", OUTLIERS)
    assert any("detecting faces" in n for n in r.notes)
    assert set(r.rows["detector"]) == {"hog:up1"} and r.rows["n_faces"].tolist() == [1, 1]
    assert by_id(r.rows)[SMILING[0]]["reason"] == "smile" and by_id(r.rows)[NEUTRAL[0]]["keep"]
    # ...and the kept face is framed from its landmarks, not cut from the canvas centre.
    framed = np.asarray(Image.open(r.out_dir / "images" / NEUTRAL[0].replace(".jpg", ".png")), dtype=float)
    aligned = Image.open(celeba.bare / "img_align_celeba" / NEUTRAL[0]).convert("RGB")
    centre = np.asarray(aligned.crop((0, 20, 178, 198)).resize((128, 128), Image.BILINEAR), dtype=float)
    assert np.abs(framed - centre).mean() < 8  # a centre cut of the canvas would differ by ~77



def test_unaligned_image_without_a_face_is_dropped_not_fatal(celeba, tmp_path):
    # Framing needs landmarks: a faceless image is dropped even without --drop-outliers.
    wild = tmp_path / "wild" / "img_align_celeba"
    wild.mkdir(parents=True)
    img = Image.open(celeba.bare / "img_align_celeba" / NEUTRAL[0])
    canvas = Image.new("RGB", (400, 260), (128, 128, 128))
    canvas.paste(img, (150, 20))
    canvas.save(wild / "000001.jpg", quality=92)
    Image.new("RGB", (400, 260), (90, 140, 200)).save(wild / "000002.jpg", quality=92)
    r = curate_celeba(wild.parent, tmp_path / "out")
    assert sorted(r.rows["reason"].tolist()) == ["", "no_face"]


# ------------------------------------------------------------------ selection options


def test_first_partition_and_exclude_attr(celeba, tmp_path):
    r = curate_celeba(celeba.csv, tmp_path / "a", first=4)
    assert list(r.rows["image_id"]) == celeba.names[:4] and r.kept == 4  # no filter asked: all kept
    r = curate_celeba(celeba.csv, tmp_path / "b", partition="val")
    assert list(r.rows["image_id"]) == [SMILE_NOT_LABELLED, LABELLED_NOT_SMILING]
    r = curate_celeba(celeba.official, tmp_path / "c", exclude_attrs=["Eyeglasses", "Wearing_Hat"], first=16)
    rows = by_id(r.rows)
    assert rows[EYEGLASSES]["reason"] == "attr:Eyeglasses"
    assert rows[LABELLED_NOT_SMILING]["reason"] == "attr:Wearing_Hat"
    assert r.kept == 14 and r.analyzed == 14  # excluded images are not even analysed
    with pytest.raises(P2DError, match="no such CelebA attribute"):
        curate_celeba(celeba.official, tmp_path / "d", exclude_attrs=["Sunglasses"])
    with pytest.raises(P2DError, match="train, val or test"):
        curate_celeba(celeba.official, tmp_path / "e", partition="validation")


def test_smile_source_attr_uses_the_smiling_attribute(celeba, tmp_path):
    r = curate_celeba(celeba.official, tmp_path / "out", CurateOptions(drop_smiles=True), smile_source="attr")
    rows = by_id(r.rows)
    assert rows[LABELLED_NOT_SMILING]["reason"] == "smile"  # labelled, though the mouth is neutral
    assert rows[SMILE_NOT_LABELLED]["keep"]  # smiling mouth, labelled -1
    assert rows[NEUTRAL[0]]["keep"]


def test_full_detection_path_counts_faces(celeba, tmp_path):
    r = curate_celeba(celeba.official, tmp_path / "out", OUTLIERS, detect=True)
    rows = by_id(r.rows)
    assert rows[NO_FACE]["reason"] == "no_face"
    assert rows[TWO_FACES]["reason"] == "multi_face" and rows[TWO_FACES]["n_faces"] == 2
    assert rows[NEUTRAL[0]]["keep"] and rows[NEUTRAL[0]]["detector"] == "hog:up1"
    assert rows[NEUTRAL[0]]["n_faces"] == 1
    # Another --upsample is another analysis: the cache does not hand back the old one.
    up0 = curate_celeba(celeba.official, tmp_path / "out", CurateOptions(upsample=0), detect=True, first=2)
    assert up0.analyzed == 2 and set(up0.rows["detector"]) == {"hog:up0"}
    # Detection and the fast path measure the same faces alike.
    fast = curate_celeba(celeba.official, tmp_path / "fast", first=9)
    for name in NEUTRAL + SMILING:
        assert rows[name]["smile_score"] == pytest.approx(by_id(fast.rows)[name]["smile_score"], abs=0.08)


def test_size_format_and_refused_output(celeba, tmp_path):
    out = tmp_path / "out"
    curate_celeba(celeba.official, out, first=2)
    r = curate_celeba(celeba.official, out, CurateOptions(size=64, fmt="jpg"), first=2)
    assert r.analyzed == 0 and r.written == 2
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000001.jpg", "000002.jpg"]  # old PNGs gone
    assert Image.open(out / "images" / "000001.jpg").size == (64, 64)
    with pytest.raises(P2DError, match="inside the input folder"):
        curate_celeba(celeba.official, celeba.official / "img_align_celeba" / "out")
    with pytest.raises(P2DError, match="--size"):
        curate_celeba(celeba.official, out, CurateOptions(size=4))


# ------------------------------------------------------------------ command line


def test_cli_curate_celeba(celeba, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["curate", "celeba", str(celeba.official), "-o", str(out), "--first", "9",
                                   "--drop-smiles", "--drop-outliers", "--smile-threshold", "1.1",
                                   "--exclude-attr", "Eyeglasses", "--exclude-attr", "Wearing_Hat"])
    assert res.exit_code == 0, res.output
    for text in ("selected", "kept", "dropped: smile", "images/s", "smile_threshold=1.1", "Smiling = 1",
                 "manifest.csv", "review.png"):
        assert text in res.output
    assert len(read_manifest(out / "manifest.csv")) == 9


def test_cli_card_command_finds_celeba_in_the_current_folder(celeba, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("P2D_CELEBA", raising=False)
    os.symlink(celeba.official, tmp_path / "celeba")
    res = CliRunner().invoke(app, ["curate", "celeba", "--first", "4232", "--drop-smiles"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "curated" / "celeba" / "manifest.csv").is_file()
    assert "curated/celeba" in res.output


def test_cli_error_is_a_message_and_exit_1(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("P2D_CELEBA", raising=False)
    res = CliRunner().invoke(app, ["curate", "celeba"])
    assert res.exit_code == 1 and "CelebA not found" in res.output and "Traceback" not in res.output
