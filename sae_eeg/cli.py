"""The ``sae-eeg`` command line."""

from __future__ import annotations

from pathlib import Path

import typer

from . import __version__
from .pipeline.demo import run_demo

app = typer.Typer(no_args_is_help=True, help="SAE features of audio models vs EEG.")


@app.command()
def version():
    """Print the package version."""
    typer.echo(__version__)


@app.command()
def demo(out: Path = typer.Option(Path("demo_output"), help="Output folder.")):
    """Run the offline demo on data it generates."""
    run_demo(out, echo=typer.echo)
    typer.echo(f"Outputs in {out.resolve()}")


if __name__ == "__main__":
    app()
