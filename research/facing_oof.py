"""How crop-drawings should read which way a found drawn face looks, chosen on the TRAIN split out of fold.

Usage: python -m research.facing_oof FOLDS_DIR [FOLDS_DIR ...] [--folds 5] [--clipart DIR] [--cards DIR]
           [--features KIND --C C] [--eval]

Two sources say which way a face looks: drawn_cnn's centre maps (one per view: the view whose map
is highest at the face's centre) and the facing classifier (p2d.drawings.facing, HOG of the box).
Both were trained on the whole train split, so scoring either there flatters it. Here each train
face is scored by models that never saw its drawing (nor its card deck): FOLDS_DIR holds
`fold{k}.npz`, drawn_cnn trained without fold k (`python -m p2d.drawings.build_cnn --folds 5
--fold k -o FOLDS_DIR/fold{k}.npz`, or all five with p2d/drawings/build_cnn_folds.sh; ~100 s
each on a GPU, ~20 min on 2 CPU cores), and the
classifier is refitted without fold k here (its jittered examples; the shipped model's features
and L2 weight, or `--features` and `--C` to try others). Folds
are build_cnn.fold_of's (by `fold_group`: a deck family, the four card sets, else the
file), the same as build_facing's.

For every train face with a labelled view (three-quarter views count as left / right): drawn_cnn's
view scores where it finds that face (its box overlapping the hand box by IoU >= 0.3 at
detect.py's `agree` score, as when it is a member of the vote), and the classifier's
probabilities on the hand box. Then the accuracy of each rule that combines them:
- `cnn first` (what crop-drawings does): drawn_cnn's view where it found the face, else the classifier;
- `classifier`: the classifier alone;
- `mix w`: the view with the highest w * drawn_cnn's view share (its three map values scaled to sum
  to 1) + (1 - w) * the classifier's probability; the classifier alone where drawn_cnn has no box.
--eval prints the same for the shipped models on the eval split's hand-boxed faces (a report:
nothing is chosen there). Several FOLDS_DIRs (fold models of several seeds or variants): one summary
row each and their mean, since one seed's `cnn first` moves by up to 17 faces (README.md here).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from p2d.drawings.build_cnn import check_fold_model, fold_of
from p2d.drawings.build_facing import examples, faces_of, fit
from p2d.drawings.cnn import VIEWS, DrawingFaceCnn, boxes_from_peaks, centre_peaks
from p2d.drawings.detect import THRESHOLDS, iou
from p2d.drawings.facing import CLASSES, FEATURE_KINDS, MODEL_FILE, FacingClassifier
from p2d.drawings.labels import CARDS, CLIPART, labelled_set
from p2d.ui import console, progress, table


assert tuple(VIEWS) == tuple(CLASSES)
MIN_IOU = 0.3
WEIGHTS = (0.25, 0.5, 0.75)


def cnn_view_scores(cnn: DrawingFaceCnn, image: np.ndarray, box) -> np.ndarray | None:
    """drawn_cnn's three centre-map values at its detection that best overlaps `box` (IoU >= MIN_IOU,
    score >= the vote's `agree`), or None where it has none."""
    gray = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
    heat, reg, s = cnn.centre_maps(gray)
    peaks = centre_peaks(heat.max(axis=0), THRESHOLDS["drawn_cnn"].agree, 10)
    best, best_iou = None, MIN_IOU
    for (r, c, _), found in zip(peaks, boxes_from_peaks(peaks, reg[:2], reg[2:], s)):
        overlap = iou(found[:4], box)
        if overlap >= best_iou:
            best, best_iou = heat[:, r, c], overlap
    return best


def rule_views(cnn: np.ndarray | None, clf: np.ndarray) -> dict[str, int]:
    """{rule: class index} for one face (see the module docstring)."""
    out = {"cnn first": int(np.argmax(cnn)) if cnn is not None else int(np.argmax(clf)),
           "classifier": int(np.argmax(clf))}
    for w in WEIGHTS:
        mixed = clf if cnn is None else w * cnn / cnn.sum() + (1 - w) * clf
        out[f"mix {w}"] = int(np.argmax(mixed))
    return out


def score(rows: list[dict]) -> list[tuple]:
    """Per rule: right of all faces, and of those drawn_cnn found / did not find."""
    rules = list(rows[0]["views"])
    out = []
    for rule in rules:
        right = [r["views"][rule] == r["y"] for r in rows]
        found = [ok for ok, r in zip(right, rows) if r["cnn"] is not None]
        out.append((rule, f"{sum(right)}/{len(rows)} ({sum(right) / len(rows):.0%})",
                    f"{sum(found)}/{len(found)}", f"{sum(right) - sum(found)}/{len(rows) - len(found)}"))
    return out


def confusion(rows: list[dict], rule: str = "cnn first") -> list[tuple]:
    """Per labelled view, how many of its faces `rule` reads as each view: which way the errors go
    (a row per label, a column per reading)."""
    return [(f"label {label}", *(sum(r["y"] == i and r["views"][rule] == j for r in rows) for j in range(len(CLASSES))))
            for i, label in enumerate(CLASSES)]


def face_rows(faces: list[dict], cnn: DrawingFaceCnn, classifier: FacingClassifier, bar, task) -> list[dict]:
    rows = []
    for f in faces:
        v = cnn_view_scores(cnn, f["image"], f["box"])
        p = classifier.probabilities(f["image"], f["box"])
        clf = np.array([p[c] for c in CLASSES])
        rows.append({"name": f["name"], "y": f["y"], "cnn": v, "clf": clf, "views": rule_views(v, clf)})
        bar.advance(task)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folds_dir", type=Path, nargs="+")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--clipart", type=Path, default=CLIPART)
    ap.add_argument("--cards", type=Path, default=CARDS)
    ap.add_argument("--jitter", type=int, default=6, help="as build_facing.py")
    ap.add_argument("--features", choices=FEATURE_KINDS, help="default: the shipped model's")
    ap.add_argument("--C", type=float, help="the classifier's L2 weight 1/C (default: the shipped model's)")
    ap.add_argument("--eval", action="store_true")
    args = ap.parse_args()
    with np.load(MODEL_FILE) as z:
        c = args.C or float(z["C"])
        features = args.features or (str(z["features"]) if "features" in z.files else "hog")
    console.print(f"facing classifier: features {features}, C = {c}")
    faces = faces_of({n: v for n, v in labelled_set("train", args.clipart, args.cards).items() if v[1]})
    classifiers = {}  # the classifier refitted without each fold: the same for every folder
    per_folder = []
    with progress() as bar:
        for folds_dir in args.folds_dir:
            rows = []
            task = bar.add_task(f"train faces, out of fold: {folds_dir.name}", total=len(faces), status="")
            for k in range(args.folds):
                test = [f for f in faces if fold_of(f["name"], args.folds) == k]
                if k not in classifiers:
                    train = [f for f in faces if fold_of(f["name"], args.folds) != k]
                    classifiers[k] = FacingClassifier(weights=fit(*examples(train, args.jitter, features=features), c, features))
                cnn = DrawingFaceCnn(check_fold_model(folds_dir / f"fold{k}.npz", k, args.folds))
                rows += face_rows(test, cnn, classifiers[k], bar, task)
            per_folder.append(rows)
    if len(per_folder) > 1:
        rules = list(per_folder[0][0]["views"])
        right = [[sum(r["views"][rule] == r["y"] for r in rows) for rule in rules] for rows in per_folder]
        summary = [(f"{d.parent.name}/{d.name}", *map(str, counts)) for d, counts in zip(args.folds_dir, right)]
        summary.append(("mean", *(f"{m:.1f}" for m in np.mean(right, axis=0))))
        console.print(table(f"facing right of the train split's {len(per_folder[0])} labelled faces, out of fold, "
                            "per folder of fold models", ["fold models", *rules], summary))
        return
    rows = per_folder[0]
    console.print(table(f"facing of the train split's {len(rows)} labelled faces, each scored by models trained "
                        f"without its fold ({args.folds} folds by fold_group: copies and deck families together)",
                        ["rule", "right", "drawn_cnn found it", "drawn_cnn did not"], score(rows)))
    console.print(table("`cnn first`, out of fold: labelled view against the view read", ["", *CLASSES],
                        confusion(rows)))
    cards = [r for r in rows if r["name"].startswith("aisleriot/")]
    console.print(table(f"the same, card faces only ({len(cards)})", ["rule", "right", "found", "not found"], score(cards)))
    if args.eval:
        ev = faces_of({n: v for n, v in labelled_set("eval", args.clipart, args.cards).items() if v[1]})
        with progress() as bar:
            task = bar.add_task("eval faces, shipped models", total=len(ev), status="")
            erows = face_rows(ev, DrawingFaceCnn(), FacingClassifier(), bar, task)
        console.print(table(f"eval split's {len(erows)} hand-boxed faces, shipped models (a report)",
                            ["rule", "right", "drawn_cnn found it", "drawn_cnn did not"], score(erows)))


if __name__ == "__main__":
    main()
