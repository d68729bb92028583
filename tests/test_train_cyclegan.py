"""Tests for p2d.train.cyclegan and p2d.train.kinds: the model object's step and state, the recipe's
[model] kind, and a checkpoint written before the model object existed."""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import pytest
import torch

from p2d.errors import P2DError, RecipeError
from p2d.recipe import MODEL_KIND_NAMES, TrainConfig, apply_overrides, config_from_dict
from p2d.train.checkpoint import CHECKPOINT_FORMAT
from p2d.train.cyclegan import LOSS_NAMES, CycleGAN
from p2d.train.kinds import MODEL_KINDS
from p2d.train.loop import train
from p2d.train.translate import load_generators
from train_helpers import make_manifest

torch.set_num_threads(1)
OLD = Path(__file__).parent / "data" / "checkpoint_format1"  # the trainer before this file wrote it (README)


def tiny_config(**overrides) -> TrainConfig:
    return apply_overrides(TrainConfig(), data__size=16, model__filters=2, model__blocks=1,
                           model__disc_filters=2, model__disc_layers=1, **overrides)


def batch(seed: int, channels: int = 1, size: int = 16) -> torch.Tensor:
    return torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_the_kinds_are_the_recipes_names():
    assert set(MODEL_KINDS) == set(MODEL_KIND_NAMES) and MODEL_KINDS["cyclegan"] is CycleGAN
    assert TrainConfig().model.kind == "cyclegan"


def test_an_unknown_kind_names_the_choices():
    with pytest.raises(RecipeError, match=r"model.kind = 'unit' .* one of: cyclegan, cut, fastcut"):
        config_from_dict({"model": {"kind": "unit"}})


@pytest.mark.parametrize("identity_weight", [5.0, 0.0])
def test_a_step_returns_its_losses_as_device_tensors_and_trains_all_four(identity_weight):
    torch.manual_seed(0)
    model = CycleGAN(tiny_config(train__identity_weight=identity_weight))
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in model.nets.items()}
    losses = model.optimize_parameters(batch(1), batch(2))
    assert list(losses) == list(LOSS_NAMES) == list(model.LOSS_NAMES)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and v.dtype == torch.float32
               for v in losses.values())
    assert all(not v.requires_grad for v in losses.values())
    assert math.isnan(losses["identity_photo"].item()) == (identity_weight == 0)
    for name, net in model.nets.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name
        assert all(p.requires_grad for p in net.parameters())  # the judges are thawed again
    assert len(model.pools["photo"].images) == 2


def test_state_dict_round_trip_continues_the_same_training():
    """A model loaded from another's state (and rank state) takes the same next step. A pool of one
    image is full after the first step, so the second draws from it."""
    torch.manual_seed(0)
    a = CycleGAN(tiny_config(train__pool_size=1))
    a.optimize_parameters(batch(1), batch(2))
    a.update_learning_rate()
    # deep copies, as a checkpoint file gives: optimizers load a state's tensors without copying them
    state, own = copy.deepcopy(a.state_dict()), copy.deepcopy(a.rank_state_dict())
    assert set(state) == {"models", "optimizers", "schedulers", "scalers"} and set(own) == {"pools"}
    assert set(state["models"]) == {"G_photo2drawing", "G_drawing2photo", "D_drawing", "D_photo"}
    torch.manual_seed(1)  # other initial weights: all of them must come from the state
    b = CycleGAN(tiny_config(train__pool_size=1))
    b.load_state_dict(state)
    b.load_rank_state_dict(own)
    assert b.lr == a.lr
    rng = torch.get_rng_state()
    step_a = a.optimize_parameters(batch(3), batch(4))
    torch.set_rng_state(rng)  # the pools draw from torch's generator
    step_b = b.optimize_parameters(batch(3), batch(4))
    assert all(torch.equal(step_a[k], step_b[k]) for k in LOSS_NAMES)
    for name in a.nets:
        assert all(torch.equal(x, y) for x, y in zip(a.nets[name].state_dict().values(),
                                                     b.nets[name].state_dict().values())), name


def test_generator_by_direction():
    model = CycleGAN(tiny_config())
    assert model.generator("drawing") is model.nets["G_photo2drawing"]
    assert model.generator("photo") is model.nets["G_drawing2photo"]
    with pytest.raises(P2DError, match="use drawing"):
        model.generator("painting")


# ----------------------------------------------------------------------------- a checkpoint of the old code


# Recipe keys added after the fixture was written (the model kinds cut and fastcut, [model] upsample).
ADDED_SINCE = ("/recipe/model/upsample", "/recipe/model/nce_layers", "/recipe/model/nce_patches",
               "/recipe/model/head_units", "/recipe/train/nce_temperature", "/recipe/train/nce_weight",
               "/recipe/train/nce_identity", "/recipe/train/flip_equivariance")


def layout(tree, path: str = "") -> dict[str, object]:
    """Every leaf of a checkpoint by its path: a tensor's dtype and shape, another value's type."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in layout(sub, f"{path}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in layout(sub, f"{path}/{i}").items()}
    if isinstance(tree, torch.Tensor):
        return {path: (tree.dtype, tuple(tree.shape))}
    return {path: type(tree).__name__}


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """The fixture's manifest (the same images, other paths) and recipe, and a run of today's code
    stopped at the fixture's step."""
    folder = tmp_path_factory.mktemp("micro")
    manifest = make_manifest(folder, recipe=OLD / "micro.toml")
    today = folder / "today"
    train(manifest, out=today, max_steps=4)
    return {"manifest": manifest, "today": torch.load(today / "checkpoints" / "latest.pt", weights_only=True)}


def test_the_checkpoint_layout_is_the_one_written_before(micro):
    old = torch.load(OLD / "latest.pt", weights_only=True)
    assert old["format"] == micro["today"]["format"] == CHECKPOINT_FORMAT
    assert "kind" not in old["recipe"]["model"]  # a later key: the default applies
    new = layout(micro["today"])
    assert new.pop("/recipe/model/kind") == "str"
    for key in ADDED_SINCE:  # later recipe keys: the defaults apply to the old checkpoint
        assert key.split("/")[-1] not in old["recipe"][key.split("/")[2]]
        new = {k: v for k, v in new.items() if not k.startswith(key)}
    assert new == layout(old)


def test_a_checkpoint_written_before_loads_and_resumes_exactly(micro, tmp_path):
    cfg, g_p2d, g_d2p = load_generators(OLD / "latest.pt")
    assert cfg.model.kind == "cyclegan" and cfg.model.filters == 2
    old = torch.load(OLD / "latest.pt", weights_only=True)
    saved = old["models"]["G_drawing2photo"]
    assert all(torch.equal(a, b) for a, b in zip(g_d2p.state_dict().values(), saved.values()))

    run = tmp_path / "resumed"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copyfile(OLD / "latest.pt", run / "checkpoints" / "latest.pt")
    train(micro["manifest"], out=run, resume=True)
    whole = train(micro["manifest"], out=tmp_path / "whole")
    a = torch.load(whole / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert (b["epoch"], b["global_step"]) == (2, 6)
    # Bit for bit on the torch that wrote the fixture; elsewhere other kernels may round differently,
    # far below what lost optimizer moments change (5e-4 here). (The pools are still filling at step 4:
    # the next test resumes full ones.)
    exact = torch.__version__ == "2.14.1+cu130"
    for name in a["models"]:
        for key, value in a["models"][name].items():
            torch.testing.assert_close(b["models"][name][key], value, rtol=0 if exact else 1e-5,
                                       atol=0 if exact else 1e-6, msg=f"{name}.{key}")


def test_a_full_pool_and_the_rng_resume_exactly(micro, tmp_path):
    """With a pool of one image per domain, every step after the first swaps pooled fakes at random:
    an interrupted run resumes to the uninterrupted one's weights only if pools and RNG states do."""
    recipe = tmp_path / "pool1.toml"
    recipe.write_text((OLD / "micro.toml").read_text().replace("seed = 0", "seed = 0\npool_size = 1"))
    whole = train(micro["manifest"], recipe=recipe, out=tmp_path / "whole")
    train(micro["manifest"], recipe=recipe, out=tmp_path / "parts", max_steps=4)
    parts = train(micro["manifest"], recipe=recipe, out=tmp_path / "parts", resume=True)
    a = torch.load(whole / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(parts / "checkpoints" / "latest.pt", weights_only=True)
    assert a["recipe"]["train"]["pool_size"] == 1
    for name in a["models"]:
        assert all(torch.equal(v, b["models"][name][k]) for k, v in a["models"][name].items()), name
    assert all(torch.equal(a["pools"][d]["images"], b["pools"][d]["images"]) for d in ("photo", "drawing"))
