"""`p2d demo`: the whole workflow on real data (LFW photos, bundled clip-art faces), as real commands.

The demo is a list of ordinary `p2d` command lines (see `demo_steps`), run one after the other and
printed before each runs, so that what a new user sees is exactly what they will type on their own
data: curate photos, crop drawings, build a manifest with the 64 px demo recipe, inspect how the
drawings and the photos differ, train on the CPU (about three quarters of the demo's 1.5 to 5.5 minutes on 2
quiet cores), translate, evaluate the saved epochs, and report. It ends with one picture a person would share
(`demo_picture`): test photos beside their drawings, and test drawings beside their photos.

The photos are the 100 faces of scikit-image's LFW subset (Labeled Faces in the Wild, 25x25 gray,
shipped inside scikit-image); the drawings are the face crops from the Open Clip Art Library
bundled under p2d/samples/drawing_faces (see its PROVENANCE.md).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from rich.table import Table

from p2d.errors import P2DError
from p2d.ui import console, table

SAMPLES = Path(__file__).resolve().parent / "samples"
DRAWING_FACES = SAMPLES / "drawing_faces"
RECIPE = Path(__file__).resolve().parent / "recipes" / "demo.toml"
DEFAULT_OUT = Path("p2d-demo")
LFW_FACES = 100  # skimage.data.lfw_subset(): the first 100 images are faces, the other 100 are not
# LFW's subset is 25x25; dlib's HOG window needs faces of ~80 px and the filters an eye distance of
# 20 px, so the photos are scaled up 4x (Lanczos) to 100 px, as a user would hand in small photos.
LFW_SCALE = 4
DEMO_SIZE = 64  # the demo recipe's training size
TEST_COUNT = 16  # test images per domain: enough for KID's estimate and a picture of 8 + 8 pairs
PICTURE_PAIRS = 8  # pairs per direction in the demo picture
PICTURE_CELL_PX = 128  # each 64 px image shown at this size in the picture


@dataclass(frozen=True)
class Step:
    title: str
    argv: tuple[str, ...]


def write_lfw_photos(folder: Path | str, count: int = LFW_FACES, scale: int = LFW_SCALE) -> list[Path]:
    """The first `count` faces of scikit-image's LFW subset as PNG photos in `folder`, scaled up
    `scale` times; returns their paths. Existing files are kept (a re-run writes nothing)."""
    from PIL import Image
    from skimage.data import lfw_subset

    faces = lfw_subset()[: min(count, LFW_FACES)]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, face in enumerate(faces):
        path = folder / f"lfw_{i:03d}.png"
        if not path.is_file():
            img = Image.fromarray(np.clip(face * 255 + 0.5, 0, 255).astype(np.uint8))
            side = face.shape[0] * scale
            img.resize((side, side), Image.LANCZOS).save(path)
        paths.append(path)
    return paths


def prepare(out: Path) -> None:
    """Lay out the data as a user's raw folders (OUT/raw/...) and the recipe (OUT/manifests/)."""
    if not (DRAWING_FACES / "boxes.csv").is_file():
        raise P2DError(
            f"the bundled drawings are missing from {DRAWING_FACES}: reinstall p2d (pip install -e .)")
    raw = out / "raw"
    write_lfw_photos(raw / "photos")
    # The drawings come with their face boxes (found by p2d's detectors when they were bundled,
    # each checked by eye): crop-drawings uses a given box instead of detecting again.
    shutil.copytree(DRAWING_FACES, raw / "drawings" / "faces", dirs_exist_ok=True)
    (out / "manifests").mkdir(parents=True, exist_ok=True)
    shutil.copy2(RECIPE, out / "manifests" / "demo.toml")


def demo_steps(out: Path) -> list[Step]:
    """The demo's command lines, in the order a user runs them."""
    o, s = out.as_posix(), str(DEMO_SIZE)
    run = f"{o}/runs/demo"
    return [
        Step("curate the face photos (detect, landmarks, frame like CelebA, fill past the edge)",
             ("curate", "photos", f"{o}/raw/photos", "--out", f"{o}/data/photos", "--source", "lfw",
              "--size", s)),
        Step("crop the face out of each drawing (boxes given; review sheet)",
             ("crop-drawings", f"{o}/raw/drawings", f"{o}/data/drawings", "--size", s,
              "--boxes", f"{o}/raw/drawings/faces/boxes.csv", "--source", "openclipart")),
        Step("join, dedup and split into one experiment manifest",
             ("manifest", "build", "--recipe", f"{o}/manifests/demo.toml",
              "--from", f"{o}/data/photos/manifest.csv", "--from", f"{o}/data/drawings/manifest.csv",
              "--test-count", str(TEST_COUNT))),
        Step("do the drawings and the photos match? (features, histograms, least matched rows)",
             ("inspect", f"{o}/manifests/demo.csv")),
        Step("train the 64 px CycleGAN on the CPU", ("train", f"{o}/manifests/demo.csv", "--out", run,
                                                    "--device", "cpu")),
        Step("turn the photos into drawings", ("translate", run, f"{o}/data/photos/images", "--to", "drawing",
                                               "--out", f"{o}/translated/photos", "--device", "cpu")),
        Step("and the drawings into photos", ("translate", run, f"{o}/data/drawings/faces", "--to", "photo",
                                              "--out", f"{o}/translated/drawings", "--device", "cpu")),
        Step("measure every saved epoch", ("evaluate", run, "--device", "cpu")),
        Step("write the report", ("report", run)),
    ]


def _test_pairs(out: Path, domain: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, translation) of the manifest's test rows of one domain, in manifest order."""
    from p2d.images import read_image
    from p2d.manifest import read_manifest

    df = read_manifest(out / "manifests" / "demo.csv")
    rows = df[df["keep"] & (df["split"] == "test") & (df["domain"] == domain)]
    folder, crops = ("photos", "images") if domain == "photo" else ("drawings", "faces")
    pairs = []
    images = (out / "data" / folder / crops).resolve()
    for path in rows["path"]:
        src = (out / "manifests" / path).resolve()  # manifest paths are relative to the manifest
        # translate keeps each file's path under the folder it was given
        pairs.append((read_image(src), read_image(out / "translated" / folder / src.relative_to(images))))
    return pairs


def compose_picture(photo_pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                    drawing_pairs: Sequence[tuple[np.ndarray, np.ndarray]], cell_px: int = PICTURE_CELL_PX,
                    pairs: int = PICTURE_PAIRS) -> np.ndarray:
    """One RGB picture: a row of test photos over their drawings, then a row of test drawings over
    their photos (`pairs` each), every image scaled to cell_px, with a caption per block."""
    from PIL import Image, ImageDraw

    def cell(img: np.ndarray) -> np.ndarray:
        rgb = img if img.ndim == 3 else np.stack([img] * 3, axis=-1)
        return np.asarray(Image.fromarray(rgb[..., :3]).resize((cell_px, cell_px), Image.LANCZOS))

    gap, caption_px = 4, 18
    blocks = []
    for title, chosen in (("test photos -> drawings", photo_pairs[:pairs]),
                          ("test drawings -> photos", drawing_pairs[:pairs])):
        if not chosen:
            continue
        width = len(chosen) * (cell_px + gap) - gap
        block = np.full((caption_px + 2 * cell_px + gap, width, 3), 255, np.uint8)
        for i, (src, dst) in enumerate(chosen):
            x = i * (cell_px + gap)
            block[caption_px:caption_px + cell_px, x:x + cell_px] = cell(src)
            block[caption_px + cell_px + gap:, x:x + cell_px] = cell(dst)
        pil = Image.fromarray(block)
        ImageDraw.Draw(pil).text((2, 3), title, fill=(0, 0, 0))
        blocks.append(np.asarray(pil))
    if not blocks:
        raise P2DError("no test images to show: the manifest has no kept test rows")
    width = max(b.shape[1] for b in blocks)
    padded = [np.pad(b, ((0, 2 * gap), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in blocks]
    return np.concatenate(padded, axis=0)


def demo_picture(out: Path | str) -> Path:
    """OUT/demo.png: the demo's test photos beside their drawings and drawings beside their photos."""
    from p2d.images import write_image

    out = Path(out)
    picture = compose_picture(_test_pairs(out, "photo"), _test_pairs(out, "drawing"))
    path = out / "demo.png"
    write_image(path, picture)
    return path


def command_name(argv: Sequence[str]) -> str:
    """A step's command without its paths: `curate photos`, `translate --to photo`."""
    words = [w for w in argv[:2] if "/" not in w and not w.startswith("-")]
    if "--to" in argv:
        words += ["--to", argv[argv.index("--to") + 1]]
    return "p2d " + " ".join(words)


def step_times_table(steps: Sequence[Step], seconds: Sequence[float]) -> Table:
    """Where the demo's time went: seconds per command and its share of the whole."""
    total = sum(seconds) or 1.0
    return table("demo: time per step", ["step", "command", "seconds", "share"],
                 [(i, command_name(step.argv), round(spent), f"{spent / total:.0%}")
                  for i, (step, spent) in enumerate(zip(steps, seconds), 1)])


def run_demo(out: Path | str, invoke: Callable[[Sequence[str]], None]) -> Path:
    """Run every step through `invoke(argv)` (the CLI), printing each command first, then write the
    demo picture; return it. Re-running continues: curation skips finished images, training resumes."""
    out = Path(out)
    prepare(out)
    run = out / "runs" / "demo"
    steps = demo_steps(out)
    started = time.perf_counter()
    seconds = []
    for i, step in enumerate(steps, 1):
        argv = list(step.argv)
        if step.argv[0] == "train" and (run / "checkpoints" / "latest.pt").is_file():
            argv.append("--resume")
        console.rule(f"[bold]step {i}/{len(steps)}: {step.title}")
        console.print(f"$ p2d {' '.join(argv)}", style="cyan", soft_wrap=True)
        began = time.perf_counter()
        invoke(argv)
        seconds.append(time.perf_counter() - began)
    picture = demo_picture(out)
    console.rule()
    console.print(step_times_table(steps, seconds))
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s. "
                  f"The picture: [bold green]{picture}[/]; the report: [bold green]{run / 'report.html'}[/] "
                  "(open it in a browser)")
    return picture
