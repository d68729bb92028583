"""Tests for the CLI shell: every command listed with a one-line help and a real example, clean
errors with exit 1, tracebacks only with --debug."""

from __future__ import annotations

import click
import pytest
import typer
from typer.testing import CliRunner

from p2d.cli import app

runner = CliRunner()


def _commands() -> list[tuple[str, ...]]:
    """Every leaf command as its argv path, e.g. ("curate", "celeba")."""
    root = typer.main.get_command(app)
    found = []

    def walk(group: click.Group, prefix: tuple[str, ...]):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                walk(cmd, prefix + (name,))
            else:
                found.append(prefix + (name,))

    walk(root, ())
    return sorted(found)


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for top in sorted({c[0] for c in _commands()}):
        assert top in result.output


@pytest.mark.parametrize("argv", _commands(), ids=" ".join)
def test_each_command_help_has_a_real_example(argv):
    result = runner.invoke(app, [*argv, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"Example: p2d {' '.join(argv)}" in " ".join(result.output.split())
    assert "\\[" not in result.output  # no escaped markup leaking into help texts


@pytest.mark.parametrize("argv", [("curate", "celeba"), ("curate", "photos")], ids=" ".join)
def test_threshold_options_are_the_thresholds_fields(argv):
    """Declared once, from the dataclass: each field is an option with the field's default, and
    the command receives the values as one Thresholds."""
    from dataclasses import fields

    from p2d.curate.filters import Thresholds

    command = typer.main.get_command(app)
    for name in argv:
        command = command.commands[name]
    options = {p.name: p for p in command.params}
    for f in fields(Thresholds):
        assert (options[f.name].opts == [f"--{f.name.replace('_', '-')}"]
                and options[f.name].default == f.default)
    assert "thresholds" not in options and "common" not in options
    for name in ("size", "fmt", "workers", "upsample", "models_dir"):  # the options all curate commands share
        assert name in options


def test_each_command_has_a_one_line_summary():
    root = typer.main.get_command(app)
    for name, cmd in root.commands.items():
        first = (cmd.help or "").strip().split("\n\n")[0]
        assert first and "\n" not in first.strip(), f"{name}: first help paragraph must be one line"


def test_error_is_clean_and_debug_shows_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("P2D_DEBUG", "")  # recorded, so what --debug sets is undone after the test
    missing = str(tmp_path / "missing.csv")
    result = runner.invoke(app, ["manifest", "check", missing])
    assert result.exit_code == 1
    assert "error:" in result.output and "p2d manifest build" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["--debug", "manifest", "check", missing])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "ManifestError"


def test_error_text_in_brackets_is_kept(tmp_path):
    missing = tmp_path / "[model]" / "none.csv"
    result = runner.invoke(app, ["manifest", "check", str(missing)], terminal_width=400)
    assert result.exit_code == 1
    # rich would take "[model]" for markup and drop it: the message must reach the user whole
    assert "[model]" in result.output
