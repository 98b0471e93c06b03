"""``dftoolkit preprocess``: a manifest's videos -> a FaceStore of crops, landmarks and masks.

Exits 1 when the store is in use by another run, the disk filled, or every video tried failed; 2 on
bad settings, before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from dftoolkit.cli._render import check_failures, comma_list, dataframe_table, fail, read_manifest, run_faults
from dftoolkit.faces import list_backends


def preprocess(
    manifest_path: Path = typer.Argument(..., metavar="MANIFEST", help="Manifest Parquet file."),
    out: Path = typer.Option(..., "--out", "-o", help="FaceStore folder (created, or resumed)."),
    crops: str = typer.Option("face", help="Comma-separated crop kinds: face, aligned, ffhq, mouth."),
    frames: int = typer.Option(32, help="Frames sampled per video."),
    policy: str = typer.Option("even", help="Sampling policy: even, stride, segments, all."),
    backend: str = typer.Option("mediapipe", help=f"Face backend ({', '.join(list_backends())})."),
    size: int = typer.Option(0, help="Side of every crop in pixels (0: each kind's default)."),
    workers: int = typer.Option(0, help="Processes (0: one per core)."),
    engine: str = typer.Option("local", help="local (process pool) or ray."),
    image_format: str = typer.Option("png", help="png or jpg."),
) -> None:
    """Detect, track, align and crop faces of every video; resumable (rerun to continue).

    One run at a time per store. Exit status 1: the store is in use by another run, the disk filled,
    or every video tried failed (some failing and others done: 0, the failures listed).
    """
    from dftoolkit.preprocess import ENGINES, PreprocessConfig
    from dftoolkit.preprocess import preprocess as run

    kinds = tuple(comma_list(crops))
    try:  # bad settings stop here, before the store's folder is made
        config = PreprocessConfig(
            crops=kinds,
            sizes=tuple((k, size) for k in kinds) if size else (),
            frames=frames,
            policy=policy,
            backend=backend,
            image_format=image_format,
        )
    except ValueError as err:
        fail(err)
    if engine not in ENGINES:
        fail(f"engine must be one of {ENGINES}, got {engine!r}")
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
