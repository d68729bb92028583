"""Golden curation manifests: what `p2d curate celeba` wrote before the issue-12 speed work, for the same
inputs.

The synthetic CelebA folder of tests/conftest.py (16 images + 3 bad files) is copied to WORK/celeba
and curated into WORK/out, so the manifest's relative source paths do not depend on temp folder names.

    python tests/golden_manifests.py    # rewrite tests/data/golden/*.csv (only on purpose: see its README)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).parent / "data" / "golden"
# name -> (CurateOptions fields, curate_celeba's other keyword arguments)
RUNS = {
    "celeba_fast.csv": (dict(drop_smiles=True, drop_outliers=True), {}),
    "celeba_detect.csv": (dict(drop_smiles=True, drop_outliers=True), dict(detect=True)),
}


def golden_run(official: Path, work: Path, name: str, workers: int = 1, **extra) -> bytes:
    """The manifest bytes of the run `name` over a copy of the synthetic official layout."""
    from p2d.curate.celeba import curate_celeba
    from p2d.curate.pipeline import CurateOptions

    if not (work / "celeba").is_dir():
        shutil.copytree(official, work / "celeba")
    out = work / f"out-{name}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    options, kwargs = RUNS[name]
    curate_celeba(work / "celeba", out, CurateOptions(workers=workers, **options), **kwargs, **extra)
    return (out / "manifest.csv").read_bytes()


def main() -> None:
    # run as `python tests/golden_manifests.py`: its folder is on the path, as under pytest
    from celeba_synth import load_source_faces, write_celeba_folder
    from conftest import DATA, celeba_variants, plant_bad_files
    from p2d.curate.pipeline import shared_models
    from p2d.images import list_images, read_image

    base = Path(tempfile.mkdtemp(prefix="p2d-golden-"))
    faces = load_source_faces(list_images(DATA / "photos"), shared_models())
    nonfaces = [read_image(p) for p in list_images(DATA / "nonfaces")]
    names = write_celeba_folder(base / "official", celeba_variants(), faces, nonfaces, layout="txt")
    plant_bad_files(base / "official" / "img_align_celeba", base / "official" / "img_align_celeba" / names[0])
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in RUNS:
        (GOLDEN / name).write_bytes(golden_run(base / "official", base / "work", name))
        print(f"wrote {GOLDEN / name}")
    shutil.rmtree(base)


if __name__ == "__main__":
    main()
