"""Rendering helpers shared by the CLI commands."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pandas as pd
import typer
from rich.table import Table
from rich.text import Text

from dftoolkit.manifest import Manifest, ManifestError


def dataframe_table(frame: pd.DataFrame, title: str) -> Table:
    """A rich Table of ``frame``'s rows (numeric columns right-aligned)."""
    table = Table(title=Text(title))
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(Text("-" if value is None else str(value)) for value in row))
    return table


def fail(error: BaseException | str) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr and exit with status 2 (a usage error)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    typer.echo(f"error: {' '.join(text.split())}", err=True)
    raise typer.Exit(2)


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path``, or :func:`fail` naming the file and what is wrong with it."""
    try:
        return Manifest.read_parquet(path)
    except (FileNotFoundError, ManifestError) as err:
        fail(err)
