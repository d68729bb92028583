"""Tests for p2d.train.data: tensors <-> images, manifest rows, epoch plans, augmentation geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2d.errors import ManifestError
from p2d.manifest import manifest_images
from p2d.recipe import TrainConfig
from p2d.train.data import (
    TrainBatches,
    affine_matrices,
    augment,
    EpochBatches,
    epoch_plan,
    rank_positions,
    fit_image,
    image_to_tensor,
    steps_per_epoch,
    tensor_to_image,
    training_rows,
    window,
)
from train_helpers import make_manifest

torch.set_num_threads(1)

IDENTITY = [1.0, 1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("shape, channels, exact", [((9, 7), 1, True), ((9, 7, 3), 3, True),
                                                     ((9, 7, 3), 1, False), ((9, 7), 3, False)])
def test_image_tensor_round_trip(shape, channels, exact):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    t = image_to_tensor(img, channels)
    assert t.shape == (1, channels, 9, 7) and t.min() >= -1 and t.max() <= 1
    back = tensor_to_image(t)
    assert back.shape == ((9, 7) if channels == 1 else (9, 7, 3))
    if exact:
        assert np.array_equal(back, img)


@pytest.mark.parametrize(
    "shape, crop, expected",
    [((32, 32), "center", (32, 32)), ((64, 64), "center", (32, 32)), ((40, 80), "center", (32, 32)),
     ((25, 25), "center", (32, 32)), ((128, 96), "random", (43, 32)), ((32, 90), "random", (32, 90))],
)
def test_fit_image(shape, crop, expected):
    img = np.zeros((*shape, 1), np.uint8)
    assert fit_image(img, 32, crop).shape[:2] == expected


@pytest.mark.parametrize("u, offset", [(0.0, 0), (0.5, 5), (0.999, 10), (1.0, 10)])
def test_window_covers_every_offset(u, offset):
    img = np.arange(42 * 32).reshape(42, 32)
    assert window(img, 32, u, 0.0)[0, 0] == img[offset, 0]
    assert torch.equal(window(torch.from_numpy(img), 32, u, 0.0), torch.from_numpy(img[offset : offset + 32]))


def test_epoch_plan_is_pure_unaligned_and_covers_the_larger_domain():
    cfg = TrainConfig()
    a, b = epoch_plan(5, 2, 7, 3, cfg), epoch_plan(5, 2, 7, 3, cfg)
    assert np.array_equal(a.photo, b.photo) and np.array_equal(a.augment, b.augment)
    # one pass over the larger domain, padded to whole batches of 2 from its next permutation
    assert sorted(a.photo[:7]) == list(range(7)) and len(a.photo) == 8
    assert set(a.drawing) == {0, 1, 2} and len(a.drawing) == 8  # the smaller one cycles
    assert not np.array_equal(a.photo, epoch_plan(5, 3, 7, 3, cfg).photo)  # a new order each epoch
    assert steps_per_epoch(7, 3, 2) == 4


def test_epoch_plan_respects_the_augment_list():
    cfg = TrainConfig()
    cfg.data.augment = []
    plan = epoch_plan(0, 0, 6, 6, cfg)
    assert np.allclose(plan.augment, IDENTITY)
    cfg.data.augment = ["rotation"]
    angles = np.rad2deg(epoch_plan(0, 0, 200, 200, cfg).augment[..., 4])
    assert angles.max() <= 10.0 and angles.min() >= -10.0 and angles.std() > 3


@pytest.mark.parametrize(
    "params, expected",
    [(IDENTITY, [[1, 0, 0], [0, 1, 0]]), ([-1, 1, 0, 0, 0], [[-1, 0, 0], [0, 1, 0]]),
     ([1, 2, 0.5, -0.5, 0], [[0.5, 0, 0.5], [0, 0.5, -0.5]]),
     ([1, 1, 0, 0, np.pi / 2], [[0, -1, 0], [1, 0, 0]])],
)
def test_affine_matrices(params, expected):
    assert np.allclose(affine_matrices(np.array([params], float))[0], expected)


def test_augment_flip_and_rotation_are_exact_pixel_moves():
    x = torch.randint(0, 256, (1, 1, 8, 8), dtype=torch.uint8)
    as_float = x.float() / 127.5 - 1
    assert torch.equal(augment(x, np.array([IDENTITY])), as_float)
    assert torch.allclose(augment(x, np.array([[-1, 1, 0, 0, 0.0]])), as_float.flip(-1), atol=1e-5)
    # +90 degrees turns the image as torch.rot90(k=1) does (counter-clockwise as displayed): a sign
    # error in affine_matrices would turn it the other way and fail here.
    quarter = augment(x, np.array([[1, 1, 0, 0, np.pi / 2]]))
    assert torch.allclose(quarter, torch.rot90(as_float, 1, (-2, -1)), atol=1e-4)
    assert not torch.allclose(quarter, torch.rot90(as_float, -1, (-2, -1)), atol=1e-4)


def test_augment_zoom_crops_inside_the_image():
    # A 2x zoom into the top-left quarter of a gradient x = 3 * (8 row + col): the output's last
    # pixel centre lands on input position (3.25, 3.25) (align_corners=False geometry).
    x = (torch.arange(64).view(1, 1, 8, 8) * 3).to(torch.uint8)
    out = augment(x, np.array([[1, 2, -0.5, -0.5, 0.0]]))
    assert out.max().item() == pytest.approx(3 * (8 * 3.25 + 3.25) / 127.5 - 1, abs=1e-4)
    assert out[0, 0, -1, -1] == out.max()


def test_training_rows_and_manifest_images(tmp_path):
    manifest = make_manifest(tmp_path)
    rows = training_rows(manifest)
    keys = [("photo", "train"), ("photo", "test"), ("drawing", "train"), ("drawing", "test")]
    assert [len(rows[k]) for k in keys] == [6, 2, 4, 2]
    assert [r.crop for r in rows[("drawing", "train")]].count("random") == 1
    paths = manifest_images(manifest, "drawing", "train")
    assert [r.path for r in rows[("drawing", "train")]] == paths  # the dropped fire engine is not there
    assert not any("fire_engine" in str(p) for p in paths)


def test_batches_are_augmented_real_crops(tmp_path):
    manifest = make_manifest(tmp_path)
    cfg = TrainConfig()
    cfg.data.size, cfg.train.batch_size = 32, 4
    batches = TrainBatches(training_rows(manifest), cfg, torch.device("cpu"))
    got = list(batches.epoch(0))
    assert len(got) == batches.steps == 2
    photo, drawing = got[0]
    assert photo.shape == drawing.shape == (4, 1, 32, 32)
    assert photo.min() >= -1 and photo.max() <= 1 and photo.std() > 0.05
    resumed = list(batches.epoch(0, start_step=1))  # a resumed epoch sees the very same batch
    assert torch.equal(resumed[0][0], got[1][0]) and torch.equal(resumed[0][1], got[1][1])


def test_every_unreadable_training_image_is_named_in_one_message(tmp_path):
    """A user fixes them all at once, not one per run; the source files stay as they were."""
    manifest = make_manifest(tmp_path)
    rows = training_rows(manifest)
    bad = rows[("photo", "train")][:2]
    assert all(tmp_path in row.path.parents for row in bad)  # the test's own copies, never the samples
    for row in bad:
        data = row.path.read_bytes()
        row.path.write_bytes(data[: len(data) // 3])  # truncated
    cfg = TrainConfig()
    cfg.data.size, cfg.train.batch_size = 32, 4
    with pytest.raises(ManifestError) as err:
        TrainBatches(rows, cfg, torch.device("cpu"))
    message = str(err.value)
    assert message.startswith("2 image(s) the manifest keeps cannot be read")
    assert all(f"{row.path} (truncated)" in message for row in bad) and "drop their rows" in message


def test_no_training_drawings_is_an_error(tmp_path):
    manifest = make_manifest(tmp_path, drawings_train=0)
    with pytest.raises(ManifestError, match="no kept training rows for domain 'drawing'"):
        training_rows(manifest)


@pytest.mark.parametrize("n_photo, n_drawing, batch_size, world_size", [
    (7, 3, 2, 1), (7, 3, 2, 2), (6, 4, 4, 2), (13, 5, 6, 3), (5, 9, 8, 4), (1, 1, 4, 4)])
def test_rank_shards_cover_every_training_row_once_an_epoch(n_photo, n_drawing, batch_size, world_size):
    """The ranks' slices of every global batch are disjoint and together are the whole (padded)
    plan; so every row of the larger domain is trained on, every rank takes the same number of
    steps, and only the padding repeats rows."""
    cfg = TrainConfig()
    cfg.train.batch_size = batch_size
    plan = epoch_plan(0, 1, n_photo, n_drawing, cfg)
    steps = steps_per_epoch(n_photo, n_drawing, batch_size)
    seen = [i for step in range(steps) for rank in range(world_size)
            for i in rank_positions(step, batch_size, rank, world_size)]
    assert sorted(seen) == list(range(len(plan.photo))) == list(range(steps * batch_size))
    larger, n = (plan.photo, n_photo) if n_photo >= n_drawing else (plan.drawing, n_drawing)
    assert set(larger[seen]) == set(range(n))
    assert len(seen) - n < batch_size  # the padding: less than one batch
    per_rank = [list(EpochBatches(1, steps, batch_size, rank=r, world_size=world_size))
                for r in range(world_size)]
    assert {len(b) for b in per_rank} == {steps}
    assert all(len(keys) == batch_size // world_size for b in per_rank for keys in b)


def test_rank_positions_are_a_pure_contiguous_slice():
    assert rank_positions(3, 4, 1, 2) == range(14, 16)
    assert rank_positions(0, 2) == range(0, 2)


def test_batches_are_sharded_by_rank_and_the_last_one_is_padded(tmp_path):
    """Two ranks' batches together are the single process's batches, image for image; 6 photos
    at batch 4 give 2 full batches (the second padded)."""
    manifest = make_manifest(tmp_path)
    cfg = TrainConfig()
    cfg.data.size, cfg.train.batch_size = 32, 4
    rows = training_rows(manifest)
    whole = list(TrainBatches(rows, cfg, torch.device("cpu")).epoch(1))
    halves = [list(TrainBatches(rows, cfg, torch.device("cpu"), rank=r, world_size=2).epoch(1))
              for r in (0, 1)]
    assert len(whole) == 2 and all(p.shape[0] == 4 for p, _ in whole)
    for step, (photo, drawing) in enumerate(whole):
        assert torch.equal(torch.cat([halves[0][step][0], halves[1][step][0]]), photo)
        assert torch.equal(torch.cat([halves[0][step][1], halves[1][step][1]]), drawing)
