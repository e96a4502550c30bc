"""Readers on files written in the exact layouts of the public releases (CND, Dryad,
SparrKULee, Alice), and each shipped manifest against a fixture tree in its layout."""

from pathlib import Path

import mne
import numpy as np
import pytest

from _release_fixtures import (
    AUDIO_SFREQ, CND_FEATURES, synth_audio, build_alice, build_broderick_cnd, build_broderick_dryad, build_sparrkulee,
    cell, chanlocs, cnd_eeg_struct, cnd_stim_struct, savemat, write_bdf,
)
from typer.testing import CliRunner

from sae_eeg.audio import Audio, load_audio
from sae_eeg.cli import app
from sae_eeg.eeg import (
    CND_ONSET_ANNOTATION, check_manifest, find_run_markers, infer_format, load_aligned_run, preprocess, read_cnd,
    read_cnd_stim, read_manifest_feature, read_raw, read_run, read_stimulus_feature, simulate_dataset,
)
from sae_eeg.errors import AlignmentError, InputError, ManifestError
from sae_eeg.manifests import load_manifest

SHIPPED = Path(__file__).parents[1] / "data_manifests"
VERSIONS = ("v7", "v7.3")
LABELS = mne.channels.make_standard_montage("biosemi128").ch_names[:4]


# --- CND: MATLAB shapes as CNSP writes them, v7 and v7.3


@pytest.mark.parametrize("version", VERSIONS)
def test_cnd_mastoids_named_from_description_and_matched_by_the_manifest(tmp_path, rng, version):
    build_broderick_cnd(tmp_path, rng, runs=("1", "2"), subjects=("1",), version=version)
    rec = read_cnd(tmp_path / "dataCND" / "dataSub1.mat")
    assert rec.raws[0].ch_names[-2:] == ["Mastoids1", "Mastoids2"]  # description 'Mastoids'
    manifest = load_manifest(SHIPPED / "broderick2018_cnd.yaml", root=tmp_path, check_files=False)
    raw = read_run(manifest, "1", "2")
    assert raw.ch_names[-2:] == ["mastoids1", "mastoids2"]  # the manifest's spelling
    assert raw.get_channel_types()[-2:] == ["misc", "misc"]
    out, _ = preprocess(raw, {"reference": "mastoids", "reference_channels": ["mastoids1", "mastoids2"],
                              "l_freq": None, "h_freq": None, "scaling": "none", "sfreq": None})
    mastoid_mean = raw.get_data(picks=["mastoids1", "mastoids2"]).mean(axis=0)
    np.testing.assert_allclose(out.get_data(picks="eeg")[0],
                               raw.get_data(picks="eeg")[0] - mastoid_mean, atol=1e-12)


def test_absent_manifest_channel_is_reported_with_the_channels_present(tmp_path, rng):
    build_broderick_cnd(tmp_path, rng, subjects=("1",), runs=("1",))
    text = (SHIPPED / "broderick2018_cnd.yaml").read_text().replace("mastoids1", "mastoidL")
    (tmp_path / "m.yaml").write_text(text)
    manifest = load_manifest(tmp_path / "m.yaml", root=tmp_path, check_files=False)
    with pytest.raises(InputError, match=r"\['mastoidL'\] named in the manifest's 'channels'.*"
                                         r"non-EEG channels are \['Mastoids1', 'Mastoids2'\]"):
        read_run(manifest, "1", "1")


def test_preprocess_lists_the_channels_present_when_a_reference_is_missing(tmp_path, rng):
    build_broderick_cnd(tmp_path, rng, subjects=("1",), runs=("1",))
    raw = read_cnd(tmp_path / "dataCND" / "dataSub1.mat").raws[0]
    with pytest.raises(InputError, match=r"missing \['M1'\]; its non-EEG channels are "
                                         r"\['Mastoids1', 'Mastoids2'\]"):
        preprocess(raw, {"reference": "mastoids", "reference_channels": ["M1"]})


@pytest.mark.parametrize("version", VERSIONS)
def test_cnd_one_trial_one_feature_squeezes(tmp_path, rng, version):
    """MATLAB keeps 1 x 1 cells; loading squeezes them to their element (the old crash)."""
    trial = rng.standard_normal((200, 4))
    mastoid = rng.standard_normal((200, 1))  # one external channel: a T x 1 column
    eeg = cnd_eeg_struct([trial], [mastoid], LABELS, fs=64.0, description="M1")
    savemat(tmp_path / "dataSub1.mat", {"eeg": eeg}, version=version)
    env = rng.standard_normal((200, 1))
    savemat(tmp_path / "dataStim.mat", {"stim": cnd_stim_struct([[env]], fs=64.0, names=["env"])},
            version=version)
    rec = read_cnd(tmp_path / "dataSub1.mat", stim_path=tmp_path / "dataStim.mat")
    assert len(rec.raws) == 1 and rec.raws[0].ch_names == LABELS + ["M1"]
    np.testing.assert_allclose(rec.raws[0].get_data(picks="eeg"), trial.T * 1e-6)
    np.testing.assert_allclose(rec.raws[0].get_data(picks="misc")[0], mastoid[:, 0] * 1e-6)
    assert list(rec.stim[0]) == ["env"]
    np.testing.assert_allclose(rec.stim[0]["env"].data, env)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("n_feat, n_trials", [(2, 1), (1, 3), (2, 3)])
def test_cnd_stim_cells_of_every_shape(tmp_path, rng, version, n_feat, n_trials):
    feats = [[rng.standard_normal((50 + 10 * k, 1 + i)) for k in range(n_trials)] for i in range(n_feat)]
    names = [f"feat{i}" for i in range(n_feat)]
    savemat(tmp_path / "dataStim.mat", {"stim": cnd_stim_struct(feats, fs=32.0, names=names)},
            version=version)
    trials = read_cnd_stim(tmp_path / "dataStim.mat")
    assert len(trials) == n_trials
    for k in range(n_trials):
        for i, name in enumerate(names):
            got = trials[k][name]
            np.testing.assert_allclose(got.data, feats[i][k].reshape(len(feats[i][k]), -1))
            assert got.sfreq == 32.0 and got.tmin == 0.0


@pytest.mark.parametrize("version", VERSIONS)
def test_cnd_padding_start_sample_is_the_onset(tmp_path, rng, version):
    build_broderick_cnd(tmp_path, rng, subjects=("1",), runs=("1", "2"), padding=64, version=version)
    manifest = load_manifest(SHIPPED / "broderick2018_cnd.yaml", root=tmp_path, check_files=False)
    raw = read_run(manifest, "1", "2")
    onset, _ = find_run_markers(raw, manifest.run("1", "2"))
    assert onset == pytest.approx(64 / 128.0)
    assert raw.n_times == 64 + 6 * 128  # the padding stays for the filters
    entry = manifest.run("1", "2").model_copy(update={"onset": manifest.run("1", "2").onset.model_copy(
        update={"annotation": None, "sample": 0})})
    with pytest.raises(AlignmentError, match=r"onset sample 0 lies in the padding .* starts at "
                                             rf"sample 64.*annotation: {CND_ONSET_ANNOTATION}"):
        find_run_markers(raw, entry)


def test_cnd_without_padding_starts_at_sample_zero(tmp_path, rng):
    build_broderick_cnd(tmp_path, rng, subjects=("1",), runs=("1",))
    manifest = load_manifest(SHIPPED / "broderick2018_cnd.yaml", root=tmp_path, check_files=False)
    raw = read_run(manifest, "1", "1")
    assert find_run_markers(raw, manifest.run("1", "1"))[0] == 0.0


def test_cnd_python_converter_layout(tmp_path, rng):
    """CNSP's bids2cnd_example.py: v7.3 via hdf5storage, chanlocs a cell of structs with
    'name', one extChan per channel with (1, T) rows, the struct under another name."""
    trials = [rng.standard_normal((120, 4)), rng.standard_normal((90, 4))]
    neural = {
        "dataType": "MEG", "fs": 100.0, "data": cell(trials, (1, 2)),
        "chanlocs": cell([{"name": label} for label in LABELS], (1, 4)),
        "extChan": cell([{"description": "EOG", "data": cell([t[:, 0][None, :] for t in trials], (1, 2))}],
                        (1, 1)),
    }
    savemat(tmp_path / "dataSub01.mat", {"neural": neural}, version="v7.3")
    assert infer_format(tmp_path / "dataSub01.mat") == "cnd"
    rec = read_cnd(tmp_path / "dataSub01.mat")
    assert [r.ch_names for r in rec.raws] == [LABELS + ["EOG"]] * 2
    np.testing.assert_allclose(rec.raws[1].get_data(picks="misc")[0], trials[1][:, 0] * 1e-6)


def test_cnd_bad_inputs(tmp_path, rng):
    trial = rng.standard_normal((4, 100))  # channels x time: not CND
    savemat(tmp_path / "a.mat", {"eeg": {"data": cell([trial], (1, 1)), "fs": 64.0,
                                         "chanlocs": chanlocs(LABELS)}}, version="v7")
    with pytest.raises(InputError, match=r"eeg.data\{1\} has shape \(4, 100\); CND stores time x "
                                         r"channels with 4 channels"):
        read_cnd(tmp_path / "a.mat")
    eeg = cnd_eeg_struct([rng.standard_normal((100, 4))], [rng.standard_normal((100, 2))], LABELS,
                         fs=64.0, padding=100)
    savemat(tmp_path / "b.mat", {"eeg": eeg}, version="v7")
    with pytest.raises(InputError, match=r"paddingStartSample 100 is beyond trial 1 \(100 samples\)"):
        read_cnd(tmp_path / "b.mat")
    savemat(tmp_path / "dataStim.mat", {"stim": {"data": 1.0, "fs": 1.0, "names": "x"},
                                        "unprocessedWord2Vec": {"name": "word2VecInfo"}}, version="v7")
    with pytest.raises(InputError, match=r"CND stimulus file \(dataStim.mat\)"):
        infer_format(tmp_path / "dataStim.mat")


# --- precomputed stimulus features


@pytest.mark.parametrize("version", VERSIONS)
def test_cnd_stim_entries_as_stimulus_features(tmp_path, rng, version):
    feats = build_broderick_cnd(tmp_path, rng, subjects=("1",), runs=("1", "2"), version=version)
    path = tmp_path / "dataCND" / "dataStim.mat"
    env = read_stimulus_feature(path, feature=CND_FEATURES[0].lower(), trial=2)
    np.testing.assert_array_equal(env.data, feats["envelope"][1])
    assert env.sfreq == 128.0 and env.names == ("Speech Envelope Vectors_0",)
    with pytest.raises(InputError, match=r"one of the CND stim.names \['Speech Envelope Vectors', "
                                         r"'Word Onset Vectors'\]; got 'pitch'"):
        read_stimulus_feature(path, feature="pitch", trial=1)
    with pytest.raises(InputError, match=r"holds 2 trials; give trial in 1..2, got 3"):
        read_stimulus_feature(path, feature=CND_FEATURES[1], trial=3)


def test_dryad_envelope_files_as_stimulus_features(tmp_path, rng):
    envelopes = build_broderick_dryad(tmp_path, rng, subjects=("1",), runs=("1", "2"))
    env = read_stimulus_feature(tmp_path / "Stimuli" / "Envelopes" / "audio2_128Hz.mat")
    np.testing.assert_array_equal(env.data, envelopes["2"])
    assert (env.sfreq, env.tmin, env.names) == (128.0, 0.0, ("env",))
    savemat(tmp_path / "nofs.mat", {"env": envelopes["1"]}, version="v7.3")
    with pytest.raises(InputError, match=r"has no 'fs' variable; give sfreq"):
        read_stimulus_feature(tmp_path / "nofs.mat")
    assert read_stimulus_feature(tmp_path / "nofs.mat", sfreq=128).sfreq == 128.0
    with pytest.raises(InputError, match=r"is at 128.0 Hz; sfreq = 64 Hz was given"):
        read_stimulus_feature(tmp_path / "Stimuli" / "Envelopes" / "audio1_128Hz.mat", sfreq=64)
    with pytest.raises(InputError, match=r"one of its matrices \['env'\]; got 'envelope'"):
        read_stimulus_feature(tmp_path / "nofs.mat", feature="envelope", sfreq=128)


# --- BioSemi BDF, gzipped as SparrKULee ships it


def test_gzipped_bdf_reads_like_the_plain_file(tmp_path, rng):
    names = ["Fp1", "Cz"]
    data = rng.standard_normal((2, 3 * 256)) * 50
    status = np.full(3 * 256, 255 + (1 << 20))
    status[300:310] = 254 + (1 << 20)
    plain = write_bdf(tmp_path / "rec.bdf", data, names, 256, status)
    import gzip
    (tmp_path / "rec.bdf.gz").write_bytes(gzip.compress(plain.read_bytes()))
    assert infer_format(tmp_path / "rec.bdf.gz") == "bdf"
    a, b = read_raw(plain), read_raw(tmp_path / "rec.bdf.gz")
    assert a.ch_names == b.ch_names == names + ["Status"]
    np.testing.assert_array_equal(a.get_data(), b.get_data())
    np.testing.assert_allclose(b.get_data(picks="eeg"), data * 1e-6, atol=1e-7)  # 31 nV steps
    (tmp_path / "bad.bdf.gz").write_bytes(b"not gzip")
    with pytest.raises(InputError, match=r"gzipped EEG file .*bad.bdf.gz.* cannot be decompressed"):
        read_raw(tmp_path / "bad.bdf.gz")


def test_sparrkulee_tree(tmp_path, rng):
    waveforms = build_sparrkulee(tmp_path, rng)
    manifest = load_manifest(SHIPPED / "sparrkulee.yaml", root=tmp_path)
    raw = read_run(manifest, "001", "01")
    assert raw.info["sfreq"] == 8192.0 and len(mne.pick_types(raw.info, eeg=True)) == 64
    assert raw.get_montage() is not None
    status = raw.get_data(picks="stim")[0]
    assert set(np.unique(status)) == {254.0, 255.0}  # BioSemi status bits above 16 masked
    audio = load_audio(manifest.resolve(manifest.stimuli["audiobook_5_1"].path))
    np.testing.assert_array_equal(audio.waveform, waveforms["audiobook_5_1"])
    assert audio.sfreq == 48000.0
    onset, end = find_run_markers(raw, manifest.run("001", "01"), manifest=manifest)
    assert onset == pytest.approx(0.5, abs=1 / 8192) and end == pytest.approx(3.5, abs=2 / 8192)


PRE_NONE = {"l_freq": None, "h_freq": None, "sfreq": 128.0, "detect_bads": False, "interpolate_bads": False,
            "reference": "none", "scaling": "none"}


def test_sparrkulee_trigger_template_gives_onset_and_clock_drift(tmp_path, rng):
    """brain_pipe's periodic block triggers: onset from the first pulses, drift from the last."""
    build_sparrkulee(tmp_path, rng, onset=0.75, seconds=4.25, clock_ratio=1.003)  # 3 s of stimulus
    manifest = load_manifest(SHIPPED / "sparrkulee.yaml", root=tmp_path)
    run = manifest.run("001", "01")
    raw = read_run(manifest, "001", "01")
    onset, end = find_run_markers(raw, run, manifest=manifest)
    assert onset == pytest.approx(0.75, abs=1 / 8192)
    assert (end - onset) / 3.0 == pytest.approx(1.003, abs=1 / 8192)   # 3 s of stimulus, pulses 2 s apart
    aligned, _ = load_aligned_run(manifest, "001", "01", config=PRE_NONE)
    assert aligned.clock_ratio == pytest.approx(1.003, abs=1e-3 / 8) and aligned.n_times == 3 * 128
    assert aligned.onset_sample == round(0.75 * 128)
    with pytest.raises(AlignmentError, match=r"trigger_template onset is found by find_run_markers"):
        from sae_eeg.eeg import find_marker
        find_marker(raw, run.onset)


def test_trigger_template_that_does_not_match_is_an_error(tmp_path, rng):
    build_sparrkulee(tmp_path, rng)
    manifest = load_manifest(SHIPPED / "sparrkulee.yaml", root=tmp_path)
    run = manifest.run("001", "01")
    raw = read_run(manifest, "001", "01")
    template = manifest.trigger_template_file(run)
    pulses = np.zeros(4 * 1000, np.float32)                       # four pulses: one more than the recording's
    for t in range(4):
        pulses[t * 1000:t * 1000 + 10] = 1.0
    import gzip, io
    buffer = io.BytesIO()
    np.savez(buffer, audio=pulses, fs=np.array(1000))
    template.write_bytes(gzip.compress(buffer.getvalue()))
    with pytest.raises(AlignmentError, match=r"trigger channel has 3 pulses, the trigger template .*t_audiobook_5_1"
                                             r".* 4: is it this run's stimulus\?"):
        find_run_markers(raw, run, manifest=manifest)
    pulses[1000:1010], pulses[1300:1310] = 0.0, 1.0               # three pulses, unevenly spaced
    pulses[3000:3010] = 0.0
    buffer = io.BytesIO()
    np.savez(buffer, audio=pulses, fs=np.array(1000))
    template.write_bytes(gzip.compress(buffer.getvalue()))
    with pytest.raises(AlignmentError, match=r"pulses depart from those of trigger template .* by up to \d+\.\d ms"):
        find_run_markers(raw, run, manifest=manifest)
    no_stim = raw.copy().pick("eeg")
    with pytest.raises(AlignmentError, match=r"needs a trigger \(stim\) channel"):
        find_run_markers(no_stim, run, manifest=manifest)


def test_dryad_runs_longer_than_their_envelopes_are_cut_at_the_stimulus_end(tmp_path, rng):
    """No audio: the run spans the envelope (3 samples shorter than the EEG file); the rest is left out."""
    envelopes = build_broderick_dryad(tmp_path, rng, subjects=("1",), runs=("1", "2"), with_audio=False)
    path = _restrict_grid(tmp_path, (SHIPPED / "broderick2018_dryad.yaml").read_text(), subjects=("1",),
                          runs=("1", "2"))
    manifest = load_manifest(path, root=tmp_path)
    assert manifest.audio_file("audio2") is None
    aligned, _ = load_aligned_run(manifest, "1", "2", config=PRE_NONE)
    assert aligned.n_times == len(envelopes["2"]) and aligned.samples_after == 3
    raw = read_run(manifest, "1", "2")
    np.testing.assert_array_equal(aligned.eeg, raw.get_data(picks="eeg")[:, :len(envelopes["2"])].T)
    env = read_manifest_feature(manifest, "audio2", "envelope")
    np.testing.assert_array_equal(env.data, envelopes["2"])          # the release's values, untouched
    assert env.resample(128.0, tmin=0.0, n_times=aligned.n_times).data.tolist() == envelopes["2"].tolist()


def test_npz_audio_errors(tmp_path):
    np.savez(tmp_path / "x.npz", samples=np.zeros(10))
    with pytest.raises(InputError, match=r"lacks \['audio', 'fs'\]; it holds \['samples'\]"):
        load_audio(tmp_path / "x.npz")


# --- every shipped manifest on a fixture tree in its layout


@pytest.mark.parametrize("version", VERSIONS)
def test_broderick_cnd_manifest_on_its_layout(tmp_path, rng, version):
    build_broderick_cnd(tmp_path, rng, subjects=("1", "2"), runs=("1", "2"), version=version)
    text = (SHIPPED / "broderick2018_cnd.yaml").read_text()
    path = _restrict_grid(tmp_path, text, subjects=("1", "2"), runs=("1", "2"))
    summary = check_manifest(path, root=tmp_path)
    assert (summary.n_subjects, summary.n_runs, summary.sampling_rates) == (2, 4, [128.0])
    manifest = load_manifest(path, root=tmp_path)
    raw = read_run(manifest, "2", "2")
    assert raw.get_montage() is not None and raw.info["sfreq"] == 128.0


def test_broderick_dryad_manifest_on_its_layout(tmp_path, rng):
    build_broderick_dryad(tmp_path, rng, subjects=("1", "2"), runs=("1", "2"))
    path = _restrict_grid(tmp_path, (SHIPPED / "broderick2018_dryad.yaml").read_text(),
                          subjects=("1", "2"), runs=("1", "2"))
    summary = check_manifest(path, root=tmp_path)
    assert (summary.n_subjects, summary.n_runs, summary.sampling_rates) == (2, 4, [128.0])
    manifest = load_manifest(path, root=tmp_path)
    raw = read_run(manifest, "1", "2")
    assert raw.ch_names[-2:] == ["M1", "M2"] and find_run_markers(raw, manifest.run("1", "2"))[0] == 0.0


def test_alice_manifest_on_its_layout(tmp_path, rng):
    build_alice(tmp_path, rng, subjects=("S01", "S03"), segments=("1", "2"))
    path = _restrict_grid(tmp_path, (SHIPPED / "alice_eelbrain.yaml").read_text(),
                          subjects=("S01", "S03"), runs=("1", "2"))
    summary = check_manifest(path, root=tmp_path)
    assert (summary.n_subjects, summary.n_runs, summary.sampling_rates) == (2, 4, [500.0])
    manifest = load_manifest(path, root=tmp_path)
    raw = read_run(manifest, "S03", "2")
    # annotations '1', '2' at 1 s and 5 s; VEOG/Aux5/AUD are stim-kind channels, not triggers
    assert find_run_markers(raw, manifest.run("S03", "2"))[0] == pytest.approx(5.0)


@pytest.mark.parametrize("with_audio", [True, False])
def test_broderick_manifests_without_audio_use_the_release_envelopes(tmp_path, rng, with_audio):
    cnd = build_broderick_cnd(tmp_path / "cnd", rng, version="v7.3", with_audio=with_audio)
    dryad = build_broderick_dryad(tmp_path / "dryad", rng, with_audio=with_audio)
    for name, root, envelope in (("cnd", tmp_path / "cnd", cnd["envelope"][1]),
                                 ("dryad", tmp_path / "dryad", dryad["2"])):
        path = _restrict_grid(root, (SHIPPED / f"broderick2018_{name}.yaml").read_text(), subjects=("1", "2"),
                              runs=("1", "2"))
        summary = check_manifest(path, root=root)
        absent = [w for w in summary.warnings if "have no audio file" in w]
        assert len(absent) == (0 if with_audio else 1)
        if not with_audio:
            assert absent[0].startswith("2 stimuli have no audio file: audio1 (") and "are skipped" in absent[0]
        manifest = load_manifest(path, root=root)
        np.testing.assert_array_equal(read_manifest_feature(manifest, "audio2", "envelope").data, envelope)


def test_release_features_are_checked_at_load(tmp_path, rng):
    build_broderick_cnd(tmp_path, rng, with_audio=False)
    text = (SHIPPED / "broderick2018_cnd.yaml").read_text()
    text = text.replace("feature: Speech Envelope Vectors, trial: 2}", "feature: Pitch, trial: 2}")
    text = text.replace("feature: Speech Envelope Vectors, trial: 1}", "feature: Speech Envelope Vectors, trial: 3}")
    path = _restrict_grid(tmp_path, text, subjects=("1",), runs=("1", "2"))
    with pytest.raises(ManifestError, match=r"2 problem\(s\)") as err:
        check_manifest(path, root=tmp_path)
    message = str(err.value)
    assert "stimulus 'audio1' features.envelope: " in message and "holds 2 trials; give trial in 1..2, got 3" in message
    assert ("stimulus 'audio2' features.envelope: " in message and "one of the CND stim.names "
            "['Speech Envelope Vectors', 'Word Onset Vectors']; got 'Pitch'" in message)
    (tmp_path / "dataCND" / "dataStim.mat").unlink()
    with pytest.raises(ManifestError, match=r"stimulus 'audio1' features.envelope: file not found: .*dataStim.mat"):
        load_manifest(path, root=tmp_path)


def test_every_shipped_manifest_passes_manifest_check_on_its_fixture_tree(tmp_path, rng):
    """Each public manifest on a tree in its release's layout, and the demo's on a simulated dataset."""
    trees = {
        "broderick2018_cnd": (build_broderick_cnd, ("1", "2"), ("1", "2")),
        "broderick2018_dryad": (build_broderick_dryad, ("1", "2"), ("1", "2")),
        "alice_eelbrain": (build_alice, ("S01", "S03"), ("1", "2")),
    }
    checked = {}
    for name, (build, subjects, runs) in trees.items():
        root = tmp_path / name
        build(root, rng)
        checked[name] = check_manifest(_restrict_grid(root, (SHIPPED / f"{name}.yaml").read_text(),
                                                      subjects=subjects, runs=runs), root=root)
    build_sparrkulee(tmp_path / "sparrkulee", rng)                     # .bdf.gz, trigger template
    checked["sparrkulee"] = check_manifest(SHIPPED / "sparrkulee.yaml", root=tmp_path / "sparrkulee")
    stories = [(f"story{i}", Audio(synth_audio(4.0, rng), AUDIO_SFREQ)) for i in (1, 2, 3)]
    simulate_dataset(tmp_path / "demo", stories, n_subjects=2, random_state=0)
    checked["demo"] = check_manifest(_restrict_grid(tmp_path / "demo", (SHIPPED / "demo.yaml").read_text(),
                                                    subjects=("01", "02"), runs=("story1", "story2", "story3")),
                                     root=tmp_path / "demo")
    assert set(checked) == {p.stem for p in SHIPPED.glob("*.yaml")}
    assert checked["sparrkulee"].sampling_rates == [8192.0] and checked["demo"].n_runs == 6
    for name, summary in checked.items():
        verify = load_manifest(SHIPPED / f"{name}.yaml", check_files=False).verify
        assert [w for w in summary.warnings if w.startswith("VERIFY: ")] == [
            f"VERIFY: {' '.join(v.split())}" for v in verify], name


def test_unverified_values_are_a_manifest_field_that_manifest_check_prints(tmp_path, rng):
    """'verify' entries, not comments: every public manifest lists what it could not check."""
    for path in SHIPPED.glob("*.yaml"):
        comments = [line for line in path.read_text().splitlines() if line.lstrip().startswith("#")]
        assert not [line for line in comments if "VERIFY" in line], path.name
        verify = load_manifest(path, check_files=False).verify
        assert bool(verify) == (path.stem != "demo"), path.name
    build_sparrkulee(tmp_path, rng)
    done = CliRunner().invoke(app, ["manifest", "check", str(SHIPPED / "sparrkulee.yaml"), "--root", str(tmp_path)])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == "manifest 'sparrkulee': valid"
    assert [line for line in lines if line.startswith("warning: ")] == [
        "warning: VERIFY: The BDF channel labels against MNE's biosemi64 names (Fp1, AF7, ...).",
        "warning: VERIFY: The trigger templates t_<stimulus>.npz.gz hold the pulse track in 'audio' and its rate "
        "in 'fs', as the stimuli do (brain_pipe reads both with the same loader)."]


def _restrict_grid(tmp_path, text, *, subjects, runs):
    """The shipped manifest with its grid cut to the fixture's subjects and runs."""
    import yaml

    data = yaml.safe_load(text)
    data["grid"]["subjects"], data["grid"]["runs"] = list(subjects), list(runs)
    data["stimuli"] = {k: v for k, v in data["stimuli"].items()
                       if any(data["grid"]["stimulus"].format(run=r, subject=s) == k for r in runs for s in subjects)}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
