"""The ``sae-eeg`` command line."""

from __future__ import annotations

import typer

from . import __version__

app = typer.Typer(no_args_is_help=True, help="SAE features of audio models vs EEG.")


@app.command()
def version():
    """Print the package version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
