"""Third labelling round of the drawing-face CSV: propose boxes on unlabelled openclipart drawings, draw
sheets to look at, and turn the decisions taken on them into label rows.

    python -m research.label_round3 pool POOL.json            # unlabelled, unexcluded drawings
    python -m research.label_round3 scan POOL.json SCAN.jsonl  # detector proposals (resumable)
    python -m research.label_round3 sheet SCAN.jsonl OUT.png PATH...      # proposals on a 10% grid
    python -m research.label_round3 zoom OUT.png PATH:x0,y0,x1,y1 ...     # a region, pixel grid
    python -m research.label_round3 apply SCAN.jsonl DECISIONS.txt         # append rows to the CSV

A decision line is `path|none` (face-free), `path|skip` (left out), or `;`-joined faces, each
`cN:view` (proposal N of the sheet, as drawn) or `p:x,y,w,h:view` (a box read off a zoom sheet in
pixels). Near-copies named in NEAR_COPIES take the split of their first member.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from p2d.drawings.labels import CLIPART, LABELS, read_labels, sha256_of

ROOT = Path(__file__).resolve().parents[1]
EXCLUDE = ROOT.parent / "shared" / "eval-exclude.sha256"
EVAL_BELOW = 77  # README: `eval` when the SHA-256's first byte is below 77
# Folders with no drawn people (checked on thumbnails) or faces the rules leave out (cards, animals).
SKIP_FOLDERS = ("animals/", "shapes/", "geography/", "computer/icons/", "signs_and_symbols/flags/",
                "recreation/games/cards/")
DETECTORS = ("yunet", "drawn_hog", "haar_profile", "dlib_hog")
NEAR_COPIES = (  # colour / line-art twins of one design: the second takes the first's split
    ("food/breads_and_carbs/pancakes_berries.png", "food/breads_and_carbs/pancakes_berries_bw.png"),
    ("food/pizza_pepperoni.png", "food/pizza_pepperoni_bw.png"),
    ("food/fruit/kallisti-grenade_1_nurbl_01.png", "tools/weapons/kallisti-grenade_2_nurbl_01.png"),
)
COLORS = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (255, 128, 0), (200, 0, 200), (0, 170, 170)]


def split_of(sha: str) -> str:
    return "eval" if int(sha[:2], 16) < EVAL_BELOW else "train"


def pool(out: Path) -> None:
    """Every openclipart PNG not in the CSV (by path or hash), not excluded, not a fixture, once per hash."""
    labels = read_labels()
    used = {e["sha256"] for e in labels.values()}
    banned = {line.split()[0] for line in EXCLUDE.read_text().splitlines() if line.strip()}
    banned |= {sha256_of(p) for p in (ROOT / "p2d" / "samples").rglob("*") if p.is_file()}
    seen: dict[str, str] = {}
    for p in sorted(CLIPART.rglob("*.png")):
        rel = str(p.relative_to(CLIPART))
        if rel in labels or rel.startswith(SKIP_FOLDERS):
            continue
        sha = sha256_of(p)
        if sha not in used and sha not in banned and sha not in seen:
            seen[sha] = rel
    out.write_text(json.dumps([(rel, sha) for sha, rel in seen.items()]))
    print(f"{len(seen)} drawings in the pool")


def scan(pool_file: Path, out: Path) -> None:
    """Each detector's boxes (down to its `agree` score, upright only) on every pool drawing."""
    from rich.progress import track

    from p2d.drawings.detect import DrawingDetector
    from p2d.images import read_image

    done = {json.loads(line)["path"] for line in out.read_text().splitlines()} if out.exists() else set()
    detector = DrawingDetector(detectors=DETECTORS, rotations_deg=())
    with open(out, "a") as f:
        for rel, sha in track([p for p in json.loads(pool_file.read_text()) if p[0] not in done], "scan"):
            try:
                img = read_image(CLIPART / rel)
            except Exception as exc:  # a file p2d cannot read is noted, not fatal
                f.write(json.dumps({"path": rel, "sha": sha, "error": str(exc)}) + "\n")
                continue
            found = [[d.x, d.y, d.w, d.h, d.detector, d.score, d.view] for d in detector.candidates(img)]
            f.write(json.dumps({"path": rel, "sha": sha, "shape": img.shape[:2], "c": found}) + "\n")


def proposals(row: dict) -> list[dict]:
    """The scan's boxes clustered as p2d's vote clusters them; each cluster shown by its dlib or
    drawn_hog box where it has one (those follow the label convention, brows to chin)."""
    from p2d.drawings.detect import THRESHOLDS, cluster, normalised_score
    from p2d.faces import Detection

    dets = [Detection(*c[:4], c[4], c[5], c[6] or "") for c in row.get("c", [])]
    dets = [d for d in dets if d.score >= THRESHOLDS[d.detector].agree and d.w > 2 and d.h > 2]
    out = []
    for members in cluster(dets):
        if not members:
            continue
        shown = max([d for d in members if d.detector in ("drawn_hog", "dlib_hog")] or members, key=normalised_score)
        views = [d.view for d in members if d.view]
        out.append({"box": [round(v) for v in shown.box], "detectors": sorted({d.detector for d in members}),
                    "strength": round(max(normalised_score(d) for d in members), 2), "view": views[0] if views else ""})
    return out


def _rgb(rel: str) -> np.ndarray:
    from p2d.images import read_image

    img = read_image(CLIPART / rel)
    return np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]


def sheet(scan_file: Path, out: Path, paths: list[str], size: int = 420, cols: int = 3) -> None:
    """Each drawing with a 10% grid and its numbered proposals; the proposals are printed too."""
    from PIL import Image, ImageDraw, ImageFont

    rows = {r["path"]: r for r in map(json.loads, scan_file.read_text().splitlines())}
    font, cells = ImageFont.load_default(), []
    for n, rel in enumerate(paths):
        img = _rgb(rel)
        h, w = img.shape[:2]
        s = size / max(h, w)
        cell = Image.new("RGB", (size + 20, size + 34), (255, 255, 255))
        cell.paste(Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s)))), (20, 20))
        draw = ImageDraw.Draw(cell)
        for k in range(11):
            x, y, tone = 20 + k * w * s / 10, 20 + k * h * s / 10, (90, 90, 255) if k % 5 == 0 else (150, 150, 255)
            draw.line([(x, 20), (x, 20 + h * s)], fill=tone)
            draw.line([(20, y), (20 + w * s, y)], fill=tone)
            draw.text((x - 3, 4), str(k), fill=(0, 0, 200), font=font)
            draw.text((4, y - 5), str(k), fill=(0, 0, 200), font=font)
        props = proposals(rows.get(rel, {}))[: len(COLORS)]
        for i, p in enumerate(props):
            x, y, bw, bh = p["box"]
            draw.rectangle([20 + x * s, 20 + y * s, 20 + (x + bw) * s, 20 + (y + bh) * s], outline=COLORS[i], width=2)
            draw.text((22 + x * s, 22 + y * s), str(i), fill=COLORS[i], font=font)
        draw.text((20, size + 20), f"[{n}] {Path(rel).name[:60]}", fill=(0, 0, 0), font=font)
        cells.append(cell)
        print(f"[{n}] {rel} {w}x{h} " + " | ".join(
            f"{i}:{p['box']} {'+'.join(p['detectors'])} {p['strength']} {p['view']}" for i, p in enumerate(props)))
    _grid(cells, cols).save(out)


def zoom(out: Path, regions: list[str], side: int = 440) -> None:
    """`path:x0,y0,x1,y1` (in tenths of the image, as on a sheet): that region enlarged with a grid
    labelled in the image's own pixels, to read a box off."""
    from PIL import Image, ImageDraw, ImageFont

    font, cells = ImageFont.load_default(), []
    for region in regions:
        rel, frac = region.split(":")
        img = _rgb(rel)
        h, w = img.shape[:2]
        f = [float(v) / 10 for v in frac.split(",")]
        x0, y0, x1, y1 = int(f[0] * w), int(f[1] * h), int(np.ceil(f[2] * w)), int(np.ceil(f[3] * h))
        crop = img[y0:y1, x0:x1]
        s = side / max(crop.shape[:2])
        step = max(5, round(max(crop.shape[:2]) / 60) * 5)  # about 12 lines a side
        pic = Image.fromarray(crop).resize((round(crop.shape[1] * s), round(crop.shape[0] * s)), Image.LANCZOS)
        cell = Image.new("RGB", (side + 40, side + 54), (255, 255, 255))
        cell.paste(pic, (36, 24))
        draw = ImageDraw.Draw(cell)
        for v in range((x0 // step + 1) * step, x1, step):
            X = 36 + (v - x0) * s
            draw.line([(X, 24), (X, 24 + pic.height)], fill=(255, 80, 80) if v % (2 * step) == 0 else (255, 180, 180))
            if v % (2 * step) == 0:
                draw.text((X - 8, 12), str(v), fill=(200, 0, 0), font=font)
        for v in range((y0 // step + 1) * step, y1, step):
            Y = 24 + (v - y0) * s
            draw.line([(36, Y), (36 + pic.width, Y)], fill=(255, 80, 80) if v % (2 * step) == 0 else (255, 180, 180))
            if v % (2 * step) == 0:
                draw.text((2, Y - 5), str(v), fill=(200, 0, 0), font=font)
        draw.text((4, side + 40), Path(rel).name[:70], fill=(0, 0, 0), font=font)
        cells.append(cell)
    _grid(cells, 3).save(out)


def _grid(cells: list, cols: int):
    from PIL import Image

    cols = min(cols, len(cells))
    cw, ch = cells[0].size
    out = Image.new("RGB", (cols * cw, -(-len(cells) // cols) * ch), (255, 255, 255))
    for i, c in enumerate(cells):
        out.paste(c, ((i % cols) * cw, (i // cols) * ch))
    return out


def label_rows(decisions: list[str], scans: dict[str, dict]) -> list[dict]:
    """CSV rows from decision lines (see the module docstring); later lines override earlier ones."""
    chosen: dict[str, str] = {}
    for line in decisions:
        if line.strip():
            path, what = line.strip().split("|", 1)
            chosen[path] = what
    first_of = {twin: group[0] for group in NEAR_COPIES for twin in group[1:]}
    rows = []
    for path, what in chosen.items():
        if what == "skip":
            continue
        sha = sha256_of(CLIPART / path)
        split = split_of(sha256_of(CLIPART / first_of[path]) if path in first_of else sha)
        base = {"path": path, "sha256": sha, "split": split}
        if what == "none":
            rows.append(base | {"x": "", "y": "", "w": "", "h": "", "view": "none"})
            continue
        for face in what.split(";"):
            kind, *rest = face.split(":")
            if kind == "p":
                box, view = [int(v) for v in rest[0].split(",")], rest[1]
            else:
                box, view = proposals(scans[path])[int(kind[1:])]["box"], rest[0]
            rows.append(base | dict(zip("xywh", box)) | {"view": view})
    return rows


def apply(scan_file: Path, decisions_file: Path, labels: Path = LABELS) -> None:
    """Append the decided rows to the label CSV, refusing a path or hash it already holds."""
    scans = {r["path"]: r for r in map(json.loads, scan_file.read_text().splitlines())}
    rows = label_rows(decisions_file.read_text().splitlines(), scans)
    have = read_labels(labels)
    clash = {r["path"] for r in rows} & set(have) or {r["sha256"] for r in rows} & {e["sha256"] for e in have.values()}
    if clash:
        raise SystemExit(f"already in {labels.name}: {sorted(clash)[:5]}")
    with open(labels, "a", newline="") as f:
        csv.DictWriter(f, ["path", "sha256", "x", "y", "w", "h", "view", "split"]).writerows(rows)  # csv's \r\n, as the file has
    print(f"{len(rows)} rows appended to {labels}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["pool", "scan", "sheet", "zoom", "apply"])
    ap.add_argument("args", nargs="+")
    a = ap.parse_args()
    if a.command == "pool":
        pool(Path(a.args[0]))
    elif a.command == "scan":
        scan(Path(a.args[0]), Path(a.args[1]))
    elif a.command == "sheet":
        sheet(Path(a.args[0]), Path(a.args[1]), a.args[2:])
    elif a.command == "zoom":
        zoom(Path(a.args[0]), a.args[1:])
    else:
        apply(Path(a.args[0]), Path(a.args[1]))


if __name__ == "__main__":
    main()
