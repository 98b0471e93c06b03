"""Rendering helpers shared by the CLI commands."""

from __future__ import annotations

import pandas as pd
from rich.table import Table
from rich.text import Text


def dataframe_table(frame: pd.DataFrame, title: str) -> Table:
    """A rich Table of ``frame``'s rows (numeric columns right-aligned)."""
    table = Table(title=Text(title))
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(Text("-" if value is None else str(value)) for value in row))
    return table
