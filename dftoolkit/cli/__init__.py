"""The ``dftoolkit`` command line.

Every sub-command lives in a module of this package that defines ``register(app)``;
``COMMAND_MODULES`` below is the one place that lists them.
"""

from __future__ import annotations

import importlib

import typer

from dftoolkit import __version__
from dftoolkit.progress import set_quiet

__all__ = ["COMMAND_MODULES", "app", "main"]

COMMAND_MODULES = (
    "samples",
    "manifest",
    "corpora",
    "splits",
    "preprocess",
    "faces",
    "generate",
    "perturb",
    "harmoniser",
    "quality",
    "audit",
    "demo",
)

app = typer.Typer(
    name="dftoolkit",
    help="Build, curate, score and validate deepfake video datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dftoolkit {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bars or chatter (also DFTOOLKIT_QUIET=1)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    set_quiet(True if quiet else None)  # without --quiet, DFTOOLKIT_QUIET decides


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    app()
