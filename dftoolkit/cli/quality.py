"""``dftoolkit quality``: score datasets side by side (Mask-SSIM, perceptual, LPIPS, E_warp, t-SNE, ...).

Exits 1 when the report folder is in use by another run or the disk filled.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from dftoolkit.cli._render import comma_list, dataframe_table, fail, key_values, run_faults
from dftoolkit.cli.audit import print_audit

__all__ = ["print_report", "register"]


def quality(
    sources: list[Path] = typer.Argument(
        ..., metavar="MANIFEST_OR_STORE...", help="Manifest files, toolkit corpus folders or FaceStores."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (created; cached scores are reused)."),
    metrics: str = typer.Option(
        "mask-ssim,perceptual,lpips,ewarp,tsne,identity,expression,jitter,audit",
        help="Comma-separated: mask-ssim, perceptual, lpips, ewarp, tsne, identity, expression, jitter, "
        "audit (the shortcut audit's metadata features; `dftoolkit audit --store` adds the face ones).",
    ),
    protocol: str = typer.Option("inside", help="Mask-SSIM protocol: inside or masked-image."),
    frames: int = typer.Option(
        16, help="Frames per video for Mask-SSIM, perceptual, LPIPS, identity, expression."
    ),
    temporal_frames: int = typer.Option(
        32, help="Consecutive frames per video for E_warp and landmark jitter."
    ),
    size: int = typer.Option(256, help="Side of face crops and E_warp frames, pixels."),
    flow: str = typer.Option("dis", help="Optical flow for E_warp: dis, farneback, raft."),
    backbone: str = typer.Option("auto", help="Perceptual backbone: vgg16, mobilenet_v2 or auto."),
    lpips_net: str = typer.Option("alex", help="LPIPS trunk: alex or vgg."),
    tsne_backbone: str = typer.Option("auto", help="t-SNE features: resnet18, mobilenet_v2 or auto."),
    weights: list[str] = typer.Option(
        [],
        "--weights",
        metavar="NAME=PATH",
        help="A weight file instead of $TORCH_HOME's: vgg16, alexnet, resnet18, mobilenet_v2, raft_small, "
        "raft_large (repeatable).",
    ),
    workers: int = typer.Option(0, min=0, help="Processes (0: one per core)."),
) -> None:
    """Score every dataset of the sources side by side; writes JSON, Markdown, CSV and PNG plots.

    One run at a time per report folder. Exit status 1: the folder is in use by another run, or the
    disk filled.
    """
    from dftoolkit.quality.report import QualityConfig, quality_report

    files = key_values("--weights", weights, "vgg16=/models/vgg16.pth")
    with run_faults(out):
        try:
            config = QualityConfig(
                metrics=tuple(comma_list(metrics)),
                protocol=protocol,
                frames=frames,
                temporal_frames=temporal_frames,
                size=size,
                flow=flow,
                perceptual_backbone=backbone,
                lpips_net=lpips_net,
                tsne_backbone=tsne_backbone,
                weights=tuple((name, str(path)) for name, path in files.items()),
            )
            report = quality_report(sources, out, config, workers=workers or None)
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
