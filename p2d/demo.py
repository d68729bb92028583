"""`p2d demo`: the whole workflow on the public-domain samples bundled with p2d, as real commands.

The demo is a list of ordinary `p2d` command lines (see `demo_steps`), run one after the other and
printed before each runs, so that what a new user sees is exactly what they will type on their own
data: curate photos, crop drawings, width-scale full figures, build (and dedup) a manifest with a
tiny recipe, inspect how the drawings and the photos differ, train briefly on the CPU, translate the test photos, evaluate the epochs, and report.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from p2d.errors import P2DError
from p2d.ui import console

SAMPLES = Path(__file__).resolve().parent / "samples"
RECIPE = Path(__file__).resolve().parent / "recipes" / "tiny.toml"
DEFAULT_OUT = Path("p2d-demo")

# The tiny recipe trains on 32 px images; 12 epochs of its ~10 steps take well under a minute on a
# 2-core CPU and are enough for the sample grids to change visibly between epochs.
DEMO_EPOCHS = 12
DEMO_SAVE_EVERY = 3


@dataclass(frozen=True)
class Step:
    title: str
    argv: tuple[str, ...]


def _recipe_text() -> str:
    """The bundled tiny recipe, with the demo's epochs and checkpoint interval."""
    lines = []
    for line in RECIPE.read_text(encoding="utf-8").splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "epochs":
            line = f"epochs = {DEMO_EPOCHS}"
        elif key == "save_every":
            line = f"save_every = {DEMO_SAVE_EVERY}"
        lines.append(line)
    return "# p2d demo: the bundled tiny recipe, trained a little longer.\n" + "\n".join(lines) + "\n"


def prepare(out: Path) -> None:
    """Lay out the samples as a user's raw folders (OUT/raw/...) and the recipe (OUT/manifests/)."""
    if not SAMPLES.is_dir():
        raise P2DError(f"the bundled samples are missing from {SAMPLES}: reinstall p2d (pip install -e .)")
    raw = out / "raw"
    for folder in ("photos", "figures"):
        shutil.copytree(SAMPLES / folder, raw / folder, dirs_exist_ok=True)
    # Drawings and a few non-faces together, as a hand-gathered folder would be: the non-faces end
    # up in the manifest as keep=false, reason=no_face, first on the review sheet.
    shutil.copytree(SAMPLES / "drawings", raw / "drawings", dirs_exist_ok=True)
    shutil.copytree(SAMPLES / "nonfaces", raw / "drawings", dirs_exist_ok=True)
    shutil.copy2(SAMPLES / "PROVENANCE.md", raw / "PROVENANCE.md")
    (out / "manifests").mkdir(parents=True, exist_ok=True)
    (out / "manifests" / "demo.toml").write_text(_recipe_text(), encoding="utf-8")


def demo_steps(out: Path) -> list[Step]:
    """The demo's command lines, in the order a user runs them."""
    o = out.as_posix()
    return [
        Step("curate the face photos (detect, landmarks, frame like CelebA)",
             ("curate", "photos", f"{o}/raw/photos", "--out", f"{o}/data/photos", "--source", "pd-photos")),
        Step("crop the face out of each drawing (several detectors, review sheet)",
             ("crop-drawings", f"{o}/raw/drawings", f"{o}/data/drawings")),
        Step("scale full-figure drawings to the training width (trained with random crops)",
             ("scale", f"{o}/raw/figures", f"{o}/data/figures", "--width", "32", "--min-height", "32")),
        Step("join, dedup and split into one experiment manifest",
             ("manifest", "build", "--recipe", f"{o}/manifests/demo.toml",
              "--from", f"{o}/data/photos/manifest.csv", "--from", f"{o}/data/drawings/manifest.csv",
              "--from", f"{o}/data/figures/manifest.csv", "--test-count", "1")),
        Step("do the drawings and the photos match? (features, histograms, least matched rows)",
             ("inspect", f"{o}/manifests/demo.csv")),
        Step("train the tiny CycleGAN on the CPU", ("train", f"{o}/manifests/demo.csv", "--out", f"{o}/runs/demo",
                                                    "--device", "cpu")),
        Step("turn the photos into drawings", ("translate", f"{o}/runs/demo", f"{o}/raw/photos", "--to", "drawing",
                                               "--out", f"{o}/translated", "--crop-faces", "--device", "cpu")),
        Step("measure every saved epoch", ("evaluate", f"{o}/runs/demo", "--device", "cpu")),
        Step("write the report", ("report", f"{o}/runs/demo")),
    ]


def run_demo(out: Path | str, invoke: Callable[[Sequence[str]], None]) -> Path:
    """Run every step through `invoke(argv)` (the CLI), printing each command first; return the
    report page. Re-running continues: curation skips finished images, training resumes."""
    out = Path(out)
    prepare(out)
    run = out / "runs" / "demo"
    steps = demo_steps(out)
    started = time.perf_counter()
    for i, step in enumerate(steps, 1):
        argv = list(step.argv)
        if step.argv[0] == "train" and (run / "checkpoints" / "latest.pt").is_file():
            argv.append("--resume")
        console.rule(f"[bold]step {i}/{len(steps)}: {step.title}")
        console.print(f"$ p2d {' '.join(argv)}", style="cyan", soft_wrap=True)
        invoke(argv)
    page = run / "report.html"
    console.rule()
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s. "
                  f"The report: [bold green]{page}[/] (open it in a browser)")
    return page
