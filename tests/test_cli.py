from typer.testing import CliRunner

from sae_eeg import __version__
from sae_eeg.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_bad_config_is_one_clear_message(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: out\nlayers: [0]\nscheduler: dask\n")
    result = runner.invoke(app, ["preprocess", str(config)])
    assert result.exit_code == 2
    assert "has 2 problem(s)" in result.output and "layers.0" in result.output
    assert "scheduler" in result.output and "Traceback" not in result.output


def test_manifest_check_reports_every_problem(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "name: x\nlicence: CC0\nsource_url: http://example.org\nstimuli:\n  s1: {path: s1.wav}\n"
        "subjects:\n  - id: '01'\n    runs:\n      - {id: r1, eeg: {path: missing.vhdr}, stimulus: s2,"
        " onset: {sample: 0}}\n"
    )
    result = runner.invoke(app, ["manifest", "check", str(manifest)])
    assert result.exit_code == 2
    assert "missing.vhdr" in result.output and "s2" in result.output


def test_stage_needs_manifest(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: out\nlayers: [1]\n")
    result = runner.invoke(app, ["preprocess", str(config)])
    assert result.exit_code == 2 and "set 'manifest'" in result.output


def test_scheduler_option_is_validated(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: out\nlayers: [1]\n")
    result = runner.invoke(app, ["group", str(config), "--scheduler", "dask"])
    assert result.exit_code == 2 and "scheduler must be null (serial), 'local'" in result.output


def test_evaluate_without_its_section_shows_the_section_to_add(tmp_path):
    import numpy as np
    import soundfile
    import yaml

    from sae_eeg.pipeline.config import EvaluateSettings

    soundfile.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: out\nlayers: [1]\nstimuli: {a: a.wav}\n")
    result = runner.invoke(app, ["evaluate", str(config)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the 'evaluate' stage needs an 'evaluate' section in the config, which has none" in result.output
    assert "Evaluation tables in" not in result.output and not (tmp_path / "out" / "evals").exists()
    section = yaml.safe_load(result.output.split("e.g.:", 1)[1])
    assert list(section) == ["evaluate"]
    EvaluateSettings.model_validate(section["evaluate"])         # the section shown is a valid one
