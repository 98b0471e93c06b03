"""``dftoolkit quality``: score datasets side by side (Mask-SSIM, perceptual, LPIPS, E_warp, t-SNE, ...).

Exits 1 when the report folder is in use by another run or the disk filled.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from dftoolkit.cli._config import (
    config_option,
    engine_option,
    given,
    option,
    resolve,
    set_option,
    workers_option,
)
from dftoolkit.cli._render import check_store, dataframe_table, fail, key_values, run_faults
from dftoolkit.cli.audit import print_audit
from dftoolkit.quality.report import QualityConfig, quality_report

__all__ = ["print_report", "register"]

EXAMPLE = "seed=3"


def quality(
    ctx: typer.Context,
    sources: list[Path] = typer.Argument(
        ..., metavar="MANIFEST_OR_STORE...", help="Manifest files, toolkit corpus folders or FaceStores."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (created; cached scores are reused)."),
    metrics: str = option(QualityConfig, "metrics"),
    protocol: str = option(QualityConfig, "protocol"),
    frames: int = option(QualityConfig, "frames"),
    temporal_frames: int = option(QualityConfig, "temporal_frames"),
    size: int = option(QualityConfig, "size"),
    flow: str = option(QualityConfig, "flow"),
    perceptual_backbone: str = option(QualityConfig, "perceptual_backbone", "--backbone"),
    lpips_net: str = option(QualityConfig, "lpips_net"),
    tsne_backbone: str = option(QualityConfig, "tsne_backbone"),
    weights: list[str] = option(QualityConfig, "weights", "--weights", default=[], metavar="NAME=PATH"),
    config_file: Path = config_option(),
    settings: list[str] = set_option(EXAMPLE),
    store: Path = typer.Option(
        None, help="FaceStore of the sources' videos: the face metrics score the face it tracked."
    ),
    workers: int = workers_option(),
    engine: str = engine_option(),
) -> None:
    """Score every dataset of the sources side by side; writes JSON, Markdown, CSV and PNG plots.

    Settings: the defaults, then --config, then the options given, then --set; the report folder
    records them (config.yaml). One run at a time per report folder. Exit status 1: the folder is in
    use by another run, or the disk filled.
    """
    flags = given(
        ctx,
        metrics=metrics,
        protocol=protocol,
        frames=frames,
        temporal_frames=temporal_frames,
        size=size,
        flow=flow,
        perceptual_backbone=perceptual_backbone,
        lpips_net=lpips_net,
        tsne_backbone=tsne_backbone,
    )
    if weights:
        flags["weights"] = key_values("--weights", weights, "vgg16=/models/vgg16.pth")
    config = resolve(QualityConfig, config_file, flags, settings, example=EXAMPLE)
    for source in sources:
        if not source.exists():
            fail(f"{source}: no such manifest, corpus folder or FaceStore")
    check_store(store)
    with run_faults(out):
        try:
            report = quality_report(sources, out, config, store=store, workers=workers or None, engine=engine)
        except (ValueError, KeyError, FileNotFoundError) as err:
            fail(err)
    print_report(Console(), report)


def print_report(console: Console, report) -> None:
    """The per-dataset table (means), the weights used, what was not computed, the shortcut audit and
    the files."""
    table = report.datasets
    means = [c for c in table.columns if c.endswith("_mean") and table[c].notna().any()]
    # one row per metric, one column per dataset and class: narrow enough for a terminal
    shown = table.set_index(table.dataset + " " + table.kind)[["videos", *means]].T
    shown.index = [name.removesuffix("_mean") for name in shown.index]
    shown = shown.map(lambda v: "-" if pd.isna(v) else f"{v:.4g}").reset_index(names="mean of")
    console.print(dataframe_table(shown, f"quality per dataset ({report.cached} videos from the cache)"))
    for metric, info in report.backbones.items():
        weights = "ImageNet weights" if info["imagenet"] else "weights NOT torchvision's ImageNet release"
        fallback = " [yellow]offline fallback[/yellow]" if info["fallback"] else ""
        console.print(f"{metric} backbone: {info['name']}, {weights} {info['weights_path']}{fallback}")
    for metric, why in report.unavailable.items():
        console.print(f"[yellow]{metric} not computed[/yellow]: {why}")
    for key, reasons in sorted(report.skipped.items()):
        for metric, why in reasons.items():
            console.print(f"[yellow]not scored[/yellow] {key} ({metric}): {why}")
    if report.audit is not None:
        print_audit(console, report.audit)
    for name, path in report.files.items():
        console.print(f"{name}: {path}")


def register(app: typer.Typer) -> None:
    app.command("quality")(quality)
