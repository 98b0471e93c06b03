"""``dftoolkit preprocess``: a manifest's videos -> a FaceStore of crops, landmarks and masks.

Exits 1 when the store is in use by another run, the disk filled, or every video tried failed; 2 on
bad settings, before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from dftoolkit.cli._config import (
    config_option,
    engine_option,
    given,
    option,
    resolve,
    set_option,
    workers_option,
)
from dftoolkit.cli._render import check_failures, dataframe_table, fail, read_manifest, run_faults
from dftoolkit.preprocess import PreprocessConfig
from dftoolkit.preprocess import preprocess as run

EXAMPLE = "min_score=0.7"


def preprocess(
    ctx: typer.Context,
    manifest_path: Path = typer.Argument(..., metavar="MANIFEST", help="Manifest Parquet file."),
    out: Path = typer.Option(..., "--out", "-o", help="FaceStore folder (created, or resumed)."),
    crops: str = option(PreprocessConfig, "crops"),
    frames: int = option(PreprocessConfig, "frames"),
    policy: str = option(PreprocessConfig, "policy"),
    backend: str = option(PreprocessConfig, "backend"),
    size: int = typer.Option(
        0, help="Side of every crop in pixels (0: each kind's default); one kind's: --set sizes.KIND=N."
    ),
    image_format: str = option(PreprocessConfig, "image_format"),
    config_file: Path = config_option(),
    settings: list[str] = set_option(EXAMPLE),
    workers: int = workers_option(),
    engine: str = engine_option(),
) -> None:
    """Detect, track, align and crop faces of every video; resumable (rerun to continue).

    Settings: the defaults, then --config, then the options given, then --set; every setting is
    stored in the FaceStore (store.json), and resuming needs the same ones. One run at a time per
    store. Exit status 1: the store is in use by another run, the disk filled, or every video tried
    failed (some failing and others done: 0, the failures listed).
    """
    flags = given(ctx, crops=crops, frames=frames, policy=policy, backend=backend, image_format=image_format)
    config = resolve(PreprocessConfig, config_file, flags, settings, example=EXAMPLE)
    if size:  # every crop kind of the resolved config; --set sizes.KIND=N still wins
        flags["sizes"] = tuple((kind, size) for kind in config.crops)
        config = resolve(PreprocessConfig, config_file, flags, settings, example=EXAMPLE)
    manifest = read_manifest(manifest_path)
    with run_faults(out):
        try:
            report = run(manifest, out, config, workers=workers or None, engine=engine)
        except (ValueError, KeyError) as err:
            fail(err)
    console = Console()
    console.print(
        f"{report.processed} video(s) processed, {report.skipped} already done, {len(report.failed)} failed; "
        f"{report.frames} frames in {report.seconds:.1f} s ({report.frames_per_second:.1f} frames/s)"
    )
    for name, error in report.failed.items():
        console.print(f"[red]failed[/red] {escape(name)}: {escape(error.strip().splitlines()[-1])}")
    check_failures(out, report.failed, report.processed)
    console.print(dataframe_table(report.store.summary(), f"yield per dataset ({out})"))


def register(app: typer.Typer) -> None:
    app.command("preprocess")(preprocess)
