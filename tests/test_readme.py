"""Runs every `p2d` command in README.md, in order, in a workspace laid out as the README assumes,
so the README cannot drift from the code.

The workspace holds a small CelebA-shaped folder (built from the public-domain photos), the
public-domain drawings and figures, and the shipped recipes, except that `manifests/exp4.toml` is
the tiny CPU recipe: `p2d train manifests/exp4.csv` then runs the same code on 32 px images.
`p2d demo` (the README's first command) is run by tests/test_demo.py.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import DATA
from p2d.cli import app
from celeba_synth import jittered_variants, load_source_faces, write_celeba_folder
from p2d.images import read_image
from p2d.recipe import bundled_recipe

ROOT = Path(__file__).resolve().parent.parent
COVERED_ELSEWHERE = {"demo"}  # tests/test_demo.py


def readme_commands(text: str) -> list[str]:
    """Every `p2d ...` command in the README's bash blocks, in order (`a && p2d x` gives `p2d x`)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("p2d "):
                    commands.append(part)
    return commands


def test_readme_lists_the_whole_workflow():
    commands = readme_commands((ROOT / "README.md").read_text())
    firsts = [shlex.split(c)[1] for c in commands]
    for needed in ("demo", "curate", "crop-drawings", "scale", "dedup", "manifest", "train", "evaluate",
                   "report", "translate"):
        assert needed in firsts
    assert "p2d curate celeba --first 4232 --drop-smiles --drop-outliers" in commands


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, face_models) -> Path:
    ws = tmp_path_factory.mktemp("readme")
    faces = load_source_faces(sorted((DATA / "photos").glob("*.png")), face_models)
    nonfaces = [read_image(p) for p in sorted((DATA / "nonfaces").glob("*.png"))]
    write_celeba_folder(ws / "celeba", jittered_variants(12, len(faces), len(nonfaces)), faces, nonfaces)
    shutil.copytree(DATA / "drawings", ws / "raw" / "drawings")
    shutil.copytree(DATA / "nonfaces", ws / "raw" / "drawings", dirs_exist_ok=True)
    shutil.copytree(DATA / "figures", ws / "raw" / "eisaku")
    shutil.copytree(DATA / "photos", ws / "my_photos")
    shutil.copytree(ROOT / "manifests", ws / "manifests", ignore=shutil.ignore_patterns("*.csv"))
    shutil.copy(bundled_recipe("tiny"), ws / "manifests" / "exp4.toml")
    # A profile drawing the detectors may miss, boxed by hand as the README tells users to do.
    (ws / "boxes.csv").write_text("path,x,y,w,h\nhead4.png,57,147,270,290\n")
    return ws


def test_every_readme_command_runs(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    runner = CliRunner()
    commands = [c for c in readme_commands((ROOT / "README.md").read_text())
                if shlex.split(c)[1] not in COVERED_ELSEWHERE]
    for command in commands:
        result = runner.invoke(app, shlex.split(command)[1:], terminal_width=200)
        assert result.exit_code == 0, f"`{command}` failed:\n{result.output}\n{result.exception!r}"

    # What the README promises each step leaves behind.
    celeba = pd.read_csv(workspace / "curated" / "celeba" / "manifest.csv")
    assert len(celeba) == 12 and celeba["keep"].any()
    drawings = pd.read_csv(workspace / "curated" / "drawings" / "manifest.csv")
    head4 = drawings[drawings["path"].str.contains("head4")]
    assert bool(head4["keep"].iloc[0])  # the hand box was used
    assert list((workspace / "curated" / "drawings").glob("review_*.png"))
    assert (workspace / "manifests" / "exp4.csv").is_file()
    run = workspace / "runs" / "exp4"
    assert (run / "checkpoints" / "latest.pt").is_file() and (run / "evaluate.csv").is_file()
    assert (run / "report.html").is_file()
    assert sorted(p.name for p in (workspace / "drawn").iterdir()) == sorted(p.name for p in (workspace / "my_photos").iterdir())
