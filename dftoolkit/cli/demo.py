"""``dftoolkit demo``: the main job end to end on the real sample media.

Grows with the toolkit; today: fetch the samples, index them, read 32 frames per video, and
write a contact sheet.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from dftoolkit.cli._render import dataframe_table
from dftoolkit.progress import progress
from dftoolkit.samples import fetch_samples
from dftoolkit.sheets import contact_sheet, write_png
from dftoolkit.video import VideoReader, sample_indices


def demo(
    out: Path = typer.Option(Path("demo-out"), help="Folder for the demo's outputs."),
    frames: int = typer.Option(32, help="Frames sampled per video."),
) -> None:
    """Fetch the real sample media, index it as a corpus, sample frames, write a contact sheet."""
    console = Console()
    manifest = fetch_samples()
    manifest_path = manifest.root / "manifest.parquet"
    console.print(f"[bold]1. Sample corpus[/bold]: {len(manifest)} real videos in {manifest.root}")
    console.print(dataframe_table(manifest.summary(by=("dataset", "label", "target_id")), str(manifest_path)))
    console.print(dataframe_table(
        manifest.to_pandas()[["video_id", "target_id", "frames", "fps", "width", "height"]].round({"fps": 2}),
        "videos (probed: exact frame counts)",
    ))  # fmt: skip

    console.print(f"[bold]2. Sampling[/bold] {frames} evenly spaced frames per video")
    rows = []
    for record in progress(manifest, "reading frames"):
        reader = VideoReader(manifest.path_of(record))
        indices = sample_indices(reader.num_frames, frames)
        start = time.perf_counter()
        clip = reader.read(indices)
        seconds = time.perf_counter() - start
        size = f"{clip.shape[2]}x{clip.shape[1]}"
        console.print(f"  {record.video_id:<20} {len(clip):>3} frames {size:>9} in {seconds:.3f} s")
        rows.append((record.video_id, list(clip[:: max(1, len(clip) // 8)][:8])))
    sheet_path = out / "samples_sheet.png"
    write_png(sheet_path, contact_sheet(rows))
    console.print(f"[bold]3. Contact sheet[/bold]: {sheet_path.resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
