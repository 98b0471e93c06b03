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
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table as RichTable

from dftoolkit.cli._config import option
from dftoolkit.cli._render import dataframe_table
from dftoolkit.corpora import index_corpus, validate_corpus
from dftoolkit.export import export_manifest
from dftoolkit.fileio import atomic_path, atomic_write_text
from dftoolkit.manifest import Manifest
from dftoolkit.preprocess import PreprocessConfig, preprocess
from dftoolkit.probing import probe_manifest
from dftoolkit.progress import progress
from dftoolkit.records import VideoRecord
from dftoolkit.report import Figure, Section, Table, write_report
from dftoolkit.samples import fetch_samples
from dftoolkit.sheets import contact_sheet, write_png
from dftoolkit.splits import check_leaks, grouped_split, split_summary
from dftoolkit.video import VideoReader, sample_indices

if TYPE_CHECKING:
    import pandas as pd

    from dftoolkit.detectors.benchmark import BenchmarkReport

DEMO_DETECTORS = ("lipforensics", "stil")
INTRO = (
    "Every step of the toolkit on a handful of real sample videos (three people), in the order a dataset "
    "builder runs them. Each section ends with the command that does the same on a real corpus; the "
    "commands use the FaceForensics++ layout as the example. The numbers describe six short clips and "
    "tiny, randomly initialised detectors: they show the toolkit working, not a result about deepfakes."
)
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

    def frame(self) -> pd.DataFrame:
        """One row per step, then the total: ``step``, ``seconds``."""
        import pandas as pd

        total = round(sum(float(r["seconds"]) for r in self.rows), 1)
        return pd.DataFrame([*self.rows, {"step": "total", "seconds": total}])

    def table(self) -> RichTable:
        return dataframe_table(self.frame(), f"wall time per step ({self.path})")


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
    fast: bool = typer.Option(
        True,
        "--fast/--full",
        help="Step 11's robustness suite: 2 perturbation types at 2 levels and c40 (fast), or all seven "
        "types at levels 1-5 and c23/c40 (full, about four times longer).",
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
    sections: list[Section] = []
    with timeline.step("1-5 fetch, validate, index, split, export"):
        samples = fetch_samples()
        root = samples.root
        console.print(f"[bold]1. Sample media[/bold]: {len(samples)} real face videos fetched into {root}")
        indexed, manifest = _index(console, samples, out, processes, sections)
    with timeline.step("6 sample frames"):
        _sample_frames(console, manifest, out, frames)
    with timeline.step("7 preprocess"):
        _preprocess(console, manifest, out, frames, processes, sections)
    with timeline.step("8 generate"):
        corpus = _generate(console, indexed, out / "srdf", processes, sections)
    if corpus is not None:
        with timeline.step("9 audit"):
            _audit(console, out / "srdf", out / "audit", processes, sections)
        with timeline.step("10 quality"):
            _quality(console, indexed, out / "srdf", out / "quality", processes, sections)
        if names:
            with timeline.step("11 detectors"):
                _detectors(console, corpus, out / "detectors", names, processes, fast, sections)
    console.print(timeline.table())
    sections.append(Section("Wall time per step", tables=[Table(timeline.frame(), units={"seconds": "s"})]))
    files = write_report(
        "dftoolkit demo: the toolkit end to end on real sample media", sections, out, intro=INTRO
    )
    console.print(f"[bold]Report[/bold]: {files['html'].resolve()} (and {files['markdown'].name} beside it)")


def _index(
    console: Console, samples, out: Path, workers: int | None, sections: list[Section]
) -> tuple[Manifest, Manifest]:
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
    sections.append(
        Section(
            "Corpus: validated, indexed, split without leaks",
            f"{len(manifest)} real videos of {len({r.target_id for r in manifest})} people, indexed with "
            f"the folder loader and probed (exact frame counts). The split keeps each person in one split: "
            f"{len(leaks)} leaks.",
            tables=[
                Table(table, "The index", units={"fps": "frames/s", "width": "px", "height": "px"}),
                Table(split_summary(split).round({"share": 3}), "Grouped split by person"),
            ],
            command="dftoolkit validate ffpp /data/FF++ -O compression=c23 --probe\n"
            "dftoolkit index ffpp /data/FF++ -o ffpp.parquet -O compression=c23 --probe\n"
            "dftoolkit split ffpp.parquet -o grouped.parquet --protocol grouped --ratios 0.8,0.1,0.1\n"
            "dftoolkit export grouped.parquet --out exported/ --formats hf,parquet,csv",
        )
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


def _preprocess(
    console: Console, manifest: Manifest, out: Path, frames: int, workers: int | None, sections: list[Section]
) -> None:
    """Step 7: every crop kind into ``OUT/faces``; its yield table and a sheet of the hard case."""
    config = PreprocessConfig(crops=("face", "aligned", "ffhq", "mouth"), frames=frames)
    report = preprocess(manifest, out / "faces", config, workers=workers)
    console.print(
        f"[bold]7. Preprocess[/bold] ({config.backend} + cascade, {', '.join(config.crops)}): "
        f"{report.processed} videos, {report.frames} frames in {report.seconds:.1f} s "
        f"({report.frames_per_second:.0f} frames/s); {report.skipped} already in the store"
    )
    store = report.store
    yields = store.summary(by=("video_id",))
    console.print(dataframe_table(yields, f"yield per video ({store.root})"))
    # The 720p screencast's face is a small webcam inset: the hard case (Debian samples only).
    shown = next((r.video_id for r in manifest if r.video_id == "hello_720p"), manifest[0].video_id)
    faces_sheet = out / f"faces_{shown}.png"
    store.sheet(shown, faces_sheet, crops=config.crops, max_frames=8)
    console.print(f"   crops, landmarks and masks of {shown}: {faces_sheet.resolve()}")
    crops = out / "faces_all.png"
    kept = yields.video_id[yields.ok > 0]
    write_png(
        crops, contact_sheet([(v, list(store.clip(v, "face", frames=6).transpose(0, 2, 3, 1))) for v in kept])
    )
    sections.append(
        Section(
            "Faces: one FaceStore of crops, landmarks and masks",
            f"{int(yields.sampled.sum())} sampled frames of {len(manifest)} videos went through "
            "face detection "
            f"({config.backend} with the detection cascade); every frame has a row with its status, and a "
            "frame without a usable face says why. The 720p screencast's face is a small webcam inset: the "
            "cascade still finds it.",
            tables=[Table(yields, "Yield per video (ok / sampled)")],
            figures=[
                Figure(crops, "Face crops of every video (6 frames each, the stored 256 px crops)"),
                Figure(faces_sheet, f"{shown}: the four crop kinds, their landmarks and masks"),
            ],
            command="dftoolkit preprocess grouped.parquet --out faces/ --crops face,aligned,ffhq,mouth "
            "--frames 32",
        )
    )


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


def _generate(
    console: Console, indexed, out: Path, workers: int | None, sections: list[Section]
) -> Manifest | None:
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
    shown: dict[str, VideoRecord] = {}  # the first clean feathered swap of each original
    for r in corpus:
        if r.label == 1 and r.perturbation is None and r.method == "swap+feather":
            shown.setdefault(r.original_id or r.video_id, r)
    sections.append(
        Section(
            "Fakes: an SR-DF-style corpus",
            f"{report.made + report.skipped_done} fakes (face swapping and reenactment between different "
            "people, each blended two ways, clean and with a random DeeperForensics perturbation) and their "
            "real originals, all written through one encoder so that no file property tells the classes "
            "apart. The sheets show each fake cut around its manipulated region.",
            tables=[Table(table, f"{len(corpus)} videos")],
            figures=[
                Figure(
                    out / "sheets" / f"{r.video_id}.png", f"{r.video_id}: original, fake, mask, difference"
                )
                for r in shown.values()
            ],
            command="dftoolkit generate grouped.parquet --out srdf/ --methods swap,reenact "
            "--blends feather,rct --perturb none --perturb random --sheets",
        )
    )
    return corpus


def _audit(console: Console, corpus: Path, out: Path, workers: int | None, sections: list[Section]) -> None:
    """Step 9: the shortcut audit of the built corpus alone (its reals and fakes, one encoder)."""
    from dftoolkit.cli.audit import print_audit
    from dftoolkit.quality.audit import audit, write_audit

    report = write_audit(audit(corpus, seed=0, workers=workers, log_path=out / "audit_workers.log"), out)
    console.print(
        f"[bold]9. Shortcut audit[/bold] of {corpus}: can file properties alone tell its reals from its "
        f"fakes? {out / 'audit.md'}"
    )
    print_audit(console, report)
    rows = report.rows[["scope", "feature", "kind", "auc", "ci_low", "ci_high", "reals", "fakes", "flagged"]]
    sections.append(
        Section(
            "Shortcut audit: can file properties alone tell real from fake?",
            "A classifier sees only one nuisance feature (container, codec, bit rate, size, length...) and "
            f"tries to predict the label, in grouped cross-validation; an AUC at or above {report.flag:g} is "
            "flagged as a shortcut a detector could learn instead of forgery. 0.5 is chance.",
            tables=[
                Table(
                    rows,
                    "Label-prediction AUC per feature (95 % bootstrap interval)",
                    better={"auc": "lower"},
                )
            ],
            figures=[Figure(p, "The audit's AUCs") for p in [out / "audit.png"] if p.is_file()],
            command="dftoolkit audit srdf/ --out audit/ --store faces/",
        )
    )


def _quality(
    console: Console, indexed, fakes: Path, out: Path, workers: int | None, sections: list[Section]
) -> None:
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
    from dftoolkit.quality.scoring import BETTER, UNITS

    means = report.datasets[
        ["dataset", "kind", "videos", *(c for c in report.datasets if c.endswith("_mean"))]
    ]
    means = means.dropna(axis=1, how="all").rename(columns=lambda c: c.removesuffix("_mean"))
    figures = [
        Figure(out / name, caption)
        for name, caption in (
            ("tsne.png", "Face features of every video, t-SNE (real and fake, per dataset)"),
            ("distributions.png", "Per-video distributions of each metric"),
            ("worst_mask_ssim.png", "The five fakes with the lowest Mask-SSIM: original, fake, mask"),
        )
        if (out / name).is_file()
    ]
    sections.append(
        Section(
            "Quality: the fakes beside the real samples",
            "The M2TR paper's dataset-quality measures: Mask-SSIM and the perceptual distance of each fake "
            "to its original inside the manipulated region, E_warp (temporal flicker), the t-SNE spread of "
            "face features, identity and expression fidelity, landmark jitter. Means per dataset and class.",
            tables=[
                Table(
                    means,
                    "Means per dataset and class",
                    units={c: u for c, u in UNITS.items() if c in means},
                    better={c: b for c, b in BETTER.items() if c in means},
                )
            ],
            figures=figures,
            command="dftoolkit quality ffpp.parquet srdf/ --out quality/ --store faces/",
        )
    )


def _split_by_original(corpus: Manifest) -> Manifest:
    """The built corpus split by original video: each original with its fakes and perturbed copies in
    one split, the largest original's group (frames x pixels) in train, the next in val, the smallest
    in test (its perturbed copies are the quickest to make).

    Three people cannot fill three splits with pairs of different people: the sources of the swaps
    of each split sit in the others (identity crossings, which the demo reports)."""
    originals = sorted(
        (r for r in corpus if r.label == 0 and r.original_id is None),
        key=lambda r: (-(r.frames or 0) * (r.width or 0) * (r.height or 0), r.video_id),
    )
    if len(originals) != 3:
        raise ValueError(f"the demo's corpus has {len(originals)} originals; its split needs 3")
    part = {r.video_id: split for r, split in zip(originals, ("train", "val", "test"), strict=True)}
    split = corpus.map_records(lambda r: r.replace(split=part[r.original_id or r.video_id]))
    assert not [leak for leak in check_leaks(split) if leak.kind != "identity"]  # originals stay whole
    return split


FAST_ROBUSTNESS = {"types": ["GB", "JPEG"], "levels": [2, 4], "compressions": ["c40"]}
"""The robustness suite of ``--fast``: two perturbation types at two levels and c40 (5 perturbed
copies); without it, all seven DeeperForensics types at levels 1-5 and c23/c40 (37)."""


def _detectors(
    console: Console,
    corpus: Manifest,
    out: Path,
    names: list[str],
    workers: int | None,
    fast: bool,
    sections: list[Section],
) -> BenchmarkReport:
    """Step 11: split the built corpus by original video, preprocess every frame, and benchmark each
    detector of ``names`` (``small`` recipe, random weights): trained on the train split, tested on
    the test split and on perturbed copies of it (:func:`~dftoolkit.detectors.benchmark.run_benchmark`)."""
    import yaml

    from dftoolkit.detectors import build_detector, detector_recipe
    from dftoolkit.detectors.base import on_meta
    from dftoolkit.detectors.benchmark import run_benchmark

    split = _split_by_original(corpus)
    crossing = [leak for leak in check_leaks(split) if leak.kind == "identity"]
    out.mkdir(parents=True, exist_ok=True)
    split.write_parquet(out / "manifest.parquet")
    specs = [
        on_meta(lambda n=name: build_detector(n, detector_recipe(n, "small")["config"])).spec
        for name in names
    ]
    # every frame (runs of consecutive frames for clip detectors, the same frames as the perturbed
    # copies); face crops wide enough for STIL's 1.0-1.5x training crops
    config = PreprocessConfig(crops=tuple(sorted({spec.crop for spec in specs})), policy="all", scale=1.5)
    report = preprocess(split, out / "faces", config, workers=workers)
    console.print(
        f"[bold]11. Detectors[/bold] on the built corpus, split by original video "
        f"({out / 'manifest.parquet'}): {dict(Counter(r.split for r in split))} videos; every frame "
        f"preprocessed ({report.frames} frames in {report.seconds:.1f} s, {report.skipped} videos already "
        "in the store)"
    )
    console.print(
        f"   [yellow]{len(crossing)} identity crossing(s): with three people the sources of the swaps sit "
        "in other splits, so these numbers also test faces seen in training. A real corpus is split by "
        "identity (`dftoolkit split`).[/yellow]"
    )
    robustness = {"test": "srdf-test", **(FAST_ROBUSTNESS if fast else {})}
    spec = {
        "train": {
            "srdf": {"store": "faces", "manifest": "manifest.parquet", "split": "train", "val_split": "val"}
        },
        "detectors": {name: {"detector": name, "recipe": "small"} for name in names},
        "tests": {"srdf-test": {"store": "faces", "manifest": "manifest.parquet", "split": "test"}},
        "robustness": robustness,
    }
    spec_path = out / "benchmark.yaml"
    atomic_write_text(spec_path, yaml.safe_dump(spec, sort_keys=False))
    result = run_benchmark(spec_path, out / "benchmark", workers=workers, bootstrap=200)
    done = {kind: len(keys) for kind, keys in result.computed.items()}
    kept = {kind: len(keys) for kind, keys in result.reused.items()}
    console.print(f"   benchmark ({spec_path}): computed {done}, reused {kept}", soft_wrap=True)
    table = result.cross_dataset[["model", "test", "auc", "auc_low", "auc_high", "eer", "ap", "n"]]
    console.print(
        dataframe_table(table.round(3), "video level, trained on the train split (AUC, 95 % interval)")
    )
    curves = None
    if not result.robustness.empty:  # one row per perturbation (clean first), n/a where no face was left
        rows = result.robustness
        curves = rows.pivot(index="chain", columns="model", values="auc").reindex(rows.chain.unique())
        curves = curves.map(lambda v: "n/a" if v != v else f"{v:.3f}").reset_index(names="perturbation")
        console.print(
            dataframe_table(curves, "robustness: test AUC per perturbation (n/a: see robustness.csv)")
        )
    for key, why in result.failed.items():
        console.print(f"   [yellow]{key}: {why}[/yellow]", soft_wrap=True)
    console.print(
        "   These are tiny models (the small presets) trained from random weights for a few epochs on "
        "about ten videos: the tables show the harness working end to end, not how well the detectors "
        "or the data perform. Every metrics.json records the initialisation. The same with the command "
        f"line: dftoolkit benchmark {spec_path} --out {out / 'benchmark'}",
        soft_wrap=True,
    )
    rocs = [
        Figure(path, f"{name}: ROC on the test split")
        for name in names
        for path in [out / "benchmark" / "scores" / "srdf" / name / "srdf-test" / "roc.png"]
        if path.is_file()
    ]
    plots = [
        Figure(result.files[key], caption)
        for key, caption in (
            ("cross_dataset_png", "Video AUC, trained on the train split"),
            ("robustness_png", "Test AUC against perturbation level"),
        )
        if key in result.files and Path(result.files[key]).is_file()
    ]
    tables = [
        Table(
            table.round(3),
            "Video level on the test split",
            better={"auc": "higher", "eer": "lower", "ap": "higher"},
        )
    ]
    if curves is not None:
        unscored = result.robustness[result.robustness.auc.isna()]
        why = "; ".join(
            sorted(f"{r.chain}: {r.reason}" for r in unscored.drop_duplicates("chain").itertuples())
        )
        tables.append(Table(curves, f"Test AUC per perturbation. {why}".strip()))
    sections.append(
        Section(
            "Detectors: trained on the corpus, tested on held-out and perturbed videos",
            f"The small presets of {', '.join(names)}, trained from random weights on the train split (the "
            "epoch chosen on val), scored on the test split and on copies of it degraded by DeeperForensics "
            "perturbations and compression. These are tiny models on about ten videos: the tables show the "
            f"pipeline working, not how good the detectors or the data are. {len(crossing)} identity "
            "crossing(s): three people cannot fill three identity-disjoint splits, so the sources of the "
            "swaps sit in other splits; a real corpus is split by identity.",
            tables=tables,
            figures=plots + rocs,
            command="dftoolkit benchmark benchmark.yaml --out benchmark/   # train, val and test sets, "
            "detectors and the robustness suite named in the YAML",
        )
    )
    return result


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
