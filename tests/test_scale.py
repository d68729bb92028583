"""Tests for p2d.curate.scale: width scaling, short images padded or dropped, the command."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DATA
from p2d.cli import app
from p2d.padding import Pad
from p2d.curate.scale import ScaleOptions, pad_to_height, scale_folder, scale_to_width
from p2d.images import read_image, write_image
from p2d.manifest import read_manifest, validate



@pytest.mark.parametrize("shape,width,expected", [((200, 100), 50, (100, 50)), ((100, 400), 128, (32, 128)),
                                                   ((60, 30), 120, (240, 120)), ((1, 1000), 100, (1, 100))])
def test_scale_to_width(shape, width, expected):
    assert scale_to_width(np.zeros(shape + (3,), np.uint8), width).shape[:2] == expected


def test_pad_to_height():
    img = np.full((100, 128, 3), 255, np.uint8)
    out, frac = pad_to_height(img, 128, Pad("auto"))
    assert out.shape == (128, 128, 3) and frac == pytest.approx(28 / 128) and (out == 255).all()
    same, frac = pad_to_height(np.zeros((200, 128, 3), np.uint8), 128, Pad("auto"))
    assert same.shape == (200, 128, 3) and frac == 0


@pytest.fixture()
def raw(tmp_path):
    d = tmp_path / "artist"
    d.mkdir()
    for name in ("woman_doctor_gerald_g._01.png", "woman_reading_gerald_g._01.png"):
        shutil.copy(DATA / "figures" / name, d / name)
    write_image(d / "wide.png", np.full((50, 400, 3), 240, np.uint8))  # scales to 16 px high
    (d / "bad.jpg").write_bytes(b"not a jpeg")
    return d


def test_scale_cli_pads_short_images(raw, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["scale", str(raw), str(out), "--width", "128"])
    assert r.exit_code == 0, r.output
    df = read_manifest(out / "manifest.csv")
    assert validate(df, out / "manifest.csv") == []
    kept = df[df["keep"]]
    assert len(kept) == 3 and (kept["width"] == 128).all() and (kept["height"] >= 128).all()
    assert set(kept["crop"]) == {"random"} and set(df["source"]) == {"artist"}
    doctor = read_image(out / kept[kept["path"].str.contains("doctor")].iloc[0]["path"])
    assert doctor.shape[1] == 128 and doctor.shape[0] == round(477 * 128 / 164)
    wide = kept[kept["path"].str.contains("wide")].iloc[0]
    assert wide["height"] == 128 and wide["padded_fraction"] == pytest.approx(112 / 128)
    assert df[df["path"].str.contains("bad")].iloc[0]["reason"].startswith("unreadable:")
    first = (out / "manifest.csv").read_bytes()
    assert CliRunner().invoke(app, ["scale", str(raw), str(out)]).exit_code == 0
    assert (out / "manifest.csv").read_bytes() == first


def test_scale_cli_drops_short_images(raw, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["scale", str(raw), str(out), "--short", "drop", "--source", "eisaku",
                                 "--pad", "reflect"])
    assert r.exit_code == 0, r.output
    df = read_manifest(out / "manifest.csv")
    assert df[df["path"].str.contains("wide")].iloc[0]["reason"] == "too_short:16px"
    assert set(df["source"]) == {"eisaku"}


def test_scale_rejects_width_below_training_size(raw, tmp_path):
    r = CliRunner().invoke(app, ["scale", str(raw), str(tmp_path / "o"), "--width", "64"])
    assert r.exit_code == 1 and "--width 64" in r.output


def test_same_name_in_two_formats_gives_two_outputs(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    tall = np.zeros((300, 100, 3), np.uint8)
    write_image(raw / "a.png", tall)
    write_image(raw / "a.jpg", tall + 40)
    r = scale_folder(raw, tmp_path / "out", ScaleOptions(width_px=32, min_height_px=32))
    paths = sorted(row["path"] for row in r.rows)
    assert paths == ["a_jpg.png", "a_png.png"]
    assert all((tmp_path / "out" / p).is_file() for p in paths)


def test_tiny_images_are_recorded_not_scaled(tmp_path):
    from PIL import Image

    raw = tmp_path / "raw"
    raw.mkdir()
    for w, h in [(1, 1), (2, 2), (1, 500), (5000, 3), (40, 40)]:
        Image.new("RGB", (w, h), (90, 90, 90)).save(raw / f"t_{w}x{h}.png")
    r = scale_folder(raw, tmp_path / "out")
    rows = {Path(row["source_path"]).name: row for row in read_manifest(r.manifest).to_dict("records")}
    for w, h in [(1, 1), (2, 2), (1, 500), (5000, 3)]:
        assert rows[f"t_{w}x{h}.png"]["reason"] == f"too_small:{w}x{h}" and not rows[f"t_{w}x{h}.png"]["keep"]
    assert rows["t_40x40.png"]["keep"]  # small but usable: scaled up as before
