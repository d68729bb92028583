"""The `p2d` command line: a registry of thin commands. Each parses its options, calls one library
function and prints a summary. No logic lives here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from p2d.errors import P2DError
from p2d.ui import console, table

DEBUG_ENV = "P2D_DEBUG"


class _Group(TyperGroup):
    """Turns a P2DError anywhere below into its message and exit status 1 (traceback only with
    --debug or P2D_DEBUG=1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except P2DError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    help="p2d: curate face photos and drawings, train a CycleGAN between them, translate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
curate_app = typer.Typer(cls=_Group, help="Curate a photo source into a manifest.", no_args_is_help=True)
manifest_app = typer.Typer(cls=_Group, help="Check and build manifests.", no_args_is_help=True)
app.add_typer(curate_app, name="curate")
app.add_typer(manifest_app, name="manifest")


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help=f"Show tracebacks (or set {DEBUG_ENV}=1).")] = False,
):
    if debug:
        os.environ[DEBUG_ENV] = "1"


# ----------------------------------------------------------------------------- manifest


@manifest_app.command("check")
def manifest_check(
    file: Annotated[Path, typer.Argument(help="Manifest CSV to validate.")],
):
    """Validate a manifest and print a summary and every invalid row.

    Example: p2d manifest check data/celeba/manifest.csv
    """
    from p2d.manifest import check_manifest, summarize

    df, problems = check_manifest(file)
    counts = summarize(df)
    rows = [(group, key, n) for group, values in counts.items() for key, n in values.items()]
    console.print(table(f"{file}: {len(df)} rows", ["group", "value", "rows"], rows))
    for p in problems:
        console.print(f"[red]invalid[/] {p}")
    if problems:
        console.print(f"[bold red]{len(problems)} problem(s)[/]: fix the rows above or rebuild the manifest")
        raise typer.Exit(1)
    console.print("[green]manifest is valid[/]")


# ----------------------------------------------------------------------------- curate (issue 2)

# ----------------------------------------------------------------------------- drawings (issue 3)

# ----------------------------------------------------------------------------- train (issue 4)

# ----------------------------------------------------------------------------- evaluate (issue 6)

# ----------------------------------------------------------------------------- demo, report (issue 5)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
