"""Would a small CNN on the face crop say a drawn face's facing better than the shipped HOG classifier?

Usage: python -m research.facing_crop_cnn [--clipart DIR] [--cards DIR] [--folds 5] [--epochs 30]
           [--crop 64] [--seed 0]

The same protocol as p2d/drawings/build_facing.py, so the figures compare: the label CSV's
TRAIN split only, grouped K-fold cross-validation (folds by `fold_of`: a deck family, the card sets, else the file),
every hand-labelled face and `--jitter` shifted/scaled copies of its box as training examples, each
also mirrored with left and right swapped; scored on each held-out face's hand box and on 3 jittered
boxes, the prediction averaged with the mirror's (left and right swapped), as crop-drawings scores
its classifier. The network: three 3x3 conv blocks (16, 32, 64 channels, batch norm, ReLU, 2x2 max
pool) and a linear layer on their global average; random brightness/contrast, small shifts and
scales (the jittered boxes) as augmentation; AdamW, cross-entropy. CPU, a few minutes. A report: it
ships nothing and chooses nothing on the eval split.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from p2d.drawings.build_cnn import fold_of
from p2d.drawings.build_facing import faces_of, jittered
from p2d.drawings.facing import CLASSES, MIRROR, FacingClassifier, face_crop
from p2d.drawings.labels import CARDS, CLIPART, labelled_set
from p2d.ui import console, table


def crops(faces: list[dict], jitter: int, crop_px: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training crops (N, crop_px, crop_px) float in 0..1 and labels: hand box and jittered boxes,
    each with its mirror (left <-> right)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for f in faces:
        for box in [f["box"], *jittered(f["box"], rng, jitter)]:
            crop = face_crop(f["image"], box, crop_px).astype(np.float32) / 255.0
            xs += [crop, np.ascontiguousarray(crop[:, ::-1])]
            ys += [f["y"], MIRROR[f["y"]]]
    return np.stack(xs), np.array(ys)


def network():
    import torch.nn as nn

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                             nn.MaxPool2d(2))

    return nn.Sequential(block(1, 16), block(16, 32), block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(64, len(CLASSES)))


def train(x: np.ndarray, y: np.ndarray, epochs: int, seed: int):
    import torch

    torch.manual_seed(seed)
    net = network()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * ((len(x) + 63) // 64))
    xt, yt = torch.from_numpy(x)[:, None], torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for k in range(0, len(order), 64):
            idx = order[k:k + 64]
            xb = xt[idx]
            # tone: random contrast and brightness, per crop
            gain = 1 + 0.3 * (torch.rand(len(idx), 1, 1, 1, generator=gen) - 0.5)
            bias = 0.2 * (torch.rand(len(idx), 1, 1, 1, generator=gen) - 0.5)
            xb = ((xb - 0.5) * gain + 0.5 + bias).clamp(0, 1)
            loss = torch.nn.functional.cross_entropy(net(xb - 0.5), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def facing(net, image: np.ndarray, box, crop_px: int) -> str:
    """The mirror-averaged view, as FacingClassifier gives its own."""
    import torch

    crop = face_crop(image, box, crop_px).astype(np.float32) / 255.0
    both = torch.from_numpy(np.stack([crop, np.ascontiguousarray(crop[:, ::-1])]))[:, None] - 0.5
    with torch.no_grad():
        p = torch.softmax(net(both), 1).numpy()
    return CLASSES[int(np.argmax(p[0] + p[1][MIRROR]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clipart", type=Path, default=CLIPART)
    ap.add_argument("--cards", type=Path, default=CARDS)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--jitter", type=int, default=6)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    faces = faces_of({n: v for n, v in labelled_set("train", args.clipart, args.cards).items() if v[1]})
    console.print(f"{len(faces)} train faces; per class "
                  + ", ".join(f"{c} {sum(f['y'] == i for f in faces)}" for i, c in enumerate(CLASSES)))
    shipped = FacingClassifier()  # trained on all of train: its figure here is flattering
    right = {"cnn": [0, 0], "cnn_jit": [0, 0], "shipped": [0, 0]}
    for k in range(args.folds):
        train_faces = [f for f in faces if fold_of(f["group"], args.folds) != k]
        test = [f for f in faces if fold_of(f["group"], args.folds) == k]
        net = train(*crops(train_faces, args.jitter, args.crop, args.seed + k), args.epochs, args.seed + k)
        rng = np.random.default_rng(1)
        for f in test:
            truth = CLASSES[f["y"]]
            right["cnn"][0] += facing(net, f["image"], f["box"], args.crop) == truth
            right["cnn"][1] += 1
            right["shipped"][0] += shipped.facing(f["image"], f["box"]) == truth
            right["shipped"][1] += 1
            for box in [f["box"], *jittered(f["box"], rng, 3)]:
                right["cnn_jit"][0] += facing(net, f["image"], box, args.crop) == truth
                right["cnn_jit"][1] += 1
        console.print(f"fold {k}: {len(test)} faces, cnn right so far {right['cnn'][0]}/{right['cnn'][1]} "
                      f"({time.perf_counter() - t0:.0f} s)")
    rows = [("crop CNN (grouped %d-fold), hand box" % args.folds, *right["cnn"]),
            ("crop CNN, hand + 3 jittered boxes", *right["cnn_jit"]),
            ("shipped HOG classifier, hand box (trained on all train)", *right["shipped"])]
    console.print(table("facing on the train split's labelled faces, out of fold",
                        ["rule", "right", "of"], [(r, a, f"{b} ({a / b:.0%})") for r, a, b in rows]))
    console.print("for comparison (research/facing_oof.py, the same folds): drawn_cnn's view first 259/313, "
                  "the HOG classifier out of fold 248/313")


if __name__ == "__main__":
    main()
