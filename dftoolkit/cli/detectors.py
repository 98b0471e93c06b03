"""``dftoolkit train`` and ``dftoolkit evaluate``: a reference detector on the splits of a FaceStore.

Both read the store's manifest (or ``--manifest``) for the labels and splits, build the detector
by name (``--size small`` for a CPU), and record how its weights began: ``random (seed N)``, or the
authors' file with its sha256. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from dftoolkit.cli._config import config_option, given, option, resolve, set_option, workers_option
from dftoolkit.cli._render import check_store, fail, key_values, read_manifest
from dftoolkit.detectors.train import TrainConfig

__all__ = ["register"]

EXAMPLE = "lr=1e-4"
SKIPPED = "skipped.json"  # in the output folder: every video left out of a split, and why
DETECTOR = typer.Option(..., "--detector", "-d", help="Detector name (see `dftoolkit detectors`).")
SIZE = typer.Option("full", help="full (the published architecture) or small (a few channels, for a CPU).")
FRAMES = typer.Option(
    32, "--frames-per-video", min=0, help="Image detectors: evenly spaced frames per video (0: every one)."
)
OPTIONS = typer.Option(
    None, "--option", metavar="KEY=VALUE", help="Detector option, e.g. backbone=scnet50_v1d."
)


def _model(detector: str, size: str, options: list[str] | None, weights: Path | None, seed: int):
    """The detector and a line saying how its weights began."""
    import torch

    from dftoolkit.detectors import build_detector, load_official_checkpoint
    from dftoolkit.fileio import sha256_file

    built = key_values("--option", options or (), "backbone=scnet50_v1d")
    try:
        if weights is not None:
            model = load_official_checkpoint(detector, str(weights), config=size, **built)
            return model, f"{weights} sha256:{sha256_file(weights)}"
        torch.manual_seed(seed)
        return build_detector(detector, size, **built), f"random (seed {seed})"
    except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
        fail(err)


def _datasets(
    store: Path, manifest: Path | None, spec, splits: dict[str | None, bool], seed: int, frames: int
) -> list:
    """One dataset per split (``{split: train?}``), the store opened and the manifest read once;
    ``frames`` per video for an image detector (0: every usable frame)."""
    from dftoolkit.detectors.data import face_dataset
    from dftoolkit.preprocess import FaceStore

    given_manifest = read_manifest(manifest) if manifest else None
    faces = FaceStore(store)
    datasets = []
    for split, train in splits.items():
        try:
            data = face_dataset(
                faces,
                spec,
                split=split,
                train=train,
                manifest=given_manifest,
                seed=seed,
                frames_per_video=frames or None,
            )
        except (ValueError, FileNotFoundError) as err:
            fail(err)
        if not len(data):
            fail(f"no usable video in split {split!r} of {store} ({len(data.skipped)} skipped)")
        datasets.append(data)
    return datasets


def _write_skipped(out: Path, datasets: dict) -> int:
    """Write ``OUT/skipped.json``, ``{split: {"dataset/video_id": why}}``; the number skipped."""
    from dftoolkit.fileio import atomic_write_text

    skipped = {split: dict(sorted(data.skipped.items())) for split, data in datasets.items()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / SKIPPED, json.dumps(skipped, indent=1))
    return sum(map(len, skipped.values()))


def _list_recipes(value: bool) -> None:
    """``--list-configs``: every detector's training recipes, then exit."""
    if not value:
        return
    from dftoolkit.detectors import build_detector, detector_recipes, list_detectors
    from dftoolkit.detectors.base import on_meta

    for name in list_detectors():
        for recipe, values in detector_recipes(name).items():
            spec = on_meta(lambda name=name, values=values: build_detector(name, values["config"])).spec
            clip = f"{spec.frames} x {spec.crop} {spec.size} px ({spec.sampling})"
            settings = ", ".join(f"{k}={v}" for k, v in values.items() if k != "config")
            typer.echo(f"{name:13} {recipe:6} size {values['config']:5}  clips {clip}; {settings}")
    raise typer.Exit()


def train(
    ctx: typer.Context,
    store: Path = typer.Argument(
        ..., metavar="STORE", help="FaceStore (preprocessed with the crops the detector needs)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (created; an unfinished run is resumed)."),
    detector: str = DETECTOR,
    size: str = SIZE,
    options: list[str] = OPTIONS,
    recipe: str = typer.Option(
        None,
        help="A training recipe of the detector (paper or small; see --list-configs): its size and "
        "settings, over --config, under the options and --set.",
    ),
    weights: Path = typer.Option(
        None,
        help="Start from the authors' released file (their format), with the paper's fine-tuning recipe.",
    ),
    manifest: Path = typer.Option(None, help="Labels and splits (default: the store's manifest)."),
    train_split: str = typer.Option("train", help="Split trained on."),
    frames: int = FRAMES,
    val_split: str = typer.Option("val", help="Split the best epoch is chosen on (never test)."),
    epochs: int = option(TrainConfig, "epochs"),
    batch_size: int = option(TrainConfig, "batch_size"),
    lr: float = option(TrainConfig, "lr"),
    config_file: Path = config_option(),
    settings: list[str] = set_option(EXAMPLE),
    restart: bool = typer.Option(False, "--restart", help="Start afresh instead of resuming."),
    list_configs: bool = typer.Option(
        False,
        "--list-configs",
        is_eager=True,
        callback=_list_recipes,
        help="List every detector's training recipes and exit.",
    ),
) -> None:
    """Train a detector on one split of a FaceStore, choosing the epoch on another; resumable.

    Writes OUT/checkpoints (every epoch, best.pt, last.pt), log.jsonl, config.yaml and train.json
    (which records how the weights began).
    """
    from dftoolkit.detectors.train import train as run

    if train_split == val_split:
        fail(f"--train-split and --val-split are both {train_split!r}: choose the epoch on other videos")
    check_store(store)
    flags = given(ctx, epochs=epochs, batch_size=batch_size, lr=lr)
    if recipe is not None:
        from dftoolkit.detectors import detector_recipe

        try:
            values = detector_recipe(detector, recipe)
        except KeyError as err:
            fail(err.args[0])
        size = size if "size" in given(ctx, size=size) else values.pop("config")
        values.pop("config", None)
        flags = {**values, **flags}
    config = resolve(TrainConfig, config_file, flags, settings, example=EXAMPLE)
    model, initialisation = _model(detector, size, options, weights, config.seed)
    if weights is not None:
        model.prepare_finetuning()  # the paper's recipe from pre-trained weights
    train_set, val_set = _datasets(
        store, manifest, model.spec, {train_split: True, val_split: False}, config.seed, frames
    )
    result = run(model, train_set, val_set, config, out, initialisation=initialisation, resume=not restart)
    console = Console()
    skipped = _write_skipped(out, {train_split: train_set, val_split: val_set})
    console.print(
        f"{detector} ({size}, weights: {initialisation}): {result.epochs} epoch(s) on {len(train_set)} "
        f"clip(s), best epoch {result.best_epoch} (validation video AUC {result.best_auc:.3f} on "
        f"{len(val_set)} clip(s)); {skipped} video(s) skipped (why: {out / SKIPPED})",
        soft_wrap=True,
    )
    console.print(f"checkpoint: {result.best_checkpoint}", soft_wrap=True)


def _is_store(path: Path) -> bool:
    """Whether ``path`` holds a FaceStore (a damaged one too: opening it then says what is wrong)."""
    from dftoolkit.preprocess import FaceStore

    try:
        FaceStore(path)
    except FileNotFoundError:
        return False
    except ValueError:
        return True
    return True


def _videos_store(source: Path, out: Path, spec, csv: str | None, label: str | None, workers: int) -> Path:
    """``OUT/faces``: the videos under the folder ``source`` (the ``folder`` loader: real/ and fake/,
    a CSV, or one ``label`` for all) preprocessed for ``spec`` (resumable); exits 2 when they cannot
    be indexed."""
    from dftoolkit.corpora import CorpusError, index_corpus
    from dftoolkit.detectors.data import store_config
    from dftoolkit.preprocess import preprocess

    try:
        manifest = index_corpus("folder", source, csv=csv, label=label)
    except CorpusError as err:
        fail(f"{err} (evaluate takes a FaceStore, or a folder of videos: real/ and fake/, --csv or --label)")
    config = store_config(spec)
    report = preprocess(manifest, out / "faces", config, workers=workers or None)
    Console().print(
        f"{len(manifest)} video(s) under {source} preprocessed for the detector ({spec.crop} crops, "
        f"{config.policy} frames) into {report.store.root}: {report.processed} new, {report.skipped} "
        "already there",
        soft_wrap=True,
    )
    return report.store.root


def evaluate(
    source: Path = typer.Argument(
        ...,
        metavar="SOURCE",
        help="FaceStore of the videos to score, or a folder of videos (real/ and fake/ sub-folders, a "
        "--csv, or --label for all), preprocessed first into OUT/faces.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for metrics.json, scores.csv, roc.png, scores.png."
    ),
    detector: str = DETECTOR,
    size: str = SIZE,
    options: list[str] = OPTIONS,
    checkpoint: Path = typer.Option(
        None, help="A `dftoolkit train` checkpoint (e.g. RUN/checkpoints/best.pt)."
    ),
    weights: Path = typer.Option(None, help="The authors' released file instead of a checkpoint."),
    manifest: Path = typer.Option(None, help="Labels and splits (default: the store's manifest)."),
    split: str = typer.Option("test", help="Split scored ('all': every video; a folder of videos: all)."),
    frames: int = FRAMES,
    csv: str = typer.Option(None, help="A folder of videos: the CSV listing them (path,label,...)."),
    label: str = typer.Option(None, help="A folder of videos: the label of them all (real or fake)."),
    workers: int = workers_option(),
    batch_size: int = typer.Option(8, min=1, help="Clips per forward pass."),
    bootstrap: int = typer.Option(1000, min=1, help="Resamplings for the AUC intervals."),
) -> None:
    """Score one split of a FaceStore, or a folder of videos, with a detector; frame- and video-level
    metrics with intervals."""
    from dftoolkit.detectors.evaluate import evaluate as run
    from dftoolkit.detectors.train import load_trained

    if checkpoint is not None and weights is not None:
        fail("give --checkpoint or --weights, not both")
    videos = source.is_dir() and not _is_store(source)
    if not videos:
        check_store(source)
    elif manifest is not None:
        fail("--manifest is for a FaceStore; a folder of videos is indexed with the folder loader")
    model, initialisation = _model(detector, size, options, weights, 0)
    if checkpoint is not None:
        try:
            info = load_trained(model, checkpoint)
        except (ValueError, FileNotFoundError) as err:
            fail(err)
        initialisation = f"{checkpoint} (epoch {info['epoch']}, trained from {info['initialisation']})"
    elif weights is None:
        initialisation = "random (seed 0), untrained: the scores are chance"
    store = _videos_store(source, out, model.spec, csv, label, workers) if videos else source
    split = "all" if videos else split
    (data,) = _datasets(store, manifest, model.spec, {None if split == "all" else split: False}, 0, frames)
    report = run(model, data, out, initialisation=initialisation, batch_size=batch_size, bootstrap=bootstrap)
    video = report.video
    auc = "n/a (one class)" if video.get("auc") is None else f"{video['auc']:.3f}"
    Console().print(
        f"{detector} ({size}; {initialisation}) on {len(data)} clip(s) of split {split!r}: video AUC {auc}, "
        f"{_write_skipped(out, {split: data})} video(s) skipped (why: {out / SKIPPED}); "
        f"metrics: {out / 'metrics.json'}",
        soft_wrap=True,
    )


def detectors() -> None:
    """List the reference detectors."""
    from dftoolkit.detectors import describe_detectors

    for name, description in describe_detectors().items():
        typer.echo(f"{name:14} {description}")


def register(app: typer.Typer) -> None:
    app.command("detectors")(detectors)
    app.command("train")(train)
    app.command("evaluate")(evaluate)
