"""Train the drawing-face CNN (weights/drawing_face_cnn.npz) from the label CSV's train split.

Needs Debian's `openclipart-png`, `gnome-cards-data` and `librsvg2-bin` (see labels.py); the eval split
is never read here, and with `--exclude ../shared/eval-exclude.sha256` a label row whose file is on that
list stops the run before anything is read (the label CSV has none today). Every step draws a batch of
square crops of TRAIN_SIDE_PX: a labelled drawing (with its faces and their views) or a face-free one,
with probability `--face-share` the former. A drawing with faces is, `--portrait-share` of the time, a
portrait: one of its faces scaled to fill 25-85% of the crop (users' drawings are often heads that fill
the frame; the labelled clip art seldom is); otherwise the drawing is scaled so its longer side is
0.55-1.5 crops, half the time centred near one of its faces. Then it is placed with a random shift,
rotated by up to 12 degrees half the time, mirrored half the time (left and right views swapped), and
changed in gamma, contrast and brightness, sometimes blurred. The background past the drawing's edge is
the median of its border. Seeded (numpy's generator and torch's); whether two runs give bit-identical
weights on one machine has not been checked.

    python -m p2d.drawings.build_cnn --exclude ../shared/eval-exclude.sha256   # tens of minutes on 2 cores
    python -m p2d.drawings.build_cnn --epochs 2 -o /tmp/try.npz   # a quick look

Out-of-fold models (for choosing rules on train without scoring a model on drawings it saw):
`--folds K --fold i` trains on the train split less fold i (folds by `fold_group`: a card deck with
its recoloured twins, openclipart's four card sets, else the file; the same folds as build_facing.py).
A fold model's file says which fold it left out and on which folds (`FOLD_SCHEME`);
benchmarks/drawing_thresholds.py and research/facing_oof.py refuse one that does not say so
(`check_fold_model`: older fold models had seen copies of the drawings they were scored on).
`--sampling design` draws each design once however many copies the label CSV holds (`design_of`),
`design-view` also weights turned faces as much as frontal ones; `--style-share S` draws that share of
the crops in another style (`restyled`: ink lines, a stencil, inverted). Out of fold, neither moved
facing or found beyond seed noise (research/README.md), so the defaults stay `drawing` and 0.
For a machine without the Debian packages (a GPU host), `--write-pack F.npz` stores the train split as
this script reads it (gray, longer side at most 512, PNG-compressed) and `--pack F.npz` trains from it;
`--device cuda` runs the network there (the crops are still made on the CPU; timings:
docs/results.md).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from p2d.drawings.cnn import (
    MIRRORED_VIEW, MODEL_FILE, TRAIN_SIDE_PX, WIDTHS, build_network, centre_targets, normalise, save_weights,
    training_loss,
)
from p2d.drawings.labels import FACING, labelled_set, read_labels

WORK_MAX_SIDE_PX = 512  # drawings are kept gray at this size at most (crops never need more)


def gray_set(split: str) -> list[tuple[str, np.ndarray, list]]:
    """[(path, gray uint8 at most WORK_MAX_SIDE_PX, [(x, y, w, h in its pixels, view)])] of a split
    (three-quarter views count as left or right, as the `facing` column says them)."""
    out = []
    for path, (image, boxes) in labelled_set(split).items():
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        s = min(1.0, WORK_MAX_SIDE_PX / max(gray.shape))
        if s < 1:
            gray = cv2.resize(gray, (round(gray.shape[1] * s), round(gray.shape[0] * s)),
                              interpolation=cv2.INTER_AREA)
        out.append((path, gray, [(*(v * s for v in box), FACING[view]) for box, view in boxes]))
    return out


# openclipart's card faces: one design drawn four times
CARD_SETS = ("ornamental", "white", "simple", "bordered")
TWIN_SUFFIXES = ("_4_color", "_poker", "_skat")  # aisleriot decks that recolour or re-letter another deck


def design_of(path: str) -> str:
    """The drawing a label-CSV path is a copy of: the same card of a deck and its recoloured or
    re-lettered twins (`anglo_modern_4_color` is `anglo_modern`, `anglo_poker` is `anglo`), the same card of
    openclipart's four card sets (`ornamental_d_k.png`, `white_d_k.png` ...), else the file itself."""
    file, _, card = path.partition("#")
    if file.startswith("aisleriot/"):
        deck = Path(file).stem
        for twin in TWIN_SUFFIXES:
            deck = deck.removesuffix(twin)
        return f"aisleriot/{deck}#{card}"
    folder = Path(file).parent.name
    if folder in CARD_SETS and Path(file).stem.startswith(folder + "_"):
        return f"cardset#{Path(file).stem[len(folder) + 1:]}"
    return file


def fold_group(path: str) -> str:
    """What stays together in one fold: a deck family (its name's first word: `anglo`, `anglo_modern`
    and `anglo_poker` together), the four card sets (one design language), else the file."""
    group = design_of(path).split("#")[0]
    return group.split("_")[0] if group.startswith("aisleriot/") else group


FOLD_SCHEME = "fold_group"  # written into fold models; bump it when fold_group changes what goes together


def check_fold_model(path: Path, fold: int, folds: int) -> Path:
    """`path` if it is a drawn_cnn model trained without `fold` of `folds` on today's folds, else
    SystemExit naming the fix (a model made on other folds has seen drawings it would be scored on)."""
    if not path.is_file():
        raise SystemExit(f"{path} missing: train it with `python -m p2d.drawings.build_cnn --folds {folds} "
                         f"--fold {fold} -o {path}`")
    with np.load(path) as z:
        made = tuple(z[f"note_{k}"].item() if f"note_{k}" in z.files else None
                     for k in ("fold_scheme", "folds", "fold"))
    if made != (FOLD_SCHEME, folds, fold):
        raise SystemExit(f"{path} was not trained without fold {fold} of {folds} by `{FOLD_SCHEME}` (it says "
                         f"scheme, folds, fold = {made}): scores from it would flatter; retrain it with "
                         f"`python -m p2d.drawings.build_cnn --folds {folds} --fold {fold} -o {path}`")
    return path


def fold_of(path: str, folds: int) -> int:
    """The fold of a label-CSV path (or of its file): by `fold_group`, so no fold is scored on a copy
    of a drawing, or on a deck's style, that it was trained on; stable across runs (folds by file
    alone put the four copies of each card-set design into different folds)."""
    group = fold_group(path)
    return int(np.frombuffer(group.encode(), np.uint8).sum()) % folds


def sampling_weights(data: list, how: str) -> np.ndarray:
    """How often each drawing with faces is drawn for a batch, summing to 1. `drawing`: alike;
    `design`: each design (`design_of`) alike, its copies sharing its turn (the card sets' 47
    three-quarter-left faces are 12 designs drawn 4 times); `design-view`: as `design`, then the
    drawings with a turned face (left, right) given as much weight in all as those with frontal
    faces only."""
    if how == "drawing":
        return np.full(len(data), 1 / len(data))
    designs = [design_of(path) for path, _, _ in data]
    copies = {d: designs.count(d) for d in set(designs)}
    w = np.array([1 / copies[d] for d in designs])
    if how == "design-view":
        turned = np.array([any(view != "frontal" for *_, view in boxes) for _, _, boxes in data])
        if turned.any() and (~turned).any():
            w[turned] *= w[~turned].sum() / w[turned].sum()
    elif how != "design":
        raise ValueError(f"sampling must be drawing, design or design-view, not {how!r}")
    return w / w.sum()


def write_pack(data: list, path: Path) -> None:
    """`gray_set`'s list as one .npz: PNG bytes per drawing, its boxes and views as JSON."""
    import json

    arrays = {f"png{i}": np.frombuffer(cv2.imencode(".png", gray)[1].tobytes(), np.uint8)
              for i, (_, gray, _) in enumerate(data)}
    meta = [{"path": p, "boxes": [list(b) for b in boxes]} for p, _, boxes in data]
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    tmp.replace(path)


def read_pack(path: Path) -> list:
    import json

    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes())
        return [(m["path"], cv2.imdecode(z[f"png{i}"], cv2.IMREAD_GRAYSCALE),
                 [(*b[:4], b[4]) for b in m["boxes"]]) for i, m in enumerate(meta)]


def restyled(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The float crop drawn in another style, one of three at random: as ink lines (its edges dark on
    white), as a stencil (two tones at Otsu's threshold) or inverted (light lines on dark)."""
    kind = rng.choice(("lines", "stencil", "invert"), p=(0.4, 0.3, 0.3))
    if kind == "lines":
        smooth = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.7, 1.5))
        mag = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
        return 1.0 - np.clip(mag / max(float(np.percentile(mag, 99)) * rng.uniform(0.3, 0.7), 1e-6), 0, 1)
    if kind == "stencil":
        u8 = (img * 255).astype(np.uint8)
        _, two = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        return two.astype(np.float32) / 255
    return 1.0 - img


def augmented(gray: np.ndarray, boxes: list, rng: np.random.Generator, portrait_share: float,
              side: int = TRAIN_SIDE_PX, style_share: float = 0.0):
    """(a side x side float crop in [0, 1], its faces (x, y, w, h, view)) drawn as the module
    docstring says; `style_share` of the crops `restyled` (0: no random number is drawn for it)."""
    h0, w0 = gray.shape
    scale = rng.uniform(0.55, 1.5) * side / max(h0, w0)
    portrait = bool(boxes) and rng.random() < portrait_share
    angle = rng.uniform(-12, 12) if rng.random() < 0.5 else 0.0
    cx, cy = w0 / 2, h0 / 2
    if portrait:
        x, y, w, h, _ = boxes[rng.integers(len(boxes))]
        cx, cy = x + w / 2, y + h / 2
        scale = rng.uniform(0.25, 0.85) * side / max(w, h)
    elif boxes and rng.random() < 0.5:
        x, y, w, h, _ = boxes[rng.integers(len(boxes))]
        cx, cy = x + w / 2, y + h / 2
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    shift = 0.15 if portrait else 0.3
    m[:, 2] += (side / 2 - cx + rng.uniform(-shift, shift) * side,
                side / 2 - cy + rng.uniform(-shift, shift) * side)
    border = int(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    crop = cv2.warpAffine(gray, m, (side, side), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                          borderValue=border)
    faces = []
    for x, y, w, h, view in boxes:
        c = m @ np.array([x + w / 2, y + h / 2, 1.0])
        faces.append((c[0] - w * scale / 2, c[1] - h * scale / 2, w * scale, h * scale, view))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
        faces = [(side - x - w, y, w, h, MIRRORED_VIEW[view]) for x, y, w, h, view in faces]
    img = crop.astype(np.float32) / 255
    if style_share > 0 and rng.random() < style_share:
        img = np.ascontiguousarray(restyled(np.ascontiguousarray(img), rng), dtype=np.float32)
    img = img ** rng.uniform(0.6, 1.6)
    img = np.clip((img - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.1, 0.1), 0, 1)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    return img, faces


def batch_tensors(items: list, rng: np.random.Generator, portrait_share: float, side: int = TRAIN_SIDE_PX,
                  style_share: float = 0.0):
    import torch

    xs, heats, regs, masks = [], [], [], []
    for _path, gray, boxes in items:
        img, faces = augmented(gray, boxes, rng, portrait_share, side, style_share)
        heat, reg, mask = centre_targets(faces, side, side)
        xs.append(normalise(img)[None])
        heats.append(heat)
        regs.append(reg)
        masks.append(mask)
    return [torch.from_numpy(np.stack(a)) for a in (xs, heats, regs, masks)]


@dataclass(frozen=True)
class Plan:
    """How the network is trained (main's options: see their help)."""

    epochs: int = 100
    batch: int = 16
    face_share: float = 0.5
    portrait_share: float = 0.35
    lr: float = 3e-3
    seed: int = 0
    threads: int = 2
    widths: tuple[int, ...] = WIDTHS
    sampling: str = "drawing"
    style_share: float = 0.0


def train(data: list, plan: Plan, device: str = "cpu"):
    import torch

    epochs, batch, face_share, portrait_share = plan.epochs, plan.batch, plan.face_share, plan.portrait_share
    lr, seed, threads, widths, sampling, style_share = (plan.lr, plan.seed, plan.threads, plan.widths,
                                                        plan.sampling, plan.style_share)

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)  # the crops: several of these processes can share one host
    rng = np.random.default_rng(seed)
    with_faces = [d for d in data if d[2]]
    face_free = [d for d in data if not d[2]]
    weights = sampling_weights(with_faces, sampling)

    def pick():  # one drawing for a batch (the random draws in the order the shipped model was trained with)
        if rng.random() >= face_share:
            return face_free[rng.integers(len(face_free))]
        if sampling == "drawing":
            return with_faces[rng.integers(len(with_faces))]
        return with_faces[rng.choice(len(with_faces), p=weights)]

    net = build_network(widths).to(device)
    steps = (2 * len(with_faces)) // batch  # an epoch: each face drawing about twice, as crops
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps, pct_start=0.1)
    print(f"{len(with_faces)} drawings with faces, {len(face_free)} face-free; "
          f"{sum(p.numel() for p in net.parameters()):,} weights; {epochs} epochs of {steps} steps")
    for epoch in range(epochs):
        t0, parts = time.perf_counter(), []
        net.train()
        for _ in range(steps):
            items = [pick() for _ in range(batch)]
            tensors = batch_tensors(items, rng, portrait_share, style_share=style_share)
            x, heat, reg, mask = (t.to(device) for t in tensors)
            loss, part = training_loss(net(x), heat, reg, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            parts.append(list(part.values()))
        c, o, s = np.mean(parts, axis=0)
        print(f"epoch {epoch + 1:3d}: centre {c:.3f}  offset {o:.3f}  size {s:.3f}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return net.cpu().eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--face-share", type=float, default=0.5,
                    help="share of a batch drawn from drawings with faces")
    ap.add_argument("--portrait-share", type=float, default=0.35,
                    help="share of the drawings with faces cropped as portraits (one face fills the crop)")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak of the one-cycle schedule")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", type=Path, default=MODEL_FILE)
    ap.add_argument("--exclude", type=Path, help="a file of SHA-256 sums never to train on (one per line)")
    ap.add_argument("--folds", type=int, default=0, help="with --fold: train without one of this many folds")
    ap.add_argument("--fold", type=int, help="the fold left out (0 .. folds - 1)")
    ap.add_argument("--write-pack", type=Path, help="store the train split here (.npz) and stop")
    ap.add_argument("--pack", type=Path, help="train from --write-pack's file instead of the Debian packages")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--widths", type=int, nargs=5, default=WIDTHS, help="channels of the five stages")
    ap.add_argument("--sampling", choices=("drawing", "design", "design-view"), default="drawing",
                    help="how drawings with faces are drawn for a batch (see sampling_weights)")
    ap.add_argument("--style-share", type=float, default=0.0,
                    help="share of the crops drawn in another style (ink lines, stencil, inverted: restyled)")
    args = ap.parse_args()
    if ((args.folds > 0) != (args.fold is not None)
            or (args.fold is not None and not 0 <= args.fold < args.folds)):
        raise SystemExit("--folds K and --fold i go together, with 0 <= i < K")
    if args.exclude:
        excluded = set(args.exclude.read_text().split())
        listed = [path for path, e in read_labels().items() if e["sha256"] in excluded]
        if listed:
            raise SystemExit(f"{len(listed)} label row(s) name files on {args.exclude}: "
                             f"{', '.join(listed[:5])}; remove them from the label CSV")
    t0 = time.perf_counter()
    data = read_pack(args.pack) if args.pack else gray_set("train")
    print(f"train split read in {time.perf_counter() - t0:.0f} s")
    if args.write_pack:
        write_pack(data, args.write_pack)
        print(f"wrote {args.write_pack} ({args.write_pack.stat().st_size / 1e6:.1f} MB)")
        return
    if args.folds:
        data = [d for d in data if fold_of(d[0], args.folds) != args.fold]
        print(f"fold {args.fold} of {args.folds} left out: training on {len(data)} drawings")
    plan = Plan(args.epochs, args.batch, args.face_share, args.portrait_share, args.lr, args.seed,
                args.threads, tuple(args.widths), args.sampling, args.style_share)
    net = train(data, plan, args.device)
    notes = {"fold_scheme": FOLD_SCHEME, "folds": args.folds, "fold": args.fold} if args.folds else {}
    if args.style_share:
        notes["style_share"] = args.style_share
    save_weights(net, args.output, tuple(args.widths), sampling=args.sampling, seed=args.seed, **notes)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB) in "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
