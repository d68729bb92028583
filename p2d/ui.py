"""Terminal output shared by all commands: one rich console, progress bars and summary tables."""

from __future__ import annotations

from typing import Iterable, Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(highlight=False)


def progress(transient: bool = False, disable: bool = False) -> Progress:
    """A progress bar for long loops: description, bar, done/total, elapsed, remaining (`disable`:
    shown nowhere, e.g. on torchrun ranks other than 0)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=transient,
        disable=disable,
    )


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    """A summary table; numbers are right-aligned."""
    t = Table(title=title, title_justify="left")
    rows = [list(r) for r in rows]
    for i, col in enumerate(columns):
        numeric = bool(rows) and all(isinstance(r[i], (int, float)) for r in rows)
        t.add_column(col, justify="right" if numeric else "left")
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    return t


def print_thresholds(**thresholds: object) -> None:
    """Echo the thresholds a run used, so it can be repeated."""
    console.print("thresholds: " + ", ".join(f"{k}={v}" for k, v in thresholds.items()))
