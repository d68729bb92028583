"""`p2d demo` end to end on the bundled samples: every step's output exists, and a re-run continues."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from p2d.cli import app
from p2d.demo import demo_steps
from p2d.manifest import read_manifest, validate


def test_demo_runs_the_whole_workflow(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    # Every step printed its command line, as a user would type it.
    for step in demo_steps(out):
        assert "$ p2d " + " ".join(step.argv[:2]) in result.output

    manifest = out / "manifests" / "demo.csv"
    df = read_manifest(manifest)
    assert validate(df, manifest) == []
    kept = df[df["keep"]]
    assert set(kept["domain"]) == {"photo", "drawing"}
    assert set(kept["split"]) == {"train", "test"}
    assert "random" in set(kept["crop"])  # the width-scaled figures
    inspected = out / "manifests" / "demo_inspect"  # the inspect step's table, histograms and sheet
    assert all((inspected / name).is_file() for name in ("features.csv", "histograms.png", "unmatched.png"))
    drawings = pd.read_csv(out / "data" / "drawings" / "manifest.csv")
    assert (drawings.loc[drawings["path"].str.contains("fire_engine"), "reason"] == "no_face").all()

    run = out / "runs" / "demo"
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch_*.pt")) == [
        "epoch_0003.pt", "epoch_0006.pt", "epoch_0009.pt", "epoch_0012.pt"]
    assert len(list((run / "samples").glob("epoch_*.png"))) == 12
    assert len(list((out / "translated").iterdir())) == 3
    assert (run / "evaluate.csv").is_file()
    assert (run / "report.html").is_file()
    # rich may wrap the long path: compare with the line breaks taken out
    assert str(run / "report.html") in "".join(result.output.split())

    # Run again: curation reuses its work, training resumes from `latest` and has nothing left to do.
    again = CliRunner().invoke(app, ["demo", "--out", str(out)], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "--resume" in again.output


def test_a_failing_step_stops_the_demo(tmp_path, monkeypatch):
    import p2d.demo as demo

    # A step whose manifest does not exist: the demo must stop there, not report success.
    monkeypatch.setattr(demo, "demo_steps", lambda out: [demo.Step("broken", ("train", str(out / "none.csv")))])
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "demo step `p2d train" in " ".join(result.output.split())
    assert "demo finished" not in result.output
