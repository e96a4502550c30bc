"""Acoustic TRFs as first-class results (issue 17): peaks, bootstrap intervals, topographies."""

import mne
import numpy as np
import pytest

from _attribution_study import small_study
from sae_eeg.alignment import PEAK_COLUMNS, acoustic_trfs
from sae_eeg.errors import InputError

SFREQ = 64.0


@pytest.fixture(scope="module")
def envelope_study():
    runs, _, acoustic, truth = small_study(planted=False, seed=2, n_subjects=6, n_stimuli=4, duration=30.0)
    return runs, acoustic, truth


def _expected_peak(truth, channel, window=(0.03, 0.3)):
    """Lag of the largest |planted response| on ``channel``: the kernel through the EEG's 1-8 Hz filter."""
    kernel = truth["acoustic_kernel"] * truth["topographies"][3][channel]
    pad = np.zeros(4 * int(SFREQ))
    seen = mne.filter.filter_data(np.concatenate([pad, kernel, pad]), SFREQ, 1.0, 8.0, verbose="error")
    seen = seen[len(pad):len(pad) + len(kernel)]
    times = truth["kernel_times"]
    inside = np.flatnonzero((times >= window[0]) & (times <= window[1]))
    peak = inside[np.argmax(np.abs(seen[inside]))]
    return times[peak], np.sign(seen[peak])


def test_envelope_trf_peak_interval_and_topography(envelope_study):
    runs, acoustic, truth = envelope_study
    channel = int(np.argmax(np.abs(truth["topographies"][3])))
    res = acoustic_trfs(runs, acoustic, sfreq=SFREQ, channel=str(channel))
    assert list(res.peaks.columns) == list(PEAK_COLUMNS)
    group = res.peaks[res.peaks.subject == "group"].iloc[0]
    latency, sign = _expected_peak(truth, channel)
    assert abs(group.latency - latency) <= 1 / SFREQ + 1e-9, (group.latency, latency)
    assert group.latency_low <= group.latency <= group.latency_high
    assert group.amplitude_low <= group.amplitude <= group.amplitude_high
    assert np.sign(group.amplitude) == sign and group.channel == str(channel)
    topo = res.topographies.set_index("channel").weight.to_numpy()
    assert abs(np.corrcoef(topo, truth["topographies"][3])[0, 1]) > 0.95
    assert len(res.peaks) == 1 + len(runs) and (res.scores.r > 0.1).all()     # mean over all channels
    assert res.coef["envelope"].shape == (len(runs), 16, 1, len(res.times))
    weights = res.trfs[(res.trfs.subject == "group") & (res.trfs.channel == str(channel))].weight.to_numpy()
    np.testing.assert_allclose(weights, res.coef["envelope"][:, channel, 0].mean(axis=0))


def test_default_channel_and_seeded_bootstrap(envelope_study):
    runs, acoustic, truth = envelope_study
    first = acoustic_trfs(runs, acoustic, sfreq=SFREQ, n_boot=200, random_state=4)
    again = acoustic_trfs(runs, acoustic, sfreq=SFREQ, n_boot=200, random_state=4)
    assert first.peaks.equals(again.peaks)
    # the largest group weight is on one of the channels the source loads most
    loads = np.abs(truth["topographies"][3])
    assert loads[int(first.peaks.channel.iloc[0])] > np.quantile(loads, 0.7)


def test_errors_name_the_bad_value(envelope_study):
    runs, acoustic, _ = envelope_study
    with pytest.raises(InputError, match=r"Invalid value for 'channel': got 'Cz'; allowed values are '0', '1'"):
        acoustic_trfs(runs, acoustic, sfreq=SFREQ, channel="Cz")
    with pytest.raises(InputError, match=r"peak_window \(0.6, 0.8\) s holds no lag of the window -0.1..0.5 s"):
        acoustic_trfs(runs, acoustic, sfreq=SFREQ, peak_window=(0.6, 0.8))
    with pytest.raises(InputError, match=r"acoustic\['stim0'\] has no space 'mel'; it has \['envelope'\]"):
        acoustic_trfs(runs, acoustic, sfreq=SFREQ, spaces=["mel"])
