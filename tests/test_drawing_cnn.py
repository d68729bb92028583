"""Tests for p2d.drawings.cnn: targets and decoding (pure numpy), the shipped network, odd inputs, a step."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from p2d.drawings.cnn import (
    INPUT_SIDE_PX, MAPS, MIRRORED_VIEW, MODEL_FILE, PAD_MULTIPLE, STRIDE, VIEWS, DrawingFaceCnn,
    boxes_from_peaks, build_network, centre_peaks, centre_targets, load_network, merge_mirrored, normalise,
    save_weights, to_input, training_loss,
)
from p2d.drawings.detect import CNN_CONSENT, THRESHOLDS
from p2d.drawings.fhog import box_iou
from p2d.errors import ModelFileMissing
from p2d.images import read_image

DATA = Path(__file__).parent / "data"
SAMPLES = Path(__file__).resolve().parent.parent / "p2d" / "samples"
ALONE = THRESHOLDS["drawn_cnn"].alone


def hand_boxes() -> dict[str, tuple[float, float, float, float]]:
    with open(DATA / "drawing_face_boxes.csv", newline="") as f:
        return {r["path"]: tuple(float(r[k]) for k in "xywh") for r in csv.DictReader(f)
                if r["path"].startswith("drawings/")}


@pytest.fixture(scope="module")
def cnn() -> DrawingFaceCnn:
    return DrawingFaceCnn()


# ----------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize("box,view", [((100, 60, 40, 24), "frontal"), ((3, 200, 30, 50), "left"),
                                      ((0, 0, 255, 255), "right")])
def test_targets_mark_one_centre_cell_in_its_view_whose_regression_gives_the_box_back(box, view):
    heat, reg, mask = centre_targets([(*box, view)], 256, 256)
    assert heat.shape == (len(VIEWS), 32, 32) and reg.shape == (4, 32, 32) and mask.sum() == 1
    k = VIEWS.index(view)
    assert heat[[i for i in range(len(VIEWS)) if i != k]].max() == 0
    r, c = np.argwhere(mask)[0]
    assert heat[k, r, c] == 1.0 and (heat[k] <= 1).all() and (heat[k] < 1).sum() == heat[k].size - 1
    decoded = boxes_from_peaks([(r, c, 1.0)], reg[:2], reg[2:], scale=1.0)[0]
    assert decoded[:4] == pytest.approx(box, abs=1e-4)


def test_targets_skip_faces_too_small_or_centred_outside_the_input():
    faces = [(10, 10, 8, 30, "frontal"), (250, 100, 40, 40, "left"), (-60, 5, 50, 50, "right")]
    heat, reg, mask = centre_targets(faces, 256, 256)
    assert mask.sum() == 0 and heat.max() == 0


def test_overlapping_faces_keep_both_centres():
    heat, _, mask = centre_targets([(40, 40, 60, 60, "frontal"), (80, 40, 60, 60, "frontal")], 256, 256)
    assert mask.sum() == 2 and (heat[0] == 1).sum() == 2


def test_merging_a_mirrored_pass_swaps_views_and_mirrors_offsets():
    rng = np.random.default_rng(0)
    plain = rng.normal(size=(MAPS, 6, 8)).astype(np.float32)
    # the mirror's outputs if the network were exactly mirror-equivariant
    mirrored = plain[:, :, ::-1].copy()
    n = len(VIEWS)
    mirrored[:n] = plain[[VIEWS.index(MIRRORED_VIEW[v]) for v in VIEWS]][:, :, ::-1]
    mirrored[n] = -plain[n][:, ::-1]  # sigmoid(-z) = 1 - sigmoid(z): offset o -> 1 - o
    heat, reg = merge_mirrored(plain, mirrored)
    assert heat == pytest.approx(1 / (1 + np.exp(-plain[:n])), abs=1e-6)
    assert reg[0] == pytest.approx(1 / (1 + np.exp(-plain[n])), abs=1e-6)
    assert reg[2:] == pytest.approx(plain[n + 2:], abs=1e-6)


def test_peaks_are_local_maxima_above_the_score_best_first():
    heat = np.zeros((10, 12), np.float32)
    heat[2, 3], heat[2, 4] = 0.9, 0.5  # 0.5 sits next to a higher cell: not a peak
    heat[7, 9] = 0.6
    heat[5, 0] = 0.05  # below min_score
    assert centre_peaks(heat, 0.1, 10) == [(2, 3, pytest.approx(0.9)), (7, 9, pytest.approx(0.6))]
    assert centre_peaks(heat, 0.1, 1) == [(2, 3, pytest.approx(0.9))]
    assert centre_peaks(heat, 0.95, 10) == []


def test_boxes_from_peaks_scale_back_to_image_pixels():
    offset = np.full((2, 4, 4), 0.5, np.float32)
    log_size = np.full((2, 4, 4), math.log(2.0), np.float32)  # 2 cells = 16 input px
    (x, y, w, h, score), = boxes_from_peaks([(1, 2, 0.7)], offset, log_size, scale=0.5)
    assert (x, y, w, h) == pytest.approx(((2.5 * STRIDE - 8) / 0.5, (1.5 * STRIDE - 8) / 0.5, 32, 32))
    assert score == 0.7


@pytest.mark.parametrize("shape", [(100, 300), (640, 480), (33, 17)])
def test_input_is_scaled_to_the_side_and_padded_white_to_a_multiple_of_32(shape):
    gray = np.zeros(shape, np.uint8)
    x, s = to_input(gray, INPUT_SIDE_PX)
    assert s == pytest.approx(INPUT_SIDE_PX / max(shape))
    assert x.shape[0] % PAD_MULTIPLE == 0 and x.shape[1] % PAD_MULTIPLE == 0 and max(x.shape) == INPUT_SIDE_PX
    h, w = round(shape[0] * s), round(shape[1] * s)
    assert (x[:h, :w] == normalise(np.zeros(1, np.uint8))[0]).all()
    assert (x[h:] == normalise(np.full(1, 255, np.uint8))[0]).all()


# ----------------------------------------------------------------------------- the shipped network


def test_the_shipped_weights_are_small_and_load(cnn):
    assert MODEL_FILE.stat().st_size < 3e6
    assert sum(p.numel() for p in cnn.net.parameters()) > 100_000


@pytest.mark.parametrize("min_score,at_least", [(CNN_CONSENT, 16), (THRESHOLDS["drawn_cnn"].agree, 10)])
def test_its_best_box_is_on_the_face_of_the_fixture_drawings(cnn, min_score, at_least):
    # measured with the shipped weights: 17 of 17 at the consent score, 11 of 17 at the agree score
    # (portraits that fill the frame, which the labelled clip art seldom has; they trained as crops)
    boxes = hand_boxes()
    found = 0
    for rel, box in boxes.items():
        faces = cnn.detect(read_image(SAMPLES / rel), min_score=min_score)
        found += bool(faces) and box_iou(faces[0][:4], box) >= 0.3
    assert found >= at_least, f"{found} of {len(boxes)}"


def test_no_face_on_blank_pages_or_the_face_free_fixture(cnn):
    for image in (np.full((300, 400, 3), 255, np.uint8), np.zeros((200, 200), np.uint8),
                  read_image(SAMPLES / "nonfaces" / "fire_engine_mimooh_01.png")):
        assert cnn.detect(image, min_score=ALONE) == []


def test_a_drawing_and_its_mirror_get_mirrored_faces_looking_the_mirrored_way(cnn):
    image = read_image(SAMPLES / "drawings" / "head13.png")
    if image.shape[0] > image.shape[1]:  # landscape: the padding (bottom only) is its own mirror
        image = np.ascontiguousarray(image.transpose(1, 0, 2))
    plain = cnn.detect(image, min_score=0.05)
    mirrored = cnn.detect(np.ascontiguousarray(image[:, ::-1]), min_score=0.05)
    assert plain and len(plain) == len(mirrored)
    width = image.shape[1]
    for a, b in zip(plain, mirrored):
        assert (width - b[0] - b[2], *b[1:5]) == pytest.approx(a[:5], abs=1e-3)
        assert b[5] == MIRRORED_VIEW[a[5]]


@pytest.mark.parametrize("shape", [(1, 1), (2, 2, 3), (1, 500, 3), (5000, 3), (15, 400)])
def test_images_too_small_give_no_face_and_no_error(cnn, shape):
    assert cnn.detect(np.full(shape, 128, np.uint8)) == []


def test_a_long_thin_image_is_searched_without_error(cnn):
    assert isinstance(cnn.detect(np.full((20, 3000, 3), 200, np.uint8)), list)


def test_missing_weights_name_the_fix(tmp_path):
    with pytest.raises(ModelFileMissing, match="p2d.drawings.build_cnn"):
        load_network(tmp_path / "none.npz")


# ----------------------------------------------------------------------------- training


def test_training_steps_lower_the_loss_and_the_weights_round_trip(tmp_path):
    import torch

    torch.manual_seed(0)
    image = read_image(SAMPLES / "drawings" / "boy_astrid_graeber_.png", mode="L")
    box = hand_boxes()["drawings/boy_astrid_graeber_.png"]
    x, s = to_input(image, 128)
    face = (*(v * s for v in box), "frontal")
    heat, reg, mask = (torch.from_numpy(a)[None] for a in centre_targets([face], *x.shape))
    net = build_network((8, 8, 16, 16, 16))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    batch = torch.from_numpy(x)[None, None]
    losses = []
    for _ in range(30):
        loss, parts = training_loss(net(batch), heat, reg, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert set(parts) == {"centre", "offset", "size"}
    assert losses[-1] < 0.5 * losses[0]
    save_weights(net.eval(), tmp_path / "w.npz", (8, 8, 16, 16, 16))
    again = load_network(tmp_path / "w.npz")
    with torch.no_grad():
        assert torch.allclose(again(batch), net(batch), atol=0.05)
