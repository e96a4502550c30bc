"""Readers: round trips through the manifest (FIF, BrainVision, EDF, EEGLAB, BIDS, CND,
Lalor .mat) and the clear error of every bad input."""

import hashlib

import mne
import numpy as np
import pytest
import scipy.io
import yaml

from sae_eeg.eeg import (
    READERS, check_manifest, find_marker, infer_format, read_cnd, read_raw, read_run, recording_files,
)
from sae_eeg.errors import InputError, ManifestError
from sae_eeg.manifests import load_manifest

SFREQ = 256.0
CH_NAMES = mne.channels.make_standard_montage("biosemi64").ch_names[:6]
ONSETS = (384, 1856)  # samples of triggers 1 (onset) and 2 (end)


@pytest.fixture(scope="module")
def raw_orig():
    rng = np.random.default_rng(0)
    info = mne.create_info(CH_NAMES, SFREQ, "eeg")
    raw = mne.io.RawArray(rng.standard_normal((6, int(SFREQ * 10))) * 2e-5, info, verbose=False)
    raw.set_annotations(mne.Annotations([s / SFREQ for s in ONSETS], [0, 0], ["1", "2"]))
    return raw


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(tmp_path, rel, fmt, **eeg):
    # BIDS events are named annotations (trigger codes live in events.tsv): name them
    onset, end = ({"annotation": "start"}, {"annotation": "stop"}) if fmt == "bids" else (
        {"trigger": 1}, {"trigger": 2})
    data = {
        "name": "rt", "licence": "CC0-1.0", "source_url": "https://example.org", "root": ".",
        "montage": "biosemi64", "stimuli": {"s": {"duration": 5.0}},
        "subjects": [{"id": "1", "runs": [{
            "id": "1", "eeg": {"path": rel, "format": fmt, **eeg}, "stimulus": "s",
            "onset": onset, "end": end}]}],
    }
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _write_fif(raw, tmp_path):
    raw = raw.copy()
    stim = np.zeros((1, raw.n_times))
    stim[0, list(ONSETS)] = [1, 2]
    raw.add_channels([mne.io.RawArray(stim, mne.create_info(["STI"], SFREQ, "stim"),
                                      verbose=False)], force_update_info=True)
    raw.set_annotations(None)
    path = tmp_path / "rec_raw.fif"
    raw.save(path, fmt="double", verbose=False)
    return "rec_raw.fif", "fif"


def _exporter(fmt, ext):
    def write(raw, tmp_path):
        path = tmp_path / f"rec.{ext}"
        mne.export.export_raw(path, raw, fmt=fmt, verbose=False)
        return path.name, "auto"
    return write


def _write_bids(raw, tmp_path):
    mne_bids = pytest.importorskip("mne_bids")
    fif = tmp_path / "src_raw.fif"
    raw.copy().set_annotations(None).save(fif, verbose=False)
    src = mne.io.read_raw_fif(fif, verbose=False)
    src.info["line_freq"] = 50.0
    events = np.array([[s, 0, c] for s, c in zip(ONSETS, (1, 2))])
    bids_path = mne_bids.BIDSPath(subject="01", task="listen", datatype="eeg",
                                  root=tmp_path / "bids")
    mne_bids.write_raw_bids(src, bids_path, events=events, event_id={"start": 1, "stop": 2},
                            format="BrainVision", allow_preload=True, verbose=False)
    rel = next((tmp_path / "bids").rglob("*_eeg.vhdr")).relative_to(tmp_path)
    return str(rel), "bids"


WRITERS = {
    "fif": (_write_fif, 1e-15),
    "brainvision": (_exporter("brainvision", "vhdr"), 1e-10),
    "edf": (_exporter("edf", "edf"), 1e-8),
    "eeglab": (_exporter("eeglab", "set"), 1e-10),
    "bids": (_write_bids, 1e-10),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_round_trip_through_manifest(kind, raw_orig, tmp_path):
    writer, atol = WRITERS[kind]
    rel, fmt = writer(raw_orig, tmp_path)
    manifest = load_manifest(_manifest(tmp_path, rel, fmt, sha256=_sha(tmp_path / rel),
                                       sfreq=SFREQ))
    raw = read_run(manifest, "1", "1")
    eeg = raw.get_data(picks="eeg")
    assert raw.info["sfreq"] == SFREQ and eeg.shape == (6, raw_orig.n_times)
    assert [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True)] == CH_NAMES
    np.testing.assert_allclose(eeg, raw_orig.get_data(), rtol=0, atol=atol)
    entry = manifest.run("1", "1")
    assert (find_marker(raw, entry.onset), find_marker(raw, entry.end)) == ONSETS
    assert raw.get_montage() is not None
    summary = check_manifest(tmp_path / "manifest.yaml")
    assert summary.sampling_rates == [SFREQ]
    assert summary.total_hours == pytest.approx(10.0 / 3600)


def _cnd_struct(rng, n_trials=2):
    trials = np.empty((1, n_trials), dtype=object)
    mastoids = np.empty((1, n_trials), dtype=object)
    for k in range(n_trials):
        trials[0, k] = rng.standard_normal((300 + 50 * k, 4)) * 10
        mastoids[0, k] = rng.standard_normal((300 + 50 * k, 2)) * 10
    chanlocs = np.zeros((1, 4), dtype=[("labels", object)])
    for i, name in enumerate(CH_NAMES[:4]):
        chanlocs[0, i]["labels"] = name
    ext = np.zeros((1, 1), dtype=[("data", object), ("description", object)])
    ext[0, 0]["data"], ext[0, 0]["description"] = mastoids, "mastoids"
    return {"data": trials, "fs": 64.0, "chanlocs": chanlocs, "extChan": ext,
            "dataType": "EEG"}, trials, mastoids


def test_cnd_reader(tmp_path, rng):
    eeg, trials, mastoids = _cnd_struct(rng)
    scipy.io.savemat(tmp_path / "dataSub1.mat", {"eeg": eeg})
    env = np.empty((2, 2), dtype=object)
    for k in range(2):
        env[0, k] = rng.standard_normal(len(trials[0, k]))
        env[1, k] = rng.standard_normal((len(trials[0, k]), 3))
    names = np.array(["envelope", "phonemes"], dtype=object)
    scipy.io.savemat(tmp_path / "dataStim.mat", {"stim": {"data": env, "names": names, "fs": 64.0}})
    rec = read_cnd(tmp_path / "dataSub1.mat", stim_path=tmp_path / "dataStim.mat")
    assert len(rec.raws) == 2
    raw = rec.raws[1]
    assert raw.ch_names == CH_NAMES[:4] + ["mastoids1", "mastoids2"]
    np.testing.assert_allclose(raw.get_data(picks="eeg"), trials[0, 1].T * 1e-6)
    np.testing.assert_allclose(raw.get_data(picks="misc"), mastoids[0, 1].T * 1e-6)
    np.testing.assert_allclose(rec.stim[1]["phonemes"].data, env[1, 1])
    assert rec.stim[0]["envelope"].data.shape == (300, 1) and rec.stim[0]["envelope"].sfreq == 64.0
    assert infer_format(tmp_path / "dataSub1.mat") == "cnd"
    via_manifest = read_raw(tmp_path / "dataSub1.mat", format="cnd", trial=2)
    np.testing.assert_array_equal(via_manifest.get_data(), raw.get_data())
    via_manifest._data[:] = 0  # the file is read once for all its trials; runs are copies
    again = read_raw(tmp_path / "dataSub1.mat", format="cnd", trial=2)
    np.testing.assert_array_equal(again.get_data(), raw.get_data())
    with pytest.raises(InputError, match=r"eeg.trial 3 is out of range .* \(1..2\)"):
        read_raw(tmp_path / "dataSub1.mat", format="cnd", trial=3)


def test_lalor_mat_reader(tmp_path, rng):
    data = rng.standard_normal((500, 128))
    mastoids = rng.standard_normal((500, 2))
    scipy.io.savemat(tmp_path / "Subject1_Run1.mat", {"eegData": data, "mastoids": mastoids,
                                                       "fs": 128})
    assert infer_format(tmp_path / "Subject1_Run1.mat") == "lalor_mat"
    raw = read_raw(tmp_path / "Subject1_Run1.mat")
    assert raw.ch_names[:2] == ["A1", "A2"] and raw.ch_names[-2:] == ["M1", "M2"]
    np.testing.assert_allclose(raw.get_data(picks="eeg"), data.T * 1e-6)
    assert raw.info["sfreq"] == 128.0
    scipy.io.savemat(tmp_path / "other.mat", {"x": 1})
    with pytest.raises(InputError, match=r"holds \['x'\]; expected a CND 'eeg' struct"):
        read_raw(tmp_path / "other.mat")


# --- every bad input: a clear error


@pytest.fixture
def fif_manifest(raw_orig, tmp_path):
    rel, fmt = _write_fif(raw_orig, tmp_path)
    return tmp_path, rel


def test_missing_file(fif_manifest):
    tmp_path, rel = fif_manifest
    path = _manifest(tmp_path, "gone_raw.fif", "fif")
    manifest = load_manifest(path, check_files=False)
    with pytest.raises(InputError, match=r"subject '1' run '1': EEG file not found: .*gone_raw"):
        read_run(manifest, "1", "1")


def test_checksum_mismatch(fif_manifest):
    tmp_path, rel = fif_manifest
    manifest = load_manifest(_manifest(tmp_path, rel, "fif", sha256="a" * 64), check_files=False)
    with pytest.raises(InputError, match="checksum mismatch .* expected sha256 a{64}, file has"):
        read_run(manifest, "1", "1")


def test_sampling_rate_mismatch(fif_manifest):
    tmp_path, rel = fif_manifest
    manifest = load_manifest(_manifest(tmp_path, rel, "fif", sfreq=512.0))
    with pytest.raises(InputError, match=r"sampling-rate mismatch: file is at 256.0 Hz, the "
                                         r"manifest declares eeg.sfreq = 512.0 Hz"):
        read_run(manifest, "1", "1")


def test_nans_in_eeg(raw_orig, tmp_path):
    raw = raw_orig.copy()
    raw._data[2, 100:110] = np.nan
    raw.save(tmp_path / "nan_raw.fif", fmt="double", verbose=False)
    manifest = load_manifest(_manifest(tmp_path, "nan_raw.fif", "fif"))
    with pytest.raises(InputError, match=rf"NaN or Inf samples in 1 channel\(s\): \['{CH_NAMES[2]}'\]"):
        read_run(manifest, "1", "1")


def test_channel_missing_from_montage(raw_orig, tmp_path):
    raw = raw_orig.copy().rename_channels({CH_NAMES[0]: "Cz2"})
    raw.save(tmp_path / "odd_raw.fif", verbose=False)
    manifest = load_manifest(_manifest(tmp_path, "odd_raw.fif", "fif"))
    with pytest.raises(InputError, match=r"channel\(s\) \['Cz2'\] are missing from montage "
                                         r"'biosemi64'"):
        read_run(manifest, "1", "1")


def test_unknown_format_and_extension(tmp_path):
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(InputError, match=r"cannot infer the EEG format of .*x.xyz"):
        read_raw(tmp_path / "x.xyz")
    with pytest.raises(InputError, match="Invalid value for 'format': got 'fiff'.*Did you mean 'fif'"):
        read_raw(tmp_path / "x.xyz", format="fiff")
    assert set(READERS) >= {"fif", "brainvision", "edf", "bdf", "eeglab", "bids", "cnd"}


def test_damaged_files_are_named_not_parsed_into_tracebacks(raw_orig, tmp_path):
    _write_fif(raw_orig, tmp_path)
    whole = (tmp_path / "rec_raw.fif").read_bytes()
    (tmp_path / "cut_raw.fif").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"EEG file '.*cut_raw.fif' could not be read as 'fif' \(damaged, "
                                         r"truncated or incomplete\?\): ValueError: "):
        read_raw(tmp_path / "cut_raw.fif")
    mne.export.export_raw(tmp_path / "rec.vhdr", raw_orig, fmt="brainvision", verbose=False)
    (tmp_path / "cut.vhdr").write_text((tmp_path / "rec.vhdr").read_text()[:60])
    with pytest.raises(InputError, match=r"EEG file '.*cut.vhdr' could not be read as 'brainvision'.*"
                                         r"RuntimeError: Could not parse"):
        read_raw(tmp_path / "cut.vhdr")
    (tmp_path / "rec.eeg").unlink()
    with pytest.raises(InputError, match=r"'.*rec.vhdr' could not be read .*FileNotFoundError: .*rec.eeg"):
        read_raw(tmp_path / "rec.vhdr")


def test_recording_files_include_companions_and_sidecars(raw_orig, tmp_path):
    mne.export.export_raw(tmp_path / "rec.vhdr", raw_orig, fmt="brainvision", verbose=False)
    (tmp_path / "other.vhdr").write_text("x")
    assert [p.name for p in recording_files(tmp_path / "rec.vhdr")] == ["rec.vhdr", "rec.eeg", "rec.vmrk"]
    rel, _ = _write_bids(raw_orig, tmp_path)
    names = [p.name for p in recording_files(tmp_path / rel, "bids")]
    assert names[0].endswith("_eeg.vhdr") and {"sub-01_task-listen_eeg.eeg", "sub-01_task-listen_eeg.vmrk",
                                               "sub-01_task-listen_events.tsv",
                                               "sub-01_task-listen_channels.tsv"} <= set(names)


def test_manifest_check_opens_every_recording_and_lists_every_problem(raw_orig, tmp_path):
    _write_fif(raw_orig, tmp_path)
    whole = (tmp_path / "rec_raw.fif").read_bytes()
    (tmp_path / "cut_raw.fif").write_bytes(whole[: len(whole) // 2])
    run = {"eeg": {"path": "rec_raw.fif"}, "stimulus": "s", "onset": {"trigger": 1}}
    data = {
        "name": "chk", "licence": "CC0-1.0", "source_url": "https://example.org", "root": ".",
        "montage": "biosemi64", "stimuli": {"s": {"duration": 5.0}},
        "channels": {"reference": ["M1"], "misc": ["EXG1"]},
        "subjects": [
            {"id": "1", "runs": [{**run, "id": "1", "eeg": {"path": "rec_raw.fif", "sfreq": 512.0}},
                                 {**run, "id": "2", "onset": {"trigger": 7}}], "bad_channels": ["Q9"]},
            {"id": "2", "runs": [{**run, "id": "1", "eeg": {"path": "cut_raw.fif"}}]},
        ],
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match=r"has 4 problem\(s\) with its recordings") as err:
        check_manifest(tmp_path / "m.yaml")
    message = str(err.value)
    assert "sampling rate is 256 Hz in the file, the manifest declares eeg.sfreq = 512 Hz" in message
    assert "channels.reference 'M1', channels.misc 'EXG1', bad_channels of subject '1' 'Q9' not in the recording" \
        in message
    assert "subject '1' run '2' (" in message and "trigger 7 (occurrence 1) not found" in message
    assert "subject '2' run '1': EEG file '" in message and "cut_raw.fif' could not be read" in message


def test_manifest_check_refuses_ids_that_are_paths(tmp_path):
    data = {"name": "x", "licence": "CC0", "source_url": "u", "stimuli": {"/abs/s": {"duration": 2.0}},
            "subjects": [{"id": "../x", "runs": [{"id": "1", "eeg": {"path": "a.fif"}, "stimulus": "/abs/s",
                                                  "onset": {"sample": 0}}]}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError) as err:
        check_manifest(tmp_path / "m.yaml", check_files=False)
    for where, got in (("stimuli./abs/s.[key]", "'/abs/s'"), ("subjects.0.id", "'../x'"),
                       ("subjects.0.runs.0.stimulus", "'/abs/s'")):
        assert f"{where}: not a valid id: " in str(err.value) and f"(got {got})" in str(err.value)
