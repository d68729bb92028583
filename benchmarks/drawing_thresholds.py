"""Choose crop-drawings' per-detector thresholds on the label CSV's TRAIN split (never eval).

Usage: python -m benchmarks.drawing_thresholds [--split train] [--cache FILE.json] [--jobs 2]
           [--clipart DIR] [--cards DIR]

Every detector's upright boxes on every drawing of the split (faces and face-free) are cached in
--cache (the slow part: ~1.5 s per drawing; --jobs processes), so rules replay in seconds. Then:

1. today's rule (p2d.drawings.detect.THRESHOLDS), upright only: found / wrong / false;
2. per detector, the `alone` threshold it would need for no false box on the split's face-free
   drawings by itself (never below today's), and found / wrong / false of the combination with it;
3. the combination with every detector at that threshold (the candidate rule).

drawn_hog was trained on the train split, so its scores on that split's face-free drawings are if
anything too low: the threshold this gives it is a floor. drawn_cnn, trained on the train split
too, learnt that split's face-free drawings by heart (its top score there says nothing), so its
thresholds are the one thing set on the eval split, as the issue that asked for it says: `--split
eval` prints the `alone` the same rule gives it there. For every other detector `--split eval`
replays the rule (report only: nothing else is chosen there).

`--cnn-folds DIR` (train split) checks that choice out of fold: drawn_cnn's boxes on each train
drawing come from `DIR/fold{k}.npz`, the model trained without that drawing's fold (as
research/facing_oof.py uses them; made by p2d/drawings/build_cnn_folds.sh, and refused
unless the file says it left that fold out on today's folds), so its top score on the face-free
drawings says something again; the table's drawn_cnn row then shows the `alone` the rule gives it
there (not floored at today's), and a few `agree` values are replayed beside it. The dlib CNN's fallback boxes
stay those of the cache (it searched where the shipped models found no face).
`--cnn-folds DIR1 DIR2 ...` (fold models of several seeds or variants) prints one summary row per
folder and their mean: one seed's figures move by more than most changes do (research/README.md).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from p2d.drawings.detect import (
    CNN_CONSENT, THRESHOLDS, USER, DetectorThresholds, DrawingDetector, choose_face, iou,
)
from p2d.drawings.labels import CARDS, CLIPART, labelled_set
from p2d.faces import Detection
from p2d.ui import console, progress, table


DETECTORS = tuple(name for name in THRESHOLDS if name != USER)  # the user model is not in the labels

_detector: DrawingDetector | None = None


def _upright(args: tuple[np.ndarray, tuple[str, ...]]) -> list[list]:
    global _detector
    image, detectors = args
    if _detector is None or _detector.detectors != detectors:
        _detector = DrawingDetector(detectors=detectors, rotations_deg=())
    return [[d.x, d.y, d.w, d.h, d.detector, d.score, d.view] for d in _detector.candidates(image)]


def collect(images: dict, cache_path: Path, jobs: int) -> dict[str, list[Detection]]:
    """Every detector's upright boxes on every image, from the cache where it has them: the cache
    says which detectors it holds, and only the missing ones run (a new detector costs its own time)."""
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    cache.setdefault("detectors", [])
    cache.setdefault("boxes", {})
    missing = tuple(d for d in DETECTORS if d not in cache["detectors"])
    todo = list(images) if missing else [n for n in images if n not in cache["boxes"]]
    run = missing or DETECTORS
    with progress() as bar, ProcessPoolExecutor(jobs) as pool:
        task = bar.add_task(f"upright candidates: {', '.join(run)}", total=len(todo), status="")
        work = [(images[n][0], run) for n in todo]
        for name, boxes in zip(todo, pool.map(_upright, work, chunksize=4)):
            kept = [b for b in cache["boxes"].get(name, []) if b[4] not in run]
            cache["boxes"][name] = kept + boxes
            bar.update(task, advance=1, status=name[-30:])
    cache["detectors"] = sorted(set(cache["detectors"]) | set(run))
    cache_path.write_text(json.dumps(cache))
    return {n: [Detection(*b) for b in cache["boxes"][n]] for n in images}


def out_of_fold_cnn(images: dict, cands: dict[str, list[Detection]], folds_dir: Path, folds: int = 5) -> dict:
    """`cands` with drawn_cnn's boxes replaced by those of the fold model that never saw the drawing."""
    from p2d.drawings.build_cnn import check_fold_model, fold_of
    from p2d.drawings.cnn import DrawingFaceCnn

    models = {k: DrawingFaceCnn(model_file=check_fold_model(folds_dir / f"fold{k}.npz", k, folds))
              for k in range(folds)}
    out = {}
    with progress() as bar:
        task = bar.add_task(f"drawn_cnn out of fold: {folds_dir.name}", total=len(cands), status="")
        for name, dets in cands.items():
            cnn = models[fold_of(name, folds)].detect(images[name][0], min_score=CNN_CONSENT)
            out[name] = [d for d in dets if d.detector != "drawn_cnn"] + [
                Detection(x, y, w, h, "drawn_cnn", score, view) for x, y, w, h, score, view in cnn]
            bar.update(task, advance=1)
    return out


def score(cands: dict[str, list[Detection]], truth: dict[str, list], thresholds: dict, min_iou: float = 0.3):
    found = wrong = false = 0
    misses, falses = [], []
    for name, dets in cands.items():
        face = choose_face(dets, thresholds=thresholds, consent=CNN_CONSENT)  # every detector searched
        boxes = truth[name]
        if face is None:
            if boxes:
                misses.append(name)
            continue
        if not boxes:
            false += 1
            falses.append((name, "+".join(face.detectors), f"{face.box.score:.2f}"))
        elif max(iou(face.box.box, b) for b in boxes) >= min_iou:
            found += 1
        else:
            wrong += 1
            falses.append((name, "wrong: " + "+".join(face.detectors), f"{face.box.score:.2f}"))
    return found, wrong, false, misses, falses


def with_alone(thresholds: dict, name: str, alone: float) -> dict:
    t = thresholds[name]
    return {**thresholds, name: DetectorThresholds(alone=alone, agree=min(t.agree, alone), spread=t.spread)}


def alone_needed(cands: dict, truth: dict, name: str, floor: bool = True) -> float:
    """The lowest `alone` for `name` at which its own boxes put nothing on a face-free drawing:
    just above its highest score there (with `floor`, today's `alone` when that is higher already)."""
    top = max((d.score for n, ds in cands.items() if not truth[n] for d in ds if d.detector == name),
              default=-np.inf)
    return max(THRESHOLDS[name].alone if floor else -np.inf, float(np.nextafter(top, np.inf)))


def seed_summary(images: dict, cands: dict, truth: dict, folders: list[Path]) -> None:
    """One row per folder of fold models (a seed, a variant): drawn_cnn's `alone` by the rule out of fold,
    and the vote's found / wrong / false at it and at today's thresholds. One seed's figures move
    (research/README.md: facing by 17 faces, false boxes by 3), so compare sets of seeds, not one model."""
    rows, at_rule = [], []
    for folder in folders:
        oof = out_of_fold_cnn(images, cands, folder)
        need = alone_needed(oof, truth, "drawn_cnn", floor=False)
        today = score(oof, truth, THRESHOLDS)[:3]
        rule = score(oof, truth, with_alone(THRESHOLDS, "drawn_cnn", need))[:3]
        at_rule.append(rule)
        rows.append(
            (f"{folder.parent.name}/{folder.name}", f"{need:.3f}", *rule, " / ".join(map(str, today))))
    mean = np.mean(at_rule, axis=0)
    rows.append(("mean", "", *(f"{m:.1f}" for m in mean), ""))
    n_faces = sum(1 for b in truth.values() if b)
    console.print(table(f"train split, upright, out of fold: {n_faces} drawings with a face, "
                        f"{len(truth) - n_faces} face-free",
                        ["fold models", "drawn_cnn alone", "found", "wrong", "false",
                         "at today's: found / wrong / false"],
                        rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("train", "eval"), default="train")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--clipart", type=Path, default=CLIPART)
    ap.add_argument("--cards", type=Path, default=CARDS)
    ap.add_argument("--cnn-folds", type=Path, nargs="+", default=None,
                    help="drawn_cnn's fold models: out-of-fold boxes on train; several folders (seeds): "
                         "a summary")
    args = ap.parse_args()
    if args.cnn_folds and args.split != "train":
        raise SystemExit("--cnn-folds is for the train split (the fold models were trained on it)")
    cache = args.cache or Path(f"/tmp/p2d_{args.split}_upright.json")
    images = labelled_set(args.split, args.clipart, args.cards)
    truth = {n: [b for b, _ in t] for n, (_, t) in images.items()}
    cands = collect(images, cache, args.jobs)
    if args.cnn_folds and len(args.cnn_folds) > 1:
        seed_summary(images, cands, truth, args.cnn_folds)
        return
    if args.cnn_folds:
        cands = out_of_fold_cnn(images, cands, args.cnn_folds[0])
    n_faces = sum(1 for b in truth.values() if b)
    head = ["rule", "found", "wrong", f"false /{len(truth) - n_faces}"]
    rows = []
    f, w, fa, _, falses = score(cands, truth, THRESHOLDS)
    rows.append(("today (upright only)", f, w, fa))
    chosen = dict(THRESHOLDS)
    for name in DETECTORS:
        need = alone_needed(cands, truth, name, floor=not (args.cnn_folds and name == "drawn_cnn"))
        f, w, fa, _, _ = score(cands, truth, with_alone(THRESHOLDS, name, need))
        rows.append((f"{name} alone >= {need:.3f} (today {THRESHOLDS[name].alone})", f, w, fa))
        chosen = with_alone(chosen, name, need)
        if args.cnn_folds and name == "drawn_cnn":
            for agree in (0.2, 0.25, 0.35, 0.4):
                t = {**THRESHOLDS,
                     name: DetectorThresholds(alone=need, agree=agree, spread=THRESHOLDS[name].spread)}
                f, w, fa, _, _ = score(cands, truth, t)
                rows.append((f"  with agree {agree} (today {THRESHOLDS[name].agree})", f, w, fa))
    f, w, fa, misses, falses = score(cands, truth, chosen)
    rows.append(("every detector at its face-free-clean alone", f, w, fa))
    console.print(table(f"{args.split} split, upright: {n_faces} drawings with a face", head, rows))
    console.print(table("false and wrong boxes of the last rule", ["image", "detectors", "score"], falses))
    console.print(f"missed: {len(misses)}")


if __name__ == "__main__":
    main()
