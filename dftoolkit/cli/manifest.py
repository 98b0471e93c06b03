"""``dftoolkit info``: summarise a manifest."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from dftoolkit.cli._render import dataframe_table, fail
from dftoolkit.manifest import Manifest, ManifestError

__all__ = ["register"]


def info(
    manifest: Path = typer.Argument(..., help="Manifest Parquet file."),
    by: str = typer.Option(
        "dataset,label,method,split", "--by", help="Comma-separated record fields to group the counts by."
    ),
) -> None:
    """Print video counts of a manifest, grouped by record fields."""
    fields = [name.strip() for name in by.split(",") if name.strip()]
    try:
        loaded = Manifest.read_parquet(manifest)
        summary = loaded.summary(by=fields)
    except (FileNotFoundError, ManifestError) as err:
        fail(err)
    roots = loaded.roots
    if not roots:
        where = "no root"
    elif len(set(roots.values())) == 1:
        where = f"root {next(iter(roots.values()))}"
    else:
        where = "roots " + ", ".join(f"{name}={path}" for name, path in sorted(roots.items()))
    Console().print(dataframe_table(summary, f"{manifest}: {len(loaded)} videos, {where}"))


def register(app: typer.Typer) -> None:
    app.command("info")(info)
