"""`p2d demo` end to end, the full demo (LFW photos, bundled clip-art faces, the 64 px recipe), run
once for the module: every step's output exists, the model measurably learnt to draw, a re-run continues.

This is the suite's only demo run (1.5 to 5.5 minutes on 2 quiet cores, as `p2d demo` takes); the fast
training tests use the 32 px tiny recipe.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from p2d.cli import app
from p2d.demo import (DRAWING_FACES, PICTURE_CELL_PX, RECIPE, TEST_COUNT, command_name, demo_steps,
                      step_times_table)
from p2d.evaluate import kid, standardize, tone_texture_features
from p2d.images import read_image
from p2d.manifest import read_manifest, validate
from p2d.recipe import load_recipe
from p2d.train.models import build_generator
from p2d.train.translate import load_generators, translate_array


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    # Other test modules set one torch thread when they are collected (tiny models, busy machines);
    # the demo is run as a user runs it, with torch's default of one thread per core (half the time).
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        result = CliRunner().invoke(app, ["demo", "--out", str(out)], terminal_width=200)
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_demo_runs_the_whole_workflow(demo):
    out, output = demo
    # Every step printed its command line, as a user would type it.
    for step in demo_steps(out):
        assert "$ p2d " + " ".join(step.argv[:2]) in output
    manifest = out / "manifests" / "demo.csv"
    df = read_manifest(manifest)
    assert validate(df, manifest) == []
    kept = df[df["keep"]]
    for domain in ("photo", "drawing"):
        rows = kept[kept["domain"] == domain]
        assert (rows["split"] == "test").sum() == TEST_COUNT and (rows["split"] == "train").sum() >= 60
    photos = read_manifest(out / "data" / "photos" / "manifest.csv")
    assert photos["padded_fraction"].notna().any() and set(photos.loc[photos["keep"], "pad"]) == {"blur"}
    inspected = out / "manifests" / "demo_inspect"
    assert all((inspected / name).is_file() for name in ("features.csv", "histograms.png", "unmatched.png"))

    run = out / "runs" / "demo"
    train = load_recipe(RECIPE).train
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch_*.pt")) == [
        f"epoch_{e:04d}.pt" for e in range(train.save_every, train.epochs + 1, train.save_every)]
    assert len(list((out / "translated" / "photos").rglob("*.png"))) == int((photos["keep"]).sum())
    assert (run / "evaluate.csv").is_file() and (run / "report.html").is_file()
    picture = Image.open(out / "demo.png")
    assert picture.width >= 8 * PICTURE_CELL_PX and picture.height >= 4 * PICTURE_CELL_PX
    assert str(out / "demo.png") in "".join(output.split())  # rich may wrap the long path
    assert "time per step" in output and "p2d translate --to photo" in output


def _tone(images):
    return np.stack([tone_texture_features(i) for i in images])


def test_the_demo_model_draws(demo):
    """The translated test photos are measurably nearer the drawings than the photos themselves
    and than what the same network untrained makes of them (KID on tone and texture features,
    standardized by the drawings)."""
    out, _ = demo
    df = read_manifest(out / "manifests" / "demo.csv")
    kept = df[df["keep"]]
    base = out / "manifests"
    photos = [
        read_image(base / p) for p in kept[(kept["domain"] == "photo") & (kept["split"] == "test")]["path"]]
    drawings = [read_image(base / p) for p in kept[kept["domain"] == "drawing"]["path"]]
    cfg, g, _ = load_generators(out / "runs" / "demo")
    torch.manual_seed(cfg.train.seed)
    untrained = build_generator(cfg).eval()
    reference = _tone(drawings)

    def distance(images):
        return kid(standardize(_tone(images), reference), standardize(reference, reference))[0]

    drawn = distance([translate_array(g, p, cfg.data.channels) for p in photos])
    raw = distance(photos)
    noise = distance([translate_array(untrained, p, cfg.data.channels) for p in photos])
    assert drawn < raw / 2, (drawn, raw)
    assert drawn < noise / 2, (drawn, noise)


def test_the_bundled_drawings_are_documented():
    files = sorted(DRAWING_FACES.glob("*.png"))
    assert len(files) >= 100
    provenance = (DRAWING_FACES / "PROVENANCE.md").read_text()
    assert "openclipart-png" in provenance and "public domain" in provenance.lower()
    listed = (DRAWING_FACES / "boxes.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in listed) == [f.name for f in files]


def test_a_rerun_continues(demo):
    out, _ = demo
    again = CliRunner().invoke(app, ["demo", "--out", str(out)], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "--resume" in again.output


def test_a_failing_step_stops_the_demo(tmp_path, monkeypatch):
    import p2d.demo as demo_module

    # A step whose manifest does not exist: the demo must stop there, not report success.
    monkeypatch.setattr(demo_module, "demo_steps",
                        lambda out: [demo_module.Step("broken", ("train", str(out / "none.csv")))])
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "demo step `p2d train" in " ".join(result.output.split())
    assert "demo finished" not in result.output


def test_the_step_table_names_each_command_without_its_paths(tmp_path):
    steps = demo_steps(tmp_path)
    names = [command_name(step.argv) for step in steps]
    assert names[:3] == ["p2d curate photos", "p2d crop-drawings", "p2d manifest build"]
    assert "p2d translate --to drawing" in names and "p2d translate --to photo" in names
    assert not any(str(tmp_path) in name for name in names)
    table = step_times_table(steps, [1.0] * (len(steps) - 1) + [3.0])
    assert table.row_count == len(steps)
    assert list(table.columns[3].cells)[-1] == f"{3 / (len(steps) + 2):.0%}"
