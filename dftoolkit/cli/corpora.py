"""``dftoolkit corpora | index | validate``: the corpus loaders from the command line."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape

from dftoolkit.cli._render import dataframe_table, fail, key_values, out_or_alias, output_alias
from dftoolkit.corpora import CorpusError, describe_corpora, get_corpus, index_corpus, validate_corpus
from dftoolkit.fileio import atomic_write_text

OPTION_HELP = (
    "Loader option KEY=VALUE (repeatable); see `dftoolkit corpora NAME`. VALUE: JSON (true, 3, null) "
    "or text; commas make lists (c23,c40)."
)
OPTION_EXAMPLE = "compression=c23"


def loader_options(name: str) -> list[tuple[str, str]]:
    """The keyword options of a loader's ``index`` with their defaults, from its signature."""
    signature = inspect.signature(type(get_corpus(name)).index)
    return [
        (p.name, "required" if p.default is inspect.Parameter.empty else repr(p.default))
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def corpora(name: str = typer.Argument(None, help="Show one loader's options and documentation.")) -> None:
    """List the corpus loaders (or describe one)."""
    console = Console()
    if name is None:
        table = pd.DataFrame(list(describe_corpora().items()), columns=["corpus", "description"])
        console.print(
            dataframe_table(table, "corpus loaders (dftoolkit index NAME ROOT -o manifest.parquet)")
        )
        return
    try:
        loader = type(get_corpus(name))
    except KeyError as err:
        fail(err)
    console.print(f"[bold]{escape(name)}[/bold]: {escape(loader.description)}\n")
    console.print(escape(inspect.getdoc(loader) or ""))
    options = pd.DataFrame(loader_options(name), columns=["option", "default"])
    console.print(dataframe_table(options, "options (-O KEY=VALUE)"))


def index(
    corpus: str = typer.Argument(..., help="Loader name (see `dftoolkit corpora`)."),
    root: Path = typer.Argument(..., help="The corpus folder."),
    out: Path = typer.Option(None, "--out", "-o", help="Manifest Parquet file to write (required)."),
    output: Path = output_alias(),
    option: list[str] = typer.Option([], "--option", "-O", help=OPTION_HELP),
    probe: bool = typer.Option(False, help="Also probe every file for frames, fps and size (parallel)."),
    fast: bool = typer.Option(
        False,
        "--fast",
        help="With --probe: take frame counts from the container's metadata instead of counting "
        "packets (reads only headers; counts marked frames_exact=False, may be off).",
    ),
    workers: int = typer.Option(0, help="Processes for --probe (0: one per core)."),
) -> None:
    """Index a corpus tree into a manifest (no decoding; --probe fills exact frames, fps, size)."""
    from dftoolkit.probing import probe_manifest

    out = out_or_alias(out, output)
    if out is None:
        fail("give --out (-o): the manifest file to write")
    options = key_values("-O", option, OPTION_EXAMPLE)
    try:
        manifest = index_corpus(corpus, root, **options)
    except (CorpusError, KeyError, TypeError, ValueError) as err:
        fail(err)
    console = Console()
    if probe:
        manifest, failures = probe_manifest(manifest, workers=workers or None, exact=not fast)
        if failures:
            report = out.with_name(out.stem + ".probe_errors.json")
            atomic_write_text(
                report, json.dumps({"/".join(k): v for k, v in sorted(failures.items())}, indent=1)
            )
            message = f"{len(failures)} file(s) could not be probed; reasons in {report}"
            console.print(message, style="yellow", markup=False)
    manifest.write_parquet(out)
    console.print(dataframe_table(manifest.summary(), f"{out}: {len(manifest)} videos"))


def validate(
    corpus: str = typer.Argument(..., help="Loader name (see `dftoolkit corpora`)."),
    root: Path = typer.Argument(..., help="The corpus folder."),
    option: list[str] = typer.Option([], "--option", "-O", help=OPTION_HELP),
    probe: bool = typer.Option(False, help="Also open every file to find undecodable ones."),
    json_out: Path = typer.Option(None, "--json", help="Write the full report (every file name) as JSON."),
) -> None:
    """Compare a corpus tree with its official layout; exit code 1 when parts are missing or broken."""
    options = key_values("-O", option, OPTION_EXAMPLE)
    try:
        report = validate_corpus(corpus, root, probe=probe, **options)
    except (CorpusError, KeyError, TypeError, ValueError) as err:
        fail(err)
    if json_out:
        atomic_write_text(json_out, json.dumps(report.to_dict(), indent=1))
    rows = []
    for f in report.folders:
        status = "ok" if f.ok else ("MISSING" if not f.exists else "INCOMPLETE")
        if not f.exists and not f.folder.required:
            status = "absent (optional)"
        expected = "-" if f.folder.expected is None else len(f.folder.expected)
        example = (f.missing or f.empty or list(f.undecodable) or f.unexpected or [""])[0]
        rows.append([f.folder.relpath or ".", status, f.found, expected, len(f.missing), len(f.unexpected),
                     len(f.empty), len(f.undecodable), example])  # fmt: skip
    columns = [
        "folder",
        "status",
        "found",
        "expected",
        "missing",
        "unexpected",
        "empty",
        "undecodable",
        "e.g.",
    ]
    console = Console()
    console.print(dataframe_table(pd.DataFrame(rows, columns=columns), f"{corpus} at {report.root}"))
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {escape(problem)}")
    console.print("[green]layout complete[/green]" if report.ok else "[red]layout incomplete[/red]")
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("corpora")(corpora)
    app.command("index")(index)
    app.command("validate")(validate)
