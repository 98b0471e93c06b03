"""``dftoolkit train-dovenet``: train the DoveNet harmoniser on real faces of a FaceStore."""

from __future__ import annotations

from pathlib import Path

import typer


def train_dovenet(
    store: Path = typer.Argument(..., metavar="STORE", help="FaceStore folder (dftoolkit preprocess)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Generator checkpoint to write; OUT.train holds the state a rerun resumes."
    ),
    steps: int = typer.Option(2000, help="Total optimisation steps."),
    batch_size: int = typer.Option(8, "--batch-size", help="Composites per step."),
    size: int = typer.Option(256, help="Training resolution; crops are resized (a multiple of 2^levels)."),
    config: str = typer.Option("full", help="full (the authors' architecture) or small."),
    seed: int = typer.Option(0, help="Seed of every random choice."),
    lr: float = typer.Option(2e-4, help="Adam learning rate."),
    crop: str = typer.Option("face", help="Crop kind of the store to train on."),
    frames_per_video: int = typer.Option(
        0, "--frames-per-video", help="Crops per video (0: every ok frame)."
    ),
    device: str = typer.Option("auto", help="Torch device (auto: CUDA when available)."),
    log_every: int = typer.Option(50, "--log-every", help="Print the mean loss every N steps (0: never)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start afresh instead of resuming."),
) -> None:
    """Train the DoveNet harmoniser on the real faces of STORE; resumable (rerun to go on).

    Each composite is a real face crop whose masked face region was colour-perturbed; the network
    learns to give back the original (L1 reconstruction only: no adversarial discriminators). Only
    videos labelled real in the store's manifest are used. Writes OUT, the generator in the authors'
    key format (`dftoolkit generate --blends dovenet --set dovenet.checkpoint=OUT`), and OUT.train;
    --fresh starts over.
    """
    from dftoolkit.generators.harmonise_train import faces_from_store
    from dftoolkit.generators.harmonise_train import train_dovenet as train

    try:
        images, masks = faces_from_store(store, crop, frames_per_video or None)
        typer.echo(f"{len(images)} real face crops from {store}")
        losses = train(
            images,
            masks,
            out,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            config=config,
            seed=seed,
            log_every=log_every,
            size=size,
            device=device,
            resume=not fresh,
            log=typer.echo,
        )
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {' '.join(str(err).split())}", err=True)
        raise typer.Exit(2) from None
    if losses:
        k = max(1, min(50, len(losses) // 4))
        typer.echo(
            f"wrote {out} after {len(losses)} steps; L1 {sum(losses[:k]) / k:.4f} (first {k}) -> "
            f"{sum(losses[-k:]) / k:.4f} (last {k})"
        )


def register(app: typer.Typer) -> None:
    app.command("train-dovenet")(train_dovenet)
