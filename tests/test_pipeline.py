"""The curation engine (p2d/curate/pipeline.py): manifests byte-identical to the golden ones, for any worker
count."""

from __future__ import annotations

import pytest

from golden_manifests import GOLDEN, RUNS, golden_run


# Workers only split the per-image work, the same way on either path: 2 workers are checked on the
# fast path (this replaces test_curate_celeba's 1-vs-2-workers test, with the same options).
@pytest.mark.parametrize("name,workers", [("celeba_fast.csv", (1, 2)), ("celeba_detect.csv", (1,))])
def test_manifest_equals_the_golden_one(celeba, tmp_path, name, workers):
    assert set(RUNS) == {"celeba_fast.csv", "celeba_detect.csv"}
    golden = (GOLDEN / name).read_bytes()
    for n in workers:
        assert golden_run(celeba.official, tmp_path, name, workers=n) == golden, f"{n} worker(s)"


def test_a_face_whose_landmarks_fail_is_an_error_and_its_batch_goes_on(celeba, tmp_path, monkeypatch):
    """The batched predictor failing on one image (monkeypatched: no real image makes it fail) costs
    that image only: its row says why, every other row is the golden one, and a re-run retries it."""
    import io

    import pandas as pd

    from conftest import DARK
    from p2d.curate.celeba import curate_celeba
    from p2d.curate.pipeline import CurateOptions
    from p2d.faces import FaceModels

    real = FaceModels.landmarks_batch

    def fail_on_the_dark_photo(self, images, boxes):
        if any(image.mean() < 30 for image in images):
            raise RuntimeError("the predictor failed\nhere")
        return real(self, images, boxes)

    monkeypatch.setattr(FaceModels, "landmarks_batch", fail_on_the_dark_photo)
    got = pd.read_csv(io.BytesIO(golden_run(celeba.official, tmp_path, "celeba_fast.csv")))
    want = pd.read_csv(GOLDEN / "celeba_fast.csv")
    dark = got["source_path"].str.endswith(DARK)
    assert got.loc[dark, "reason"].tolist() == ["error:RuntimeError: here"]
    pd.testing.assert_frame_equal(got[~dark].reset_index(drop=True), want[~dark].reset_index(drop=True))
    monkeypatch.setattr(FaceModels, "landmarks_batch", real)
    options, kwargs = RUNS["celeba_fast.csv"]
    again = curate_celeba(tmp_path / "celeba", tmp_path / "out-celeba_fast.csv-1", CurateOptions(**options),
                          **kwargs)
    assert again.analyzed == 1 and again.manifest.read_bytes() == (GOLDEN / "celeba_fast.csv").read_bytes()


def test_workers_that_use_dlibs_own_predictor_write_the_golden_manifest(celeba, tmp_path, monkeypatch,
                                                                        p2d_cache):
    """On a machine where dlib's predictor is faster than the batched one (remembered in the cache
    folder, read by every worker process), the manifest is byte for byte the same."""
    import json
    import shutil

    from p2d.curate import pipeline
    from p2d.faces import landmark_speeds_path
    from p2d.shape_predictor import CACHE_ENV

    cache = tmp_path / "cache"
    shutil.copytree(p2d_cache, cache)
    monkeypatch.setenv(CACHE_ENV, str(cache))
    # the session's converted model, with dlib declared faster
    landmark_speeds_path().write_text(json.dumps({"dlib_ms": 0.4, "batched_ms": 1.5}))
    monkeypatch.setattr(pipeline, "_MODELS", {})  # this process too starts without a choice made
    assert golden_run(celeba.official, tmp_path, "celeba_fast.csv",
                      workers=2) == (GOLDEN / "celeba_fast.csv").read_bytes()
    assert not pipeline.shared_models().batched_is_faster


def test_photo_jpegs_decode_to_p2d_images_pixels(tmp_path):
    """The photo path decodes plain JPEGs (colour, gray, progressive) with OpenCV, and hands the
    rest to p2d.images (EXIF-turned, CMYK, truncated): every kind gives p2d.images' pixels, or its
    reason."""
    import numpy as np
    from PIL import Image

    from p2d.curate.pipeline import decode, plain_jpeg
    from p2d.images import try_read_image

    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (12, 9, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))
    photo = Image.fromarray(
        np.clip(smooth.astype(int) + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: the pixels must come out rotated, as p2d.images turns them
    kinds = {
        "colour.jpg": (lambda p: photo.save(p, quality=90), True),
        "colour_444.jpeg": (lambda p: photo.save(p, quality=95, subsampling=0), True),
        "progressive.jpg": (lambda p: photo.save(p, quality=85, progressive=True), True),
        "gray.jpg": (lambda p: photo.convert("L").save(p, quality=90), True),
        "exif_turned.jpg": (lambda p: photo.save(p, quality=90, exif=exif), False),
        "cmyk.jpg": (lambda p: photo.convert("CMYK").save(p, quality=90), False),
    }
    for name, (save, plain) in kinds.items():
        path = tmp_path / name
        save(path)
        assert plain_jpeg(path.read_bytes()) is plain, name
        got, why = decode(path, fast=False)
        want, want_why = try_read_image(path)
        assert why is None and want_why is None, name
        assert got.shape == want.shape and np.array_equal(got, want), name
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((tmp_path / "colour.jpg").read_bytes()[:-300])
    assert decode(truncated, fast=False) == try_read_image(truncated) == (None, "unreadable:truncated")
