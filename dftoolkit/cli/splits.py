"""``dftoolkit split | export``: leak-free splits and exports of a manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from dftoolkit.cli._render import dataframe_table, out_or_alias, output_alias, read_manifest
from dftoolkit.config import comma_list


def split(
    manifest_path: Path = typer.Argument(..., metavar="MANIFEST", help="Manifest Parquet file."),
    out: Path = typer.Option(None, "--out", "-o", help="Manifest with the new split column."),
    output: Path = output_alias(),
    protocol: str = typer.Option("grouped", help="official | grouped | cross-dataset."),
    ratios: str = typer.Option("0.8,0.1,0.1", help="train,val,test ratios for grouped splits."),
    seed: int = typer.Option(0, help="Seed of the grouped assignment."),
    keep_test: bool = typer.Option(True, help="Grouped: official test videos stay in test."),
    train: str = typer.Option("", help="Cross-dataset: comma-separated training datasets."),
    test: str = typer.Option("", help="Cross-dataset: comma-separated test datasets."),
    val_ratio: float = typer.Option(0.1, help="Cross-dataset: val share carved from train where needed."),
    check: bool = typer.Option(
        False, "--check", help="Only check MANIFEST's splits for leaks (exit 1 if any)."
    ),
) -> None:
    """Assign train/val/test without leaks (identities and originals never cross splits), or check."""
    from dftoolkit.splits import (
        SPLIT_PROTOCOLS,
        check_leaks,
        cross_dataset_split,
        grouped_split,
        split_summary,
    )

    out = out_or_alias(out, output)
    manifest = read_manifest(manifest_path)
    console = Console()
    if not check:
        if out is None:
            raise typer.BadParameter("give --out (or --check to only check)")
        if protocol not in SPLIT_PROTOCOLS:
            raise typer.BadParameter(f"protocol must be one of {SPLIT_PROTOCOLS}")
        try:
            if protocol == "grouped":
                values = tuple(float(r) for r in comma_list(ratios))
                manifest = grouped_split(manifest, values, seed=seed, keep_test=keep_test)  # type: ignore[arg-type]
            elif protocol == "cross-dataset":
                manifest = cross_dataset_split(
                    manifest, comma_list(train), comma_list(test), val_ratio=val_ratio, seed=seed
                )
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        manifest.write_parquet(out)
        console.print(
            dataframe_table(split_summary(manifest).round({"share": 3}), f"{out}: {protocol} split")
        )
    leaks = check_leaks(manifest)
    if leaks:
        rows = [[leak.kind, leak.key, " ".join(leak.splits), len(leak.video_ids)] for leak in leaks]
        table = pd.DataFrame(rows, columns=["kind", "shared", "splits", "videos (examples)"])
        console.print(dataframe_table(table.head(50), f"{len(leaks)} leak(s) across splits"))
    else:
        console.print("[green]no leaks: no identity, original video or file appears in two splits[/green]")
    if check and leaks:
        raise typer.Exit(1)


def export(
    manifest_path: Path = typer.Argument(..., metavar="MANIFEST", help="Manifest Parquet file."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write into."),
    formats: str = typer.Option(
        "hf,parquet,csv",
        help="Comma-separated: hf (datasets.DatasetDict by split, with a dataset card), parquet, csv, "
        "dfb (DeepfakeBench dataset JSON; needs --store).",
    ),
    store: Path = typer.Option(
        None, "--store", help="FaceStore whose face crops are dfb's frames (DeepfakeBench trains on frames)."
    ),
) -> None:
    """Export a manifest: a Hugging Face DatasetDict by split (save_to_disk) with a dataset card, Parquet,
    CSV, and DeepfakeBench's dataset JSON (--formats dfb --store FACES)."""
    from dftoolkit.export import export_manifest

    manifest = read_manifest(manifest_path)
    try:
        written = export_manifest(
            manifest, out, formats=tuple(comma_list(formats)), store=store, source=manifest_path
        )
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from None
    for kind, path in written.items():
        typer.echo(f"{kind}: {path}")


def register(app: typer.Typer) -> None:
    app.command("split")(split)
    app.command("export")(export)
