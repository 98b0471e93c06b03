"""The ``dftoolkit`` command line.

Every sub-command lives in a module of this package that defines ``register(app)``; ``COMMANDS``
below is the one place that lists them. A module is imported only when one of its commands runs (or
the help lists them all), so ``dftoolkit info`` does not load torch.

Log records and Python warnings reach the terminal as one line each on stderr (``warning: ...``):
the toolkit's own from INFO (WARNING when quiet), other libraries' from ERROR.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import typer
from typer.core import TyperGroup

from dftoolkit import __version__
from dftoolkit.progress import is_quiet, set_quiet

__all__ = ["COMMANDS", "app", "main"]

COMMANDS = {
    "samples": "samples",
    "info": "manifest",
    "corpora": "corpora",
    "index": "corpora",
    "validate": "corpora",
    "split": "splits",
    "export": "splits",
    "preprocess": "preprocess",
    "faces": "faces",
    "generate": "generate",
    "perturb": "perturb",
    "train-dovenet": "harmoniser",
    "quality": "quality",
    "audit": "audit",
    "detectors": "detectors",
    "train": "detectors",
    "evaluate": "detectors",
    "benchmark": "benchmark",
    "demo": "demo",
}
"""Command -> the module of this package that registers it, in the order of the help."""


@functools.cache
def _commands(module: str) -> dict[str, Any]:
    """The commands ``module`` registers (imported on first use)."""
    commands = typer.Typer()
    importlib.import_module(f"{__name__}.{module}").register(commands)
    return dict(typer.main.get_group(commands).commands)


class _LazyCommands(Mapping[str, Any]):
    """The sub-commands of :data:`COMMANDS`, each module imported when one of its commands is looked up."""

    def __getitem__(self, name: str) -> Any:
        if name not in COMMANDS:
            raise KeyError(name)
        return _commands(COMMANDS[name])[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


class _LazyGroup(TyperGroup):
    """The root command, whose sub-commands are :class:`_LazyCommands`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.commands = _LazyCommands()  # type: ignore[assignment]


class _LineHandler(logging.Handler):
    """Each record as one line on stderr: ``warning: <message>`` (INFO: the message alone). A captured
    Python warning loses the source line Python prints under it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            lines = record.getMessage().rstrip("\n").split("\n")
            if record.name == "py.warnings" and len(lines) > 1 and lines[-1].startswith("  "):
                lines = lines[:-1]
            prefix = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
            typer.echo(prefix + " ".join(" ".join(lines).split()), err=True)
        except Exception:  # logging's contract: report, never raise
            self.handleError(record)


def _ours_or_error(record: logging.LogRecord) -> bool:
    return record.name.partition(".")[0] in ("dftoolkit", "py") or record.levelno >= logging.ERROR


def _log_lines(quiet: bool) -> None:
    """Send log records and Python warnings to stderr as lines (:class:`_LineHandler`), once."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _LineHandler)]:
        root.removeHandler(handler)
    handler = _LineHandler()
    handler.addFilter(_ours_or_error)
    root.addHandler(handler)
    logging.getLogger("dftoolkit").setLevel(logging.WARNING if quiet else logging.INFO)
    logging.captureWarnings(False)  # then True: captures again if something reset warnings.showwarning
    logging.captureWarnings(True)


app = typer.Typer(
    name="dftoolkit",
    cls=_LazyGroup,
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
    _log_lines(is_quiet())


def main() -> None:
    app()
