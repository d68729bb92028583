"""How fast `p2d review` opens a folder of many drawings, in headless Chromium.

Builds a crop-drawings folder of N drawings (default 5,000): crop-drawings runs once on the bundled
drawings, and its rows, drawings (hard links) and crops are repeated under new names, so the page gets a
manifest, settings and files exactly as crop-drawings writes them, without hours of detection. Then, in
one process: the server's start (reading the folder), and the page opened in Chromium until its list is
drawn and the thumbnails of the first screen have loaded: first with an empty thumbnail cache, then again
(cached). Also the whole command, `python -m p2d review OUT`, from its start to the URL it prints.
Prints seconds for each, the median of --repeat opens.

    python -m benchmarks.review_open --drawings 5000 --repeat 3

Needs Debian's chromium and chromium-driver and selenium (the dev extra).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

import p2d
from p2d.cli import app
from p2d.curate.drawings import SETTINGS_NAME
from p2d.manifest import new_rows, read_manifest, write_manifest
from p2d.review.server import CACHE_DIR, ReviewApp, serve_in_thread

SAMPLES = Path(p2d.__file__).parent / "samples" / "drawings"


def build_folder(root: Path, n: int) -> Path:
    """A crop-drawings output folder of `n` drawings, made from one real run over the samples
    (`root/seed`)."""
    raw, seed = root / "raw", root / "seed"
    if not (seed / "manifest.csv").is_file():
        r = CliRunner().invoke(app, ["crop-drawings", str(SAMPLES), str(seed)])
        assert r.exit_code == 0, r.output
    rows = read_manifest(seed / "manifest.csv").to_dict("records")
    out = root / "out"
    out.mkdir()
    raw.mkdir()
    many = []
    for i in range(n):
        row = dict(rows[i % len(rows)])
        name = Path(row["source_path"]).name
        stem = f"{i:05d}_{Path(name).stem}"
        os.link(SAMPLES / name, raw / f"{stem}{Path(name).suffix}")
        row["source_path"] = f"../raw/{stem}{Path(name).suffix}"
        crop = seed / row["path"]
        row["path"] = f"{stem}.png"
        if row["keep"]:
            os.link(crop, out / row["path"])
        many.append(row)
    write_manifest(new_rows(many), out / "manifest.csv")
    settings = json.loads((seed / SETTINGS_NAME).read_text())
    settings.update(raw=str(raw.resolve()), manifest=str((out / "manifest.csv").resolve()))
    (out / SETTINGS_NAME).write_text(json.dumps(settings))
    return out


def open_page(driver, url: str) -> float:
    """Seconds from asking for the page to its list drawn and the first screen's thumbnails loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    t0 = time.perf_counter()
    driver.get(url)
    WebDriverWait(driver, 120, poll_frequency=0.02).until(lambda d: d.execute_script(
        "if (document.body.dataset.ready !== '1') return false;"
        "const box = document.getElementById('cards').getBoundingClientRect();"
        "const seen = [...document.querySelectorAll('.card img')].filter(i => "
        "  i.getBoundingClientRect().top < box.bottom);"
        "return seen.length > 0 && seen.every(i => i.complete && i.naturalWidth > 0)"
        " && document.getElementById('big').complete;"))
    return time.perf_counter() - t0


def command_start(out: Path) -> float:
    """Seconds from starting `python -m p2d review OUT --no-browser` to its URL printed (imports included)."""
    import subprocess
    import sys

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "p2d", "review", str(out), "--no-browser"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "300"})
    try:
        for line in proc.stdout:
            if "token=" in line:
                return time.perf_counter() - t0
        raise RuntimeError("p2d review printed no URL")
    finally:
        proc.terminate()
        proc.wait()


def apply_seconds(seed: Path) -> list[float]:
    """Apply on the real crop-drawings folder of the samples, two drawings boxed by hand each time: the first
    Apply loads dlib's models, the page keeps them for the later ones."""
    from p2d.review.drawings import DrawingsFolder

    folder = DrawingsFolder(seed)
    times = []
    for k in range(3):
        items = [x for x in folder.items if x["box"]][2 * k:2 * k + 2]
        folder.save({x["rel"]: {"box": [v + 1 for v in x["box"]]} for x in items}, folder.version)
        t0 = time.perf_counter()
        folder.apply()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drawings", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from selenium import webdriver

    with tempfile.TemporaryDirectory() as tmp:
        out = build_folder(Path(tmp), args.drawings)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,860"):
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
        starts, cold, warm, commands = [], [], [], []
        try:
            for _ in range(args.repeat):
                commands.append(command_start(out))
                shutil.rmtree(out / CACHE_DIR, ignore_errors=True)
                t0 = time.perf_counter()
                review = ReviewApp(out)
                starts.append(time.perf_counter() - t0)
                server, url = serve_in_thread(review)
                driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
                cold.append(open_page(driver, url))
                warm.append(open_page(driver, url))
                server.shutdown()
                server.server_close()
        finally:
            driver.quit()
        rows = len(pd.read_csv(out / "manifest.csv"))
        applies = apply_seconds(Path(tmp) / "seed")
    print(f"review_open: {rows} drawings, median of {args.repeat} (seconds; ranges in brackets)")
    for name, values in (("`p2d review` to its URL (a process)", commands),
                         ("server start (read the folder)", starts),
                         ("page open, thumbnails not cached", cold), ("page open, thumbnails cached", warm)):
        print(f"  {name:36s} {statistics.median(values):6.2f}  [{min(values):.2f}-{max(values):.2f}]")
    print("Apply, 2 of the samples' drawings boxed by hand (1st, 2nd, 3rd Apply): "
          + ", ".join(f"{t:.2f}" for t in applies))


if __name__ == "__main__":
    main()
