"""Manifest schema and validation: every problem listed at once; shipped manifests valid."""

import hashlib
from pathlib import Path

import pytest
import yaml

from sae_eeg.eeg import check_manifest
from sae_eeg.errors import ManifestError
from sae_eeg.manifests import load_manifest, validate_manifest

SHIPPED = sorted((Path(__file__).parents[1] / "data_manifests").glob("*.yaml"))


def _write(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def dataset(tmp_path):
    """A folder with two fake EEG files and one stimulus, and a valid manifest dict."""
    root = tmp_path / "data"
    (root / "eeg").mkdir(parents=True)
    for name in ("s1.fif", "s2.fif"):
        (root / "eeg" / name).write_bytes(name.encode() * 10)
    (root / "story.wav").write_bytes(b"RIFF fake")
    digest = hashlib.sha256((root / "eeg" / "s1.fif").read_bytes()).hexdigest()
    data = {
        "name": "toy", "licence": "CC0-1.0", "source_url": "https://example.org/toy",
        "root": "data", "montage": "biosemi64",
        "stimuli": {"story": {"path": "story.wav", "duration": 30.0}},
        "subjects": [
            {"id": "1", "runs": [{"id": "1", "eeg": {"path": "eeg/s1.fif", "sha256": digest},
                                  "stimulus": "story", "onset": {"trigger": 1}}]},
            {"id": "2", "runs": [{"id": "1", "eeg": {"path": "eeg/s2.fif"},
                                  "stimulus": "story", "onset": {"sample": 100}}]},
        ],
    }
    return tmp_path, data


def test_valid_manifest_loads(dataset):
    tmp_path, data = dataset
    manifest = load_manifest(_write(tmp_path / "m.yaml", data))
    assert manifest.root_path == (tmp_path / "data").resolve()
    assert [(s, r.id) for s, r in manifest.runs()] == [("1", "1"), ("2", "1")]
    assert manifest.run("2", "1").onset.kind == "sample"
    assert manifest.resolve("eeg/s2.fif").is_file()
    with pytest.raises(ManifestError, match=r"no subject '9'; subjects are \['1', '2'\]"):
        manifest.run("9", "1")
    with pytest.raises(ManifestError, match=r"has no run '7'; runs are \['1'\]"):
        manifest.run("1", "7")


def test_exclude_and_top_level_bad_channels(dataset):
    tmp_path, data = dataset
    data["subjects"][1]["bad_channels"] = ["Fz"]
    data["bad_channels"] = {"2": ["Cz", "Fz"]}
    data["exclude"] = ["1"]
    manifest = load_manifest(_write(tmp_path / "m.yaml", data))
    assert [s.id for s in manifest.all_subjects()] == ["2"]
    assert [s.id for s in manifest.declared_subjects()] == ["1", "2"]
    assert manifest.subject_bad_channels("2") == ["Cz", "Fz"]


def test_every_problem_is_listed_at_once(dataset):
    tmp_path, data = dataset
    subs = data["subjects"]
    subs[0]["runs"][0]["eeg"]["sha256"] = "0" * 64                       # checksum mismatch
    subs[1]["runs"][0]["eeg"]["path"] = "eeg/missing.fif"                # missing file
    subs[1]["runs"].append(dict(subs[1]["runs"][0], stimulus="nope"))    # duplicate + unknown
    subs.append(subs[0])                                                 # duplicate subject
    data["montage"] = "standard_1021"                                    # unknown montage
    data["bad_channels"] = {"3": ["Cz"]}                                 # unknown subject
    data["exclude"] = ["1", "x"]                                         # unknown subject
    with pytest.raises(ManifestError) as info:
        load_manifest(_write(tmp_path / "m.yaml", data))
    message = str(info.value)
    for expected in (
        "checksum mismatch", "expected sha256 " + "0" * 64,
        "file not found", "missing.fif",
        "subject '2' run '1': duplicate run id",
        "unknown stimulus 'nope'; stimuli are ['story']",
        "duplicate subject id '1'",
        "unknown montage 'standard_1021'",
        "bad_channels: unknown subject '3'; subjects are ['1', '2', '1']",
        "exclude: unknown subject 'x'",
    ):
        assert expected in message, expected
    assert "problem(s)" in message


def test_schema_errors_are_all_reported(dataset):
    tmp_path, data = dataset
    del data["licence"]
    run = data["subjects"][0]["runs"][0]
    run["eeg"]["format"] = "fiff"
    run["onset"] = {"trigger": 1, "sample": 3}
    data["subjects"][1]["runs"][0]["onset"] = {"annotation": "go", "occurrence": 0}
    with pytest.raises(ManifestError) as info:
        load_manifest(_write(tmp_path / "m.yaml", data))
    message = str(info.value)
    assert "licence: Field required" in message
    assert "subjects.0.runs.0.eeg.format" in message and "'fiff'" in message
    assert "exactly one of 'trigger', 'annotation', 'sample', 'trigger_template'; got ['trigger', 'sample']" in message
    assert "occurrence: Input should be greater than or equal to 1" in message


def test_check_files_false_skips_the_filesystem(dataset):
    tmp_path, data = dataset
    data["root"] = "does/not/exist"
    path = _write(tmp_path / "m.yaml", data)
    with pytest.raises(ManifestError, match="dataset folder not found"):
        load_manifest(path)
    assert load_manifest(path, check_files=False).name == "toy"
    assert load_manifest(path, root=tmp_path / "data").root_path == (tmp_path / "data").resolve()


def test_root_environment_variables(dataset, monkeypatch):
    tmp_path, data = dataset
    data["root"] = "${TOY_ROOT:-data}"
    path = _write(tmp_path / "m.yaml", data)
    assert load_manifest(path).root_path == (tmp_path / "data").resolve()
    monkeypatch.setenv("TOY_ROOT", str(tmp_path / "data" / "eeg"))
    assert load_manifest(path, check_files=False).root_path == (tmp_path / "data" / "eeg")


def test_not_yaml_or_not_a_mapping(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ManifestError, match="is not valid YAML"):
        load_manifest(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ManifestError, match="mapping at the top level, got list"):
        load_manifest(tmp_path / "list.yaml")
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "absent.yaml")


def test_grid_expansion_and_cnd_trials():
    data = {
        "name": "g", "licence": "x", "source_url": "u", "stimuli": {f"a{i}": {"duration": 1.0}
                                                                    for i in (1, 2)},
        "grid": {"subjects": ["1", "2"], "runs": ["1", "2"],
                 "eeg": {"path": "dataSub{subject}.mat", "format": "cnd"},
                 "stimulus": "a{run}", "onset": {"trigger": "{run}"},
                 "end": {"annotation": "end/{subject}"}},
    }
    manifest, problems = validate_manifest(data, check_files=False)
    assert problems == []
    run = manifest.run("2", "2")
    assert (run.eeg.path, run.eeg.trial, run.onset.trigger, run.end.annotation) == \
        ("dataSub2.mat", 2, 2, "end/2")
    data["grid"]["runs"] = ["x"]
    data["grid"]["onset"] = {"trigger": "t{run}"}
    manifest, problems = validate_manifest(data, check_files=False)
    assert manifest is None
    assert any("marker field 'trigger' must be an integer, got 'tx'" in p for p in problems)
    assert any("run ids are trial numbers; got ['x']" in p for p in problems)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_manifests_validate(path):
    summary = check_manifest(path, check_files=False)
    assert summary.n_subjects >= 1 and summary.n_runs >= summary.n_subjects
    manifest = load_manifest(path, check_files=False)
    assert manifest.source_url.startswith("https://")
    assert "manifest" in summary.to_text() and "subjects:" in summary.to_text()


def test_shipped_manifests_cover_the_datasets():
    names = {load_manifest(p, check_files=False).name for p in SHIPPED}
    assert {"broderick2018-natural-speech-dryad", "broderick2018-natural-speech-cnd",
            "sparrkulee", "alice-eelbrain-fif", "sae-eeg-demo"} <= names


def test_trigger_template_markers_are_checked_at_load(tmp_path):
    """A trigger_template onset: its file must exist, it takes no 'end', and {stimulus} is its only placeholder."""
    import yaml

    from sae_eeg.errors import ManifestError
    from sae_eeg.manifests import load_manifest

    (tmp_path / "rec.bdf").write_bytes(b"")
    run = {"id": "1", "eeg": {"path": "rec.bdf"}, "stimulus": "s1", "onset": {"trigger_template": "t_{stimulus}.npz"}}
    data = {"name": "x", "licence": "CC0", "source_url": "u", "stimuli": {"s1": {"duration": 1.0}},
            "subjects": [{"id": "a", "runs": [run]}]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match=r"subject 'a' run '1' onset.trigger_template: file not found: "
                                            r".*t_s1.npz"):
        load_manifest(path)
    (tmp_path / "t_s1.npz").write_bytes(b"")
    assert load_manifest(path).trigger_template_file(load_manifest(path).run("a", "1")) == tmp_path / "t_s1.npz"
    run.update(end={"trigger": 2}, onset={"trigger_template": "t_{subject}.npz"})
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match=r"remove 'end'") as err:
        load_manifest(path)
    run.pop("end")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match=r"may hold the placeholder \{stimulus\} only .* got KeyError\('subject'\)"):
        load_manifest(path)
