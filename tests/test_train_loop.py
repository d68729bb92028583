"""Tests for p2d.train.loop and `p2d train`: a real tiny training run, exact resume, bad inputs."""

from __future__ import annotations

import shutil

import json
import os
import signal
import warnings

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from p2d.cli import app
from p2d.errors import P2DError
from p2d.manifest import read_manifest, write_manifest
from p2d.recipe import load_recipe
from p2d.runs import list_checkpoints, pick_device, read_losses, write_losses
from p2d.train.cyclegan import LOSS_NAMES
from p2d.train.loop import TrainOptions, train
from p2d.train.models import ImagePool, lr_factor
from p2d.train.speed import precision_mode
from train_helpers import TINY_RECIPE, make_manifest

torch.set_num_threads(1)  # a shared 2-core machine: oversubscribed threads are far slower
runner = CliRunner()


def weights(run) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    return {f"{net}.{k}": v for net, sd in ckpt["models"].items() for k, v in sd.items()}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_manifest(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def reference_run(manifest, tmp_path_factory):
    """An uninterrupted 3-epoch run (3 steps an epoch) through the CLI."""
    run = tmp_path_factory.mktemp("runs") / "reference"
    result = runner.invoke(app, ["train", str(manifest), "--out", str(run), "--epochs", "3",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.parametrize(
    "epoch, epochs, decay_from, expected",
    [(1, 50, 1, 1.0), (2, 50, 1, 0.98), (50, 50, 1, 0.02), (51, 50, 1, 0.0),
     (5, 10, 6, 1.0), (6, 10, 6, 1.0), (10, 10, 6, 0.2), (1, 1, 1, 1.0),
     (4, 3, 4, 1.0)],  # a run cut shorter than its decay start: no division by zero
)
def test_lr_factor(epoch, epochs, decay_from, expected):
    assert lr_factor(epoch, epochs, decay_from) == pytest.approx(expected)


def test_smoke_run_writes_checkpoints_samples_and_losses(reference_run, manifest):
    run = reference_run
    assert set(list_checkpoints(run)) == {1, 2, 3}  # tiny.toml saves every epoch
    assert (run / "checkpoints" / "latest.pt").is_file()
    ckpt = torch.load(run / "checkpoints" / "epoch_0002.pt", weights_only=True)  # no code can run
    assert set(ckpt["models"]) == {"G_photo2drawing", "G_drawing2photo", "D_drawing", "D_photo"}
    assert set(ckpt["optimizers"]) == set(ckpt["schedulers"]) == {"G", "D"}
    assert set(ckpt["pools"]) == {"drawing", "photo"} and ckpt["pools"]["photo"]["images"].shape[0] == 12
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 6
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"}
    assert ckpt["recipe"]["data"]["size"] == 32 and len(ckpt["manifest_sha256"]) == 64
    # samples: 2 photo rows and 2 drawing rows of [input, translated, back], 32 px cells, gray
    for epoch in (1, 2, 3):
        grid = Image.open(run / "samples" / f"epoch_{epoch:04d}.png")
        assert grid.size == (3 * 32, 4 * 32) and grid.mode == "L"
    losses = read_losses(run)
    assert [r["epoch"] for r in losses] == [1, 2, 3] and all(r["steps"] == 3 for r in losses)
    assert list(losses[0])[:3] == ["epoch", "steps", "seconds"] and set(LOSS_NAMES) <= set(losses[0])
    assert [r["lr"] for r in losses] == pytest.approx([2e-4, 2e-4 * 2 / 3, 2e-4 / 3], rel=1e-6)
    assert all(r["cycle_photo"] > 0 and r["D_photo"] > 0 for r in losses)
    assert load_recipe(run / "recipe.toml").to_dict() == ckpt["recipe"]
    info = json.loads((run / "run.json").read_text())
    assert info["manifest"] == str(manifest.resolve()) and info["device"] == "cpu"
    assert info["photos_train"] == 6 and info["drawings_train"] == 4 and info["steps_per_epoch"] == 3


def test_training_changes_the_weights(reference_run):
    first = torch.load(reference_run / "checkpoints" / "epoch_0001.pt", weights_only=True)["models"]
    last = torch.load(reference_run / "checkpoints" / "epoch_0003.pt", weights_only=True)["models"]
    for net in first:
        assert any(not torch.equal(first[net][k], last[net][k]) for k in first[net])


def test_interrupted_and_resumed_run_ends_with_the_same_weights(reference_run, manifest, tmp_path):
    run = tmp_path / "resumed"
    # Stop mid-epoch twice (step 4 = epoch 2 step 1; step 5), then finish.
    for extra in (["--max-steps", "4"], ["--resume", "--max-steps", "5"], ["--resume"]):
        result = runner.invoke(app, ["train", str(manifest), "--out", str(run), "--epochs", "3", *extra])
        assert result.exit_code == 0, result.output
    assert_same_weights(reference_run, run)
    a = torch.load(reference_run / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert torch.equal(a["optimizers"]["G"]["state"][0]["exp_avg_sq"],
                       b["optimizers"]["G"]["state"][0]["exp_avg_sq"])
    assert [r["G_total"] for r in read_losses(reference_run)] == [r["G_total"] for r in read_losses(run)]


def test_resume_with_more_epochs_uses_the_new_schedule_at_once(reference_run, manifest, tmp_path):
    run = tmp_path / "longer"
    shutil.copytree(reference_run, run)
    # Without --epochs a resume keeps the run's own length (3): nothing is left to train.
    result = runner.invoke(app, ["train", str(manifest), "--out", str(run), "--resume", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(read_losses(run)) == 3
    # With --epochs 5, epoch 4 trains at lr * lr_factor(4, 5, 1), not at the old schedule's 0.
    result = runner.invoke(app, ["train", str(manifest), "--out", str(run), "--resume", "--epochs", "5",
                                 "--max-steps", "10", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    base = state["recipe"]["train"]["lr"]
    for opt in ("G", "D"):
        assert state["optimizers"][opt]["param_groups"][0]["lr"] == pytest.approx(base * lr_factor(4, 5, 1))


def test_resume_past_max_steps_takes_no_step_and_keeps_the_start(reference_run, manifest, tmp_path):
    run = tmp_path / "again"
    shutil.copytree(reference_run, run)
    before = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["global_step"]
    started = json.loads((run / "run.json").read_text())["started"]
    result = runner.invoke(app, ["train", str(manifest), "--out", str(run), "--resume", "--epochs", "5",
                                 "--max-steps", str(before), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["global_step"] == before
    info = json.loads((run / "run.json").read_text())
    assert info["started"] == started and len(info["resumes"]) == 1


def test_ctrl_c_saves_latest_and_resume_continues(reference_run, manifest, tmp_path):
    run = tmp_path / "interrupted"

    def press_ctrl_c(step, nets):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT, as a terminal sends it

    # What was there before (a shell's background job starts with SIGINT ignored, not the default).
    before = signal.getsignal(signal.SIGINT)
    train(manifest, out=run, options=TrainOptions(epochs=3), on_step=press_ctrl_c)
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 2, 5)
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    train(manifest, out=run, options=TrainOptions(epochs=3), resume=True)
    assert_same_weights(reference_run, run)


def test_spawned_workers_give_the_same_batches(manifest, tmp_path):
    """DataLoader workers under the spawn start method (as on Windows/macOS), no __main__ guard:
    the same training as decoding in the main process."""
    in_memory = train(manifest, out=tmp_path / "memory", options=TrainOptions(epochs=2))
    # one process, reused by epoch 2
    spawned = train(manifest, out=tmp_path / "spawned", options=TrainOptions(epochs=2, workers=1))
    assert_same_weights(in_memory, spawned)


def test_deterministic_switch_reaches_the_recipe_and_resumes_exactly(manifest, tmp_path):
    """--deterministic (speed.deterministic) is saved with the run; on the CPU, deterministic
    anyway, only its padding differs, so its resumed run is its uninterrupted run bit for bit
    (on CUDA: benchmarks/resume_check.py --deterministic)."""
    straight = tmp_path / "straight"
    result = runner.invoke(app, ["train", str(manifest), "--out", str(straight), "--epochs", "2",
                                 "--deterministic"])
    assert result.exit_code == 0, result.output
    assert load_recipe(straight / "recipe.toml").speed.deterministic is True
    resumed = tmp_path / "resumed"
    for extra in (["--max-steps", "4"], ["--resume"]):
        result = runner.invoke(app, ["train", str(manifest), "--out", str(resumed), "--epochs", "2",
                                     "--deterministic", *extra])
        assert result.exit_code == 0, result.output
    assert_same_weights(straight, resumed)


def test_resume_needs_a_run_and_a_new_run_needs_an_empty_folder(reference_run, manifest, tmp_path):
    result = runner.invoke(app, ["train", str(manifest), "--out", str(tmp_path / "none"), "--resume"])
    assert result.exit_code == 1 and "nothing to resume" in result.output
    result = runner.invoke(app, ["train", str(manifest), "--out", str(reference_run)])
    assert result.exit_code == 1 and "--resume" in result.output


def test_write_losses_replaces_a_repeated_epoch(tmp_path):
    path = tmp_path / "losses.csv"
    for epoch, value in [(1, 1.0), (2, 2.0), (2, 3.0), (3, 4.0)]:
        write_losses(path, epoch, {"epoch": epoch, "steps": 1, "seconds": 0.1, "G_total": value})
    assert [(r["epoch"], r["G_total"]) for r in read_losses(tmp_path)] == [(1, 1.0), (2, 3.0), (3, 4.0)]


# ----------------------------------------------------------------------------- bad input


def fails(args, *fragments):
    result = runner.invoke(app, ["train", *map(str, args)])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())  # rich wraps long messages
    for fragment in fragments:
        assert fragment in text, text
    assert "Traceback" not in result.output


def test_missing_manifest(tmp_path):
    fails([tmp_path / "nope.csv", "--recipe", TINY_RECIPE, "--out", tmp_path / "r"], "not found")


def test_invalid_manifest(manifest, tmp_path):
    df = read_manifest(manifest)
    df.loc[0, "domain"] = "painting"
    bad = tmp_path / "bad.csv"
    write_manifest(df, bad)
    fails([bad, "--recipe", manifest.with_suffix(".toml"), "--out", tmp_path / "r"], "'painting'",
          "p2d manifest check")


def test_domain_without_training_rows(tmp_path):
    m = make_manifest(tmp_path, photos_train=0)
    fails([m, "--out", tmp_path / "r"], "no kept training rows for domain 'photo'")


def test_missing_image_file(tmp_path):
    m = make_manifest(tmp_path)
    (tmp_path / "photos" / "lfw_003.png").unlink()
    fails([m, "--out", tmp_path / "r"], "lfw_003.png", "does not exist")


def test_unknown_recipe_key(manifest, tmp_path):
    recipe = tmp_path / "typo.toml"
    recipe.write_text("[train]\nepochs = 1\ncycle_wieght = 10.0\n")
    fails([manifest, "--recipe", recipe, "--out", tmp_path / "r"], "'cycle_wieght'", "cycle_weight")


def test_no_recipe_beside_the_manifest(tmp_path):
    m = make_manifest(tmp_path, recipe=None)
    fails([m, "--out", tmp_path / "r"], "no recipe", "--recipe")


def test_channels_disagree_with_the_checkpoint(reference_run, manifest, tmp_path):
    recipe = tmp_path / "colour.toml"
    recipe.write_text(manifest.with_suffix(".toml").read_text().replace("channels = 1", "channels = 3"))
    fails([manifest, "--recipe", recipe, "--out", reference_run, "--resume"], "channels",
          "trained with channels = 1")


def test_other_recipe_changes_refuse_to_resume(reference_run, manifest, tmp_path):
    recipe = tmp_path / "wider.toml"
    recipe.write_text(manifest.with_suffix(".toml").read_text().replace("filters = 8", "filters = 16"))
    fails([manifest, "--recipe", recipe, "--out", reference_run, "--resume"], "model.filters: 8 -> 16")


# ------------------------------------------------------------------ precision, timed saves, devices


@pytest.mark.parametrize("asked, device_type, capability, expected", [
    ("auto", "cpu", None, "fp32"),
    ("auto", "cuda", (9, 0), "bf16"),  # H100
    ("auto", "cuda", (8, 6), "bf16"),  # RTX 30xx
    ("auto", "cuda", (7, 5), "fp16"),  # T4, RTX 20xx
    ("auto", "cuda", (7, 0), "fp16"),  # V100
    ("auto", "cuda", (6, 1), "fp32"),  # GTX 1060: fp16 runs slowly on Pascal
    ("fp32", "cuda", (9, 0), "fp32"),
    ("fp16", "cuda", (8, 0), "fp16"),
    ("bf16", "cuda", (7, 5), "fp32"),  # no native bf16: emulated, so fp32 (with a warning)
    ("bf16", "cpu", None, "bf16"),  # asked for explicitly: honoured (with a warning)
    ("fp16", "cpu", None, "fp16"),
])
def test_precision_mode(asked, device_type, capability, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert precision_mode(asked, device_type, capability) == expected


def test_fp16_scaler_state_round_trips_through_a_checkpoint(manifest, tmp_path):
    """fp16 autocast with one GradScaler per optimizer, on the CPU: an interrupted and resumed
    run ends with the uninterrupted one's weights and scaler states."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 on the CPU warns that it is slow
        whole = train(manifest, out=tmp_path / "whole", options=TrainOptions(epochs=2, precision="fp16"))
        train(manifest, out=tmp_path / "parts", options=TrainOptions(epochs=2, precision="fp16"), max_steps=4)
        mid = torch.load(tmp_path / "parts" / "checkpoints" / "latest.pt", weights_only=True)
        train(manifest, out=tmp_path / "parts", options=TrainOptions(epochs=2, precision="fp16"), resume=True)
    assert mid["step_in_epoch"] == 1 and set(mid["scalers"]) == {"G", "D"}
    assert mid["scalers"]["G"]["scale"] > 0 and mid["scalers"]["G"]["_growth_tracker"] >= 1
    assert json.loads((whole / "run.json").read_text())["precision"] == "fp16"
    assert_same_weights(whole, tmp_path / "parts")
    a = torch.load(whole / "checkpoints" / "latest.pt", weights_only=True)["scalers"]
    b = torch.load(tmp_path / "parts" / "checkpoints" / "latest.pt", weights_only=True)["scalers"]
    assert a == b and a["G"]["scale"] > 0  # scale and growth tracker (reset by an overflow) alike


def test_latest_saved_mid_epoch_by_the_clock_resumes_exactly(reference_run, manifest, tmp_path):
    """With latest_every_minutes tiny, `latest` is saved after every step; a copy of the run taken
    while step 5 was done (so holding step 4's latest, mid epoch 2), as after a crash, resumes to
    the uninterrupted run's weights."""
    run, crashed = tmp_path / "timed", tmp_path / "crashed"

    def crash_copy(step, nets):
        if step == 5:
            shutil.copytree(run, crashed)

    train(manifest, out=run, options=TrainOptions(epochs=3, latest_every_minutes=1e-9), on_step=crash_copy)
    ckpt = torch.load(crashed / "checkpoints" / "latest.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 1, 4)
    assert_same_weights(reference_run, run)  # saving does not change the training
    train(manifest, out=crashed, options=TrainOptions(epochs=3), resume=True)
    assert_same_weights(reference_run, crashed)
    assert [r["G_total"] for r in read_losses(reference_run)] == [r["G_total"] for r in read_losses(crashed)]


def test_pick_device_gives_cuda_an_index(monkeypatch):
    """torch < 2.5 refuses an index-less CUDA device in mem_get_info: pick_device resolves it.
    (No GPU here: torch's CUDA queries are stood in for; the index check is torch's own.)"""
    from torch.cuda._utils import _get_device_index

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    for asked in ("auto", None, "cuda"):
        dev = pick_device(asked)
        assert dev == torch.device("cuda", 1) and _get_device_index(dev) == 1
    assert pick_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(P2DError, match="cuda:0 .. cuda:1"):
        pick_device("cuda:2")


def test_a_resumed_pool_takes_the_training_layout():
    pool = ImagePool(3)
    pool.query(torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last))
    state = pool.state_dict()
    assert state["images"].is_contiguous()  # NCHW in the checkpoint
    resumed = ImagePool(3)
    resumed.load_state_dict(state, "cpu", torch.channels_last)
    assert all(img.is_contiguous(memory_format=torch.channels_last) for img in resumed.images)
    assert all(torch.equal(a, b) for a, b in zip(pool.images, resumed.images))
