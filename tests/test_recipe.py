"""Tests for p2d.recipe: recipe TOML -> TrainConfig, unknown keys, overrides, round trips."""

from __future__ import annotations

import warnings

import pytest

from p2d.errors import RecipeError
from p2d.recipe import (
    TrainConfig,
    apply_overrides,
    bundled_recipe,
    config_from_dict,
    load_recipe,
    tomllib,
)


def write(tmp_path, text: str):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "table, key, value",
    [
        ("data", "channels", 1), ("data", "size", 128),
        ("data", "augment", ["hflip", "random_crop", "rotation"]),
        ("data", "random_crop_scale", 1.12), ("data", "rotation_deg", 10.0),
        ("model", "filters", 64), ("model", "blocks", 9), ("model", "disc_filters", 64),
        ("model", "disc_layers", 3), ("train", "epochs", 50), ("train", "batch_size", 2),
        ("train", "lr", 0.0002), ("train", "beta1", 0.5), ("train", "beta2", 0.999),
        ("train", "decay_from_epoch", 1), ("train", "cycle_weight", 15.0), ("train", "identity_weight", 5.0),
        ("train", "pool_size", 50), ("train", "save_every", 5), ("train", "seed", 0),
    ],
)
def test_defaults_are_the_experiments(table, key, value):
    assert getattr(getattr(TrainConfig(), table), key) == value


def test_tiny_recipe_loads():
    cfg = load_recipe(bundled_recipe("tiny"))
    assert (cfg.data.size, cfg.model.filters, cfg.model.blocks, cfg.model.disc_filters) == (32, 8, 1, 8)
    assert cfg.meta.name == "tiny"


def test_partial_recipe_keeps_other_defaults(tmp_path):
    cfg = load_recipe(write(tmp_path, "[data]\nchannels = 3\n[train]\nlr = 1e-4\ncycle_weight = 25\n"))
    assert cfg.data.channels == 3 and cfg.train.lr == 1e-4
    assert cfg.train.cycle_weight == 25.0 and isinstance(cfg.train.cycle_weight, float)
    assert cfg.model.blocks == 9 and cfg.cycle_weights == (25.0, 25.0)


@pytest.mark.parametrize(
    "text, named",
    [
        ("[train]\ncycle_weigth = 10\n", ["'cycle_weigth'", "'train'", "cycle_weight"]),
        ("[data]\nchanels = 1\n", ["'chanels'", "channels", "size"]),
        ("[optimizer]\nlr = 1\n", ["'optimizer'", "data", "model", "train"]),
    ],
)
def test_unknown_key_names_it_and_the_valid_ones(tmp_path, text, named):
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, text))
    for word in named:
        assert word in str(err.value)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[data]\nchannels = 2\n", "channels = 2"),
        ("[data]\nsize = 30\n", "multiple of 4"),
        ("[data]\naugment = ['hflip', 'blur']\n", "'blur'"),
        ("[train]\nepochs = 'ten'\n", "must be an integer"),
        ("[train]\nlr = -1.0\n", "lr"),
        ("[speed]\nprecision = 'fp8'\n", "precision"),
        ("[train]\nunequal_cycle_weights = [1.0]\n", "unequal_cycle_weights"),
        ("[data\nchannels = 1\n", "not valid TOML"),
    ],
)
def test_bad_values_say_which_key(tmp_path, text, fragment):
    with pytest.raises(RecipeError, match=None) as err:
        load_recipe(write(tmp_path, text))
    assert fragment in str(err.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.toml")


def test_unequal_cycle_weights_need_the_explicit_key_and_warn(tmp_path):
    with pytest.warns(UserWarning, match="diverged"):
        cfg = load_recipe(write(tmp_path, "[train]\nunequal_cycle_weights = [10.0, 5.0]\n"))
    assert cfg.cycle_weights == (10.0, 5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_recipe(write(tmp_path, "[train]\ncycle_weight = 7.5\n")).cycle_weights == (7.5, 7.5)


def test_to_toml_round_trips_every_key():
    cfg = load_recipe(bundled_recipe("tiny"))
    cfg.meta.description = 'quotes " and \\ survive'
    text = cfg.to_toml()
    assert config_from_dict(tomllib.loads(text)) == cfg
    for table, values in cfg.to_dict().items():
        assert f"[{table}]" in text
        for key in values:
            assert f"\n{key} = " in text


def test_overrides_copy_and_validate():
    cfg = load_recipe(bundled_recipe("tiny"))
    new = apply_overrides(cfg, train__epochs=7, train__seed=None, speed__compile=True)
    assert new.train.epochs == 7 and new.speed.compile is True
    assert cfg.train.epochs == 2 and cfg.speed.compile is False  # the original is untouched
    new.data.augment.append("rotation")
    assert cfg.data.augment == ["hflip", "random_crop", "rotation"]
    with pytest.raises(RecipeError, match="epochs"):
        apply_overrides(cfg, train__epochs=0)
