"""Tests for p2d.train.cut (the CUT and FastCUT kinds), the generator's [model] upsample, and the
one-sided path through the workflow: train, stop and resume, samples, losses, translate, evaluate, report."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from p2d.cli import app
from p2d.errors import P2DError, RecipeError
from p2d.evaluate import ONE_SIDED_SCORE_GROUPS, SCORE_GROUPS, score_groups, suggest_best
from p2d.recipe import TrainConfig, apply_overrides, config_from_dict
from p2d.runs import read_losses
from p2d.train.cut import CUT, LOSS_NAMES, patch_nce_loss
from p2d.train.kinds import MODEL_KINDS
from p2d.train.loop import train
from p2d.train.models import ResnetGenerator
from p2d.train.translate import load_generators

torch.set_num_threads(1)
runner = CliRunner()
TINY = Path(__file__).parent.parent / "p2d" / "recipes" / "tiny.toml"


def tiny_config(kind: str = "cut", **overrides) -> TrainConfig:
    return apply_overrides(TrainConfig(), model__kind=kind, data__size=16, model__filters=2, model__blocks=1,
                           model__disc_filters=2, model__disc_layers=1, model__head_units=8, **overrides)


def batch(seed: int, size: int = 16) -> torch.Tensor:
    return torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ----------------------------------------------------------------------------- recipe and pieces


def test_fastcut_takes_the_papers_settings_unless_the_recipe_says_otherwise():
    assert MODEL_KINDS["cut"] is MODEL_KINDS["fastcut"] is CUT
    cut, fast = config_from_dict({"model": {"kind": "cut"}}), config_from_dict({"model": {"kind": "fastcut"}})
    assert (cut.train.nce_weight, cut.train.nce_identity, cut.train.flip_equivariance) == (1.0, True, False)
    t = fast.train
    assert (t.nce_weight, t.nce_identity, t.flip_equivariance) == (10.0, False, True)
    assert cut.train.nce_temperature == fast.train.nce_temperature == 0.07 and cut.model.nce_patches == 256
    mine = config_from_dict({"model": {"kind": "fastcut"}, "train": {"nce_weight": 4.0}})
    assert mine.train.nce_weight == 4.0 and not mine.train.nce_identity
    # a checkpoint's recipe (every key written) comes back as saved
    assert config_from_dict(mine.to_dict()).to_dict() == mine.to_dict()


@pytest.mark.parametrize("table, value, message", [
    ({"model": {"upsample": "bicubic"}}, None,
     "model.upsample = 'bicubic' must be one of: transposed, resize"),
    ({"model": {"nce_layers": ["block0"]}}, None, "model.nce_layers"),
    ({"train": {"nce_temperature": 0}}, None, "nce_temperature must be positive"),
])
def test_bad_cut_keys_name_the_fix(table, value, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict(table)


def test_patch_nce_rewards_the_patch_at_the_same_place():
    random = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(0))
    keys = torch.nn.functional.normalize(random, dim=-1)
    same = patch_nce_loss(keys.clone().requires_grad_(), keys)
    shuffled = patch_nce_loss(keys[:, torch.randperm(16, generator=torch.Generator().manual_seed(1))], keys)
    assert same < 0.5 < math.log(17) < shuffled
    q = keys.clone().requires_grad_()
    k = keys.clone().requires_grad_()
    patch_nce_loss(q, k).backward()
    assert q.grad is not None and k.grad is None  # the keys are detached, as in the paper's code


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_both_upsamplings_keep_the_size_and_the_encoder(upsample):
    g = ResnetGenerator(1, 4, 2, upsample=upsample)
    assert g(batch(0, 20)).shape == (2, 1, 20, 20)
    assert [g.layer_index(n) for n in ("input", "down1", "down2", "block1", "block5")] == [0, 4, 7, 10, 11]
    out, feats = g.forward_with_features(batch(0), [0, 4, 11])
    assert out.shape == (2, 1, 16, 16)
    assert [f.shape[1:] for f in feats] == [(1, 22, 22), (8, 8, 8), (16, 4, 4)]
    transposed = set(ResnetGenerator(1, 4, 2).state_dict())
    assert (set(g.state_dict()) == transposed) == (upsample == "transposed")


# ----------------------------------------------------------------------------- the step and its state


@pytest.mark.parametrize("kind", ["cut", "fastcut"])
def test_a_step_trains_the_generator_heads_and_discriminator(kind):
    torch.manual_seed(0)
    model = CUT(tiny_config(kind))
    assert set(model.nets) == {"G_photo2drawing", "D_drawing", "nce_heads"}
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in model.nets.items()}
    losses = model.optimize_parameters(batch(1), batch(2))
    assert list(losses) == list(LOSS_NAMES) and all(not v.requires_grad for v in losses.values())
    assert math.isnan(losses["nce_identity"].item()) == (kind == "fastcut")
    for name, net in model.nets.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name
        assert all(p.requires_grad for p in net.parameters())
    assert model.sample_grid({"photo": batch(3), "drawing": batch(4)}).shape == (4 * 16, 2 * 16)


def test_state_dict_round_trip_continues_the_same_training():
    torch.manual_seed(0)
    a = CUT(tiny_config("fastcut"))
    a.optimize_parameters(batch(1), batch(2))
    a.update_learning_rate()
    state = copy.deepcopy(a.state_dict())
    torch.manual_seed(1)
    b = CUT(tiny_config("fastcut"))
    b.load_state_dict(state)
    b.load_rank_state_dict(b.rank_state_dict())
    rng = torch.get_rng_state()  # the flips and the sampled patches draw from torch's generator
    step_a = a.optimize_parameters(batch(3), batch(4))
    torch.set_rng_state(rng)
    step_b = b.optimize_parameters(batch(3), batch(4))
    assert all(torch.equal(step_a[k], step_b[k]) or math.isnan(step_a[k]) for k in LOSS_NAMES)


def test_a_one_sided_model_has_no_way_back():
    model = CUT(tiny_config())
    assert model.generator("drawing") is model.nets["G_photo2drawing"]
    with pytest.raises(P2DError,
                       match=r"cut model, which translates photos to drawings only: use --to drawing"):
        model.generator("photo")


def test_one_sided_runs_score_the_redraw_in_place_of_the_cross_cycle():
    assert score_groups("cut") is score_groups("fastcut") is ONE_SIDED_SCORE_GROUPS
    assert score_groups("cyclegan") is SCORE_GROUPS
    # three epochs alike but for the redraw error: the one that redraws drawings best is picked
    df = pd.DataFrame({"epoch": [1, 2, 3], "redraw_drawing": [0.30, 0.05, 0.20],
                       "identity_drawing": [0.4, 0.4, 0.4], "kid_drawing": [0.1, 0.1, 0.1]})
    assert suggest_best(df, groups=ONE_SIDED_SCORE_GROUPS)[0] == 2


# ----------------------------------------------------------------------------- the workflow at 32 px


@pytest.fixture(scope="module")
def cut_runs(trained_tiny_run, tmp_path_factory):
    """The tiny recipe as cut (and fastcut): trained whole, and stopped at step 3 then resumed, on the
    manifest of the shared tiny run (2 steps an epoch, epochs 1 and 2 saved)."""
    folder = tmp_path_factory.mktemp("cut")
    manifest = trained_tiny_run.parent / "tiny.csv"
    runs = {}
    for kind in ("cut", "fastcut"):
        recipe = folder / f"tiny_{kind}.toml"
        recipe.write_text(TINY.read_text().replace("[model]\n", f"[model]\nkind = \"{kind}\"\n"))
        whole = train(manifest, recipe=recipe, out=folder / kind)
        train(manifest, recipe=recipe, out=folder / f"{kind}_parts", max_steps=3)
        parts = train(manifest, recipe=recipe, out=folder / f"{kind}_parts", resume=True)
        runs[kind] = (whole, parts)
    return {"runs": runs, "cyclegan": trained_tiny_run, "manifest": manifest}


def latest(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "latest.pt", weights_only=True)


@pytest.mark.parametrize("kind", ["cut", "fastcut"])
def test_a_stopped_and_resumed_run_is_the_uninterrupted_run(cut_runs, kind):
    whole, parts = cut_runs["runs"][kind]
    a, b = latest(whole), latest(parts)
    assert a["recipe"]["model"]["kind"] == kind and (b["epoch"], b["global_step"]) == (2, 4)
    assert set(a["models"]) == {"G_photo2drawing", "D_drawing", "nce_heads"}
    for name in a["models"]:
        assert all(torch.equal(v, b["models"][name][k]) for k, v in a["models"][name].items()), name
    losses = read_losses(whole)
    assert [r["epoch"] for r in losses] == [1, 2] and list(losses[0])[3:8] == list(LOSS_NAMES)
    pd.testing.assert_frame_equal(pd.DataFrame(read_losses(parts)).drop(columns="seconds"),
                                  pd.DataFrame(losses).drop(columns="seconds"))
    assert sorted(p.name for p in (whole / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]


def test_p2d_train_shows_a_one_sided_runs_own_losses(cut_runs, tmp_path):
    recipe = next(Path(cut_runs["runs"]["cut"][0]).parent.glob("tiny_cut.toml"))
    result = runner.invoke(app, ["train", str(cut_runs["manifest"]), "--recipe", str(recipe), "--out",
                                 str(tmp_path / "run"), "--epochs", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "last epochs" in result.output and "nce_identity" in result.output
    assert "D_photo" not in result.output


def test_translate_to_drawing_and_a_clear_error_for_photo(cut_runs, tmp_path):
    run = cut_runs["runs"]["cut"][0]
    photos = cut_runs["manifest"].parent / "photos"
    result = runner.invoke(app, ["translate", str(run), str(photos), "--to", "drawing",
                                 "--out", str(tmp_path / "d"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "d").iterdir())) == len(list(photos.iterdir()))
    refused = runner.invoke(app, ["translate", str(run), str(photos), "--to", "photo",
                                  "--out", str(tmp_path / "p"), "--device", "cpu"])
    assert refused.exit_code == 1 and "translates photos to drawings only" in refused.output
    cfg, g, back = load_generators(run)
    assert cfg.model.kind == "cut" and back is None and not g.training


def test_evaluate_and_report_a_one_sided_run_beside_a_cyclegan(cut_runs, tmp_path):
    import shutil

    run = Path(shutil.copytree(cut_runs["runs"]["cut"][0], tmp_path / "cut"))
    result = runner.invoke(app, ["evaluate", str(run), "--kid-subsets", "10"])
    assert result.exit_code == 0, result.output
    assert "suggested best epoch" in result.output
    df = pd.read_csv(run / "evaluate.csv")
    assert list(df["epoch"]) == [1, 2]
    assert df["redraw_drawing"].between(0, 1).all() and df["kid_drawing"].notna().all()
    assert df[["cross_cycle_drawing", "cycle_l1_photo", "kid_photo", "identity_cycle"]].isna().all().all()
    cyclegan = Path(shutil.copytree(cut_runs["cyclegan"], tmp_path / "cyclegan"))
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(cyclegan), str(run), "--out", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "model.kind" in html and "nce" in html and np.all([s in html for s in ("cyclegan", "cut")])
