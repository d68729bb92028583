"""Runs every `p2d` command in README.md and in the guide pages of docs/, in the workflow's order, in
one workspace laid out as they assume, so the guide cannot drift from the code; and checks that the
guide's links resolve.

The workspace holds a small CelebA-shaped folder (built from the public-domain photos), the
public-domain drawings and figures, and the shipped recipes, except that `manifests/exp4.toml` is
the tiny CPU recipe: `p2d train manifests/exp4.csv` then runs the same code on 32 px images.
`p2d demo` (the README's first command) is run by tests/test_demo.py; `p2d review` starts a server and
waits, so the guide shows it in a text block and the review page's own tests run it.
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
# tests/test_demo.py; review serves until stopped (the review page's tests)
COVERED_ELSEWHERE = {"demo", "review"}
# The guide pages whose commands run here, after the README's (docs/results.md and architecture.md have none).
GUIDE_PAGES = ("photos", "drawings", "manifests", "inspect", "training", "cluster", "evaluation",
               "troubleshooting")
# The workflow's steps: the commands of all pages run in this order (a page's own order within a step).
WORKFLOW = ("demo", "curate", "crop-drawings", "detector", "review", "scale", "dedup", "manifest build",
            "manifest check", "inspect", "train", "evaluate", "translate", "report")
# Pictures made by a script through a test (docs/review_picture.py, the review page's browser test):
# may be absent.
GENERATED = {"docs/review.png"}
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def readme_commands(text: str) -> list[str]:
    """Every `p2d ...` command in a page's bash blocks, in order (`a && p2d x` gives `p2d x`)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("p2d "):
                    commands.append(part)
    return commands


def guide_pages() -> list[Path]:
    return [ROOT / "README.md"] + [ROOT / "docs" / f"{name}.md" for name in GUIDE_PAGES]


def step(command: str) -> str:
    """The workflow step of a `p2d ...` command: its subcommand (two words for `p2d manifest ...`)."""
    words = shlex.split(command)[1:]
    return " ".join(words[:2]) if words[0] == "manifest" else words[0]


def workflow_order(commands: list[str]) -> list[str]:
    """Each distinct command once, ordered by its workflow step; pages' order kept within a step."""
    unknown = sorted({step(c) for c in commands} - set(WORKFLOW))
    assert not unknown, f"add {unknown} to WORKFLOW in tests/test_readme.py, where it runs in the workflow"
    return sorted(dict.fromkeys(commands), key=lambda c: WORKFLOW.index(step(c)))


def guide_commands() -> list[str]:
    return workflow_order([c for page in guide_pages() for c in readme_commands(page.read_text())])


def test_workflow_order_runs_each_command_once_by_step():
    commands = ["p2d train m.csv", "p2d manifest check m.csv", "p2d crop-drawings a b",
                "p2d manifest build --recipe r",
                "p2d crop-drawings a b --boxes x.csv", "p2d train m.csv", "p2d curate photos p"]
    assert workflow_order(commands) == ["p2d curate photos p", "p2d crop-drawings a b",
                                        "p2d crop-drawings a b --boxes x.csv",
                                        "p2d manifest build --recipe r", "p2d manifest check m.csv",
                                        "p2d train m.csv"]


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_guide_links_resolve():
    bad = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if path.relative_to(ROOT).as_posix() in GENERATED:
                continue
            if not path.exists():
                bad.append(f"{page.name}: {target} (no such file)")
            elif anchor and anchor not in _anchors(path):
                bad.append(f"{page.name}: {target} (no such heading)")
    assert bad == []


def test_readme_is_a_guide():
    """A guide of ~200 lines; dated figures live on docs/results.md, not in the guide."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 220
    dated = [f"{page.name}: {m.group()}" for page in guide_pages() for m in DATE.finditer(page.read_text())]
    assert dated == []


def test_readme_lists_the_whole_workflow():
    text = (ROOT / "README.md").read_text()
    commands = readme_commands(text)
    firsts = [shlex.split(c)[1] for c in commands]
    for needed in ("demo", "curate", "crop-drawings", "scale", "dedup", "manifest", "inspect", "train",
                   "evaluate", "report", "translate"):
        assert needed in firsts
    assert "p2d curate celeba --first 4232 --drop-smiles --drop-outliers" in commands
    assert "p2d review curated/drawings" in text and "(docs/review.png)" in text


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
    # A profile drawing the detectors may miss, boxed by hand as docs/drawings.md tells users to do.
    (ws / "boxes.csv").write_text("path,x,y,w,h\nhead4.png,57,147,270,290\n")
    return ws


def test_every_guide_command_runs(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    runner = CliRunner()
    commands = [c for c in guide_commands() if shlex.split(c)[1] not in COVERED_ELSEWHERE]
    for command in commands:
        result = runner.invoke(app, shlex.split(command)[1:], terminal_width=200)
        assert result.exit_code == 0, f"`{command}` failed:\n{result.output}\n{result.exception!r}"

    # What the guide promises each step leaves behind.
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
    assert sorted(p.name for p in (workspace / "drawn").iterdir()) == sorted(
        p.name for p in (workspace / "my_photos").iterdir())
