"""Rendering helpers shared by the CLI commands.

Exit status of every command: 0 done (a run may list items that failed while others succeeded;
rerun to retry them), 1 the run did not do its job (its output folder is locked by another run,
the disk filled, or every item it tried failed), 2 a usage error (bad arguments or input files).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import typer
from rich.table import Table
from rich.text import Text

from dftoolkit.locks import FolderLockedError
from dftoolkit.manifest import Manifest, ManifestError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def dataframe_table(frame: pd.DataFrame, title: str) -> Table:
    """A rich Table of ``frame``'s rows (numeric columns right-aligned)."""
    table = Table(title=Text(title))
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(Text("-" if value is None else str(value)) for value in row))
    return table


def comma_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated option: ``"a, b,"`` -> ``["a", "b"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return comma_list(text) if "," in text else text


def key_values(option: str, pairs: Iterable[str], example: str, *, dotted: bool = False) -> dict[str, Any]:
    """The ``KEY=VALUE`` settings of a repeatable ``option``: ``{KEY: VALUE}``, or with ``dotted``
    (``NAME.KEY=VALUE``, the owner first) ``{NAME: {KEY: VALUE}}``.

    A VALUE is JSON when it parses as JSON (``3``, ``0.5``, ``true``, ``null``, ``["c23","c40"]``); else a
    text with commas is the list of its items (``c23,c40``), any other text itself. A malformed pair
    :func:`fail`s with ``error: OPTION 'PAIR': expected KEY=VALUE, e.g. EXAMPLE``.
    """
    settings: dict[str, Any] = {}
    shape = "NAME.KEY=VALUE" if dotted else "KEY=VALUE"
    for pair in pairs:
        key, sep, value = pair.partition("=")
        owner, dot, name = key.partition(".")
        if not (sep and key) or (dotted and not (owner and dot and name)):
            fail(f"{option} {pair!r}: expected {shape}, e.g. {example}")
        if dotted:
            settings.setdefault(owner, {})[name] = _value(value)
        else:
            settings[key] = _value(value)
    return settings


def output_alias() -> Any:
    """The hidden ``--output`` option: the old spelling of ``--out`` (``index``, ``split``)."""
    return typer.Option(None, "--output", hidden=True, help="Deprecated spelling of --out.")


def out_or_alias(out: Path | None, output: Path | None) -> Path | None:
    """``--out``, or the deprecated ``--output`` (with a warning line); :func:`fail` when both are given."""
    if output is None:
        return out
    if out is not None:
        fail("give --out (-o) only; --output is its deprecated spelling")
    typer.echo("warning: --output is deprecated; use --out (-o)", err=True)
    return output


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Print the warnings raised inside as one ``warning: <message>`` line each on stderr, instead of
    Python's format (the category, then the source line that raised it)."""
    with warnings.catch_warnings(record=True) as caught:
        yield
    for warning in caught:
        typer.echo(f"warning: {' '.join(str(warning.message).split())}", err=True)


def fail(error: BaseException | str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr and exit with status ``code`` (2: a usage error)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    typer.echo(f"error: {' '.join(text.split())}", err=True)
    raise typer.Exit(code)


def _disk_full_error(out: Path, detail: str) -> NoReturn:
    fail(f"{out}: the disk is full ({detail}); free some space and rerun to resume", code=1)


@contextlib.contextmanager
def run_faults(out: Path) -> Iterator[None]:
    """Turn a run's faults into one-line errors with exit status 1: its output folder ``out`` held
    by another run (:class:`~dftoolkit.locks.FolderLockedError`), or the disk full."""
    try:
        yield
    except FolderLockedError as err:
        fail(err, code=1)
    except OSError as err:
        if err.errno not in _DISK_FULL:
            raise
        _disk_full_error(out, str(err))


def check_failures(out: Path, failed: Mapping[str, str], succeeded: int) -> None:
    """Exit with status 1 (one line naming ``out``) when an item failed because the disk filled, or
    when items failed and none succeeded; ``failed`` maps items to their error text."""
    full = [name for name, error in failed.items() if any(os.strerror(e) in error for e in _DISK_FULL)]
    if full:
        _disk_full_error(out, f"{len(full)} item(s) failed for lack of space")
    if failed and not succeeded:
        fail(f"{out}: every item of the run failed ({len(failed)}); see the errors above", code=1)


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path``, or :func:`fail` naming the file and what is wrong with it."""
    try:
        return Manifest.read_parquet(path)
    except (FileNotFoundError, ManifestError) as err:
        fail(err)
