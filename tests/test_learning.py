"""Learning test: the trainer learns a known photo -> drawing mapping from unpaired real faces.

scikit-image ships 100 real 25x25 gray face crops (`skimage.data.lfw_subset()`, part of its wheel:
no download). Drawings are made from half of them with a pencil-sketch filter (colour dodge of
the image by its blurred negative); photos are the other half. Training sees the two sets
unpaired. The filter is chosen with care: it is close to its own fixed point on white paper, so
the identity loss does not fight it, and its soft lines do not punish a one-pixel shift the way
edge maps (Canny) do under L1; an inversion filter fails for a correct trainer for the first
reason. Held-out photos, never seen in training, are then translated and compared with what the
filter makes of them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from p2d.images import write_image
from p2d.manifest import new_rows, write_manifest
from p2d.train.data import fit_image
from p2d.runs import read_losses
from p2d.train.loop import TrainOptions, train
from p2d.train.translate import load_generators, translate_array
from train_helpers import lfw_faces

SIZE = 32
SKETCH_BLUR_PX = 2.0  # Gaussian sigma of the blurred negative, at 32 px: lines about 2 px wide

RECIPE = f"""
[data]
channels = 1
size = {SIZE}
augment = ["hflip"]   # the faces are aligned: crops and rotations would only slow learning down
[model]
filters = 16
blocks = 2
disc_filters = 16
disc_layers = 2
[train]
epochs = 16            # 50 drawings / batch 4 = 13 steps an epoch: ~200 steps
batch_size = 4
decay_from_epoch = 16
cycle_weight = 10.0
identity_weight = 5.0
save_every = 16
"""


def pencil_sketch(gray: np.ndarray, blur_px: float = SKETCH_BLUR_PX) -> np.ndarray:
    """Colour dodge of a gray image by its blurred negative: flat areas go white, edges stay dark."""
    g = gray.astype(np.float64)
    blurred_negative = gaussian_filter(255.0 - g, blur_px)
    return np.clip(g * 255.0 / np.maximum(255.0 - blurred_negative, 1.0), 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("value", [1, 128, 255])
def test_pencil_sketch_turns_flat_areas_white(value):
    assert (pencil_sketch(np.full((16, 16), value, np.uint8)) == 255).all()


def test_pencil_sketch_keeps_edges_dark():
    step = np.full((16, 16), 230, np.uint8)
    step[:, 8:] = 40  # a dark half: its border with the light half becomes a dark line
    sketch = pencil_sketch(step)
    assert sketch[:, 8].mean() < 150 and sketch[:, 0].min() == 255


@pytest.mark.slow
def test_trained_generator_beats_identity_and_mean_drawing(tmp_path):
    torch.set_num_threads(1)
    faces = np.stack([fit_image(f[:, :, None], SIZE, "center")[:, :, 0] for f in lfw_faces()])
    drawings, photos, held_out = faces[:50], faces[50:85], faces[85:]
    rows = []

    def add(img, name, domain, split):
        path = tmp_path / domain / f"{name}.png"
        write_image(path, img)
        rows.append({"path": f"{domain}/{name}.png", "domain": domain, "source": "lfw", "split": split,
                     "crop": "center", "width": SIZE, "height": SIZE, "phash": "0" * 16, "keep": True,
                     "reason": ""})

    for i, face in enumerate(drawings):
        add(pencil_sketch(face), f"d{i:03d}", "drawing", "train")
    for i, face in enumerate(photos):
        add(face, f"p{i:03d}", "photo", "train")
    for i, face in enumerate(held_out[:2]):  # sample-grid rows only; never trained on
        add(face, f"t{i:03d}", "photo", "test")
    manifest = tmp_path / "lfw.csv"
    write_manifest(new_rows(rows), manifest)
    manifest.with_suffix(".toml").write_text(RECIPE)

    run = train(manifest, out=tmp_path / "run", options=TrainOptions(device="cpu"))

    _, photo2drawing, _ = load_generators(run)
    target = np.stack([pencil_sketch(f) for f in held_out]).astype(np.float64)
    translated = np.stack([translate_array(photo2drawing, f, 1) for f in held_out]).astype(np.float64)
    mean_drawing = np.stack([pencil_sketch(f) for f in drawings]).astype(np.float64).mean(0)
    error = {  # mean absolute error in gray levels (0..255) against the filter's output
        "model": np.abs(translated - target).mean(),
        "identity": np.abs(held_out - target).mean(),
        "mean drawing": np.abs(mean_drawing - target).mean(),
    }
    print(error, read_losses(run)[-1])
    assert error["model"] < error["mean drawing"] < error["identity"], error
    assert error["model"] < 0.93 * error["mean drawing"], error  # measured ~0.80-0.87 over seeds 0-2
