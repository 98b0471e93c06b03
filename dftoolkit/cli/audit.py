"""``dftoolkit audit``: can cheap nuisance features (encoding, size, length, face geometry and
sharpness) predict real vs fake? The shortcut audit of :mod:`dftoolkit.quality.audit`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from dftoolkit.cli._render import dataframe_table, fail

__all__ = ["print_audit", "register"]


def audit(
    manifest: Path = typer.Argument(
        ..., metavar="MANIFEST", help="Manifest file, toolkit corpus folder or FaceStore folder."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for audit.json, audit.md and audit.png (created)."
    ),
    store: Path = typer.Option(
        None, "--store", help="FaceStore of the manifest's videos: adds the face features."
    ),
    flag: float = typer.Option(  # quality.audit.FLAG; that module is imported lazily (it pulls torch in)
        0.65, min=0.5, max=1.0, help="Flag features whose AUC is at least this."
    ),
    frames: int = typer.Option(8, min=1, help="Face frames read per video (with --store)."),
    bootstrap: int = typer.Option(1000, min=1, help="Resamplings of the groups for the 95% interval."),
    seed: int = typer.Option(0, help="Seeds the folds and the bootstrap."),
    strict: bool = typer.Option(False, "--strict", help="Exit with status 1 when a feature is flagged (CI)."),
    workers: int = typer.Option(0, min=0, help="Processes (0: one per core)."),
) -> None:
    """Label-prediction AUC of each nuisance feature under grouped cross-validation, per dataset
    and overall; writes JSON, Markdown and a bar chart.

    Exit status 0, also when features are flagged (1 then with --strict); 2 on bad input.
    """
    from dftoolkit.quality.audit import audit as run_audit
    from dftoolkit.quality.audit import write_audit

    try:
        report = run_audit(
            manifest,
            store,
            flag=flag,
            frames=frames,
            bootstrap=bootstrap,
            seed=seed,
            workers=workers or None,
            log_path=out / "audit_workers.log",
        )
        write_audit(report, out)
    except (ValueError, KeyError, FileNotFoundError) as err:
        fail(err)
    console = Console()
    print_audit(console, report)
    for name, path in report.files.items():
        console.print(f"{name}: {path}")
    if strict and not report.flagged.empty:
        raise typer.Exit(1)


def print_audit(console: Console, report) -> None:
    """The audit table (one per scope), the flagged rows and the videos left out, with reasons."""
    table = report.table()
    for scope in report.scopes:
        rows = table[table.scope == scope].drop(columns="scope")
        if (rows.AUC == "n/a").all() and rows.note.nunique() == 1:  # e.g. a scope of one class
            console.print(f"shortcut audit of {scope}: not computed: {rows.note.iloc[0]}")
            continue
        title = f"shortcut audit of {scope}: label-prediction AUC, grouped CV (flag >= {report.flag:g})"
        console.print(dataframe_table(rows, title))
    for row in report.flagged.itertuples():
        console.print(
            f"[red]flagged[/red] {row.scope} / {row.feature}: AUC {row.auc:.3f} "
            f"[{row.ci_low:.2f}, {row.ci_high:.2f}] >= {report.flag:g}"
        )
    if report.rows.auc.isna().all():
        console.print("[yellow]no AUC computed[/yellow]: see the notes")
    elif report.flagged.empty:
        console.print(f"nothing flagged (no AUC >= {report.flag:g})")
    for key, why in sorted(report.skipped.items()):
        console.print(f"[yellow]left out[/yellow] {key}: {why}")


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
