"""``dftoolkit benchmark``: train detectors on datasets, score them across datasets and under
perturbations, from one YAML spec (:mod:`dftoolkit.detectors.benchmark`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from dftoolkit.cli._config import engine_option, workers_option
from dftoolkit.cli._render import dataframe_table, fail, run_faults

__all__ = ["register"]


def benchmark(
    spec: Path = typer.Argument(
        ...,
        metavar="SPEC",
        help="YAML spec: train sets, detectors, test sets, robustness (paths relative to it).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (a rerun computes only what is new)."),
    workers: int = workers_option(),
    engine: str = engine_option(),
    bootstrap: int = typer.Option(1000, min=1, help="Resamplings for each AUC interval."),
) -> None:
    """Cross-dataset and robustness benchmark: is a dataset harder than others, do detectors trained
    on it generalise, does it survive degradations?

    Writes OUT/cross_dataset.csv/.json/.png, per_method.csv, robustness.csv/.png, difficulty.json
    and benchmark.json (what was computed and reused, every model's initialisation).
    """
    from dftoolkit.detectors.benchmark import load_spec, run_benchmark

    try:
        parsed = load_spec(spec)
    except ValueError as err:
        fail(err)
    with run_faults(out):
        report = run_benchmark(parsed, out, workers=workers or None, engine=engine, bootstrap=bootstrap)
    console = Console()
    done = ", ".join(
        f"{what}: {len(report.computed[what])} computed, {len(report.reused[what])} reused"
        for what in ("trainings", "perturbed", "scorings")
    )
    console.print(
        f"{done}; weights: {', '.join(sorted(set(report.initialisations.values())))}", soft_wrap=True
    )
    matrix = report.matrix.map(lambda v: "n/a" if v != v else f"{v:.3f}").reset_index()
    console.print(dataframe_table(matrix, "video AUC: rows train/model, columns test sets"))
    for key, why in report.failed.items():
        console.print(f"[yellow]{key}: {why}[/yellow]", soft_wrap=True)
    console.print(f"report: {report.files['benchmark']}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark)
