"""Tests for p2d.report: recipe differences, grid slicing, strips, and the HTML page (well formed,
every image it references exists) for one and for several real tiny runs."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from p2d import report as rp
from p2d.errors import P2DError

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr", "area", "base"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class PageChecker(HTMLParser):
    """Collects <img src> and checks every non-void tag is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_page(page: Path) -> PageChecker:
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    checker = PageChecker()
    checker.feed(text)
    checker.close()
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)
    assert "http://" not in text and "https://" not in text  # opens offline
    for src in checker.images:
        assert not Path(src).is_absolute()
        assert (page.parent / src).is_file(), src
    return checker


# ---------------------------------------------------------------- pure helpers


def test_flatten_recipe():
    flat = rp.flatten_recipe({"data": {"channels": 1, "augment": ["hflip"]}, "train": {"cycle_weight": 15.0}})
    assert flat == {"data.channels": 1, "data.augment": ["hflip"], "train.cycle_weight": 15.0}


@pytest.mark.parametrize(
    "recipes, expected",
    [
        ([{"train.cycle_weight": 15.0, "data.size": 128}, {"train.cycle_weight": 25.0, "data.size": 128}],
         [("train.cycle_weight", [15.0, 25.0])]),
        ([{"a": 1}, {"a": 1}], []),
        ([{"a": 1}, {"a": 1, "b": 2}], [("b", [None, 2])]),
        ([{"meta.name": "x", "a": [1, 2]}, {"meta.name": "y", "a": [1]}], [("a", [[1, 2], [1]])]),
    ],
)
def test_recipe_differences(recipes, expected):
    assert rp.recipe_differences(recipes) == expected


@pytest.mark.parametrize(
    "runs, expected",
    [(["/r/exp4"], "/r/exp4/report.html"), (["/r/exp4", "/r/exp6"], "/r/report.html"),
     (["/a/x/exp4", "/a/y/exp6"], "/a/report.html")],
)
def test_default_out(runs, expected):
    assert rp.default_out([Path(r) for r in runs]) == Path(expected)


def test_split_grid_cuts_rows_and_cells():
    grid = np.arange(4 * 8 * 3 * 8, dtype=np.uint16).reshape(4 * 8, 3 * 8) % 251
    rows = rp.split_grid(grid.astype(np.uint8), 8)
    assert len(rows) == 4 and all(len(r) == 3 for r in rows)
    assert np.array_equal(rows[2][1], grid[16:24, 8:16])
    with pytest.raises(P2DError, match="not 3 cells of 16 px"):
        rp.split_grid(grid.astype(np.uint8), 16)


@pytest.mark.parametrize(
    "available, saved, wanted, max_epochs, expected",
    [
        (range(1, 11), [5, 10], None, 12, [5, 10]),
        (range(1, 4), [], None, 12, [1, 2, 3]),
        (range(1, 51), range(5, 51, 5), None, 4, [5, 20, 35, 50]),
        (range(1, 51), range(5, 51, 5), [30, 35, 40, 45, 50, 99], 12, [30, 35, 40, 45, 50]),
    ],
)
def test_choose_epochs(available, saved, wanted, max_epochs, expected):
    assert rp.choose_epochs(list(available), list(saved), wanted, max_epochs) == expected


def test_compose_strip_places_cells_scaled_and_sharp():
    size = 32
    cells = [np.full((size, size), v, np.uint8) for v in (10, 20, 30, 40, 50)]
    strip = rp.compose_strip(cells[0], [("epoch 1", cells[1], cells[2]), ("epoch 2", cells[3], cells[4])])
    scale = 3  # 32 px cells are shown at 96 px
    cell, gap = size * scale, 2
    assert strip.shape == (rp.LABEL_PX + 2 * cell + gap, 3 * cell + 2 * gap, 3)
    top = rp.LABEL_PX
    assert (strip[top:top + cell, 0:cell] == 10).all()
    assert (strip[top:top + cell, cell + gap:2 * cell + gap] == 20).all()
    assert (strip[top + cell + gap:, 2 * (cell + gap):] == 50).all()
    assert (strip[:rp.LABEL_PX] < 255).any()  # the labels are drawn


# ---------------------------------------------------------------- the page, on real runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory, trained_tiny_run):
    """The tiny run measured by `p2d evaluate`, and a copy whose recipe says cycle weight 25."""
    from p2d.evaluate import EvalSettings, evaluate_run

    root = tmp_path_factory.mktemp("report")
    first = Path(shutil.copytree(trained_tiny_run, root / "gray_c10"))
    evaluate_run(first, settings=EvalSettings(kid_subsets=10))
    second = Path(shutil.copytree(first, root / "gray_c25"))
    (second / "evaluate.csv").unlink()
    recipe = (second / "recipe.toml").read_text()
    (second / "recipe.toml").write_text(recipe.replace("cycle_weight = 10.0", "cycle_weight = 25.0"))
    return first, second


def test_report_of_one_run(runs):
    run = runs[0]
    result = rp.build_report([run])
    assert result.page == run.resolve() / "report.html"
    page = check_page(result.page)
    names = {Path(s).name for s in page.images}
    assert {"losses.png", "evaluate.png"} <= names
    # 4 test photos, then the drawings: sample_rows=2 per domain in the tiny recipe
    assert {"strip_run1_row1.png", "strip_run1_row4.png"} <= names
    text = " ".join(page.text)
    assert "photo 1" in text and "drawing 2" in text and "cycle_weight" in text
    # the rule's verdict: suggested epoch, its tie set and the drift flags (none on 2 epochs)
    from p2d.evaluate import suggest_best

    best, why = suggest_best(pd.read_csv(run / "evaluate.csv"))
    assert "tied within the noise" in text and "drift flags" in text
    assert (f"gray_c10 (tiny) {best} {' '.join(map(str, why.attrs['tie_set']))}".replace(",", "")
            in text.replace(",", ""))
    assert result.epochs == {"gray_c10 (tiny)": [1, 2]}
    # the run's manifest inspected: drawings vs photos, histograms and the least matched rows
    assert "Drawings vs photos (p2d inspect)" in text and {"histograms.png", "unmatched.png"} <= names


def test_report_warns_when_no_epoch_looks_more_like_a_drawing_than_the_first(runs, tmp_path):
    """The tiny run's evaluate.csv with epoch 2's realism set to epoch 1's: nothing was learned
    that the measures can see, and the page says so in words, beside the verdict."""
    run = Path(shutil.copytree(runs[0], tmp_path / "flat"))
    df = pd.read_csv(run / "evaluate.csv").sort_values("epoch").reset_index(drop=True)
    for col in ("kid_drawing", "kid_tone_drawing"):
        for part in ("", "_lo", "_hi", "_std"):
            df.loc[1, col + part] = df.loc[0, col + part]
    df.to_csv(run / "evaluate.csv", index=False)
    text = " ".join(check_page(rp.build_report([run]).page).text)
    assert "flat (tiny): no epoch is good: none looks more like a drawing than epoch 1" in text


def test_report_of_two_runs_shows_what_differs(runs, tmp_path):
    from typer.testing import CliRunner

    from p2d.cli import app

    out = tmp_path / "compare.html"
    result = CliRunner().invoke(app,
                                ["report", str(runs[0]), str(runs[1]), "--out", str(out), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    page = check_page(out)
    html_text = out.read_text()
    differs = html_text.split("Recipe keys that differ")[1].split("</table>")[0]
    assert "train.cycle_weight" in differs and "25.0" in differs and "data.size" not in differs
    assert sum("strip_run2" in s for s in page.images) == 4
    assert "No evaluate.csv for gray_c25" in html_text


def test_report_errors_name_the_fix(tmp_path, runs):
    with pytest.raises(P2DError, match="p2d train"):
        rp.build_report([tmp_path])
    with pytest.raises(P2DError, match=".html"):
        rp.build_report([runs[0]], out=tmp_path / "page.txt")
