"""Detection rate of each drawing-face detector and of their combination, against hand boxes; facing.

Usage: python -m benchmarks.detect_drawings [--min-iou 0.3] [--skimage] [--clipart DIR] [--painted DIR]
           [--fixtures-only]

Image sets:
- fixtures: p2d/samples/drawings/ (17 drawn faces) and nonfaces/ (2 clip-art vehicles; the
  tractor's driver has a small face, see tests/data/drawing_face_boxes.md), truth in
  tests/data/drawing_face_boxes.csv (boxes and views drawn by hand);
- eval split: the `eval` rows of p2d/drawings/weights/drawing_faces_labels.csv (openclipart drawings with
  hand boxes and views, and face-free ones; the shipped `drawn_hog` detector was neither trained
  nor tuned on them), read from Debian's openclipart-png (--clipart); skipped when it is missing;
- painted figures: benchmarks/painted_faces_labels.csv, 129 faces in two games' character
  portraits: Battle for Wesnoth's (94, painted half and whole figures; Debian's wesnoth-1.16-data)
  and Flare's (35 painted busts; flare-game), GPL art, paths under /usr/share/games (--painted):
  `apt-get install wesnoth-1.16-data flare-game`, or `apt-get download` both and `dpkg -x` them
  into DIR, then --painted DIR/usr/share/games. A style none of p2d's models was trained or tuned
  on; skipped when missing. Its boxes are the vote's, accepted by eye (three drawn by hand where
  the vote found nothing), so "found" there is a check that a model still boxes these faces, not
  an independent measure; its views were read blind on the crops
  (research/README.md, painted figures).

Per detector (its choice among the candidates of one combined pass, as crop-drawings makes it) and
combined: "found" when the chosen box overlaps a hand box by --min-iou, "wrong" a box on a face
drawing that overlaps none, "false" a box on a face-free image. "facing ok": of the faces the
combination found, how many get the hand label's facing (where the label has one) from
crop-drawings' pose rule (p2d.curate.drawings.face_pose). Seconds per drawing: the time spent in
each detector (rotated tries included), and the whole combined pass, on this machine.
Where the combination finds no face, how often crop-drawings' proposed box (drawn_cnn's best,
p2d.curate.drawings.proposal) sits on the face, elsewhere, or is missing, and how many face-free
drawings get one (a proposal is kept only when the user passes it back as --boxes).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from p2d.curate.drawings import PROPOSAL_MIN_SCORE, proposal
from p2d.curate.drawings import face_pose
from p2d.drawings.detect import DrawingDetector, choose_with_rotations, iou
from p2d.drawings.labels import CARDS, CLIPART, FACING, available, score_choices, sha256_of
from p2d.evaluate.metrics import wilson_interval
from p2d.images import list_images
from p2d.ui import console, table

from benchmarks.eval_drawing_detector import as_image, eval_set  # the label CSV's eval split

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT / "p2d" / "samples"
BOXES = ROOT / "tests" / "data" / "drawing_face_boxes.csv"


def fixture_set() -> dict[str, tuple[Path, list]]:
    """{ "drawings/x.png": (file, [(box, view)]) } for every image in drawings/ and nonfaces/."""
    boxes: dict[str, list] = {}
    with open(BOXES, newline="") as f:
        for r in csv.DictReader(f):
            boxes.setdefault(r["path"], []).append((tuple(float(r[k]) for k in "xywh"), r.get("view") or ""))
    out = {}
    for folder in ("drawings", "nonfaces"):
        for p in list_images(DATA / folder):
            out[f"{folder}/{p.name}"] = (p, boxes.get(f"{folder}/{p.name}", []))
    return out


PAINTED = ROOT / "benchmarks" / "painted_faces_labels.csv"
GAMES = Path("/usr/share/games")


def painted_set(root: Path = GAMES, labels: Path = PAINTED) -> dict[str, tuple[Path, list]]:
    """{path: (file, [(box, view)])} for the painted-figure labels whose file under `root` is the
    one labelled (SHA-256); a line per package (the path's first folder) with files missing or of
    another release. Views left blank ('': the crop could not tell) count as found faces without
    a facing to score."""
    out: dict[str, tuple[Path, list]] = {}
    absent: dict[str, int] = {}
    if not root.is_dir():
        return out
    with open(labels, newline="") as f:
        for r in csv.DictReader(f):
            file = root / r["path"]
            if not file.is_file() or sha256_of(file) != r["sha256"]:
                package = r["path"].split("/")[0]
                absent[package] = absent.get(package, 0) + 1
                continue
            out.setdefault(r["path"], (file, []))[1].append((tuple(float(r[k]) for k in "xywh"), r["view"]))
    for package, n in absent.items():
        console.print(f"[yellow]painted figures: {n} of {package}'s labelled files missing under {root} "
                      "or of another release (SHA-256 differs); skipped[/]")
    return out


def view_group(view: str) -> str:
    """A labelled view's kind: frontal, three-quarter (counted as left / right) or profile."""
    return "three-quarter" if view.startswith("three_quarter") else (
        "frontal" if view == "frontal" else "profile")


def facing_rows(candidates: dict, images: dict, truth: dict, detector: DrawingDetector, min_iou: float,
                by_view: dict | None = None):
    """(right, labelled, per-image rows) of the combined choice's facing on the found faces;
    `by_view` (if given) gathers [right, labelled] per kind of labelled view (`view_group`)."""
    ok, labelled, rows = 0, 0, []
    for name, c in candidates.items():
        face = choose_with_rotations(c)
        if face is None or not truth[name]:
            continue
        box, view = max(truth[name], key=lambda t: iou(face.box.box, t[0]))
        if iou(face.box.box, box) < min_iou or not FACING[view]:
            continue
        points = detector.models.landmarks(images[name], face.box.box)
        # as crop-drawings does (p2d.curate.drawings._crop_one)
        pose = face_pose(images[name], points, face.box.box, detector_view=face.view,
                         classifier_view=detector.view_of(images[name], face.box.box), cnn_view=face.cnn_view)
        labelled += 1
        ok += pose["facing"] == FACING[view]
        if by_view is not None:
            tally = by_view.setdefault(view_group(view), [0, 0])
            tally[0] += pose["facing"] == FACING[view]
            tally[1] += 1
        if pose["facing"] != FACING[view]:
            label = FACING[view] + (" (three-quarter)" if view.startswith("three_quarter") else "")
            rows.append((name, label, f"{pose['facing']} ({pose['facing_from'] or 'nothing'})"))
    return ok, labelled, rows


def kind_of(name: str) -> str:
    """'card' for a playing card's face (aisleriot's decks), the game for a painted portrait
    (painted_set's paths), else 'drawing'."""
    if name.startswith("aisleriot/"):
        return "card"
    return next((game for game in ("wesnoth", "flare") if name.startswith(game + "/")), "drawing")


def measure(title: str, items: dict[str, tuple[Path, list]], min_iou: float, per_image: bool) -> None:
    images = {n: as_image(p) for n, (p, _) in items.items()}
    truth = {n: t for n, (_, t) in items.items()}
    boxes = {n: [b for b, _ in t] for n, t in truth.items()}
    detector = DrawingDetector()
    for note in detector.notes:
        console.print(f"[yellow]{note}[/]")
    t0 = time.perf_counter()
    candidates = {name: detector.all_candidates(img) for name, img in images.items()}
    total = time.perf_counter() - t0
    n = len(images)
    rows = []
    for name in [*detector.detectors, "combined"]:
        only = None if name == "combined" else (name,)
        faces = score_choices({k: c for k, c in candidates.items() if boxes[k]}, boxes, only, min_iou)
        free = score_choices({k: c for k, c in candidates.items() if not boxes[k]}, boxes, only, min_iou)
        seconds = total if name == "combined" else detector.seconds.get(name, 0.0)
        rows.append((name, faces["correct"], faces["faces"],
                     f"{100 * faces['correct'] / max(faces['faces'], 1):.1f}%",
                     faces["false"], f"{free['false']}/{free['nonfaces']}", f"{seconds / n:.2f}"))
    by_view: dict[str, list[int]] = {}
    ok, labelled, wrong_facing = facing_rows(candidates, images, truth, detector, min_iou, by_view)
    console.print(table(
        f"{title}: {n} images; found = IoU >= {min_iou} with a hand box; combined facing right on "
        f"{ok} of {labelled} found faces with a labelled view; 2-core CPU shared with other jobs",
        ["detector", "found", "of", "rate", "wrong", "false on face-free", "s/drawing"], rows))
    if wrong_facing:
        console.print(
            table(f"{title}: facing differs from the label", ["image", "label", "pose rule"], wrong_facing))
    if by_view:  # --drop-profiles is about profiles; three-quarter views are where readers disagree too
        console.print(table(f"{title}: facing right, by the label's view (three-quarter views count as left "
                            "/ right)",
                            ["label", "right", "of"],
                            [(v, *by_view[v]) for v in ("frontal", "three-quarter", "profile")
                             if v in by_view]))
    kinds = {kind_of(k) for k in images}
    if len(kinds) > 1:  # the eval split: most of its faces are playing cards; painted: two games' artists
        by_kind = []
        for kind in sorted(kinds):
            names = [k for k in images if kind_of(k) == kind]
            faces = score_choices({k: candidates[k] for k in names if boxes[k]}, boxes, None, min_iou)
            free = score_choices({k: candidates[k] for k in names if not boxes[k]}, boxes, None, min_iou)
            ok_k, labelled_k, _ = facing_rows({k: candidates[k] for k in names}, images, truth, detector,
                                              min_iou)
            lo, hi = wilson_interval(faces["correct"], faces["faces"])
            by_kind.append((kind, f"{faces['correct']} of {faces['faces']}",
                            f"{100 * lo:.0f}-{100 * hi:.0f}%",
                            faces["false"], f"{free['false']}/{free['nonfaces']}", f"{ok_k} of {labelled_k}"))
        console.print(table(f"{title}: combined, by kind of drawing",
                            ["kind", "found", "95% interval", "wrong", "false on face-free", "facing right"],
                            by_kind))
    verdicts = score_choices(candidates, boxes, None, min_iou)["per_image"]
    listed = []
    proposals = {"on the face": 0, "elsewhere": 0, "none": 0, "on face-free": 0, "face-free": 0}
    for k, v in sorted(verdicts.items()):
        offer = ""
        face = choose_with_rotations(candidates[k])
        if face is None:  # crop-drawings proposes a box for the user to check
            box = proposal(candidates[k].upright)
            if not boxes[k]:
                proposals["face-free"] += 1
                proposals["on face-free"] += box is not None
                offer = "" if box is None else f"proposed {box.score:.2f} (no face here)"
            elif box is None:
                proposals["none"] += 1
            else:
                hit = max(iou(box.box, b) for b in boxes[k]) >= min_iou
                proposals["on the face" if hit else "elsewhere"] += 1
                offer = f"proposed {box.score:.2f}, {'on the face' if hit else 'elsewhere'}"
        if per_image or v not in ("correct", "none"):
            found = offer if face is None else f"{'+'.join(face.detectors)} at {face.rotation_deg:+.0f} deg"
            listed.append((k, v, found))
    missed = proposals["on the face"] + proposals["elsewhere"] + proposals["none"]
    if missed or proposals["face-free"]:
        console.print(f"{title}: where the vote finds no face, crop-drawings proposes drawn_cnn's best box "
                      f"(score >= {PROPOSAL_MIN_SCORE}) for the user to check: on {missed} missed faces, "
                      f"{proposals['on the face']} on the face, {proposals['elsewhere']} elsewhere, "
                      f"{proposals['none']} none; on {proposals['on face-free']} of {proposals['face-free']} "
                      "face-free drawings without a box")
    if listed:
        console.print(table(f"{title}: combined, per image" + (
            "" if per_image else " (misses and false boxes)"),
                            ["image", "verdict", "face found by"], listed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-iou", type=float, default=0.3, help="IoU with the hand box that counts as found")
    ap.add_argument("--skimage", action="store_true", help="also run on 20 face-free scikit-image pictures")
    ap.add_argument("--clipart", type=Path, default=CLIPART)
    ap.add_argument("--cards", type=Path, default=CARDS, help="aisleriot's card decks (gnome-cards-data)")
    ap.add_argument("--painted", type=Path, default=GAMES,
                    help="where wesnoth-1.16-data and flare-game put their files")
    ap.add_argument("--fixtures-only", action="store_true")
    args = ap.parse_args()
    measure("fixtures", fixture_set(), args.min_iou, per_image=True)
    if args.fixtures_only:
        pass
    elif any(available(args.clipart, args.cards).values()):
        measure("eval split", eval_set(args.clipart, args.cards), args.min_iou, per_image=False)
    else:
        console.print("[yellow]openclipart-png and gnome-cards-data missing: no eval split[/]")
    painted = {} if args.fixtures_only else painted_set(args.painted)
    if painted:
        measure("painted figures", painted, args.min_iou, per_image=False)
    elif not args.fixtures_only:
        console.print(
            f"[yellow]{args.painted} missing: no painted figures (wesnoth-1.16-data, flare-game)[/]")
    if args.skimage:
        rows = skimage_false_boxes(DrawingDetector())
        false = sum(1 for _, v in rows if v.startswith("FALSE"))
        console.print(
            table(f"face-free scikit-image pictures: {false} false box(es)", ["picture", "result"], rows))


# Pictures without faces that ship with scikit-image (a dev dependency): a check that the rule
# is not fitted to the two fixture non-faces. `camera` (a photographer) and `astronaut` have faces.
SKIMAGE_NONFACES = ("coins", "text", "page", "horse", "rocket", "coffee", "hubble_deep_field", "moon",
                    "brick", "grass", "gravel", "clock", "checkerboard", "logo", "immunohistochemistry",
                    "cell", "colorwheel", "retina", "shepp_logan_phantom", "cat")


def skimage_image(name: str) -> np.ndarray | None:
    """One scikit-image sample picture as RGB uint8, or None where it is not on this machine."""
    import skimage.data as data

    try:
        img = getattr(data, name)()
    except Exception:  # some images are fetched on first use; nothing downloads here
        return None
    img = ((img * 255).astype(np.uint8) if img.dtype == bool
           else (img / max(img.max(), 1) * 255).astype(np.uint8) if img.dtype != np.uint8 else img)
    return np.ascontiguousarray(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3])


def skimage_false_boxes(detector: DrawingDetector) -> list[tuple[str, str]]:
    try:
        import skimage.data  # noqa: F401
    except ImportError:
        return [("scikit-image not installed", "skipped")]
    rows = []
    for name in SKIMAGE_NONFACES:
        img = skimage_image(name)
        if img is None:
            rows.append((name, "unavailable"))
            continue
        face, _ = detector.detect(img)
        rows.append((name, "none" if face is None else
                     f"FALSE BOX {'+'.join(face.detectors)} at {face.rotation_deg:+.0f} deg"))
    return rows


if __name__ == "__main__":
    main()
