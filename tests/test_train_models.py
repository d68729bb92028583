"""Tests for p2d.train.models (and the CycleGAN's networks): generator and discriminator shapes, LSGAN
loss, image pool."""

from __future__ import annotations

import pytest
import torch

from p2d.recipe import TrainConfig
from p2d.train import cyclegan, models
from p2d.train.cyclegan import build_networks
from p2d.train.models import (
    CopiedReflectionPad2d,
    ImagePool,
    LSGANLoss,
    PatchDiscriminator,
    ResnetGenerator,
)

torch.set_num_threads(1)  # a shared 2-core machine: oversubscribed threads are far slower


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("height, width", [(32, 32), (36, 44), (64, 48)])
def test_generator_keeps_size_and_range(channels, height, width):
    g = ResnetGenerator(channels, filters=4, blocks=1)
    y = g(torch.randn(2, channels, height, width))
    assert y.shape == (2, channels, height, width)
    assert y.abs().max() <= 1.0


@pytest.mark.parametrize(
    "layers, size, patches",
    [(3, 128, 14), (3, 256, 30), (2, 32, 6), (1, 32, 14)],  # 3 layers at 128 px: the paper's 70x70 PatchGAN
)
def test_patchgan_output_grid(layers, size, patches):
    d = PatchDiscriminator(1, filters=4, layers=layers)
    assert d(torch.zeros(1, 1, size, size)).shape == (1, 1, patches, patches)


@pytest.mark.parametrize(
    "channels, generator_params, discriminator_params",
    [(3, 11_378_179, 2_764_737), (1, 11_365_633, 2_762_689)],  # the CycleGAN paper's resnet_9blocks / basic D
)
def test_default_sizes_match_the_paper(channels, generator_params, discriminator_params):
    cfg = TrainConfig()
    cfg.data.channels = channels
    with torch.device("meta"):  # shapes only: no memory, no random init cost
        nets = build_networks(cfg)
    count = {k: sum(p.numel() for p in m.parameters()) for k, m in nets.items()}
    assert count == {"G_photo2drawing": generator_params, "G_drawing2photo": generator_params,
                     "D_drawing": discriminator_params, "D_photo": discriminator_params}


def test_seed_fixes_all_weights():
    cfg = TrainConfig()
    cfg.model.filters, cfg.model.blocks, cfg.model.disc_filters = 4, 1, 4
    torch.manual_seed(3)
    a = build_networks(cfg)
    torch.manual_seed(3)
    b = build_networks(cfg)
    for name in a:
        assert all(torch.equal(x, y)
                   for x, y in zip(a[name].state_dict().values(), b[name].state_dict().values()))
    # ... and the two generators start different (they are two networks, not one shared)
    assert not torch.equal(a["G_photo2drawing"].net[1].weight, a["G_drawing2photo"].net[1].weight)


@pytest.mark.parametrize("padding", [1, 3])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_copied_reflection_padding_is_reflection_padding_bit_for_bit(padding, memory_format):
    """speed.deterministic's padding: the same values forward; backward the same gradient up to
    the order in which an edge pixel's copies are added (rounding)."""
    g = torch.Generator().manual_seed(padding)
    x = torch.randn(2, 5, 9, 7, generator=g).contiguous(memory_format=memory_format)
    upstream = torch.randn(2, 5, 9 + 2 * padding, 7 + 2 * padding, generator=g)
    outputs, grads = [], []
    for pad in (torch.nn.ReflectionPad2d(padding), CopiedReflectionPad2d(padding)):
        leaf = x.clone().requires_grad_(True)
        out = pad(leaf)
        out.backward(upstream)
        outputs.append(out.detach())
        grads.append(leaf.grad)
    assert torch.equal(outputs[0], outputs[1])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-6)


def test_deterministic_generator_has_the_same_weights_and_output():
    cfg = TrainConfig()
    cfg.model.filters, cfg.model.blocks = 4, 2
    torch.manual_seed(5)
    plain = models.build_generator(cfg)
    cfg.speed.deterministic = True
    torch.manual_seed(5)
    copied = models.build_generator(cfg)
    assert sum(isinstance(m, CopiedReflectionPad2d) for m in copied.modules()) == 2 + 2 * 2
    assert not any(isinstance(m, torch.nn.ReflectionPad2d) for m in copied.modules())
    a, b = plain.state_dict(), copied.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # checkpoints load either way
    x = torch.randn(1, cfg.data.channels, 32, 32)
    assert torch.equal(plain(x), copied(x))


@pytest.mark.parametrize("value, real, expected", [(1.0, True, 0.0), (0.0, True, 1.0), (0.0, False, 0.0),
                                                    (0.5, False, 0.25)])
def test_lsgan_loss(value, real, expected):
    assert LSGANLoss()(torch.full((2, 1, 3, 3), value), real).item() == pytest.approx(expected)


def test_build_models_gives_the_four_networks_the_docstring_maps_to_the_paper():
    import re

    nets = build_networks(TrainConfig())
    mapped = dict(re.findall(r"^\s+(\w+)\s+the paper's (\w+)", cyclegan.__doc__, re.M))
    assert mapped == {"G_photo2drawing": "G", "G_drawing2photo": "F", "D_drawing": "D_Y", "D_photo": "D_X"}
    assert set(nets) == set(mapped)
    assert all(isinstance(nets[k], ResnetGenerator) for k in ("G_photo2drawing", "G_drawing2photo"))
    assert all(isinstance(nets[k], PatchDiscriminator) for k in ("D_drawing", "D_photo"))


def test_image_pool_fills_then_mixes_history():
    torch.manual_seed(0)
    pool = ImagePool(size=4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # while filling, the new images come back
    later = torch.full((64, 1, 1, 1), 100.0)
    out = pool.query(later)
    from_history = (out < 100).sum().item()
    assert 0 < from_history <= 4  # about half are swapped for stored ones, each stored one once
    assert len(pool.images) == 4


def test_image_pool_state_round_trip():
    torch.manual_seed(0)
    pool = ImagePool(size=3)
    pool.query(torch.randn(5, 1, 2, 2))
    copy = ImagePool(0)
    copy.load_state_dict(pool.state_dict())
    assert copy.size == 3 and all(torch.equal(a, b) for a, b in zip(pool.images, copy.images))
    x = torch.randn(2, 1, 2, 2)
    assert torch.equal(ImagePool(0).query(x), x)  # size 0: the pool is off
