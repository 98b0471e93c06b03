"""``dftoolkit samples fetch|list``: the real sample media."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from dftoolkit.cli._render import fail
from dftoolkit.fetch import FetchError, debian_available
from dftoolkit.samples import SAMPLES, cache_dir, fetch_samples


def register(app: typer.Typer) -> None:
    samples = typer.Typer(help="Real face media for tests, benchmarks and the demo.", no_args_is_help=True)
    app.add_typer(samples, name="samples")

    @samples.command("fetch")
    def fetch(
        root: str = typer.Option(
            None, help="Samples folder (default: $DFTOOLKIT_CACHE/samples or ~/.cache/dftoolkit/samples)."
        ),
        debian: bool = typer.Option(
            None, "--debian/--no-debian", help="Fetch Debian samples (default: if apt-get exists)."
        ),
    ) -> None:
        """Fetch every sample file (pinned by SHA-256) and write the sample corpus manifest."""
        try:
            manifest = fetch_samples(root, debian=debian)
        except FetchError as err:
            fail(err)
        typer.echo(f"{len(manifest)} sample videos in {manifest.root}")
        typer.echo(f"manifest: {manifest.root / 'manifest.parquet'}")

    @samples.command("list")
    def list_() -> None:
        """List the sample files, where they come from and whether they are fetched."""
        root = cache_dir()
        table = Table(
            title=f"samples in {root}"
            + ("" if debian_available() else " (no apt-get: Debian ones unavailable)")
        )
        table.add_column("file", no_wrap=True)
        for column in ("person", "label", "from", "fetched", "what"):
            table.add_column(column)
        for spec in SAMPLES:
            fetched = "yes" if (root / spec.name).is_file() else "no"
            label = "fake" if spec.label else "real"
            table.add_row(
                spec.name, spec.identity or "-", label, f"{spec.origin}: {spec.package}", fetched, spec.note
            )
        Console().print(table)
