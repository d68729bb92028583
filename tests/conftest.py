"""Shared test fixtures: CelebA-shaped folders built once per session from the public-domain photos."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import p2d

# The 26 public-domain sample images ship once, inside the package (`p2d demo` uses them at run time).
DATA = Path(p2d.__file__).parent / "samples"

# What each synthetic CelebA image is, by file name (see celeba_variants below).
NEUTRAL = ["000001.jpg", "000004.jpg", "000006.jpg", "000008.jpg"]  # the youngster: frontal, neutral
SMILING = ["000002.jpg", "000005.jpg", "000007.jpg", "000009.jpg"]  # the astronaut: wide smile
TURNED = ["000003.jpg"]  # Martin Luther King Jr.: head turned ~33 degrees
DARK, BLURRED, TWO_FACES, NO_FACE = "000010.jpg", "000011.jpg", "000012.jpg", "000013.jpg"
EYEGLASSES, SMILE_NOT_LABELLED, LABELLED_NOT_SMILING = "000014.jpg", "000015.jpg", "000016.jpg"
BAD_FILES = {"000017.jpg": "unreadable:empty_file", "000018.jpg": "unreadable:truncated",
             "000019.jpg": "unreadable:not_an_image"}


@pytest.fixture(scope="session", autouse=True)
def p2d_cache(tmp_path_factory):
    """p2d's cache (the batched landmark model) in a folder of this session, not the user's home;
    worker processes inherit it through the environment."""
    import os

    from p2d.shape_predictor import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("p2d-cache"))
    yield Path(os.environ[CACHE_ENV])
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


def celeba_variants():
    from celeba_synth import Variant

    Y, A, M = 0, 1, 2  # youngster, astronaut, MLK (sorted file names of DATA/photos)
    return [
        Variant(Y),
        Variant(A),
        Variant(M),
        Variant(Y, mirror=True),
        Variant(A, mirror=True),
        Variant(Y, shift_px=(3, -2), scale=1.04),
        Variant(A, shift_px=(-3, 2), scale=0.96, rotate_deg=2),
        Variant(Y, brightness=0.8),
        Variant(A, brightness=1.15),
        Variant(Y, brightness=0.12),
        Variant(A, blur_sigma_px=3.0),
        Variant(Y, second_face=A),
        Variant(0, nonface=True),
        Variant(Y, shift_px=(-2, 1), attrs={"Eyeglasses": 1}, partition=2),
        Variant(A, mirror=True, scale=1.02, attrs={"Smiling": -1}, partition=1),
        Variant(Y, mirror=True, attrs={"Smiling": 1, "Wearing_Hat": 1}, partition=1),
    ]


@dataclass
class CelebaFixtures:
    official: Path  # img_align_celeba/ + list_*.txt, with three bad files planted
    csv: Path  # img_align_celeba/img_align_celeba/ + list_*.csv
    bare: Path  # img_align_celeba/ only, no annotation files
    names: list[str]


def plant_bad_files(folder: Path, good: Path) -> None:
    (folder / "000017.jpg").write_bytes(b"")
    data = good.read_bytes()
    (folder / "000018.jpg").write_bytes(data[: len(data) // 2])
    (folder / "000019.jpg").write_text("this is not an image\n")


@pytest.fixture(scope="session")
def face_models():
    from p2d.curate.pipeline import shared_models

    return shared_models()


@pytest.fixture(scope="session")
def celeba(tmp_path_factory, face_models) -> CelebaFixtures:
    from celeba_synth import load_source_faces, write_celeba_folder
    from p2d.images import list_images, read_image

    base = tmp_path_factory.mktemp("celeba")
    faces = load_source_faces(list_images(DATA / "photos"), face_models)
    nonfaces = [read_image(p) for p in list_images(DATA / "nonfaces")]
    variants = celeba_variants()
    names = write_celeba_folder(base / "official", variants, faces, nonfaces, layout="txt")
    plant_bad_files(base / "official" / "img_align_celeba", base / "official" / "img_align_celeba" / names[0])
    write_celeba_folder(base / "csv", variants, faces, nonfaces, layout="csv")
    write_celeba_folder(base / "bare", variants, faces, nonfaces, layout="txt", annotations=False)
    return CelebaFixtures(base / "official", base / "csv", base / "bare", names)


# ---------------------------------------------------------------- a tiny trained run, shared


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny 32 px models run faster on one thread; two threads spin against each other when the
    machine is busy (measured here: 10 ms vs 470 ms per forward)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tiny_run(root: Path, models, epochs: int = 2) -> Path:
    """Train the tiny recipe on a small manifest of the public-domain fixtures: photos framed as
    curation frames them (each also mirrored), drawings as width-scaled random-crop rows.
    4 test photos, 4 test drawings (KID needs 4 per set); 2 optimizer steps per epoch."""
    import numpy as np

    from p2d.framing import frame_face
    from p2d.images import read_image, write_image
    from p2d.manifest import new_rows, write_manifest
    from p2d.train.loop import TrainOptions, train

    rows = []
    for i, path in enumerate(sorted((DATA / "photos").glob("*.png"))):
        img = read_image(path)
        box = max(models.detect_hog(img, 0), key=lambda d: d.w * d.h).box
        face = frame_face(img, models.landmarks(img, box), 64)
        for j, f in enumerate((face, np.ascontiguousarray(face[:, ::-1]))):
            out = root / "photos" / f"{path.stem}_{j}.png"
            write_image(out, f)
            rows.append(dict(path=f"photos/{out.name}", domain="photo", source="pd", crop="center",
                             split="test" if len(rows) < 4 else "train",
                             width=64, height=64, phash="0" * 16, keep=True, reason=""))
    for i, path in enumerate(sorted((DATA / "drawings").glob("*.png"))[:8]):
        w, h = read_image(path).shape[1::-1]
        rows.append(dict(path=str(path.resolve()), domain="drawing", source="pd", crop="random",
                         split="test" if i % 2 else "train", width=w, height=h, phash="0" * 16,
                         keep=True, reason=""))
    write_manifest(new_rows(rows), root / "tiny.csv")
    recipe = Path(p2d.__file__).parent / "recipes" / "tiny.toml"
    return train(root / "tiny.csv", recipe=recipe, out=root / "run", options=TrainOptions(epochs=epochs))


@pytest.fixture(scope="session")
def trained_tiny_run(tmp_path_factory, face_models) -> Path:
    """The tiny run (gray, 32 px, epochs 1 and 2 saved), trained once per test session for every
    test that needs a trained run (evaluate, report, translate): read it, or copy it (`tiny_run`)
    before writing into it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_tiny_run(tmp_path_factory.mktemp("tiny-run"), face_models)
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def tiny_run(trained_tiny_run, tmp_path):
    """A copy of the shared tiny run that a test may write into."""
    return Path(shutil.copytree(trained_tiny_run, tmp_path / "run"))


def _lfw_copy_kinds():
    import io

    import numpy as np
    from PIL import Image

    def resize(a, px):
        return np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((px, px), Image.LANCZOS))

    def jpeg(a, quality):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=quality)
        return np.asarray(Image.open(buf))

    def crop(a, fraction):
        k = round(a.shape[0] * fraction)
        return np.ascontiguousarray(a[k:-k, k:-k])

    return {"resized": lambda a: resize(a, 64), "jpeg_q40": lambda a: jpeg(a, 40),
            "mirrored": lambda a: np.ascontiguousarray(a[:, ::-1]),
            "mirrored_resized": lambda a: resize(a[:, ::-1], 90),
            "crop_2pct": lambda a: crop(a, 0.02), "crop_3pct": lambda a: crop(a, 0.03)}


# Planted copies of the LFW faces: the kinds of near duplicate dedup must confirm.
LFW_COPY_KINDS = _lfw_copy_kinds()


@pytest.fixture(scope="session")
def lfw_faces():
    """The 100 distinct faces of scikit-image's LFW subset (25 px gray, shipped inside scikit-image,
    no download), upscaled to 128 px: generated here, not stored in tests/data."""
    import numpy as np
    from PIL import Image

    data = pytest.importorskip("skimage.data", reason="scikit-image (the dev extra) provides the LFW faces")
    return [np.asarray(Image.fromarray(np.round(f * 255).astype(np.uint8)).resize((128, 128), Image.LANCZOS))
            for f in data.lfw_subset()[:100]]


# ---------------------------------------------------------------- one local Ray for every Ray test


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray with 2 CPUs, started once (it costs seconds) and shut down after the session,
    so no Ray process outlives the tests. `--engine ray` runs use it instead of starting their own."""
    ray = pytest.importorskip("ray", reason='Ray is the optional extra p2d[ray] (the dev extra installs it)')
    import logging

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    yield ray
    ray.shutdown()
