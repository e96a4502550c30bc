"""The pipeline on a small generated study: a task reruns exactly when what it reads changed.

The study is built and analysed once; each test works on a copy of it (inputs and
results), changes one input and checks which tasks ran again.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _pipeline_study import make_study, write_saes

from typer.testing import CliRunner

from sae_eeg.audio import file_hash
from sae_eeg.cli import app
from sae_eeg.errors import ConfigError, TaskFailedError
from sae_eeg.pipeline import EXTRACT, run_pipeline

SUBJECTS = ("01", "02", "03")


#: The group-level tasks, which read every subject's results.
GROUP_TASKS = {"group", "acoustic_group", "attribution", "attribution_features"}


def _tasks_of(subject):
    return {f"preprocess/{subject}", f"subject/{subject}", f"acoustic/{subject}"} | GROUP_TASKS


def _group_table(cfg, layer=1):
    return pd.read_parquet(Path(cfg["output_dir"]) / "alignment" / f"layer_{layer}" / "group"
                           / "protocol_features.parquet")


def _edit_manifest(cfg, change):
    path = Path(cfg["manifest"])
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("base") / "study"
    cfg = make_study(root)
    first = run_pipeline(cfg)
    assert not first.skipped and len(first.ran) == 3 * 2 + 3 * 3 + len(GROUP_TASKS)   # stimuli x 2 + subjects x 3
    return root, cfg


@pytest.fixture
def study(base, tmp_path):
    """A copy of the analysed study: its config (a dict) with paths into the copy."""
    root, cfg = base
    shutil.copytree(root, tmp_path / "study", symlinks=True)
    cfg = json.loads(json.dumps(cfg).replace(str(root), str(tmp_path / "study")))
    # the copy's config names other paths: it takes the folder over, and nothing reruns (keys hold contents)
    assert run_pipeline(cfg, force=True).ran == {}
    return cfg


def test_unchanged_or_touched_inputs_rerun_nothing(study):
    assert run_pipeline(study).ran == {}
    eeg = Path(study["manifest"]).parent / "sub-02" / "eeg" / "sub-02_task-listening_eeg.eeg"
    checkpoint = Path(study["sae"]["checkpoint"]) / "layer_1" / "ae.pt"
    for path in (eeg, checkpoint):                      # new mtime, same bytes: confirmed by the content hash
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert run_pipeline(study).ran == {}


def test_replaced_eeg_file_reruns_that_subject_and_the_group(study, tmp_path):
    before = _group_table(study)
    other = make_study(tmp_path / "other", seed=1)      # the same design, other noise
    src = Path(other["manifest"]).parent / "sub-02" / "eeg"
    dest = Path(study["manifest"]).parent / "sub-02" / "eeg"
    for path in src.iterdir():
        shutil.copy(path, dest / path.name)
    digest = file_hash(dest / "sub-02_task-listening_eeg.vhdr")
    _edit_manifest(study, lambda m: [run["eeg"].update(sha256=digest) for s in m["subjects"] if s["id"] == "02"
                                     for run in s["runs"]])
    assert set(run_pipeline(study).ran) == _tasks_of("02")
    after = _group_table(study)
    assert not np.allclose(before.select_dtypes("number").to_numpy(), after.select_dtypes("number").to_numpy(),
                           equal_nan=True)


def test_manifest_bad_channels_edit_reruns_that_subject_and_the_group(study):
    before = _group_table(study)
    _edit_manifest(study, lambda m: m.update(bad_channels={"03": ["Pz", "CPz", "POz"]}))
    # that subject by hand first (`sae-eeg subject --subject 03`), then the group follows
    assert set(run_pipeline(study, ("subject",), subjects=["03"]).ran) == {"preprocess/03", "subject/03"}
    assert set(run_pipeline(study).ran) == {"acoustic/03"} | GROUP_TASKS
    after = _group_table(study)
    assert not np.allclose(before.select_dtypes("number").to_numpy(), after.select_dtypes("number").to_numpy(),
                           equal_nan=True)
    assert run_pipeline(study).ran == {}


def test_replaced_checkpoint_reruns_encode_and_the_analyses_not_the_eeg(study):
    """The run files hold EEG only: new SAE features rerun the analyses that read them, not the preprocessing."""
    runs = sorted((Path(study["output_dir"]) / "runs").rglob("*.npz"))
    before = {p: p.stat().st_mtime_ns for p in runs}
    write_saes(Path(study["sae"]["checkpoint"]), seed=7)
    ran = set(run_pipeline(study).ran)
    assert ran == ({f"encode/story{i}" for i in (1, 2, 3)} | {f"subject/{s}" for s in SUBJECTS}
                   | {"group", "attribution", "attribution_features"})          # the acoustic TRFs read no SAE
    assert {p: p.stat().st_mtime_ns for p in runs} == before


def test_other_layers_keep_the_run_files(study):
    """The preprocessing key holds no layer: a config with other layers reuses every run file."""
    assert {p.name for p in (Path(study["output_dir"]) / "runs").iterdir()} == set(SUBJECTS)
    ran = set(run_pipeline({**study, "layers": [2]}, force=True).ran)
    assert not any(name.startswith("preprocess/") for name in ran), ran
    assert {f"subject/{s}" for s in SUBJECTS} <= ran


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_error_in_a_task_is_one_line_exit_2_with_the_traceback_in_a_log(study, tmp_path):
    eeg = Path(study["manifest"]).parent / "sub-02" / "eeg" / "sub-02_task-listening_eeg.eeg"
    original = eeg.read_bytes()
    eeg.write_bytes(bytes(len(original)))               # every channel flat
    _edit_manifest(study, lambda m: [run["eeg"].pop("sha256") for s in m["subjects"] for run in s["runs"]])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(study))
    done = _cli("group", config)
    assert done.exit_code == 2, done.output[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "\r" not in line and "it/s]" not in line]
    assert len(errors) <= 5, done.stderr
    log = next((Path(study["output_dir"]) / "logs").glob("failed-*.log"))
    assert f"1 task(s) failed (tracebacks in {log})" in done.stderr
    line = next(line for line in errors if line.strip().startswith("preprocess/02"))
    assert "subject 02, run story1" in line and f"[{eeg.with_suffix('.vhdr')}]" in line
    assert "all 64 EEG channels are flat" in line
    assert "Traceback" in log.read_text() and "all 64 EEG channels are flat" in log.read_text()
    for s in ("01", "03"):                               # the other subjects' results are kept
        assert (Path(study["output_dir"]) / "alignment" / "layer_1" / "subjects" / s / "encoding.parquet").is_file()
    eeg.write_bytes(original)  # fixed: that task runs; what needs it finds its inputs as they were, and is current
    assert set(run_pipeline(study).ran) == {"preprocess/02"}


def test_bad_audio_names_the_stimulus_and_its_file(study):
    audio = Path(study["manifest"]).parent / "stimuli" / "story2.wav"
    audio.write_bytes(b"RIFF not really a wav file")
    _edit_manifest(study, lambda m: m["stimuli"]["story2"].pop("sha256"))
    with pytest.raises(TaskFailedError, match=r"1 task\(s\) failed") as err:
        run_pipeline(study)
    line = str(err.value).splitlines()[1]
    assert line.startswith(f"  activations/story2 (stimulus story2) [{audio}]: ") and "story2.wav" in line
    # encode, 3 x (subject, acoustic) and the group tasks; the preprocessing reads no audio here (the
    # manifest declares durations)
    assert f"({1 + 3 * 2 + len(GROUP_TASKS)} task(s) that need them were not run.)" in str(err.value)


def test_one_subject_on_the_command_line(study, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(study))
    done = _cli("subject", config, "--subject", "99")
    assert done.exit_code == 2 and "unknown subject(s) ['99']; the manifest's subjects are ['01', '02', '03']" \
        in done.output
    Path(study["output_dir"], "alignment", "layer_2", "subjects", "02", "encoding.parquet").unlink()
    done = _cli("subject", config, "--subject", "02")
    assert done.exit_code == 0 and "subjects/02" in done.output
    assert Path(study["output_dir"], "alignment", "layer_2", "subjects", "02", "encoding.parquet").is_file()


def test_every_typo_of_every_section_is_reported_before_any_work(study, tmp_path):
    bad = {**study, "output_dir": str(tmp_path / "fresh"), "layer": [1], "scheduler": "dask",
           "sae": {"checkpoint": study["sae"]["checkpoint"], "chekpoint": "x"},
           "preprocess": {"h_fre": 8.0},
           "alignment": {"protocol": {"chanels": ["Pz"]}, "clusters": {"n_permutation": 10},
                         "encoding": {"spaces": ["envelop"]}},
           "evaluate": {"speech": [], "references": [], "segmnt": 1.0}}
    with pytest.raises(ConfigError, match=r"the pipeline config has 8 problem\(s\)") as err:
        run_pipeline(bad)
    for where in ("layer: Extra inputs", "scheduler: Value error", "sae.chekpoint", "preprocess.h_fre",
                  "alignment.protocol.chanels", "alignment.clusters.n_permutation", "alignment.encoding.spaces.0",
                  "evaluate.segmnt"):
        assert f"  - {where}" in str(err.value).replace("scheduler: scheduler", "scheduler: Value error")
    assert not (tmp_path / "fresh").exists()            # nothing ran: no activations, no folder


def test_inputs_are_checked_at_load_against_the_backbone(study, tmp_path):
    write_saes(tmp_path / "narrow", d_model=16)
    bad = {**study, "output_dir": str(tmp_path / "fresh"), "layers": [1, 2, 3],
           "sae": {"checkpoint": str(tmp_path / "narrow")}}
    with pytest.raises(ConfigError, match=r"its inputs\) has 4 problem\(s\)") as err:
        run_pipeline(bad)
    message = str(err.value)
    assert "layers: [3] beyond the 2 layers of" in message
    assert "layer_1/ae.pt') reads activations of width 16, but the layers of" in message and "have width 32" in message
    assert "No checkpoint for layer 3" in message
    assert not (tmp_path / "fresh").exists()


def test_relative_checkpoint_is_relative_to_the_config_file(study, tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    shutil.copytree(study["sae"]["checkpoint"], folder / "saes")
    config = folder / "c.yaml"
    config.write_text(yaml.safe_dump({**study, "output_dir": "out", "sae": {"checkpoint": "saes"}}))
    monkeypatch.chdir(tmp_path)                          # run from another folder
    run_pipeline(config, EXTRACT)
    assert (folder / "out" / "features" / "story1" / "layer_2.npz").is_file()


def test_ids_are_names_and_nothing_is_written_outside_the_output_folder(study, tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    cfg = {**study, "output_dir": str(parent / "out")}
    _edit_manifest(study, lambda m: m["subjects"][0].update(id="../x"))
    with pytest.raises(ConfigError, match=r"subjects.0.id: not a valid id: .* \(got '../x'\)"):
        run_pipeline(cfg)
    _edit_manifest(study, lambda m: m["subjects"][0].update(id="01"))
    evil = {**cfg, "stimuli": {str(tmp_path / "evil"): str(tmp_path / "study" / "audio" / "story1.wav")}}
    with pytest.raises(ConfigError, match=r"stimuli\..*evil.\[key\]: not a valid id"):
        run_pipeline(evil)
    assert list(parent.iterdir()) == []                  # refused at load: nothing written at all
    run_pipeline(cfg)
    assert [p.name for p in parent.iterdir()] == ["out"]
    assert not (tmp_path / "x").exists() and not (tmp_path / "evil").exists()
