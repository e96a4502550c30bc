from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import pandas as pd
import pydantic
import pytest

from sae_eeg._config import load_yaml_model, resolve_path
from sae_eeg.errors import ConfigError
from sae_eeg.viz import ReportSection, write_report


class _Schema(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str
    n_subjects: pydantic.PositiveInt
    scheduler: Literal["serial", "local"] = "serial"
    manifest: Path
    _resolve = pydantic.field_validator("manifest")(resolve_path)


def test_config_lists_every_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nn_subjects: -1\nscheduler: dask\nmanifest: m.yaml\ntypo: 1\n")
    with pytest.raises(ConfigError) as err:
        load_yaml_model(path, _Schema)
    message = str(err.value)
    assert "bad.yaml' has 3 problem(s)" in message
    assert "n_subjects" in message and "got -1" in message
    assert "scheduler" in message and "'dask'" in message
    assert "typo" in message


def test_config_resolves_relative_paths(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("name: x\nn_subjects: 2\nmanifest: sub/m.yaml\n")
    assert load_yaml_model(path, _Schema).manifest == tmp_path.resolve() / "sub" / "m.yaml"


@pytest.mark.parametrize("text,match", [("a: [", "not valid YAML"), ("- 1\n- 2\n", "mapping at the top level")])
def test_config_not_yaml_mapping(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_yaml_model(path, _Schema)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml_model(tmp_path / "missing.yaml", _Schema)


def test_report_embeds_figures_numbers_provenance(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = tmp_path / "trf_weights.png"
    fig.savefig(png)
    plt.close(fig)
    section = ReportSection("TRFs", "What the brain tracks.", figures=[png],
                            numbers={"fraction significant": 0.0123},
                            table=pd.DataFrame({"layer": [1], "r": [0.05]}))
    out = write_report(tmp_path / "r.html", title="Demo", sections=[section],
                       provenance={"config_hash": "abc123"})
    text = out.read_text()
    assert "data:image/png;base64," in text and "trf_weights" in text
    assert "0.0123" in text and "abc123" in text and "<table" in text


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "analyses" / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_analysis_configs_validate(path):
    from sae_eeg.pipeline.config import load_pipeline_config

    cfg = load_pipeline_config(path, check_files=False)  # the datasets and demo outputs are not here
    assert cfg.layers and cfg.output_dir.is_absolute()
    if cfg.sae.checkpoint is not None:  # a relative checkpoint is relative to the config file
        assert Path(cfg.sae.checkpoint) == (path.parent / "../../demo_output/sae").resolve()


def test_pipeline_config_sections_are_typed(tmp_path):
    from sae_eeg.pipeline.config import PipelineConfig, load_pipeline_config

    (tmp_path / "saes").mkdir()
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: out\nlayers: [1, 2]\nsae: {checkpoint: saes}\n")
    cfg = load_pipeline_config(path, check_files=False)
    assert cfg.sae.checkpoint == str(tmp_path / "saes") and cfg.output_dir == tmp_path / "out"
    path.write_text("output_dir: out\nlayers: [1]\nsae: {checkpoint: owner/repo}\n")  # no such folder: a hub id
    assert load_pipeline_config(path, check_files=False).sae.checkpoint == "owner/repo"
    path.write_text("output_dir: out\nlayers: [1, 1]\ndevice: gpu\nsae: {checkpoint: saes, training: {k: 8}}\n"
                    "preprocess: {sfreq: 0}\nalignment: {protocol: {tmin: 0.5, tmax: 0.1}}\n")
    with pytest.raises(ConfigError, match=r"has 5 problem\(s\)") as err:
        load_pipeline_config(path, check_files=False)
    for line in ("layers: layers must be distinct, got [1, 1]", "device: device must be 'cpu', 'cuda'",
                 "sae: give 'checkpoint' (use these SAEs) or 'training' (train them), not both",
                 "preprocess.sfreq: Input should be greater than 0 (got 0)",
                 "alignment: lag windows must have tmin < tmax; protocol: tmin 0.5 >= tmax 0.1"):
        assert f"  - {line}" in str(err.value)
    assert PipelineConfig.model_fields.keys() >= {"backbone", "sae", "preprocess", "alignment", "evaluate",
                                                  "scheduler"}
