"""Choose crop-drawings' facing order and rotated-try rule on the label CSV's TRAIN split (never eval).

Usage: python -m research.drawing_rules facing  [--clipart DIR] [--cards DIR]
       python -m research.drawing_rules rotated [--cache FILE.json] [--free N] [--skimage]

`facing`: for every labelled train face (its hand box, so no detector's miss hides a face), which
way it looks by each source crop-drawings has: the 68 landmarks' yaw where they hold together
(`p2d.curate.drawings.face_pose`), and the drawing filters' view (`view_scores` ->
`view_from_scores`); then the accuracy of each way of combining them, against the label's
facing (three-quarter views count as left / right). (The filters' view has since been replaced by
a classifier trained for facing: p2d/drawings/build_facing.py compares the two.)

`rotated`: the candidates of every detector on train drawings, upright and at EVERY rotated angle
(no stop at the first face, so a stricter rule can be replayed exactly), cached in --cache (the
slow part: ~1 s per pass per drawing); then found / wrong / false boxes for each candidate rule
of the rotated tries (`ROTATED_RULES` below; p2d ships "alone, 2 agree" as
`p2d.drawings.detect.ROTATED_THRESHOLDS`). --free N: only N face-free train
drawings (by hash order), to keep the run short. --skimage adds scikit-image's face-free pictures.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from p2d.curate.drawings import face_pose
from p2d.drawings.detect import (
    ROTATIONS_DEG,
    THRESHOLDS,
    Candidates,
    DetectorThresholds,
    DrawingDetector,
    choose_face,
    iou,
    rotate_expanded,
    unrotate,
)
from p2d.drawings.fhog import view_from_scores
from p2d.drawings.labels import CARDS, CLIPART, FACING, labelled_set, read_labels
from p2d.faces import Detection
from p2d.ui import console, progress, table


MARGINS = (0.0, 0.02, 0.05, 0.1, 0.2)


def facing_sources(images: dict) -> list[dict]:
    """Per labelled train face: the label's facing, the landmarks' (or "" where they do not hold),
    the filters' scores per view."""
    detector = DrawingDetector()
    rows = []
    faces = [(n, box, view) for n, (img, t) in images.items() for box, view in t]
    with progress() as bar:
        task = bar.add_task("facing sources", total=len(faces), status="")
        for name, box, view in faces:
            image = images[name][0]
            points = detector.models.landmarks(image, box)
            pose = face_pose(image, points, box)  # no detector view: the landmarks alone
            scores = detector._drawn.view_scores(image, box)
            rows.append({"name": name, "truth": FACING[view], "yaw": pose["yaw_deg"],
                         "landmarks": pose["facing"] if pose["facing_from"] == "landmarks" else "",
                         "scores": scores})
            bar.update(task, advance=1)
    return rows


def facing_rules(margin: float) -> dict:
    """Ways of combining the two sources: name -> f(row) -> facing ("unknown" when neither says)."""
    def filters(r):
        return view_from_scores(r["scores"], margin) or "unknown"

    def landmarks(r):
        return r["landmarks"] or "unknown"

    return {
        f"landmarks, else filters (m={margin})": lambda r: r["landmarks"] or filters(r),
        f"filters (m={margin}), else landmarks": lambda r: view_from_scores(r["scores"], margin) or landmarks(r),
        f"filters (m={margin}) alone": filters,
    }


def report_facing(rows: list[dict]) -> None:
    n = len(rows)
    lm = [r for r in rows if r["landmarks"]]
    console.print(f"{n} labelled train faces; landmarks hold on {len(lm)}: right on "
                  f"{sum(r['landmarks'] == r['truth'] for r in lm)}")
    table_rows = []
    for margin in MARGINS:
        fl = [r for r in rows if view_from_scores(r["scores"], margin)]
        table_rows.append((f"filters alone where they say (m={margin})", f"{len(fl)}",
                           f"{sum(view_from_scores(r['scores'], margin) == r['truth'] for r in fl)}"))
        for name, rule in facing_rules(margin).items():
            if "alone" in name:
                continue
            table_rows.append((name, f"{n}", f"{sum(rule(r) == r['truth'] for r in rows)}"))
    # landmarks where they hold AND agree with the filters' second best is not a source: skip
    console.print(table("facing on the train split's hand boxes (right / where the rule answers)",
                        ["rule", "answers on", "right"], table_rows))
    confusion: dict = {}
    for r in rows:
        key = (r["truth"], r["landmarks"] or "-", view_from_scores(r["scores"]) or "-")
        confusion[key] = confusion.get(key, 0) + 1
    console.print(table("label / landmarks / filters (m=0): faces", ["label", "landmarks", "filters", "faces"],
                        [(*k, v) for k, v in sorted(confusion.items())]))


# ----------------------------------------------------------------------------- rotated tries


def toward_alone(fraction: float, thresholds: dict[str, DetectorThresholds] = THRESHOLDS) -> dict[str, DetectorThresholds]:
    """Thresholds whose `agree` is moved `fraction` of the way from `agree` to `alone`."""
    def moved(t: DetectorThresholds) -> float:  # a detector never trusted alone (alone = inf) stays
        return t.agree if fraction == 0 else t.agree + fraction * (t.alone - t.agree)

    return {name: replace(t, agree=moved(t)) for name, t in thresholds.items()}


# The rules for a face in a rotated copy compared here: name -> (thresholds every agreeing box must
# reach, detectors that must agree); None: rotated tries never count. "alone, 2 agree" ships.
ROTATED_RULES: dict[str, tuple[dict[str, DetectorThresholds], int] | None] = {
    "halfway, 2 agree": (toward_alone(0.5), 2),
    "3/4 way, 2 agree": (toward_alone(0.75), 2),
    "alone, 2 agree": (toward_alone(1.0), 2),
    "agree, 3 agree": (THRESHOLDS, 3),
    "halfway, 3 agree": (toward_alone(0.5), 3),
    "no rotated tries": None,
}


def choose_with_rule(c: Candidates, rule: str, min_iou: float = 0.3, min_votes: int = 2):
    """p2d.drawings.detect.choose_with_rotations with one of ROTATED_RULES for the rotated copies."""
    face = choose_face(c.upright, min_iou=min_iou, min_votes=min_votes, consent=c.consent)
    if face is not None or ROTATED_RULES[rule] is None:
        return face
    thresholds, votes = ROTATED_RULES[rule]
    found = []
    for angle, dets in sorted(c.rotated.items(), key=lambda kv: (abs(kv[0]), kv[0])):
        f = choose_face(dets, min_iou=min_iou, min_votes=max(votes, min_votes), thresholds=thresholds,
                        trust_alone=False, consent=c.consent)
        if f is not None:
            found.append(replace(f, rotation_deg=angle))
    return max(found, key=lambda f: (f.votes, f.strength)) if found else None


def every_rotation(detector: DrawingDetector, image: np.ndarray) -> Candidates:
    """Upright candidates (the fallback's too where the others find no face) and, when upright gives
    no face, those at every angle crop-drawings tries, as `DrawingDetector.all_candidates` finds them
    but with no stop at the first face, so that a stricter rule can be replayed exactly. `detector`
    searches upright only (`rotations_deg=()`)."""
    from p2d.images import downscale
    from p2d.padding import border_color

    c = detector.all_candidates(image)
    if choose_face(c.upright, consent=c.consent) is not None:
        return c
    work, s = downscale(image, detector.max_side_px)
    fill = border_color(work)
    for angle in ROTATIONS_DEG:
        turned, m = rotate_expanded(work, angle, fill)
        c.rotated[angle] = [replace(u, x=u.x / s, y=u.y / s, w=u.w / s, h=u.h / s)
                            for u in (unrotate(d, m) for d in detector.candidates(turned, detector.detectors))]
    return c


def _to_json(c: Candidates) -> dict:
    boxes = lambda ds: [[d.x, d.y, d.w, d.h, d.detector, d.score, d.view] for d in ds]  # noqa: E731
    return {"upright": boxes(c.upright), "rotated": [[a, boxes(ds)] for a, ds in c.rotated.items()]}


def _from_json(d: dict) -> Candidates:
    return Candidates([Detection(*b) for b in d["upright"]], {float(a): [Detection(*b) for b in ds] for a, ds in d["rotated"]})


def collect(images: dict, cache_path: Path) -> dict[str, Candidates]:
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    detector = DrawingDetector(rotations_deg=())  # every_rotation searches the turned copies itself
    todo = [n for n in images if n not in cache]
    with progress() as bar:
        task = bar.add_task("candidates, every angle", total=len(todo), status="")
        for i, name in enumerate(todo):
            cache[name] = _to_json(every_rotation(detector, images[name][0]))
            bar.update(task, advance=1, status=name[-30:])
            if i % 10 == 9:
                cache_path.write_text(json.dumps(cache))
    cache_path.write_text(json.dumps(cache))
    return {n: _from_json(cache[n]) for n in images}


def report_rotated(cands: dict[str, Candidates], truth: dict[str, list], min_iou: float = 0.3) -> None:
    rows, details = [], []
    for rule in ROTATED_RULES:
        found = wrong = false = rotated_found = 0
        for name, c in cands.items():
            face = choose_with_rule(c, rule)
            boxes = truth[name]
            if face is None:
                continue
            if not boxes:
                false += 1
                details.append((rule, name, "FALSE", "+".join(face.detectors), f"{face.rotation_deg:+.0f}"))
            elif max(iou(face.box.box, b) for b in boxes) >= min_iou:
                found += 1
                rotated_found += face.rotation_deg != 0
            else:
                wrong += 1
                details.append((rule, name, "wrong", "+".join(face.detectors), f"{face.rotation_deg:+.0f}"))
        rows.append((rule, found, rotated_found, wrong, false))
    n_faces = sum(1 for b in truth.values() if b)
    console.print(table(f"rotated-try rules on {n_faces} train face drawings and {len(truth) - n_faces} face-free",
                        ["rule", "found", "of them rotated", "wrong", "false on face-free"], rows))
    console.print(table("wrong and false boxes", ["rule", "image", "verdict", "detectors", "angle"],
                        [d for d in details if d[4] != "+0"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("facing", "rotated"))
    ap.add_argument("--clipart", type=Path, default=CLIPART)
    ap.add_argument("--cards", type=Path, default=CARDS)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/p2d_train_candidates.json"))
    ap.add_argument("--free", type=int, default=None, help="only this many face-free train drawings")
    ap.add_argument("--faces", type=int, default=None, help="only this many train drawings with a face")
    ap.add_argument("--skimage", action="store_true")
    args = ap.parse_args()
    images = labelled_set("train", args.clipart, args.cards)
    if args.what == "facing":
        report_facing(facing_sources({n: v for n, v in images.items() if v[1]}))
        return
    sha = {p: e["sha256"] for p, e in read_labels().items()}
    faces = sorted((n for n, v in images.items() if v[1]), key=lambda n: sha[n] + n)[: args.faces]
    free = sorted((n for n, v in images.items() if not v[1]), key=lambda n: sha[n] + n)[: args.free]
    chosen = {n: images[n] for n in faces + free}
    if args.skimage:
        from benchmarks.detect_drawings import SKIMAGE_NONFACES, skimage_image

        for name in SKIMAGE_NONFACES:
            img = skimage_image(name)
            if img is not None:
                chosen[f"skimage/{name}"] = (img, [])
    cands = collect(chosen, args.cache)
    report_rotated(cands, {n: [b for b, _ in t] for n, (_, t) in chosen.items()})


if __name__ == "__main__":
    main()
