"""The ``sae-eeg`` command line.

Every analysis command takes a pipeline config (YAML, see
:class:`sae_eeg.pipeline.config.PipelineConfig` and ``analyses/configs/``), checks it
whole, brings the stages it names up to date (with every task they need: a task
reruns exactly when what it reads changed) and says where its outputs went. Errors
in configs, manifests or inputs are printed as one message, a failed task as one
line naming its subject, run, stimulus and file (tracebacks go to a log file in the
output folder, named in the message); the exit status is then 2.
"""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from . import __version__
from ._check import _check_option
from .browse import BrowserSite, read_feature_table
from .eeg import check_manifest
from .errors import InputError, SaeEegError
from .pipeline.browser import build_browser
from .pipeline.config import load_pipeline_config
from .pipeline.demo import run_demo
from .pipeline.reporting import make_figures, make_report
from .pipeline.resources import browser_dir
from .pipeline.stages import ANALYSES, EXTRACT, run_pipeline
from .sae import read_training_config, train_saes_from_config

app = typer.Typer(no_args_is_help=True, help="SAE features of audio models vs EEG.")
manifest_app = typer.Typer(no_args_is_help=True, help="Dataset manifests.")
app.add_typer(manifest_app, name="manifest")

CONFIG = typer.Argument(..., help="Pipeline config (YAML).", exists=True, dir_okay=False)
FORCE = typer.Option(False, "--force", help="Take over an output folder written with another config.")
SCHEDULER = typer.Option(None, help="Override the config's scheduler: 'serial', 'local' (a Dask LocalCluster) "
                                    "or tcp://HOST:PORT (an existing Dask cluster, e.g. dask-jobqueue on SLURM).")


def _clean_errors(func):
    """Print sae_eeg errors as one message and exit with status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SaeEegError as err:
            typer.secho(f"Error: {err}", err=True, fg="red")
            raise typer.Exit(2) from err

    return wrapper


def _scheduler(option):
    """The config's ``scheduler`` value for a command-line option ('serial' is one process: None)."""
    return None if option == "serial" else option


def _stages(config, stages, force, scheduler=None, subjects=None):
    run_pipeline(config, stages, subjects=subjects, scheduler=scheduler, force=force, verbose=True)
    return load_pipeline_config(config, check_files=False)


@app.command()
def version():
    """Print the package version."""
    typer.echo(__version__)


@manifest_app.command("check")
@_clean_errors
def manifest_check(
    file: Path = typer.Argument(..., help="Manifest (YAML)."),
    root: Path = typer.Option(None, help="Dataset root (overrides the manifest's)."),
    check_files: bool = typer.Option(True, help="Check files and checksums, and open every recording: "
                                               "sampling rate, markers of every run, channels named."),
):
    """Validate a dataset manifest and its recordings (every problem at once) and print a summary."""
    typer.echo(check_manifest(file, root=root, check_files=check_files).to_text())


@app.command("train-sae")
@_clean_errors
def train_sae(config: Path = typer.Argument(..., help="SAE training config (YAML; see sae_eeg.sae.read_training_config).",
                                            exists=True, dir_okay=False)):
    """Train one SAE per layer from activations streamed over audio corpora (resumable)."""
    out_dir = read_training_config(config)["out_dir"]
    train_saes_from_config(config)
    typer.echo(f"SAEs in {out_dir} (layer_n/ae.pt)")


@app.command()
@_clean_errors
def extract(config: Path = CONFIG, force: bool = FORCE, scheduler: str = SCHEDULER):
    """Stimuli -> SAE feature trajectories, dense activations and acoustic baselines."""
    cfg = _stages(config, EXTRACT, force, scheduler)
    typer.echo(f"Trajectories in {Path(cfg.output_dir) / 'features'}")


@app.command()
@_clean_errors
def preprocess(config: Path = CONFIG, force: bool = FORCE, scheduler: str = SCHEDULER):
    """Preprocess and align every run with its stimulus features."""
    cfg = _stages(config, ("preprocess",), force, scheduler)
    typer.echo(f"Aligned runs in {Path(cfg.output_dir) / 'runs'}")


@app.command()
@_clean_errors
def subject(config: Path = CONFIG, subject: str = typer.Option(..., help="Subject id."),
            force: bool = FORCE, scheduler: str = SCHEDULER):
    """One subject's alignment analyses (every configured layer), with every task they need."""
    cfg = _stages(config, ("subject",), force, scheduler, subjects=[subject])
    typer.echo(f"Tables in {Path(cfg.output_dir) / 'alignment'}/layer_*/subjects/{subject}")


@app.command()
@_clean_errors
def group(config: Path = CONFIG, force: bool = FORCE, scheduler: str = SCHEDULER):
    """Per-subject analyses of every subject whose inputs changed, then group statistics."""
    cfg = _stages(config, ("group",), force, scheduler)
    typer.echo(f"Group tables in {Path(cfg.output_dir) / 'alignment'}/layer_*/group")


@app.command()
@_clean_errors
def evaluate(config: Path = CONFIG, force: bool = FORCE, scheduler: str = SCHEDULER):
    """SAE evaluations: reconstruction, seed consistency, concept erasure, steering."""
    cfg = _stages(config, ("evaluate",), force, scheduler)
    typer.echo(f"Evaluation tables in {Path(cfg.output_dir) / 'evals'}")


@app.command()
@_clean_errors
def run(config: Path = CONFIG, force: bool = FORCE, scheduler: str = SCHEDULER):
    """Every analysis stage: extraction, preprocessing, per-subject and group analyses, evaluations (the feature
    browser is `sae-eeg browse`)."""
    cfg = _stages(config, ANALYSES, force, scheduler)
    typer.echo(f"Results in {cfg.output_dir}")


@app.command()
@_clean_errors
def figures(config: Path = CONFIG):
    """Paper-style figures (PNG + SVG) from the result tables that exist."""
    drawn = make_figures(config)
    typer.echo(f"{len(drawn)} figures in {Path(load_pipeline_config(config).output_dir) / 'figures'}")


@app.command()
@_clean_errors
def report(config: Path = CONFIG):
    """The HTML report: figures, key numbers and provenance."""
    typer.echo(f"Report: {make_report(config)}")


@app.command()
@_clean_errors
def browse(
    config: Path = CONFIG,
    out: Path = typer.Option(None, help="Write a browser with the options below into this folder, from the results "
                                        "present (default: bring the 'browse' stage up to date in "
                                        "<output_dir>/browser)."),
    layer: list[int] = typer.Option(None, "--layer", help="With --out: layer to browse (repeat for several); default "
                                                          "every layer of the config."),
    table: list[str] = typer.Option(None, "--table", help="With --out: more per-feature results, NAME=FILE: a parquet "
                                                          "or CSV table with a 'feature' column (and 'layer'); "
                                                          "repeatable."),
    channel: str = typer.Option(None, help="With --out: channel the TRFs open on (default each feature's best "
                                           "protocol channel)."),
    tsne: bool = typer.Option(True, "--tsne/--no-tsne", help="With --out: compute the t-SNE map of layers the "
                                                            "evaluations did not map."),
    force: bool = FORCE,
    scheduler: str = SCHEDULER,
):
    """Static feature browser: every SAE feature with its clips, receptive field and EEG response (opens from disk)."""
    custom = {"--layer": layer, "--table": table, "--channel": channel, "--no-tsne": not tsne}
    if out is None:
        given = [name for name, value in custom.items() if value]
        if given:
            raise InputError(f"{', '.join(given)} choose what a custom browser shows: give --out DIR too (without "
                             "options, the 'browse' stage writes <output_dir>/browser).")
        cfg = _stages(config, ("browse",), force, scheduler)
        folder = browser_dir(cfg)
        sites = {n: BrowserSite.read(folder / f"layer_{n}") for n in cfg.layers}
    else:
        cfg = load_pipeline_config(config)
        layers = [_check_option("--layer", n, cfg.layers) for n in layer] if layer else None
        extra = []
        for spec in table or ():
            name, sep, path = spec.partition("=")
            if not sep:
                raise InputError(f"--table takes NAME=FILE (e.g. attribution=attribution.parquet), got {spec!r}.")
            extra.append(read_feature_table(name, path))
        folder = out
        sites = build_browser(cfg, layers=layers, out_dir=out, tables=extra, channel=channel, compute_tsne=tsne)
    for n, site in sites.items():
        parts = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in site.sizes.items())
        typer.echo(f"Layer {n}: {site.n_features} features, {site.n_files} files, {site.total_bytes / 1e6:.1f} MB "
                   f"({parts}), built in {site.seconds:.0f} s")
    typer.echo(f"Feature browser: {Path(folder) / 'index.html'}")


@app.command()
@_clean_errors
def demo(
    out: Path = typer.Option(Path("demo_output"), help="Output folder."),
    size: str = typer.Option("full", help="'full', or 'small' (the test suite's reduced run)."),
    scheduler: str = typer.Option("local", help="'local' (a Dask LocalCluster of 2 worker processes), "
                                             "tcp://HOST:PORT, or 'serial' (one process)."),
    force: bool = FORCE,
):
    """Run the offline demo on data it generates."""
    outputs = run_demo(out, size=size, scheduler=_scheduler(scheduler), force=force, echo=typer.echo)
    typer.echo(f"Outputs in {Path(outputs['output_dir']).resolve()}")


if __name__ == "__main__":
    app()
