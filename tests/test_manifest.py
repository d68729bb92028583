"""Tests for p2d.manifest and `p2d manifest check`: schema, round trip, row-by-row validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from p2d.cli import app
from p2d.errors import ManifestError
from p2d.images import write_image
from p2d.manifest import (
    REQUIRED_COLUMNS,
    manifest_hash,
    new_rows,
    read_manifest,
    relative_path,
    resolve_path,
    summarize,
    validate,
    write_manifest,
)


def _row(path: str, **kw) -> dict:
    row = dict(path=path, domain="photo", source="celeba", split="train", crop="center", width=8, height=8,
               phash="00ff00ff00ff00ff", keep=True, reason="")
    row.update(kw)
    return row


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    for name in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / "img" / name, np.zeros((8, 8, 3), np.uint8))
    return tmp_path


def test_roundtrip_keeps_text_columns_and_extra_columns(folder):
    df = new_rows([_row("img/a.png", smile_score=0.81),
                   _row("img/b.png", keep=False, reason="smile", phash="0000000000000001")])
    assert list(df.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    path = write_manifest(df, folder / "manifest.csv")
    text = path.read_text()
    assert "true" in text and "false" in text and "True" not in text
    back = read_manifest(path)
    assert back["phash"].tolist() == ["00ff00ff00ff00ff", "0000000000000001"]  # leading zeros kept
    assert back["keep"].tolist() == [True, False]
    assert back["reason"].tolist() == ["", "smile"]
    assert back["smile_score"].iloc[0] == pytest.approx(0.81)
    assert validate(back, path) == []


def test_validate_reports_each_problem_by_row(folder):
    df = new_rows([
        _row("img/a.png"),
        _row("img/missing.png"),
        _row("img/b.png", domain="sketch", split="dev"),
        _row("img/c.png", keep="maybe"),
        _row("img/c.png", keep=False, reason=""),
        _row("img/c.png", keep=True, reason="smile", phash="XYZ", crop="tiles", width=0),
    ])
    write_manifest(df, folder / "m.csv")
    problems = validate(read_manifest(folder / "m.csv"), folder / "m.csv")
    found = {(p.row, p.column) for p in problems}
    assert found == {
        (1, "path"), (2, "domain"), (2, "split"), (3, "keep"), (4, "reason"),
        (5, "reason"), (5, "phash"), (5, "crop"), (5, "width"),
    }
    assert str(problems[0]).startswith("row 3 (path)")  # CSV line numbers: header is line 1


def test_dropped_rows_need_no_file(folder):
    df = new_rows(
        [_row("img/gone.png", keep=False, reason="unreadable:truncated", phash="", width="", height="")])
    write_manifest(df, folder / "m.csv")
    assert validate(read_manifest(folder / "m.csv"), folder / "m.csv") == []


def test_read_errors_name_the_fix(tmp_path):
    with pytest.raises(ManifestError, match="curate command"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("path,domain\nx,photo\n")
    with pytest.raises(ManifestError, match="lacks the columns"):
        read_manifest(tmp_path / "bad.csv")
    (tmp_path / "raw").mkdir()  # a folder of images given in a manifest's place
    with pytest.raises(ManifestError,
                       match="is a folder, not a manifest CSV: manifests come from a curate command"):
        read_manifest(tmp_path / "raw")
    (tmp_path / "raw" / "manifest.csv").write_text("")  # a curate command's output folder
    with pytest.raises(ManifestError, match=r"give .*raw/manifest.csv, the manifest in that folder"):
        read_manifest(tmp_path / "raw")


def test_paths_relative_to_manifest(tmp_path):
    image = tmp_path / "data" / "celeba" / "x.png"
    rel = relative_path(tmp_path / "manifests" / "exp.csv", image)
    assert rel == "../data/celeba/x.png"
    assert resolve_path(tmp_path / "manifests" / "exp.csv", rel).resolve() == image.resolve()
    assert resolve_path(tmp_path / "m.csv", str(image)) == image


def test_summary_and_hash(folder):
    df = new_rows([_row("img/a.png"), _row("img/b.png", domain="drawing", split="test"),
                   _row("img/c.png", keep=False, reason="dup_of:img/a.png")])
    path = write_manifest(df, folder / "m.csv")
    s = summarize(read_manifest(path))
    assert s["domain"] == {"photo": 2, "drawing": 1}
    assert s["keep"] == {"kept": 2, "dropped": 1}
    assert s["reason"] == {"dup_of": 1}
    assert len(manifest_hash(path)) == 64


runner = CliRunner()


def test_cli_check_valid_and_invalid(folder):
    good = write_manifest(new_rows([_row("img/a.png")]), folder / "good.csv")
    result = runner.invoke(app, ["manifest", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "manifest is valid" in result.output
    bad = write_manifest(new_rows([_row("img/a.png"), _row("img/nope.png", domain="x")]), folder / "bad.csv")
    result = runner.invoke(app, ["manifest", "check", str(bad)])
    assert result.exit_code == 1
    assert "row 3 (domain)" in result.output and "row 3 (path)" in result.output


def test_cli_missing_manifest_is_clean_error(tmp_path):
    result = runner.invoke(app, ["manifest", "check", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output
