"""``dftoolkit generate``: build an SR-DF-style corpus of fakes from a manifest of real videos.

Exits 1 when the corpus folder is in use by another run, the disk filled, or every video tried failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from dftoolkit.cli._render import (
    check_failures,
    comma_list,
    dataframe_table,
    fail,
    key_values,
    read_manifest,
    run_faults,
)

__all__ = ["register"]


def _options(settings: list[str]) -> dict[str, dict[str, Any]]:
    """``["fomm.checkpoint=/x.pth", "feather.width=12"]`` -> ``{"fomm": {"checkpoint": "/x.pth"}, ...}``
    (:func:`~dftoolkit.cli._render.key_values`). Each NAME must be a method or blend and each KEY an
    option it takes, else :func:`fail` lists the valid ones."""
    from dftoolkit.generators.base import check_options

    out: dict[str, dict[str, Any]] = key_values(
        "--set", settings, "fomm.checkpoint=vox-cpk.pth.tar", dotted=True
    )
    for owner, options in out.items():
        try:
            check_options(owner, options)
        except ValueError as err:
            fail(f"--set: {err}")
    return out


def _print_lists(console: Console) -> None:
    from dftoolkit.generators import METHODS, describe_blends, describe_methods

    methods = Table("method", "kind", "description", title="manipulation methods")
    for name, description in describe_methods().items():
        methods.add_row(name, METHODS.get(name).kind, description)
    blends = Table("blend", "description", title="blends")
    for name, description in describe_blends().items():
        blends.add_row(name, description)
    console.print(methods, blends)


def generate(
    manifest_path: Path = typer.Argument(
        None, metavar="MANIFEST", help="Manifest Parquet file of real videos (FF++ fakes in it give pairs)."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Corpus folder (created, or resumed)."),
    methods: str = typer.Option("swap,reenact", help="Comma-separated manipulation methods."),
    blends: str = typer.Option("feather", help="Comma-separated blends."),
    perturb: list[str] = typer.Option(
        None,
        "--perturb",
        help='A perturbation per fake, repeatable: none, "CS:3 GB:2", c40, random, random:2 (default none).',
    ),
    seed: int = typer.Option(0, help="Seed of the pairs and every random choice."),
    per_target: int = typer.Option(1, min=1, help="Sources per target when pairs are drawn."),
    crf: int = typer.Option(18, min=0, max=51, help="H.264 crf of every video written, reals and fakes."),
    lossless: bool = typer.Option(False, "--lossless", help="Write every video lossless (ignores --crf)."),
    min_coverage: float = typer.Option(
        0.9,
        min=0.0,
        max=1.0,
        help="Least fraction of a fake's frames its mask must cover; others are not made.",
    ),
    originals: str = typer.Option(
        "encode", help="encode: the originals through the fakes' encoder; link: keep the source files."
    ),
    perturb_reals: bool = typer.Option(
        True, "--perturb-reals/--no-perturb-reals", help="Also write perturbed copies of the reals."
    ),
    store: Path = typer.Option(None, help="FaceStore whose full-video landmarks to reuse."),
    backend: str = typer.Option("mediapipe", help="Face backend for the face tracks."),
    name: str = typer.Option("srdf", help="Dataset name of the records."),
    workers: int = typer.Option(0, help="Processes (0: one per core)."),
    sheets: bool = typer.Option(
        False, "--sheets", help="Write a contact sheet per (method, blend, pair) in sheets/."
    ),
    settings: list[str] = typer.Option(
        None,
        "--set",
        help="Method or blend option NAME.KEY=VALUE, repeatable (e.g. fomm.checkpoint=...); VALUE: JSON "
        "(true, 3, null) or text; commas make lists.",
    ),
    list_all: bool = typer.Option(False, "--list", help="List the methods and blends, then exit."),
) -> None:
    """Make fakes (methods x blends x perturbations) of pairs of real videos; resumable (rerun to go on).

    One run at a time per corpus folder. Exit status 1: the folder is in use by another run, the disk
    filled, or every video tried failed (some failing and others made: 0, the failures listed).
    """
    from dftoolkit.generators import BLENDS, build_dataset
    from dftoolkit.generators.builder import BuildReport

    console = Console()
    if list_all:
        _print_lists(console)
        return
    if manifest_path is None or out is None:
        fail("give MANIFEST and --out (or --list)")
    manifest = read_manifest(manifest_path)
    options = _options(settings or [])
    report = BuildReport(out)
    with run_faults(out):
        try:
            corpus = build_dataset(
                manifest,
                out,
                methods=comma_list(methods),
                blends=comma_list(blends),
                perturbations=perturb or [None],
                seed=seed,
                name=name,
                per_target=per_target,
                method_options={k: v for k, v in options.items() if k not in BLENDS},
                blend_options={k: v for k, v in options.items() if k in BLENDS},
                crf=None if lossless else crf,
                min_coverage=min_coverage,
                originals=originals,
                perturb_reals=perturb_reals,
                store=store,
                backend=backend,
                workers=workers or None,
                sheets=sheets,
                report=report,
            )
        except (ValueError, KeyError, FileNotFoundError) as err:
            fail(err)
    console.print(
        f"{report.made} fake(s) and {report.reals} real(s) made, {report.skipped_done} already done, "
        f"{len(report.failed)} failed, {len(report.not_made)} not made; "
        f"{report.frames} frames in {report.seconds:.1f} s"
    )
    for key, error in report.failed.items():
        console.print(f"[red]failed[/red] {key}: {error.strip().splitlines()[-1]}")
    for key, reason in {**report.not_made, **report.unpaired}.items():
        console.print(f"[yellow]not made[/yellow] {key}: {reason}")
    check_failures(out, report.failed, report.made + report.reals)
    summary = corpus.summary(by=("label", "method", "split"))
    console.print(dataframe_table(summary, f"{out / 'manifest.parquet'}: {len(corpus)} videos"))
    if sheets:
        console.print(f"contact sheets: {out / 'sheets'}")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
