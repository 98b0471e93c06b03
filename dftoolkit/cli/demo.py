"""``dftoolkit demo``: the main job end to end on the real sample media.

Grows with the toolkit. Today: fetch the samples; describe them as a corpus with a CSV; validate
and index it through the ``folder`` loader (probing frames/fps/size); split it without leaks;
export it; read 32 frames per video (contact sheet); preprocess the faces (every crop kind) into a
FaceStore and show its yield table and a contact sheet of crops, landmarks and masks; build a small
SR-DF-style corpus of fakes (swap and reenactment, two blends, clean and randomly perturbed) with a
contact sheet per fake; audit the built corpus for label shortcuts (can the encoding, size or length
of a file tell real from fake?); score the sample corpus and the fakes side by side (the quality
report); split the built corpus, preprocess it, and train and test small reference detectors on it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dftoolkit.cli._config import option
from dftoolkit.cli._render import dataframe_table
from dftoolkit.corpora import index_corpus, validate_corpus
from dftoolkit.export import export_manifest
from dftoolkit.fileio import atomic_path, atomic_write_text
from dftoolkit.manifest import Manifest
from dftoolkit.preprocess import PreprocessConfig, preprocess
from dftoolkit.probing import probe_manifest
from dftoolkit.progress import progress
from dftoolkit.samples import fetch_samples
from dftoolkit.sheets import contact_sheet, write_png
from dftoolkit.splits import check_leaks, grouped_split, split_summary
from dftoolkit.video import VideoReader, sample_indices

DEMO_DETECTORS = ("lipforensics", "stil")
"""Detectors step 11 trains by default (their small recipes)."""


class _Timeline:
    """The demo's wall time per step, kept in ``OUT/stages.json`` (rewritten after every step, so an
    interrupted run leaves what it finished)."""

    def __init__(self, out: Path) -> None:
        self.path = out / "stages.json"
        self.rows: list[dict[str, object]] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.rows.append({"step": name, "seconds": round(time.perf_counter() - start, 1)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.rows, indent=1))

    def table(self) -> Table:
        import pandas as pd

        frame = pd.DataFrame(
            [*self.rows, {"step": "total", "seconds": round(sum(r["seconds"] for r in self.rows), 1)}]
        )
        return dataframe_table(frame, f"wall time per step ({self.path})")


def _write_corpus_csv(path: Path, samples) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "video_id", "label", "method", "target_id"])
        for record in samples:
            writer.writerow([record.relpath, record.video_id, record.label, record.method, record.target_id])


def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Folder for the demo's outputs."),
    frames: int = option(PreprocessConfig, "frames"),
    workers: int = typer.Option(0, help="Processes of every parallel step (0: one per core)."),
    detectors: str = typer.Option(
        ",".join(DEMO_DETECTORS),
        help="Reference detectors trained and tested in step 11, comma-separated (see `dftoolkit "
        "detectors`; empty: skip the step). Small presets from random weights.",
    ),
) -> None:
    """The toolkit end to end on real sample media (fetched once), every output under --out.

    1 fetch the samples; 2 validate and 3 index them as a corpus (probed); 4 split by person without
    leaks; 5 export; 6 sample frames (contact sheet); 7 preprocess the faces into a FaceStore; 8
    generate an SR-DF-style corpus of fakes; 9 audit it for label shortcuts; 10 score the samples and
    the fakes side by side (quality report); 11 train and test small reference detectors on the
    corpus. Steps 8-11 need the Debian samples (two people).
    """
    names = [name.strip() for name in detectors.split(",") if name.strip()]
    _check_detectors(names)
    console = Console()
    processes = workers or None
    timeline = _Timeline(out)
    with timeline.step("1-5 fetch, validate, index, split, export"):
        samples = fetch_samples()
        root = samples.root
        console.print(f"[bold]1. Sample media[/bold]: {len(samples)} real face videos fetched into {root}")
        indexed, manifest = _index(console, samples, out, processes)
    with timeline.step("6 sample frames"):
        _sample_frames(console, manifest, out, frames)
    with timeline.step("7 preprocess"):
        _preprocess(console, manifest, out, frames, processes)
    with timeline.step("8 generate"):
        corpus = _generate(console, indexed, out / "srdf", processes)
    if corpus is not None:
        with timeline.step("9 audit"):
            _audit(console, out / "srdf", out / "audit", processes)
        with timeline.step("10 quality"):
            _quality(console, indexed, out / "srdf", out / "quality", processes)
        if names:
            with timeline.step("11 detectors"):
                _detectors(console, corpus, out / "detectors", names, processes)
    console.print(timeline.table())


def _index(console: Console, samples, out: Path, workers: int | None) -> tuple[Manifest, Manifest]:
    """Steps 2-5: the samples validated, indexed and probed (returned), split by person (returned) and
    exported."""
    root = samples.root
    corpus_csv = out / "samples.csv"
    _write_corpus_csv(corpus_csv, samples)
    report = validate_corpus("folder", root, probe=True, csv=str(corpus_csv.resolve()), dataset="samples")
    status = "complete" if report.ok else "INCOMPLETE"
    console.print(
        f"[bold]2. Validate[/bold] (folder loader, {corpus_csv}): layout {status}, every file decodes"
    )
    manifest = index_corpus("folder", root, csv=str(corpus_csv.resolve()), dataset="samples")
    manifest, failures = probe_manifest(manifest, workers=workers, exact=True)
    for key, reason in failures.items():
        console.print(f"  [yellow]could not probe {'/'.join(key)}: {reason}[/yellow]")
    table = manifest.to_pandas()[["video_id", "target_id", "frames", "fps", "width", "height"]]
    console.print(dataframe_table(table.round({"fps": 2}), "3. Index (probed: exact frame counts)"))

    split = grouped_split(manifest, (0.5, 0.25, 0.25), seed=0)
    leaks = check_leaks(split)
    console.print(dataframe_table(split_summary(split).round({"share": 3}), "4. Grouped split by person"))
    console.print(f"   leaks across splits: {len(leaks)} (a person's videos never straddle two splits)")
    written = export_manifest(split, out / "export")
    console.print(
        "[bold]5. Export[/bold]: " + ", ".join(f"{kind} -> {path}" for kind, path in written.items())
    )
    return manifest, split


def _sample_frames(console: Console, manifest: Manifest, out: Path, frames: int) -> None:
    """Step 6: ``frames`` evenly spaced frames read from each video, timed; a contact sheet."""
    console.print(f"[bold]6. Sampling[/bold] {frames} evenly spaced frames per video")
    rows = []
    for record in progress(manifest, "reading frames"):
        reader = VideoReader(manifest.path_of(record))
        indices = sample_indices(reader.num_frames, frames)
        start = time.perf_counter()
        clip = reader.read(indices)
        seconds = time.perf_counter() - start
        size = f"{clip.shape[2]}x{clip.shape[1]}"
        console.print(f"  {record.video_id:<20} {len(clip):>3} frames {size:>9} in {seconds:.3f} s")
        rows.append((f"{record.video_id} ({record.split})", list(clip[:: max(1, len(clip) // 8)][:8])))
    sheet_path = out / "samples_sheet.png"
    write_png(sheet_path, contact_sheet(rows))
    console.print(f"   contact sheet of the sampled frames: {sheet_path.resolve()}")


def _preprocess(console: Console, manifest: Manifest, out: Path, frames: int, workers: int | None) -> None:
    """Step 7: every crop kind into ``OUT/faces``; its yield table and a sheet of the hard case."""
    config = PreprocessConfig(crops=("face", "aligned", "ffhq", "mouth"), frames=frames)
    report = preprocess(manifest, out / "faces", config, workers=workers)
    console.print(
        f"[bold]7. Preprocess[/bold] ({config.backend} + cascade, {', '.join(config.crops)}): "
        f"{report.processed} videos, {report.frames} frames in {report.seconds:.1f} s "
        f"({report.frames_per_second:.0f} frames/s); {report.skipped} already in the store"
    )
    store = report.store
    console.print(dataframe_table(store.summary(by=("video_id",)), f"yield per video ({store.root})"))
    # The 720p screencast's face is a small webcam inset: the hard case (Debian samples only).
    shown = next((r.video_id for r in manifest if r.video_id == "hello_720p"), manifest[0].video_id)
    faces_sheet = out / f"faces_{shown}.png"
    store.sheet(shown, faces_sheet, crops=config.crops, max_frames=8)
    console.print(f"   crops, landmarks and masks of {shown}: {faces_sheet.resolve()}")


# One talking head per person: the generator pairs different people.
GENERATOR_REALS = ("carphone_pristine", "jesper_webcam", "hello_720p")


def _check_detectors(names: list[str]) -> None:
    """Exit 2 naming an unknown detector, or one without a ``small`` recipe, before any work."""
    from dftoolkit.cli._render import fail
    from dftoolkit.detectors import detector_recipes, list_detectors

    for name in names:
        if name not in list_detectors():
            fail(f"--detectors: unknown detector {name!r}; known: {', '.join(list_detectors())}")
        if "small" not in detector_recipes(name):
            fail(f"--detectors: {name!r} has no small recipe to train on a CPU")


def _generate(console: Console, indexed, out: Path, workers: int | None) -> Manifest | None:
    """Step 8: the built corpus, or None when it could not be built."""
    from dftoolkit.generators import build_dataset
    from dftoolkit.generators.builder import BuildReport

    reals = indexed.filter(lambda r: r.video_id in GENERATOR_REALS)
    if len({r.target_id for r in reals}) < 2:
        console.print("[bold]8. Generate[/bold]: skipped (needs two people; the Debian samples are missing)")
        return None
    report = BuildReport(out)
    corpus = build_dataset(
        reals,
        out,
        methods=["swap", "reenact"],
        blends=["feather", "rct"],
        perturbations=[None, "random"],
        seed=0,
        sheets=True,
        workers=workers,
        report=report,
    )
    console.print(
        f"[bold]8. Generate[/bold] an SR-DF-style corpus: {report.made} fakes and {report.reals} reals "
        f"made through one encoder ({report.skipped_done} already there), {report.frames} fake frames "
        f"in {report.seconds:.1f} s"
    )
    for key, reason in {**report.failed, **report.not_made}.items():
        console.print(f"  [yellow]{key}: {reason.strip().splitlines()[-1]}[/yellow]")
    columns = ["video_id", "label", "method", "perturbation", "compression", "frames", "coverage"]
    table = corpus.to_pandas()[columns].round({"coverage": 3})
    table = table.astype(object).where(table.notna(), "-")
    console.print(dataframe_table(table, f"{out / 'manifest.parquet'} ({len(corpus)} videos)"))
    fake = next(r for r in corpus if r.label == 1 and r.perturbation is None)
    console.print(f"   original | fake | mask | difference: {(out / 'sheets' / fake.video_id).resolve()}.png")
    return corpus


def _audit(console: Console, corpus: Path, out: Path, workers: int | None) -> None:
    """Step 9: the shortcut audit of the built corpus alone (its reals and fakes, one encoder)."""
    from dftoolkit.cli.audit import print_audit
    from dftoolkit.quality.audit import audit, write_audit

    report = write_audit(audit(corpus, seed=0, workers=workers, log_path=out / "audit_workers.log"), out)
    console.print(
        f"[bold]9. Shortcut audit[/bold] of {corpus}: can file properties alone tell its reals from its "
        f"fakes? {out / 'audit.md'}"
    )
    print_audit(console, report)


def _quality(console: Console, indexed, fakes: Path, out: Path, workers: int | None) -> None:
    from dftoolkit.cli.quality import print_report
    from dftoolkit.quality import quality_report

    start = time.perf_counter()
    report = quality_report([indexed, fakes], out, workers=workers)
    console.print(
        f"[bold]10. Quality[/bold] of the sample corpus and the fakes side by side: "
        f"{len(report.per_video)} videos in {time.perf_counter() - start:.1f} s; {out / 'report.md'}"
    )
    print_report(console, report)
    if report.audit is not None and "all" in report.audit.scopes:
        console.print(
            "   The audit's 'all' scope mixes the untouched sample files with the corpus's re-encoded "
            "videos: what it flags is what a detector trained on that mix could learn instead of forgery."
        )


def _detectors(console: Console, corpus: Manifest, out: Path, names: list[str], workers: int | None) -> None:
    """Step 11: split the built corpus by original video, preprocess it, and train (``small`` recipe,
    random weights) and test each detector of ``names`` on it."""
    import pandas as pd
    import torch

    from dftoolkit.detectors import build_detector, detector_recipe
    from dftoolkit.detectors.base import count_parameters, on_meta
    from dftoolkit.detectors.data import face_dataset
    from dftoolkit.detectors.evaluate import evaluate
    from dftoolkit.detectors.train import TrainConfig, load_trained, train

    # Three people cannot fill three splits with pairs of different people: the split keeps each
    # original with its fakes and copies, and the sources of its swaps fall in other splits.
    split = grouped_split(corpus, (1 / 3, 1 / 3, 1 / 3), seed=0, by=("original",))
    crossing = [leak for leak in check_leaks(split) if leak.kind == "identity"]
    split_path = out / "manifest.parquet"
    out.mkdir(parents=True, exist_ok=True)
    split.write_parquet(split_path)
    recipes = {name: detector_recipe(name, "small") for name in names}
    specs = {name: on_meta(lambda n=name: build_detector(n, recipes[n]["config"])).spec for name in names}
    crops = tuple(sorted({spec.crop for spec in specs.values()}))
    # the first 32 frames: runs of consecutive frames for clip detectors; face crops wide enough for
    # STIL's 1.0-1.5x training crops
    config = PreprocessConfig(crops=crops, frames=32, policy="stride", scale=1.5)
    report = preprocess(split, out / "faces", config, workers=workers)
    console.print(
        f"[bold]11. Detectors[/bold] on the built corpus, split by original video ({split_path}): "
        f"{dict(Counter(r.split for r in split))} videos; the first {config.frames} frames of each "
        f"preprocessed ({report.frames} frames in {report.seconds:.1f} s)"
    )
    console.print(
        f"   [yellow]{len(crossing)} identity crossing(s): with three people the sources of the swaps sit "
        "in other splits, so these numbers also test faces seen in training. A real corpus is split by "
        "identity (`dftoolkit split`).[/yellow]"
    )
    rows = []
    for name in names:
        recipe = recipes[name]
        torch.manual_seed(0)
        model = build_detector(name, recipe.pop("config"))
        sets = {
            part: face_dataset(report.store, model.spec, split=part, train=part == "train", manifest=split)
            for part in ("train", "val", "test")
        }
        run = out / name
        result = train(
            model, sets["train"], sets["val"], TrainConfig(**recipe), run, initialisation="random (seed 0)"
        )
        load_trained(model, result.best_checkpoint)
        initialisation = f"{result.best_checkpoint} (epoch {result.best_epoch}, trained from random (seed 0))"
        video = evaluate(
            model, sets["test"], run / "test", initialisation=initialisation, bootstrap=200
        ).video
        rows.append(
            {
                "detector": name,
                "params": count_parameters(model),
                "clips": "/".join(str(len(sets[p])) for p in ("train", "val", "test")),
                "epochs": result.epochs,
                "best (val AUC)": f"{result.best_epoch} ({result.best_auc:.2f})",
                "AUC": _number(video["auc"]),
                "ACC": _number(video["acc@0.5"]),
                "EER": _number(video["eer"]),
                "log-loss": _number(video["log_loss"]),
            }
        )
        skipped = {part: len(data.skipped) for part, data in sets.items() if data.skipped}
        if skipped:
            console.print(f"   [yellow]{name}: videos skipped per split {skipped} (see {run})[/yellow]")
    title = "small detectors on the test split, video level (clips: train/val/test; ACC at 0.5)"
    console.print(dataframe_table(pd.DataFrame(rows), title))
    console.print(
        "   These are tiny models (the small presets) trained from random weights for a few epochs on "
        "about ten videos: the table shows the harness working end to end, not how well the detectors "
        "or the data perform. Each metrics.json records the initialisation. The same with the command "
        f"line: dftoolkit train {out / 'faces'} --manifest {split_path} -d stil --recipe small -o RUN",
        soft_wrap=True,
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
