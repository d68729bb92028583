"""`--engine ray` (p2d/curate/ray_engine.py): the same manifests as the local engine, on one shared local Ray
with 2 CPUs; the cache across engines; the shared-storage probe; a clear message without Ray."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DATA
from golden_manifests import GOLDEN
from p2d.cli import app
from p2d.curate.engine import Engine
from p2d.curate.ray_engine import _probe
from p2d.errors import P2DError


def test_celeba_on_ray_equals_the_golden_manifest_and_continues_a_local_run(local_ray, celeba, tmp_path):
    from p2d.curate.celeba import curate_celeba
    from p2d.curate.pipeline import CurateOptions

    golden = (GOLDEN / "celeba_fast.csv").read_bytes()
    shutil.copytree(celeba.official, tmp_path / "celeba")  # the golden run's layout (golden_manifests.py)
    out, opts = tmp_path / "out", CurateOptions(drop_smiles=True, drop_outliers=True)
    curate_celeba(tmp_path / "celeba", out, opts, first=10)  # as if interrupted after 10 images
    r = curate_celeba(tmp_path / "celeba", out, replace(opts, workers=2, engine="ray"))
    assert (r.cache_hits, r.analyzed) == (10, 9)  # Ray did only what the local run's cache lacked
    assert (out / "manifest.csv").read_bytes() == golden


def _photo_folder(root: Path) -> Path:
    root.mkdir()
    for sub in ("photos", "nonfaces"):
        for f in sorted((DATA / sub).iterdir()):
            if f.suffix == ".png":
                shutil.copy(f, root / f.name)
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_photos_on_ray_equal_the_local_engine(local_ray, tmp_path):
    from p2d.curate.photos import curate_photos
    from p2d.curate.pipeline import CurateOptions

    folder = _photo_folder(tmp_path / "raw")
    local = curate_photos(folder, tmp_path / "local", CurateOptions(drop_outliers=True))
    ray = curate_photos(folder, tmp_path / "ray", CurateOptions(drop_outliers=True, workers=1, engine="ray"))
    assert local.kept >= 2 and local.manifest.read_bytes() == ray.manifest.read_bytes()
    assert sorted(p.name for p in (tmp_path / "ray" / "images").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / "images").iterdir())


def test_crop_drawings_on_two_processes_and_on_ray_equal_one_process(local_ray, tmp_path):
    from p2d.curate.drawings import CACHE_NAME, CropOptions, crop_drawings

    raw = tmp_path / "raw"
    raw.mkdir()
    for name in sorted(p.name for p in (DATA / "drawings").iterdir())[:5]:
        shutil.copy(DATA / "drawings" / name, raw / name)
    (raw / "empty.png").write_bytes(b"")
    opts = CropOptions(detectors=("dlib_hog", "yunet"), rotate=False)
    one = crop_drawings(raw, tmp_path / "one", opts, show_progress=False)
    two = crop_drawings(raw, tmp_path / "two", replace(opts, workers=2), show_progress=False)
    ray = crop_drawings(raw, tmp_path / "ray", replace(opts, workers=2, engine="ray"), show_progress=False)
    assert one.kept >= 3
    for other in (two, ray):
        assert other.manifest.read_bytes() == one.manifest.read_bytes()
        # the detections cache the driver writes is the same too (a re-run reuses it)
        assert ((other.manifest.parent / CACHE_NAME).read_bytes()
                == (tmp_path / "one" / CACHE_NAME).read_bytes())


def test_more_workers_than_the_cluster_has_cpus_names_the_limit(local_ray, tmp_path):
    from p2d.curate.ray_engine import ray_map

    with pytest.raises(P2DError, match="more than the 2 CPUs"):
        list(ray_map([1, 2, 3], lambda: None, Engine("ray", 3), [tmp_path]))


def test_a_node_that_cannot_see_the_files_is_named(tmp_path):
    marker = tmp_path / ".p2d-ray-check-x"
    marker.write_text("token")
    image = tmp_path / "a.png"
    image.write_bytes(b"12345")
    assert _probe(str(marker), "token", [(str(image), 5)])[1] == []
    # another node's own /tmp: the marker is not the one written, a file is missing or has another size
    _, missing = _probe(str(marker), "other", [(str(image), 6), (str(tmp_path / "b.png"), 1)])
    assert missing == [str(tmp_path), str(image), str(tmp_path / "b.png")]


def test_without_ray_the_error_names_the_install_command(monkeypatch, tmp_path):
    from p2d.curate.engine import map_jobs

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(P2DError, match=r'pip install "p2d\[ray\]"'):
        list(map_jobs([1], lambda: None, Engine("ray", 1)))


@pytest.mark.parametrize("engine,address,message", [("spark", None, "use local or ray"),
                                                    ("local", "10.0.0.1:6379", "needs --engine ray")])
def test_bad_engine_options_name_the_fix(engine, address, message):
    with pytest.raises(P2DError, match=message):
        Engine(engine, 2, address).validate()


def test_cli_passes_engine_options(monkeypatch, tmp_path):
    import p2d.curate.celeba as celeba

    seen = {}

    def stop(root, out, options, **kw):  # what the CLI asked for; the error ends the command
        seen.update(vars(options))
        raise P2DError("stop")

    monkeypatch.setattr(celeba, "curate_celeba", stop)
    res = CliRunner().invoke(app, ["curate", "celeba", str(tmp_path), "--engine", "ray", "--ray-address",
                                   "h:6379", "--workers", "4"])
    assert res.exit_code == 1 and (seen["engine"], seen["ray_address"],
                                   seen["workers"]) == ("ray", "h:6379", 4)
