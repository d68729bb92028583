"""torchrun on the CPU (gloo, 2 processes): DDP training, identical ranks, resume, single-process reads."""

from __future__ import annotations

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
from train_helpers import make_manifest

torch.set_num_threads(1)
runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """2 processes on the gloo backend; --standalone picks a free port (other runs may share the machine)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", COLUMNS="200")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             *args], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Two gloo processes train the tiny recipe to step 4 of 6 (mid epoch 2), hashing every
    rank's weights after each step; then `torchrun -m p2d train --resume` finishes the run."""
    folder = tmp_path_factory.mktemp("ddp")
    manifest = make_manifest(folder)
    run, digests = folder / "run", folder / "digests.json"
    torchrun(str(TESTS / "ddp_worker.py"), str(manifest), str(run), str(digests), json.dumps({"max_steps": 4}))
    stopped = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    resumed = torchrun("-m", "p2d", "train", str(manifest), "--out", str(run), "--device", "cpu", "--resume")
    return {"manifest": manifest, "run": run, "digests": json.loads(digests.read_text()), "stopped": stopped,
            "output": resumed.stdout}


def test_both_ranks_hold_identical_weights_after_every_step(ddp_run):
    rows = ddp_run["digests"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(len(set(r["digests"])) == 1 for r in rows), rows
    assert len({r["digests"][0] for r in rows}) == 4  # and they do train


def test_rank_0_writes_a_checkpoint_with_every_ranks_pool(ddp_run):
    ckpt = ddp_run["stopped"]
    assert ckpt["world_size"] == 2 and (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 1, 4)
    assert not any(k.startswith(("module.", "_orig_mod.")) for sd in ckpt["models"].values() for k in sd)
    # each rank pooled its own fakes (1 image a step on each of 2 ranks): 4 each, different images
    mine, other = ckpt["pools"]["photo"]["images"], ckpt["other_ranks"][0]["pools"]["photo"]["images"]
    assert mine.shape == other.shape == (4, 1, 32, 32) and not torch.equal(mine, other)
    assert set(ckpt["scalers"]) == {"G", "D"}


def test_rank_0_checkpoint_resumes_under_torchrun(ddp_run):
    run = ddp_run["run"]
    final = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert (final["epoch"], final["step_in_epoch"], final["global_step"]) == (2, 0, 6)
    assert [r["epoch"] for r in read_losses(run)] == [1, 2] and all(r["steps"] == 3 for r in read_losses(run))
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    out = ddp_run["output"]
    assert out.count("resuming") == 1 and out.count("last epochs") == 1  # rank 0 alone reports
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2 and len(info["resumes"]) == 1


def test_a_ddp_checkpoint_loads_in_a_single_process(ddp_run, tmp_path):
    cfg, g_p2d, _ = load_generators(ddp_run["run"])
    final = torch.load(ddp_run["run"] / "checkpoints" / "latest.pt", weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(g_p2d.state_dict().values(), final["models"]["G_photo2drawing"].values()))
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
