"""Alignment: markers, cropping, clock-drift correction and the AlignmentError cases."""

import mne
import numpy as np
import pytest

from sae_eeg.eeg import align_run, find_marker
from sae_eeg.errors import AlignmentError
from sae_eeg.manifests import Marker
from sae_eeg.trajectories import FeatureTrajectory, TimeSeries

SFREQ = 128.0
ONSET = 1000


def _raw(data_CT, events=(), annotations=None):
    n_ch = len(data_CT)
    stim = np.zeros((1, data_CT.shape[1]))
    for sample, code in events:
        stim[0, sample] = code
    info = mne.create_info([f"E{i}" for i in range(n_ch)] + ["STI"], SFREQ,
                           ["eeg"] * n_ch + ["stim"])
    raw = mne.io.RawArray(np.vstack([data_CT, stim]), info, verbose=False)
    if annotations is not None:
        raw.set_annotations(annotations)
    return raw


@pytest.fixture
def recording(rng):
    data = rng.standard_normal((4, int(SFREQ * 60)))
    return _raw(data, events=[(ONSET, 3), (ONSET + 2560, 4), (5000, 3)],
                annotations=mne.Annotations([2.0, 30.0], [0, 0], ["go", "go"]))


def _features(seconds, sfreq=SFREQ):
    n = int(seconds * sfreq)
    return TimeSeries(np.arange(n, dtype=float)[:, None], sfreq, 0.0, ("ramp",))


def test_find_marker_rules(recording):
    assert find_marker(recording, Marker(trigger=3)) == ONSET
    assert find_marker(recording, Marker(trigger=3, occurrence=2)) == 5000
    assert find_marker(recording, Marker(annotation="go", occurrence=2)) == int(30 * SFREQ)
    assert find_marker(recording, Marker(sample=17)) == 17
    with pytest.raises(AlignmentError, match=r"run 'x': trigger 7 \(occurrence 1\) not found; "
                                             r"the recording has 0 of it. Markers present: \[3, 4\]"):
        find_marker(recording, Marker(trigger=7), where="run 'x'")
    with pytest.raises(AlignmentError, match=r"annotation 'stop' \(occurrence 1\) not found"):
        find_marker(recording, Marker(annotation="stop"))
    with pytest.raises(AlignmentError, match="trigger 3 \\(occurrence 3\\) not found; the "
                                             "recording has 2 of it"):
        find_marker(recording, Marker(trigger=3, occurrence=3))
    with pytest.raises(AlignmentError, match="onset sample 99999 is beyond the recording"):
        find_marker(recording, Marker(sample=99999))


def test_biosemi_status_bits_are_masked(rng):
    status = np.full(2000, float(0xFF0000))  # BioSemi status bits set throughout
    status[700:705] += 3
    info = mne.create_info(["E0", "Status"], SFREQ, ["eeg", "stim"])
    raw = mne.io.RawArray(np.vstack([rng.standard_normal(2000), status]), info, verbose=False)
    assert find_marker(raw, Marker(trigger=3)) == 700


def test_trigger_codes_from_annotations(rng):
    ann = mne.Annotations([1.0, 3.0], [0, 0], ["Stimulus/S  1", "Comment/12"])
    info = mne.create_info(["E0"], SFREQ, "eeg")
    raw = mne.io.RawArray(rng.standard_normal((1, 1000)), info, verbose=False)
    raw.set_annotations(ann)
    assert find_marker(raw, Marker(trigger=12)) == 384
    assert find_marker(raw, Marker(trigger=1)) == 128
    # samples count from the Raw's first sample, also after cropping (first_samp > 0)
    for meas_date in (None, 1_600_000_000):
        cropped = raw.copy().set_meas_date(meas_date).crop(tmin=0.5)
        assert cropped.first_samp == 64
        assert find_marker(cropped, Marker(trigger=12)) == 384 - 64
        assert find_marker(cropped, Marker(annotation="Stimulus/S  1")) == 128 - 64


def test_align_crops_exactly(recording):
    feats = _features(20.0)
    aligned = align_run(recording, feats, onset=ONSET / SFREQ, subject="s1", run="r1",
                        stimulus="story")
    expected = recording.get_data(picks="eeg")[:, ONSET:ONSET + 2560].T
    np.testing.assert_array_equal(aligned.eeg, expected)
    assert aligned.eeg.shape == (2560, 4) and aligned.n_times == feats.data.shape[0]
    assert aligned.ch_names == ["E0", "E1", "E2", "E3"]
    assert (aligned.onset_sample, aligned.clock_ratio, aligned.stimulus) == (ONSET, 1.0, "story")
    sparse_feats = FeatureTrajectory.from_dense(feats.data, sfreq=SFREQ)
    assert align_run(recording, sparse_feats, onset=ONSET / SFREQ).features is sparse_feats


def test_alignment_errors(recording):
    feats = _features(20.0)
    with pytest.raises(AlignmentError, match=r"subject 's1' run 'r2' .*stimulus longer than the "
                                             r"recording: needs 20.000 s from the onset at 50.000 s "
                                             r"but only 10.000 s remain"):
        align_run(recording, feats, onset=50.0, subject="s1", run="r2")
    with pytest.raises(AlignmentError, match=r"sampling-rate mismatch: features at 100.0 Hz, EEG "
                                             r"at 128.0 Hz"):
        align_run(recording, _features(20.0, sfreq=100.0), onset=1.0)
    with pytest.raises(AlignmentError, match=r"features last 20.000 s but the stimulus 25.000 s"):
        align_run(recording, feats, onset=1.0, stimulus_duration=25.0)
    with pytest.raises(AlignmentError, match=r"30.000 s between start and end markers but the "
                                             r"stimulus lasts 20.000 s \(clock mismatch \+50.00%"):
        align_run(recording, feats, onset=1.0, end=31.0)
    recording._data[1, ONSET + 10] = np.nan
    with pytest.raises(AlignmentError, match="NaN or Inf"):
        align_run(recording, feats, onset=ONSET / SFREQ)
    with pytest.raises(AlignmentError, match="must be a FeatureTrajectory or TimeSeries, got ndarray"):
        align_run(recording, feats.data, onset=1.0)


def test_clock_drift_correction():
    drift, duration = 400e-6, 60.0
    n_eeg = int(SFREQ * 80)

    def signal(tau):  # a smooth function of stimulus time
        return (np.sin(2 * np.pi * 1.0 * tau) + np.cos(2 * np.pi * 1.7 * tau + 0.3)
                + 0.5 * np.sin(2 * np.pi * 2.3 * tau))

    tau = (np.arange(n_eeg) - ONSET) / (SFREQ * (1 + drift))  # the EEG clock runs fast
    end_sample = ONSET + int(round(duration * SFREQ * (1 + drift)))
    raw = _raw(signal(tau)[None], events=[(ONSET, 1), (end_sample, 2)])
    feats = _features(duration)
    truth = signal(np.arange(feats.data.shape[0]) / SFREQ)
    plain = align_run(raw, feats, onset=ONSET / SFREQ)
    fixed = align_run(raw, feats, onset=ONSET / SFREQ, end=end_sample / SFREQ)
    assert fixed.clock_ratio == pytest.approx(1 + drift, abs=1e-5)
    err_plain = np.sqrt(np.mean((plain.eeg[:, 0] - truth) ** 2))
    err_fixed = np.sqrt(np.mean((fixed.eeg[:, 0] - truth) ** 2))
    assert err_fixed < 0.25 * err_plain
    assert np.abs(fixed.eeg[:, 0] - truth).max() < 0.03
    assert fixed.eeg.shape == plain.eeg.shape == (feats.data.shape[0], 1)
