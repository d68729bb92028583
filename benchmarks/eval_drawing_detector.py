"""The shipped drawing-face detector against today's five, on the label CSV's eval split and the fixtures.

Usage: python -m benchmarks.eval_drawing_detector [--clipart /usr/share/openclipart/png] [--min-iou 0.3]
           [--skip-stock] [--sweep] [--models DIR]

Images: the `eval` rows of p2d/drawings/weights/drawing_faces_labels.csv (drawings with hand boxes and
face-free drawings; none of them trained or tuned on; needs `apt-get install openclipart-png`),
the fixtures (p2d/samples/drawings + nonfaces, boxes in tests/data/drawing_face_boxes.csv),
and scikit-image's face-free sample pictures. Per detector, one box per image (each detector's
own choice; single stock detectors choose among the candidates of the combined pass): "found" when it overlaps
a hand box by --min-iou, "wrong" when it overlaps none, "on face-free" when the image has no face. "facing
ok": of the found faces, how many the new detector gives the hand label's facing (frontal / left / right).
Seconds: per image, this machine. `drawing+combined`: today's combination, and the new detector's box where
that finds none. --sweep prints found / wrong / face-free boxes of the new detector for several score
thresholds. --sheet DIR saves, per image set, a contact sheet of the drawings with a face: hand boxes blue,
the new detector's box green (found) or red (wrong), with its view and score.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from p2d.drawings.detect import DrawingDetector, choose_with_rotations
from p2d.drawings.fhog import MIN_SCORE, DrawingFaceDetector, box_iou
from p2d.drawings.labels import CARDS, CLIPART, FACING, available, labelled_set
from p2d.images import read_image, write_image
from p2d.sheets import contact_sheet, draw_box
from p2d.ui import console, table


ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT / "tests" / "data"
SKIMAGE_NONFACES = ("coins", "text", "page", "horse", "rocket", "coffee", "hubble_deep_field", "moon",
                    "brick", "grass", "gravel", "clock", "checkerboard", "logo", "immunohistochemistry",
                    "cell", "colorwheel", "retina", "shepp_logan_phantom", "cat", "chelsea")


def eval_set(clipart: Path = CLIPART, cards: Path = CARDS) -> dict[str, tuple[np.ndarray, list]]:
    """{name: (image, [(box, view)])} for the label CSV's eval split (openclipart drawings and
    card faces, from whichever of the two packages is installed)."""
    return labelled_set("eval", clipart, cards)


def as_image(item) -> np.ndarray:
    """An image given as an array or as a file."""
    return item if isinstance(item, np.ndarray) else read_image(item)


def fixture_set() -> dict[str, tuple[Path, list]]:
    boxes: dict[str, list] = {}
    with open(DATA / "drawing_face_boxes.csv", newline="") as f:
        for r in csv.DictReader(f):
            boxes.setdefault(r["path"], []).append((tuple(float(r[k]) for k in "xywh"), None))
    out = {}
    for folder in ("drawings", "nonfaces"):
        for p in sorted((ROOT / "p2d" / "samples" / folder).glob("*.png")):
            out[f"{folder}/{p.name}"] = (p, boxes.get(f"{folder}/{p.name}", []))
    return out


def skimage_set() -> dict[str, np.ndarray]:
    try:
        import skimage.data as data
    except ImportError:
        return {}
    out = {}
    for name in SKIMAGE_NONFACES:
        try:
            img = getattr(data, name)()
        except Exception:  # some pictures are fetched on first use; nothing downloads here
            continue
        if img.dtype != np.uint8:
            img = (img.astype(float) / max(float(img.max()), 1.0) * 255).astype(np.uint8)
        out[name] = np.ascontiguousarray(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3])
    return out


def verdict(box, truth: list, min_iou: float) -> str:
    if box is None:
        return "none"
    if not truth:
        return "false"
    return "found" if max(box_iou(box, t[0]) for t in truth) >= min_iou else "wrong"


def run(images: dict[str, np.ndarray], stock: DrawingDetector | None, new: DrawingFaceDetector,
        min_score: float):
    """{detector: {name: (box or None, view or None)}} and {detector: seconds per image}."""
    picks: dict[str, dict] = {"drawing": {}}
    seconds = {"drawing": 0.0}
    raw = {}
    for name, img in images.items():
        t0 = time.perf_counter()
        raw[name] = new.detect(img, min_score=-1.5)
        seconds["drawing"] += time.perf_counter() - t0
        top = next((f for f in raw[name] if f.score >= min_score), None)
        picks["drawing"][name] = (None, None) if top is None else (top.box, top.view)
    if stock is not None:
        # One combined pass per image (rotated copies only where upright finds no face, as
        # crop-drawings does); each single detector's choice is taken from those same candidates,
        # as benchmarks/detect_drawings.py does, so only the combined pass is timed.
        t0 = time.perf_counter()
        cands = {name: stock.all_candidates(img) for name, img in images.items()}
        seconds["combined"] = time.perf_counter() - t0
        for family in [*stock.detectors, "combined"]:
            only = None if family == "combined" else (family,)
            picks[family] = {}
            for name, c in cands.items():
                face = choose_with_rotations(c.only(only))
                picks[family][name] = (None if face is None else face.box.box, None)
        picks["drawing+combined"] = {n: picks["combined"][n] if picks["combined"][n][0] is not None
                                     else picks["drawing"][n] for n in images}
        seconds["drawing+combined"] = seconds["combined"] + seconds["drawing"]
    return picks, {k: v / max(len(images), 1) for k, v in seconds.items()}, raw


def summary_rows(picks, seconds, truth: dict[str, list], skimage_picks, min_iou: float) -> list[tuple]:
    rows = []
    faces = [n for n in truth if truth[n]]
    free = [n for n in truth if not truth[n]]
    for det, by_name in picks.items():
        v = {n: verdict(by_name[n][0], truth[n], min_iou) for n in truth}
        found = [n for n in faces if v[n] == "found"]
        facing = "-"
        if det == "drawing" and found and all(t[1] for n in found for t in truth[n]):
            ok = 0
            for n in found:
                box, view = by_name[n]
                best = max(truth[n], key=lambda t: box_iou(box, t[0]))
                ok += FACING[best[1]] == view
            facing = f"{ok}/{len(found)}"
        sk = "-" if det not in skimage_picks else sum(b is not None for b, _ in skimage_picks[det].values())
        rows.append((det, f"{len(found)}/{len(faces)}", sum(v[n] == "wrong" for n in faces),
                     f"{sum(v[n] == 'false' for n in free)}/{len(free)}", sk, facing,
                     f"{seconds[det]:.2f}" if det in seconds else "-"))
    return rows


def sweep_rows(raw: dict, truth: dict, min_iou: float,
               thresholds=(-1.0, -0.9, -0.8, -0.7, -0.6, -0.5, -0.25, 0.0, 0.5)):
    rows = []
    for t in thresholds:
        v = {}
        for n, faces in raw.items():
            top = next((f for f in faces if f.score >= t), None)
            v[n] = verdict(None if top is None else top.box, truth[n], min_iou)
        rows.append((t, sum(x == "found" for x in v.values()), sum(x == "wrong" for x in v.values()),
                     sum(x == "false" for x in v.values())))
    return rows


def review_sheet(images: dict, truth: dict, raw: dict, min_score: float, min_iou: float) -> np.ndarray:
    """The drawings with a hand box: hand boxes blue, the new detector's top box green or red."""
    cells, labels = [], []
    for name in sorted(n for n in images if truth[n]):
        img = images[name]
        for box, _ in truth[name]:
            img = draw_box(img, box, (0, 90, 255))
        top = next((f for f in raw[name] if f.score >= min_score), None)
        label = "none"
        if top is not None:
            ok = verdict(top.box, truth[name], min_iou) == "found"
            img = draw_box(img, top.box, (0, 180, 0) if ok else (230, 0, 0))
            label = f"{top.view} {top.score:+.2f}"
        cells.append(img)
        labels.append(f"{Path(name).name}\n{label}")
    return contact_sheet(cells, labels, cell=200, cols=6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clipart", type=Path, default=CLIPART)
    ap.add_argument("--cards", type=Path, default=CARDS, help="aisleriot's card decks (gnome-cards-data)")
    ap.add_argument("--min-iou", type=float, default=0.3)
    ap.add_argument("--min-score", type=float, default=MIN_SCORE, help="the new detector's threshold")
    ap.add_argument("--skip-stock", action="store_true", help="only the new detector (fast)")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--thresholds", type=float, nargs="+",
                    help="--sweep's score thresholds (default: -1 to 0.5)")
    ap.add_argument("--sheet", type=Path, help="folder for review sheets (PNG)")
    ap.add_argument("--models", type=Path,
                    help="a folder of other drawing_face_*.svm files (default: the shipped)")
    args = ap.parse_args()
    new = DrawingFaceDetector(args.models)
    stock = None if args.skip_stock else DrawingDetector()
    sets = {"fixtures": fixture_set()}
    if any(available(args.clipart, args.cards).values()):
        sets = {"eval split": eval_set(args.clipart, args.cards), **sets}
    else:
        console.print("[yellow]openclipart-png and gnome-cards-data missing: fixtures only[/]")
    sk_images = skimage_set()
    sk_picks, _, sk_raw = run(sk_images, stock, new, args.min_score)
    for title, items in sets.items():
        images = {n: as_image(p) for n, (p, _) in items.items()}
        truth = {n: t for n, (_, t) in items.items()}
        picks, seconds, raw = run(images, stock, new, args.min_score)
        console.print(table(
            f"{title}: one box per image, found = IoU >= {args.min_iou} with a hand box; new detector at "
            f"min_score {args.min_score}; 2-core CPU",
            ["detector", "drawings found", "wrong box", "box on face-free",
             f"skimage face-free ({len(sk_images)})", "facing ok", "s/image"],
            summary_rows(picks, seconds, truth, sk_picks, args.min_iou)))
        if args.sheet:
            args.sheet.mkdir(parents=True, exist_ok=True)
            out = args.sheet / f"drawing_detector_{title.replace(' ', '_')}.png"
            write_image(out, review_sheet(images, truth, raw, args.min_score, args.min_iou))
            console.print(f"review sheet: {out}")
        if args.sweep:
            grid = (tuple(args.thresholds),) if args.thresholds else ()
            sk_truth = {n: [] for n in sk_raw}
            rows = [(t, f, w, fa, sk) for (t, f, w, fa), (_, _, _, sk) in
                    zip(sweep_rows(raw, truth, args.min_iou, *grid),
                        sweep_rows(sk_raw, sk_truth, args.min_iou, *grid))]
            console.print(table(f"{title}: new detector by threshold", ["min_score", "found", "wrong",
                                "face-free boxes", "skimage boxes"], rows))


if __name__ == "__main__":
    main()
