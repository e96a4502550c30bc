"""Simulator: the dataset validates, loads and aligns; onsets exact; planted truth recoverable;
no partial output on failure."""

import json
from pathlib import Path

import mne_bids
import numpy as np
import pytest

from sae_eeg.audio import Audio
from sae_eeg.eeg import (
    check_manifest, find_run_markers, load_aligned_run, planted_acoustic_peak, preprocess, random_features,
    read_run, simulate_dataset,
)
from sae_eeg.eeg.simulate import simulate_recordings
from sae_eeg.errors import InputError, OutputExistsError
from sae_eeg.manifests import load_manifest
from sae_eeg.trajectories import TimeSeries, resample_dense

SFREQ = 128.0
PRE = {"notch": [50.0], "l_freq": 1.0, "h_freq": 8.0, "sfreq": None, "scaling": "none"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    rng = np.random.default_rng(1)
    audio = Audio((0.1 * rng.standard_normal(16000 * 30)).astype(np.float32), 16000.0)
    feats = {"s1": random_features(30.0, n_features=6, random_state=2),
             "s2": random_features(20.0, n_features=6, random_state=3)}
    ds = simulate_dataset(tmp_path_factory.mktemp("sim") / "bids", [("s1", audio), ("s2", 20.0)],
                          n_subjects=2, features=feats, planted=[0, 1], sfreq=SFREQ,
                          snr_db=0.0, snr_spread_db=1.0, clock_drift_ppm=500.0,
                          random_state=0)
    return ds, feats


def test_dataset_validates_and_summarises(sim):
    ds, _ = sim
    manifest = load_manifest(ds.manifest_path)  # files and checksums checked
    assert [s.id for s in manifest.all_subjects()] == ["01", "02"]
    assert manifest.stimuli["s1"].path == "stimuli/s1.wav"
    summary = check_manifest(ds.manifest_path)
    assert (summary.n_subjects, summary.n_runs, summary.sampling_rates) == (2, 4, [SFREQ])
    hours = sum(s["n_times"] for s in ds.truth["subjects"].values()) / SFREQ / 3600
    assert summary.total_hours == pytest.approx(hours)
    truth = json.loads(ds.truth_path.read_text())
    assert {"planted", "subjects", "ch_names", "provenance"} <= set(truth)
    sub = truth["subjects"]["01"]
    assert {"snr_db", "gains", "latency_shift_s", "bad_channels", "onsets", "clock_drift"} <= set(sub)
    assert len(truth["planted"][0]["topography"]) == len(truth["ch_names"]) == 64
    assert not list(ds.root.parent.glob(".bids.*"))  # no staging folder left


def test_onsets_recovered_to_the_exact_sample(sim):
    ds, _ = sim
    manifest = load_manifest(ds.manifest_path)
    for sub, truth in ds.truth["subjects"].items():
        raw = read_run(manifest, sub, "s1")
        assert raw.n_times == truth["n_times"]
        for stim, expected in truth["onsets"].items():
            onset, end = find_run_markers(raw, manifest.run(sub, stim))
            assert round(onset * SFREQ) == expected["sample"]
            assert round(end * SFREQ) == expected["end_sample"]
            assert onset * SFREQ == pytest.approx(expected["sample"], abs=1e-6)


def test_aligns_with_drift_corrected(sim):
    ds, feats = sim
    manifest = load_manifest(ds.manifest_path)
    for sub, truth in ds.truth["subjects"].items():
        aligned, steps = load_aligned_run(manifest, sub, "s2", feats["s2"], config=PRE)
        assert aligned.eeg.shape == (int(20.0 * SFREQ), 64)
        assert aligned.features.data.shape == (int(20.0 * SFREQ), 6)
        assert aligned.features.sfreq == SFREQ and aligned.features.tmin == 0.0
        assert aligned.clock_ratio == pytest.approx(1 + truth["clock_drift"], abs=1 / (20 * SFREQ))
        assert steps[0]["step"] == "input"


def test_ground_truth_model_explains_the_data(sim):
    """Rebuilding the planted signal from the JSON alone fits the recording with gain 1."""
    ds, feats = sim
    truth = ds.truth
    manifest = load_manifest(ds.manifest_path)
    n = int(20.0 * SFREQ)
    cols = feats["s2"].select([0, 1]).resample(SFREQ, tmin=0.0, n_times=n).data.toarray()
    cols = cols / np.asarray(truth["feature_max"])
    topo = np.array([p["topography"] for p in truth["planted"]])  # (P, C)
    for sub, sub_truth in truth["subjects"].items():
        trfs = np.asarray(sub_truth["trfs"])
        resp = np.stack([np.convolve(cols[:, j], trfs[j])[:n] for j in range(2)])  # (P, T)
        pred = topo.T @ resp
        drift = sub_truth["clock_drift"]
        pred = resample_dense(pred.T, sfreq=SFREQ, new_sfreq=SFREQ * (1 + drift)).T
        on = sub_truth["onsets"]["s2"]
        raw = read_run(manifest, sub, "s2")
        good = [i for i, ch in enumerate(raw.ch_names)
                if ch not in {b["name"] for b in sub_truth["bad_channels"]}]
        m = min(pred.shape[1], on["end_sample"] - on["sample"])
        data = raw.get_data()[good, on["sample"]:on["sample"] + m]
        fit = pred[good, :m]
        gain = np.sum(data * fit) / np.sum(fit * fit)
        assert gain == pytest.approx(1.0, abs=0.1)


def _pattern(aligned, column, lag_s):
    """Covariance of EEG with the feature ``lag_s`` earlier, per channel (C,)."""
    lag = int(round(lag_s * aligned.sfreq))
    x = aligned.features.data[:, [column]].toarray()[:, 0]
    x = x - x.mean()
    eeg = aligned.eeg - aligned.eeg.mean(axis=0)
    return eeg[lag:].T @ x[: len(x) - lag] / len(x)


def test_planted_topography_recovered(sim):
    ds, feats = sim
    manifest = load_manifest(ds.manifest_path)
    config = dict(PRE, detect_bads=True, reference="none")
    runs = [load_aligned_run(manifest, sub, "s1", feats["s1"], config=config)[0]
            for sub in ds.truth["subjects"]]
    for j, planted in enumerate(ds.truth["planted"]):
        trf = np.asarray(planted["trf"])
        peak = planted["trf_times"][int(np.argmax(np.abs(trf)))]
        pattern = sum(_pattern(run, j, peak) for run in runs)
        r = np.corrcoef(pattern, planted["topography"])[0, 1]
        assert abs(r) > 0.9, (j, r)
        # matched filter over lags 0-0.4 s: the planted feature drives its topography,
        # an unplanted one (feature 5) does not
        topo = np.asarray(planted["topography"])
        lags = np.arange(0.0, 0.4, 1 / SFREQ)

        def strength(col):
            return max(abs(sum(_pattern(run, col, lag) for run in runs) @ topo) for lag in lags)

        assert strength(j) > 2.5 * strength(5)


def test_truth_bad_channels_are_detected(sim):
    ds, _ = sim
    manifest = load_manifest(ds.manifest_path)
    for sub, truth in ds.truth["subjects"].items():
        _, steps = preprocess(read_run(manifest, sub, "s1"), PRE)
        detected = set(next(s for s in steps if s["step"] == "bad_channels")["detected"])
        assert {b["name"] for b in truth["bad_channels"]} <= detected
        assert len(detected) <= len(truth["bad_channels"]) + 1


@pytest.mark.parametrize("fmt", ["EDF", "EEGLAB"])
def test_other_formats(fmt, tmp_path):
    ds = simulate_dataset(tmp_path / "d", [("a", 6.0)], n_subjects=1, sfreq=SFREQ, format=fmt,
                          gap=(1.0, 1.5), random_state=4)
    manifest = load_manifest(ds.manifest_path)
    raw = read_run(manifest, "01", "a")
    assert raw.n_times == ds.truth["subjects"]["01"]["n_times"]
    onset, end = find_run_markers(raw, manifest.run("01", "a"))
    truth = ds.truth["subjects"]["01"]["onsets"]["a"]
    assert (round(onset * SFREQ), round(end * SFREQ)) == (truth["sample"], truth["end_sample"])


def test_dense_features_and_shipped_demo_manifest(tmp_path):
    rng = np.random.default_rng(0)
    stories = [(f"story{i}", Audio(rng.standard_normal(8000).astype(np.float32) * 0.1, 8000.0))
               for i in (1, 2, 3)]
    feats = {name: TimeSeries(rng.standard_normal((100, 2)), 100.0, 0.0, ("x", "y"))
             for name, _ in stories}
    ds = simulate_dataset(tmp_path / "demo", stories, n_subjects=8, features=feats,
                          planted=["y"], gap=(0.5, 1.0), random_state=0)
    shipped = Path(__file__).parents[1] / "data_manifests" / "demo.yaml"
    manifest = load_manifest(shipped, root=ds.root)
    raw = read_run(manifest, "08", "story3")
    onset, _ = find_run_markers(raw, manifest.run("08", "story3"))
    assert round(onset * 256) == ds.truth["subjects"]["08"]["onsets"]["story3"]["sample"]
    # no declared duration in demo.yaml: the audio file's (1 s) sets the grid
    aligned, _ = load_aligned_run(manifest, "08", "story3", feats["story3"],
                                  config={"l_freq": None, "detect_bads": False})
    assert aligned.eeg.shape == (128, 64) and aligned.features.data.shape == (128, 2)
    assert ds.truth["planted"][0]["feature"] == "y"


def test_no_partial_output_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="exists; pass overwrite=True"):
        simulate_dataset(out, [("a", 3.0)], n_subjects=1)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    with pytest.raises(InputError, match=r"features has no entry for stimuli \['b'\]"):
        simulate_dataset(tmp_path / "x", [("a", 3.0), ("b", 3.0)],
                         features={"a": random_features(3.0)})
    with pytest.raises(InputError, match=r"gap must be a range \(low, high\) with 0.0 <= low <= "
                                         r"high, got \(3.0, 1.0\)"):
        simulate_dataset(tmp_path / "x", [("a", 3.0)], gap=(3.0, 1.0))
    with pytest.raises(InputError, match="Invalid value for 'format': got 'FIF'"):
        simulate_dataset(tmp_path / "x", [("a", 3.0)], format="FIF")

    calls = []
    real = mne_bids.write_raw_bids

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(mne_bids, "write_raw_bids", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        simulate_dataset(tmp_path / "y", [("a", 3.0)], n_subjects=3, sfreq=SFREQ, gap=(1, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.slow
def test_end_to_end_with_whisper_and_sae(tmp_path):
    """Speech -> Whisper tiny.en -> BatchTopKSAE -> simulated EEG -> aligned run."""
    from sae_eeg.backbones import bundled_whisper_path, load_backbone
    from sae_eeg.sae import BatchTopKSAE
    from sae_eeg.speech import speak
    from sae_eeg.trajectories import TrajectoryCache

    backbone = load_backbone(bundled_whisper_path(tmp_path / "models"))
    sae = BatchTopKSAE(backbone.d_model, 64, 8).eval()
    audio = speak("The old man was thin and gaunt with deep wrinkles in the back of his neck. "
                  "Everything about him was old except his eyes.")
    cache = TrajectoryCache(tmp_path / "cache")
    traj = cache.trajectory(backbone, sae, 2, audio.waveform, audio.sfreq)
    assert traj.sfreq == 50.0 and traj.data.nnz > 0
    assert traj.n_times == pytest.approx(audio.duration * 50, abs=2)
    busiest = np.argsort(-np.bincount(traj.data.indices, minlength=64))[:2]
    ds = simulate_dataset(tmp_path / "bids", [("speech", audio)], n_subjects=2,
                          features={"speech": traj}, planted=busiest.tolist(), sfreq=SFREQ,
                          random_state=0)
    manifest = load_manifest(ds.manifest_path)
    aligned, _ = load_aligned_run(manifest, "01", "speech", traj, config=PRE)
    assert aligned.features.sfreq == SFREQ
    assert aligned.eeg.shape[0] == aligned.features.data.shape[0] == int(audio.duration * SFREQ)
    assert [p["feature"] for p in ds.truth["planted"]] == busiest.tolist()


def _acoustic_series(stimuli, rng):
    return {name: TimeSeries(np.abs(rng.standard_normal((int(dur * 100), 1))), 100.0, 0.0, ("envelope",))
            for name, dur in stimuli}


def test_acoustic_response_is_added_to_the_same_recordings(rng):
    """With an acoustic response nothing else changes; the difference is the truth's acoustic model."""
    stimuli = [("a", 8.0), ("b", 6.0)]
    feats = {"a": random_features(8.0, n_features=4, random_state=1),
             "b": random_features(6.0, n_features=4, random_state=2)}
    acoustic = _acoustic_series(stimuli, rng)
    kwargs = {"n_subjects": 2, "features": feats, "planted": [0], "sfreq": SFREQ, "random_state": 7}
    plain = simulate_recordings(stimuli, **kwargs)
    both = simulate_recordings(stimuli, acoustic=acoustic, acoustic_snr_db=3.0, **kwargs)
    assert plain.truth["planted"] == both.truth["planted"] and plain.truth["acoustic"] is None
    truth = both.truth["acoustic"]
    topo = np.asarray(truth["topography"])
    assert np.max(np.abs(topo)) == 1.0 and truth["names"] == ["envelope"]
    for sub, raw in both.raws.items():
        sub_truth = both.truth["subjects"][sub]
        kernel = np.asarray(sub_truth["acoustic_trf"])
        rebuilt = np.zeros(raw.n_times)
        for name, dur in stimuli:
            n = int(np.floor(dur * SFREQ))
            col = resample_dense(acoustic[name].data, sfreq=100.0, new_sfreq=SFREQ, n_times=n)[:, 0]
            resp = np.convolve(col / truth["max"][0], kernel)                 # outlasts the stimulus
            start = sub_truth["onsets"][name]["sample"]
            rebuilt[start:start + len(resp)] += resp
        diff = raw.get_data() - plain.raws[sub].get_data()
        flat = [raw.ch_names.index(b["name"]) for b in sub_truth["bad_channels"] if b["kind"] == "flat"]
        diff[flat] *= 1e3                                                  # flat channels are scaled by 1e-3
        np.testing.assert_allclose(diff, np.outer(topo, rebuilt), atol=1e-9 * np.abs(kernel).max())
        assert sub_truth["acoustic_snr_db"] == pytest.approx(3.0, abs=3.0)   # within +- snr_spread_db


def test_null_dataset_plants_nothing(rng):
    stimuli = [("a", 5.0)]
    rec = simulate_recordings(stimuli, n_subjects=1, planted=[], acoustic=_acoustic_series(stimuli, rng),
                              sfreq=SFREQ, random_state=3)
    assert rec.truth["planted"] == [] and rec.truth["feature_max"] == []
    sub = rec.truth["subjects"]["01"]
    assert sub["trfs"] == [] and sub["signal_scale"] == 0.0 and sub["acoustic_gain"] > 0
    assert np.isfinite(rec.raws["01"].get_data()).all()
    assert rec.event_id == {"onset/a": 1, "end/a": 101}
    np.testing.assert_array_equal(rec.events["01"][:, 2], [1, 101])


def test_simulate_dataset_writes_the_simulated_recordings(tmp_path):
    stimuli = [("a", 4.0)]
    rec = simulate_recordings(stimuli, n_subjects=1, sfreq=SFREQ, gap=(1.0, 1.5), random_state=4)
    ds = simulate_dataset(tmp_path / "d", stimuli, n_subjects=1, sfreq=SFREQ, gap=(1.0, 1.5), random_state=4)
    written = read_run(load_manifest(ds.manifest_path), "01", "a").get_data()
    np.testing.assert_allclose(written, rec.raws["01"].get_data(), atol=1e-9)  # BrainVision resolution
    assert {k: v for k, v in ds.truth.items() if k not in ("format", "provenance")} == rec.truth


def test_bad_acoustic_series(rng):
    stimuli = [("a", 3.0), ("b", 3.0)]
    with pytest.raises(InputError, match=r"acoustic has no entry for stimuli \['b'\]"):
        simulate_recordings(stimuli, acoustic={"a": _acoustic_series(stimuli, rng)["a"]})
    with pytest.raises(InputError, match=r"acoustic\['a'\] must be an instance of TimeSeries, got ndarray"):
        simulate_recordings(stimuli, acoustic={"a": np.ones((300, 1)), "b": np.ones((300, 1))})
    two = {"a": TimeSeries(np.ones((300, 2)), 100.0, 0.0, ("x", "y")), "b": _acoustic_series(stimuli, rng)["b"]}
    with pytest.raises(InputError, match=r"same columns for every stimulus; got \[1, 2\] columns"):
        simulate_recordings(stimuli, acoustic=two)


def test_planted_acoustic_peak_is_the_n1_seen_through_the_band_pass(rng):
    """The N1 of the planted auditory kernel (~100 ms), on the analysis grid, at the auditory pair's channel."""
    stimuli = [("a", 5.0)]
    rec = simulate_recordings(stimuli, n_subjects=2, acoustic=_acoustic_series(stimuli, rng), sfreq=SFREQ,
                              random_state=3)
    channel, latency = planted_acoustic_peak(rec.truth, sfreq=128.0)
    topo = np.abs(rec.truth["acoustic"]["topography"])
    assert channel == rec.truth["ch_names"][int(np.argmax(topo))]
    assert 0.085 <= latency <= 0.115 and latency * 128.0 == pytest.approx(round(latency * 128.0))
    assert planted_acoustic_peak(rec.truth, sfreq=128.0, window=(0.15, 0.3))[1] >= 0.15   # the P2 then
    with pytest.raises(InputError, match="no acoustic response"):
        planted_acoustic_peak(simulate_recordings(stimuli, n_subjects=1, sfreq=SFREQ, random_state=3).truth,
                              sfreq=128.0)
