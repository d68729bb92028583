"""The curation engine (p2d/curate/pipeline.py): manifests byte-identical to the golden ones, for any worker count."""

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
    again = curate_celeba(tmp_path / "celeba", tmp_path / "out-celeba_fast.csv-1", **RUNS["celeba_fast.csv"])
    assert again.analyzed == 1 and again.manifest.read_bytes() == (GOLDEN / "celeba_fast.csv").read_bytes()


def test_workers_that_use_dlibs_own_predictor_write_the_golden_manifest(celeba, tmp_path, monkeypatch, p2d_cache):
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
    assert golden_run(celeba.official, tmp_path, "celeba_fast.csv", workers=2) == (GOLDEN / "celeba_fast.csv").read_bytes()
    assert not pipeline.shared_models().batched_is_faster
