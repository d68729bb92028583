"""Photos whose CelebA frame passes the picture's edge: padded_fraction, --max-padded-fraction, --pad
modes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from p2d.cli import app
from p2d.padding import Pad, fill_outside, frame_padded, parse_pad
from p2d.curate.photos import curate_photos
from p2d.curate.pipeline import CurateOptions
from p2d.demo import write_lfw_photos
from p2d.framing import MAX_PADDED_FRACTION, frame_padded_fraction
from p2d.images import read_image
from p2d.manifest import read_manifest, validate


# ------------------------------------------------------------------ pure geometry and fills


def test_frame_padded_fraction_of_known_frames():
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    assert frame_padded_fraction(identity, 64, 64, 64) == 0.0
    # The frame shows the image at half scale, centred: the image covers a quarter of it.
    half = np.array([[0.5, 0, 16], [0, 0.5, 16]])
    assert frame_padded_fraction(half, 64, 64, 64) == pytest.approx(0.75, abs=0.01)
    # A 45-degree turn about the centre: the square and its turned copy share a regular octagon
    # of area 2 (sqrt2 - 1) of the square, so the rest (~0.17) lies past the edge.
    turn = cv2.getRotationMatrix2D((31.5, 31.5), 45, 1.0)
    assert frame_padded_fraction(turn, 64, 64, 64) == pytest.approx(1 - 2 * (2**0.5 - 1), abs=0.02)
    # The share does not depend on the output size, only on where the frame lies in the image.
    assert frame_padded_fraction(half * [[2, 2, 2], [2, 2, 2]], 64, 64, 128) == pytest.approx(0.75, abs=0.01)


def test_default_threshold_is_where_the_fill_must_reach_the_face():
    assert MAX_PADDED_FRACTION == pytest.approx(1 - 0.466**2, abs=0.01)


def test_blur_fill_is_smooth_and_keeps_the_inside():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 40), dtype=np.uint8)
    m = np.array([[1.0, 0, 12], [0, 1.0, 12]])  # the image in the middle of a 64 px frame
    out = frame_padded(image, m, 64, Pad("blur"))
    assert np.array_equal(out[12 + 6:52 - 6, 12 + 6:52 - 6], image[6:-6, 6:-6])  # untouched past the feather
    reflect = frame_padded(image, m, 64, Pad("reflect"))
    outside = np.ones((64, 64), bool)
    outside[12:52, 12:52] = False

    def lap(a):
        return cv2.Laplacian(a.astype(np.float64), cv2.CV_64F)[outside].var()

    assert lap(out) < lap(reflect) / 20  # reflect copies the texture out; blur leaves it soft
    assert fill_outside(image, np.full((40, 40), 255, np.uint8), Pad("blur")) is image  # nothing to fill
    assert parse_pad("blur") == Pad("blur")


def test_blur_pads_a_real_drawing_square_too():
    """Drawings crop axis-aligned squares (`crop_square`): blur keeps the drawing and fills past its
    edge with no copy of it."""
    from conftest import DATA
    from p2d.padding import crop_square

    image = read_image(DATA / "drawings" / "head1.png")
    h, w = image.shape[:2]
    # A square twice the image's larger side, centred: three quarters of it lie past the edge.
    crop, fraction, _ = crop_square(image, w / 2, h / 2, 2 * max(h, w), 128, Pad("blur"))
    assert fraction > 0.5 and crop.shape == (128, 128, 3)
    mirrored, _, _ = crop_square(image, w / 2, h / 2, 2 * max(h, w), 128, Pad("reflect"))
    ring = np.ones((128, 128), bool)
    ring[20:108, 20:108] = False  # all fill: the drawing covers the middle 64 px

    def detail(img):
        return cv2.Laplacian(img.mean(axis=2), cv2.CV_64F)[ring].var()

    assert detail(mirrored) > 100 * max(detail(crop), 1.0)  # mirrored strokes there; blur: none


# ------------------------------------------------------------------ real tight crops (LFW)


@pytest.fixture(scope="module")
def lfw_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lfw")
    write_lfw_photos(folder, count=12)
    return folder


def test_tight_crops_record_their_fill_and_are_dropped_past_the_threshold(lfw_folder, tmp_path):
    r = curate_photos(lfw_folder, tmp_path / "out", CurateOptions(size=64))
    df = read_manifest(r.manifest)
    assert validate(df, r.manifest) == []
    kept = df[df["keep"]]
    assert len(kept) >= 8 and set(kept["pad"]) == {"blur"}
    # LFW's faces fill their pictures: most of a CelebA frame lies past the edge, under the default.
    assert kept["padded_fraction"].between(0.4, MAX_PADDED_FRACTION).all()
    strict = curate_photos(lfw_folder, tmp_path / "out", CurateOptions(size=64), max_padded_fraction=0.3)
    assert strict.analyzed == 0  # judged again from the cache
    assert strict.kept == 0 and strict.dropped["padded"] == len(kept)
    # The review sheet shows each source beside its framed output: wider cells than the sources alone.
    assert (tmp_path / "out" / "review.png").is_file()


def test_pad_modes_on_tight_crops(lfw_folder, tmp_path):
    """reflect mirrors the face into the fill (more edges there); blur, the default, leaves it soft."""
    outs = {}
    for mode in ("reflect", "blur"):
        res = CliRunner().invoke(app, ["curate", "photos", str(lfw_folder), "-o", str(tmp_path / mode),
                                       "--size", "64", "--pad", mode])
        assert res.exit_code == 0, res.output
        df = read_manifest(tmp_path / mode / "manifest.csv")
        outs[mode] = [read_image(tmp_path / mode / p) for p in df[df["keep"]]["path"]]
    # The outer ring of the frame is fill on every LFW crop: compare its detail.
    ring = np.ones((64, 64), bool)
    ring[8:56, 8:56] = False

    def detail(img):
        return cv2.Laplacian(img.astype(np.float64), cv2.CV_64F)[ring].var()

    assert np.median([detail(i) for i in outs["blur"]]) < np.median([detail(i) for i in outs["reflect"]]) / 4
    res = CliRunner().invoke(app, ["curate", "photos", str(lfw_folder), "-o", str(tmp_path / "x"),
                                   "--max-padded-fraction", "2"])
    assert res.exit_code == 1 and "--max-padded-fraction" in res.output
    # Sources are never modified.
    assert Image.open(next(lfw_folder.glob("*.png"))).size == (100, 100)
