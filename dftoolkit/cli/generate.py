"""``dftoolkit generate``: build an SR-DF-style corpus of fakes from a manifest of real videos.

Exits 1 when the corpus folder is in use by another run, the disk filled, or every video tried failed;
2 on bad settings, before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dftoolkit.cli._config import (
    config_option,
    engine_option,
    given,
    option,
    resolve,
    set_option,
    workers_option,
)
from dftoolkit.cli._render import (
    check_failures,
    check_store,
    dataframe_table,
    fail,
    read_manifest,
    run_faults,
)
from dftoolkit.config import describe_config
from dftoolkit.generators import (
    BLENDS,
    METHODS,
    BuildConfig,
    build_dataset,
    describe_blends,
    describe_methods,
)
from dftoolkit.generators.builder import BuildReport

__all__ = ["register"]

EXAMPLE = "fomm.checkpoint=vox-cpk.pth.tar"
SHAPE = "NAME.KEY=VALUE (a method or blend option) or KEY=VALUE (a setting)"


def _qualified(setting: str) -> str:
    """``fomm.checkpoint=x``, a method's or blend's option, as the setting it is:
    ``method_options.fomm.checkpoint=x`` (``blend_options.`` for a blend); others as they are."""
    owner, dot, _ = setting.partition("=")[0].partition(".")
    if not dot or owner in describe_config(BuildConfig):
        return setting
    if owner in METHODS:
        return f"method_options.{setting}"
    if owner in BLENDS:
        return f"blend_options.{setting}"
    fail(
        f"--set {setting!r}: {owner!r} is no setting, method or blend; "
        f"methods: {', '.join(METHODS.names())}; blends: {', '.join(BLENDS.names())}"
    )


def _print_lists(console: Console) -> None:
    methods = Table("method", "kind", "description", title="manipulation methods")
    for name, description in describe_methods().items():
        methods.add_row(name, METHODS.get(name).kind, description)
    blends = Table("blend", "description", title="blends")
    for name, description in describe_blends().items():
        blends.add_row(name, description)
    console.print(methods, blends)


def generate(
    ctx: typer.Context,
    manifest_path: Path = typer.Argument(
        None, metavar="MANIFEST", help="Manifest Parquet file of real videos (FF++ fakes in it give pairs)."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Corpus folder (created, or resumed)."),
    methods: str = option(BuildConfig, "methods"),
    blends: str = option(BuildConfig, "blends"),
    perturbations: list[str] = option(
        BuildConfig, "perturbations", "--perturb", default=None, show_default="none"
    ),
    seed: int = option(BuildConfig, "seed"),
    per_target: int = option(BuildConfig, "per_target"),
    crf: int = option(BuildConfig, "crf"),
    lossless: bool = typer.Option(False, "--lossless", help="Write every video lossless (crf none)."),
    min_coverage: float = option(BuildConfig, "min_coverage"),
    originals: str = option(BuildConfig, "originals"),
    perturb_reals: bool = option(BuildConfig, "perturb_reals", "--perturb-reals/--no-perturb-reals"),
    backend: str = option(BuildConfig, "backend"),
    name: str = option(BuildConfig, "name"),
    sheets: bool = option(BuildConfig, "sheets", "--sheets"),
    config_file: Path = config_option(),
    settings: list[str] = set_option(f"seed=3 or {EXAMPLE} (a method or blend option)"),
    store: Path = typer.Option(None, help="FaceStore whose full-video landmarks to reuse."),
    workers: int = workers_option(),
    engine: str = engine_option(),
    list_all: bool = typer.Option(False, "--list", help="List the methods and blends, then exit."),
) -> None:
    """Make fakes (methods x blends x perturbations) of pairs of real videos; resumable (rerun to go on).

    Settings: the defaults, then --config, then the options given, then --set; the corpus folder
    records them (config.yaml). One run at a time per corpus folder. Exit status 1: the folder is in
    use by another run, the disk filled, or every video tried failed (some failing and others made:
    0, the failures listed).
    """
    console = Console()
    if list_all:
        _print_lists(console)
        return
    if manifest_path is None or out is None:
        fail("give MANIFEST and --out (or --list)")
    flags = given(
        ctx,
        methods=methods,
        blends=blends,
        perturbations=perturbations,
        seed=seed,
        per_target=per_target,
        crf=crf,
        min_coverage=min_coverage,
        originals=originals,
        perturb_reals=perturb_reals,
        backend=backend,
        name=name,
        sheets=sheets,
    )
    if lossless:
        flags["crf"] = None
    qualified = [_qualified(setting) for setting in settings or ()]
    config = resolve(BuildConfig, config_file, flags, qualified, example=EXAMPLE, shape=SHAPE)
    manifest = read_manifest(manifest_path)
    check_store(store)
    report = BuildReport(out)
    with run_faults(out):
        try:
            corpus = build_dataset(
                manifest, out, config, store=store, workers=workers or None, engine=engine, report=report
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
    if config.sheets:
        console.print(f"contact sheets: {out / 'sheets'}")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
