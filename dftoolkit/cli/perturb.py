"""``dftoolkit perturb``: DeeperForensics-1.0 perturbations and FF++ compressions on a video or a corpus."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dftoolkit.cli._render import fail, read_manifest

__all__ = ["register"]


def _print_table() -> None:
    from dftoolkit.generators.perturb import PERTURBATIONS, list_perturbations

    table = Table(title="perturbations (chain steps: TYPE:LEVEL, or c23 / c40)")
    for column in ("type", "levels", "parameter at level 1 -> 5", "what it does"):
        table.add_column(column)
    for name in list_perturbations():
        kind = PERTURBATIONS.get(name)
        levels = "-" if kind.fixed else f"1..{len(kind.levels)}"
        params = ", ".join(f"{p:g}" for p in kind.levels)
        table.add_row(kind.name, levels, f"crf {params}" if kind.video else params, kind.description)
    Console().print(table)


def perturb(
    input_path: Path = typer.Argument(
        None, metavar="INPUT", help="A video file, or a manifest (.parquet) whose videos to perturb."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output video (INPUT a video) or corpus folder (INPUT a manifest)."
    ),
    chain: str = typer.Option(
        None, "--chain", help='Chain applied left to right, e.g. "CS:3 GB:2", "VC:4", "GB:2 c40".'
    ),
    random_chain: bool = typer.Option(
        False, "--random", help="A random chain per video (the default when --chain is not given)."
    ),
    mix: int = typer.Option(1, "--mix", min=1, max=4, help="Types in a random chain (1-4)."),
    seed: int = typer.Option(0, "--seed", help="Seed (per video: derived from it and the video id)."),
    crf: int = typer.Option(
        None, "--crf", min=0, max=51, help="Store results as H.264 at this crf (default: lossless)."
    ),
    dataset: str = typer.Option(
        None, "--dataset", help="Manifest INPUT: dataset name of the results (default: name + '-perturbed')."
    ),
    list_types: bool = typer.Option(False, "--list", help="Print the perturbation types and levels."),
) -> None:
    """Apply post-processing perturbations to a video, or to every video of a manifest (a new corpus)."""
    if list_types:
        _print_table()
        return
    if input_path is None or out is None:
        fail("give INPUT and --out (or --list)")
    if chain is not None and random_chain:
        fail("give --chain or --random, not both")
    from dftoolkit.generators.perturb import Chain, perturb_manifest, perturb_video
    from dftoolkit.video import VideoDecodeError

    try:
        steps = "random" if chain is None else Chain.parse(chain)
        if input_path.suffix.lower() == ".parquet":
            manifest = read_manifest(input_path)
            result = perturb_manifest(manifest, out, steps, seed=seed, mix=mix, crf=crf, dataset=dataset)
            typer.echo(f"{len(result)} videos perturbed into {out}; manifest: {out / 'manifest.parquet'}")
        else:
            applied = perturb_video(input_path, out, steps, seed=seed, mix=mix, crf=crf)
            typer.echo(f"{out}: {applied}")
    except (FileNotFoundError, ValueError, OSError, VideoDecodeError) as err:
        fail(err)


def register(app: typer.Typer) -> None:
    app.command("perturb")(perturb)
