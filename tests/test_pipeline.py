"""The curation engine (p2d/curate/pipeline.py): manifests byte-identical to the golden ones, for any worker count."""

from __future__ import annotations

import pytest

from golden_manifests import GOLDEN, RUNS, golden_run


@pytest.mark.parametrize("name", sorted(RUNS))
def test_manifest_equals_the_golden_one_for_one_and_two_workers(celeba, tmp_path, name):
    golden = (GOLDEN / name).read_bytes()
    assert golden_run(celeba.official, tmp_path, name, workers=1) == golden
    assert golden_run(celeba.official, tmp_path, name, workers=2) == golden
