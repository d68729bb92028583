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
