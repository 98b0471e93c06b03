"""``dftoolkit faces``: look into a face store: its yield table, one video's statuses, a contact sheet."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from dftoolkit.cli._render import dataframe_table, fail
from dftoolkit.config import comma_list

__all__ = ["register"]


def faces(
    store_path: Path = typer.Argument(
        ..., metavar="STORE", help="Face store folder (made by preprocessing)."
    ),
    video_id: str = typer.Argument(None, metavar="[VIDEO_ID]", help="A video of the store."),
    sheet: Path = typer.Option(None, "--sheet", help="Write the video's contact sheet (PNG) here."),
    crops: str = typer.Option("face", "--crops", help="Comma-separated crop kinds for the sheet."),
    dataset: str = typer.Option(None, "--dataset", help="The video's dataset (when its id is in several)."),
    frames: int = typer.Option(8, "--frames", min=1, help="Frames on the sheet (at most)."),
    by: str = typer.Option(
        "dataset", "--by", help="Without VIDEO_ID: comma-separated fields to group the yield table by."
    ),
) -> None:
    """Print a store's yield table, or one video's frame statuses and reasons, or write its contact sheet."""
    from dftoolkit.preprocess.store import FaceStore

    if sheet is not None and video_id is None:
        fail("--sheet needs a VIDEO_ID: dftoolkit faces STORE VIDEO_ID --sheet SHEET.png")
    console = Console()
    try:
        store = FaceStore(store_path)
        if video_id is None:
            summary = store.summary(by=comma_list(by))
            console.print(dataframe_table(summary, f"{store.root}: {summary['videos'].sum()} videos"))
        elif sheet is not None:
            out = store.sheet(video_id, sheet, crops=comma_list(crops), max_frames=frames, dataset=dataset)
            console.print(f"contact sheet: {out}")
        else:
            table = store.frames_of(dataset, video_id)
            counts = (
                table.assign(reason=table.reason.fillna("-"))
                .groupby(["status", "reason"], sort=True)
                .size()
                .reset_index(name="frames")
            )
            ok = int((table.status == "ok").sum())
            where = f"{table.dataset.iloc[0]}/{video_id}" if len(table) else video_id
            title = f"{where}: {ok} of {len(table)} sampled frames ok"
            console.print(dataframe_table(counts, title))
    except (FileNotFoundError, LookupError, ValueError, OSError) as err:
        fail(err)


def register(app: typer.Typer) -> None:
    app.command("faces")(faces)
