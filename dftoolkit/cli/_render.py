"""Rendering helpers shared by the CLI commands.

Exit status of every command: 0 done (a run may list items that failed while others succeeded;
rerun to retry them), 1 the run did not do its job (its output folder is locked by another run,
the disk filled, or every item it tried failed), 2 a usage error (bad arguments or input files).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import typer
from rich.table import Table
from rich.text import Text

from dftoolkit.config import PairError, parse_pairs, parse_value
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


def key_values(option: str, pairs: Iterable[str], example: str) -> dict[str, Any]:
    """The ``KEY=VALUE`` settings of a repeatable ``option`` as ``{KEY: VALUE}``, each VALUE parsed by
    :func:`~dftoolkit.config.parse_value` (JSON, else a comma list, else the text). A malformed pair
    :func:`fail`s with ``error: OPTION 'PAIR': expected KEY=VALUE, e.g. EXAMPLE``."""
    try:
        parsed = parse_pairs(pairs)
    except PairError as err:
        fail(f"{option} {err.pair!r}: expected KEY=VALUE, e.g. {example}")
    return {key: parse_value(value) for key, value in parsed}


def output_alias() -> Any:
    """The hidden ``--output`` option: the old spelling of ``--out`` (``index``, ``split``)."""
    return typer.Option(None, "--output", hidden=True, help="Deprecated spelling of --out.")


def out_or_alias(out: Path | None, output: Path | None) -> Path | None:
    """``--out``, or the deprecated ``--output`` (with a warning line); :func:`fail` when both are given."""
    if output is None:
        return out
    if out is not None:
        fail("give --out (-o) only; --output is its deprecated spelling")
    logging.getLogger(__name__).warning("--output is deprecated; use --out (-o)")
    return output


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


def check_store(path: Path | None) -> None:
    """:func:`fail` naming ``path`` unless it is None or a FaceStore folder (checked before any work)."""
    from dftoolkit.preprocess.store import FaceStore

    if path is not None:
        try:
            FaceStore(path)
        except (FileNotFoundError, ValueError) as err:
            fail(err)
