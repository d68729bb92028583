"""torchrun on the CPU (gloo, 2 processes): DDP training, identical ranks, resume, single-process reads."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from p2d.cli import app
from p2d.errors import RecipeError
from p2d.runs import read_losses
from p2d.train.ddp import Ranks, local_batch_size, ranks_from_env
from p2d.train.translate import load_generators
from ddp_worker import weights_digest
from train_helpers import make_manifest

torch.set_num_threads(1)
runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """2 processes on the gloo backend; --standalone picks a free port (other runs may share the machine)."""
    path = os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path,
               OMP_NUM_THREADS="1", COLUMNS="200")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc-per-node", "2",
                             *args], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Two gloo processes train the tiny recipe to step 4 of 6 (mid epoch 2); two more resume from
    rank 0's checkpoint to the end; each step, every rank's weights are hashed. Separately,
    `torchrun -m p2d train` trains the same run uninterrupted."""
    folder = tmp_path_factory.mktemp("ddp")
    manifest = make_manifest(folder)
    run, digests, whole = folder / "run", folder / "digests.json", folder / "whole"
    worker = [str(TESTS / "ddp_worker.py"), str(manifest), str(run), str(digests)]
    torchrun(*worker, json.dumps({"max_steps": 4}))
    stopped = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    torchrun(*worker, json.dumps({"resume": True}))
    uninterrupted = torchrun("-m", "p2d", "train", str(manifest), "--out", str(whole), "--device", "cpu")
    load = functools.partial(torch.load, weights_only=True)
    return {"manifest": manifest, "run": run, "whole_run": whole, "digests": json.loads(digests.read_text()),
            "stopped": stopped, "whole": load(whole / "checkpoints" / "latest.pt"),
            "output": uninterrupted.stdout}


def test_both_ranks_hold_identical_weights_after_every_step(ddp_run):
    rows = ddp_run["digests"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(len(set(r["digests"])) == 1 for r in rows), rows
    assert len({r["digests"][0] for r in rows}) == 6  # and they do train


def test_a_run_resumed_under_torchrun_is_the_uninterrupted_run(ddp_run):
    """Stopped mid-epoch and resumed from rank 0's checkpoint (each rank its own pool and RNG
    state): bit for bit the weights, pools and losses of `torchrun -m p2d train` uninterrupted."""
    whole = ddp_run["whole"]
    assert weights_digest(whole["models"]) == ddp_run["digests"][-1]["digests"][0]
    resumed = torch.load(ddp_run["run"] / "checkpoints" / "latest.pt", weights_only=True)
    assert (resumed["epoch"], resumed["step_in_epoch"], resumed["global_step"]) == (2, 0, 6)
    for a, b in ((whole, resumed), (whole["other_ranks"][0], resumed["other_ranks"][0])):
        assert all(torch.equal(a["pools"][d]["images"], b["pools"][d]["images"])
                   for d in ("photo", "drawing"))

    def losses(run):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_losses(run)]

    assert losses(ddp_run["run"]) == losses(ddp_run["whole_run"])


def test_rank_0_writes_a_checkpoint_with_every_ranks_pool(ddp_run):
    ckpt = ddp_run["stopped"]
    assert ckpt["world_size"] == 2
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 1, 4)
    assert not any(k.startswith(("module.", "_orig_mod.")) for sd in ckpt["models"].values() for k in sd)
    # each rank pooled its own fakes (1 image a step on each of 2 ranks): 4 each, different images
    mine, other = ckpt["pools"]["photo"]["images"], ckpt["other_ranks"][0]["pools"]["photo"]["images"]
    assert mine.shape == other.shape == (4, 1, 32, 32) and not torch.equal(mine, other)
    assert set(ckpt["scalers"]) == {"G", "D"}


def test_rank_0_alone_writes_and_reports(ddp_run):
    run = ddp_run["run"]
    assert [r["epoch"] for r in read_losses(run)] == [1, 2] and all(r["steps"] == 3 for r in read_losses(run))
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    out = ddp_run["output"]
    assert out.count("training faces.csv") == 1 and out.count("last epochs") == 1
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2 and len(info["resumes"]) == 1


def test_a_ddp_checkpoint_loads_in_a_single_process(ddp_run, tmp_path):
    cfg, g_p2d, _ = load_generators(ddp_run["run"])
    final = torch.load(ddp_run["run"] / "checkpoints" / "latest.pt", weights_only=True)
    saved = final["models"]["G_photo2drawing"].values()
    assert all(torch.equal(a, b) for a, b in zip(g_p2d.state_dict().values(), saved))
    result = runner.invoke(app, ["translate", str(ddp_run["run"]), str(ddp_run["manifest"].parent / "photos"),
                                 "--to", "drawing", "--out", str(tmp_path / "drawn"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "drawn").glob("*.png"))) == 7


def test_resume_with_another_number_of_processes_is_refused(ddp_run):
    result = runner.invoke(app, ["train", str(ddp_run["manifest"]), "--out", str(ddp_run["run"]), "--resume",
                                 "--epochs", "3", "--device", "cpu"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "saved by 2 training process(es), this run has 1" in text
    assert "--nproc-per-node" in text


@pytest.mark.parametrize("env, expected", [
    ({}, Ranks(0, 0, 1)),
    ({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}, Ranks(3, 1, 4)),
])
def test_ranks_from_env(env, expected):
    assert ranks_from_env(env) == expected


def test_the_recipe_batch_is_the_global_batch():
    assert local_batch_size(8, 4) == 2 and local_batch_size(2, 1) == 2
    with pytest.raises(RecipeError, match=r"batch_size = 2 is the global batch and does not divide among 4"):
        local_batch_size(2, 4)


def test_fastcut_under_torchrun_keeps_the_ranks_identical(tmp_path):
    """The one-sided kind (G and its PatchNCE heads in one DDP module; flips and sampled patches drawn
    from each rank's torch generator) trains 6 steps on 2 gloo processes; one torchrun, to keep it
    cheap (resuming is the same code for every kind, tested above and in test_cut.py)."""
    recipe = tmp_path / "fastcut.toml"
    recipe.write_text((ROOT / "p2d" / "recipes" / "tiny.toml").read_text().replace(
        "[model]\n", "[model]\nkind = \"fastcut\"\nhead_units = 16\n"))
    manifest = make_manifest(tmp_path / "data", recipe=recipe)
    run, digests = tmp_path / "run", tmp_path / "digests.json"
    worker = [str(TESTS / "ddp_worker.py"), str(manifest), str(run), str(digests)]
    torchrun(*worker)
    rows = json.loads(digests.read_text())
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(len(set(r["digests"])) == 1 for r in rows) and len({r["digests"][0] for r in rows}) == 6
    final = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert set(final["models"]) == {"G_photo2drawing", "D_drawing", "nce_heads"}
    assert weights_digest(final["models"]) == rows[-1]["digests"][0]
    cfg, g, back = load_generators(run)
    assert cfg.model.kind == "fastcut" and back is None
