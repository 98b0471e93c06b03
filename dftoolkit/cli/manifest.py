"""``dftoolkit info``: summarise a manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.console import Console

from dftoolkit.cli._render import dataframe_table, fail
from dftoolkit.config import comma_list
from dftoolkit.manifest import Manifest, ManifestError

__all__ = ["register"]

_FRAME_COUNTS = {  # VideoRecord.frames_exact -> what `info` calls such counts
    True: "exact",
    False: "container estimates (may be off)",
    None: "of unrecorded origin",
}


def info(
    manifest: Path = typer.Argument(..., help="Manifest Parquet file."),
    by: str = typer.Option(
        "dataset,label,method,split", "--by", help="Comma-separated record fields to group the counts by."
    ),
) -> None:
    """Print video counts of a manifest, grouped by record fields."""
    fields = comma_list(by)
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
    console = Console()
    console.print(dataframe_table(summary, f"{manifest}: {len(loaded)} videos, {where}"))
    console.print(frame_counts(loaded))


def frame_counts(manifest: Manifest) -> str:
    """One line on how far the manifest's frame counts can be trusted, e.g.
    ``"frames: 5 exact, 2 container estimates (may be off), 1 not probed"``."""
    kinds = Counter(record.frames_exact for record in manifest if record.frames is not None)
    parts = [f"{kinds[kind]} {label}" for kind, label in _FRAME_COUNTS.items() if kinds[kind]]
    missing = sum(record.frames is None for record in manifest)
    if missing:
        parts.append(f"{missing} not probed")
    return "frames: " + (", ".join(parts) or "no records")


def register(app: typer.Typer) -> None:
    app.command("info")(info)
