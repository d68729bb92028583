"""Rebuild p2d's drawing facing classifier (weights/drawing_facing.npz) from the label CSV's TRAIN split.

Usage: python -m p2d.drawings.build_facing [--clipart DIR] [--cards DIR] [--out FILE]
           [--C 0.001 0.003 0.01 0.03 0.1 0.3 1] [--jitter 6] [--folds 5] [--features KIND] [--eval]

Needs the sources of labels.py (openclipart-png, the aisleriot decks). Every
hand-labelled train face becomes examples of its facing (three-quarter views count as left /
right): its hand box and `--jitter` boxes shifted by up to 10% and scaled by 0.85-1.2 (a detector's
box is rarely the hand box), each also mirrored with left and right swapped. Features:
p2d.drawings.facing.facing_features, by default the HOG alone (the shipped model's); `--features
hog+asymmetry` adds the crop's mirror asymmetry (tried, not shipped:
research/README.md). The L2 weight (1/C)
is chosen by grouped cross-validation on train: files are split into --folds groups by
build_cnn.fold_group (a card deck with its twins, openclipart's four card sets, else the
file), so no fold is scored on the drawings, their copies, or the deck style it was trained on.
Scored as crop-drawings uses it: the mirror-averaged prediction on the hand box and on jittered
boxes. Beside it, the same folds' accuracy of the rule used before (the drawing filters' view,
p2d.drawings.fhog.view_scores; trained on all of train, so its figure is flattering).
--eval prints the final classifier's accuracy on the eval split's hand boxes (a report: nothing
is chosen there).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from p2d.drawings.build_cnn import fold_of  # by fold_group; stable across runs
from p2d.drawings.facing import (
    CLASSES, FEATURE_KINDS, FEATURES, MIRROR, MODEL_FILE, FacingClassifier, face_crop, facing_features,
    softmax,
)
from p2d.drawings.fhog import DrawingFaceDetector, view_from_scores
from p2d.drawings.labels import CARDS, CLIPART, FACING, labelled_set
from p2d.ui import console, table


def jittered(box, rng: np.random.Generator, n: int) -> list[tuple]:
    x, y, w, h = box
    out = []
    for _ in range(n):
        s = rng.uniform(0.85, 1.2)
        dx, dy = rng.uniform(-0.1, 0.1, 2) * (w, h)
        out.append((x + w / 2 + dx - s * w / 2, y + h / 2 + dy - s * h / 2, s * w, s * h))
    return out


def faces_of(images: dict) -> list[dict]:
    """One entry per labelled face: image, box, class index, group (source file or deck)."""
    out = []
    for name, (image, truth) in images.items():
        for box, view in truth:
            out.append({"name": name, "image": image, "box": box, "y": CLASSES.index(FACING[view]),
                        "group": name.split("#")[0]})
    return out


def examples(faces: list[dict], jitter: int, seed: int = 0,
             features: str = FEATURES) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for f in faces:
        for box in [f["box"], *jittered(f["box"], rng, jitter)]:
            xs += facing_features(face_crop(f["image"], box), features)
            ys += [f["y"], MIRROR[f["y"]]]
    return np.array(xs), np.array(ys)


def fit(x: np.ndarray, y: np.ndarray, c: float, features: str = FEATURES) -> dict:
    """Multinomial logistic regression, L2 weight 1 / (C * n), on standardised features (L-BFGS);
    `features` names what `examples` made the rows of `x` from."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    n, d = z.shape
    k = len(CLASSES)
    onehot = np.eye(k)[y]

    def loss(theta):
        w, b = theta[: d * k].reshape(d, k), theta[d * k:]
        p = softmax(z @ w + b)
        value = -np.sum(onehot * np.log(p + 1e-12)) / n + 0.5 / (c * n) * np.sum(w * w)
        g = (p - onehot) / n
        return value, np.concatenate([(z.T @ g + w / (c * n)).ravel(), g.sum(0)])

    res = minimize(loss, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return {"mean": mean, "scale": scale, "coef": res.x[: d * k].reshape(d, k), "intercept": res.x[d * k:],
            "features": features}


def accuracy(weights: dict, faces: list[dict], jitter: int, seed: int = 1) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    classifier = FacingClassifier(weights=weights)  # scored as crop-drawings scores
    right = total = 0
    for f in faces:
        for box in [f["box"], *jittered(f["box"], rng, jitter)]:
            right += classifier.facing(f["image"], box) == CLASSES[f["y"]]
            total += 1
    return right, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clipart", type=Path, default=CLIPART)
    ap.add_argument("--cards", type=Path, default=CARDS)
    ap.add_argument("--out", type=Path, default=MODEL_FILE)
    ap.add_argument("--C", type=float, nargs="+", default=[0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0])
    ap.add_argument("--jitter", type=int, default=6)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--features", choices=FEATURE_KINDS, default=FEATURES)
    ap.add_argument("--eval", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    faces = faces_of({n: v for n, v in labelled_set("train", args.clipart, args.cards).items() if v[1]})
    groups = sorted({f["group"] for f in faces})
    console.print(f"{len(faces)} train faces in {len(groups)} files/decks; per class "
                  + ", ".join(f"{c} {sum(f['y'] == i for f in faces)}" for i, c in enumerate(CLASSES)))
    filters = DrawingFaceDetector()
    rows = []
    filt_right = sum(
        view_from_scores(filters.view_scores(f["image"], f["box"])) == CLASSES[f["y"]] for f in faces)
    rows.append(("drawing filters' view (hand box; trained on all train)", f"{filt_right}/{len(faces)}", ""))
    best = None
    for c in args.C:
        hand = jit = hand_n = jit_n = 0
        for k in range(args.folds):
            train = [f for f in faces if fold_of(f["group"], args.folds) != k]
            test = [f for f in faces if fold_of(f["group"], args.folds) == k]
            if not test:
                continue
            w = fit(*examples(train, args.jitter, features=args.features), c, args.features)
            r, n = accuracy(w, test, 0)
            hand, hand_n = hand + r, hand_n + n
            r, n = accuracy(w, test, 3)
            jit, jit_n = jit + r, jit_n + n
        rows.append((f"classifier C={c} (grouped {args.folds}-fold)",
                     f"{hand}/{hand_n} ({hand / hand_n:.0%})", f"{jit}/{jit_n} ({jit / jit_n:.0%})"))
        if best is None or jit / jit_n > best[1]:
            best = (c, jit / jit_n)
    console.print(table("facing on the train split's labelled faces",
                        ["rule", "hand box", "hand + 3 jittered boxes"], rows))
    weights = fit(*examples(faces, args.jitter, features=args.features), best[0], args.features)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.npz")
    arrays = {k: v.astype(np.float32) for k, v in weights.items() if k != "features"}
    np.savez_compressed(tmp, **arrays, C=np.float32(best[0]), features=np.str_(args.features))
    tmp.replace(args.out)
    console.print(f"C={best[0]} on all {len(faces)} train faces -> {args.out} "
                  f"({args.out.stat().st_size // 1024} KB), {time.perf_counter() - t0:.0f} s")
    if args.eval:
        ev = faces_of({n: v for n, v in labelled_set("eval", args.clipart, args.cards).items() if v[1]})
        r, n = accuracy(weights, ev, 0)
        fr = sum(view_from_scores(filters.view_scores(f["image"], f["box"])) == CLASSES[f["y"]] for f in ev)
        console.print(
            f"eval split hand boxes: classifier {r}/{n} ({r / n:.0%}), drawing filters' view {fr}/{n}")


if __name__ == "__main__":
    main()
