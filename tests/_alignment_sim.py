"""Small plain-array studies with planted feature responses, for the alignment tests."""

import numpy as np
from scipy import signal, sparse

SFREQ = 64.0


def kernel(times):
    """P1-N1-P2 shaped response (negative trough at 100 ms, positive peak at 180 ms)."""
    comps = ((0.05, 0.012, 0.5), (0.10, 0.02, -1.0), (0.18, 0.03, 0.7))
    return sum(a * np.exp(-((times - lat) ** 2) / (2 * w**2)) for lat, w, a in comps)


def bursty_features(rng, n_times, n_features, rate_hz, sfreq=SFREQ):
    """Sparse (T, F) features: Poisson bursts of 1-3 samples, gamma amplitudes."""
    rows, cols, vals = [], [], []
    for f in range(n_features):
        rate = rate_hz[f] if np.ndim(rate_hz) else rate_hz
        starts = rng.choice(n_times, size=rng.poisson(rate * n_times / sfreq), replace=False)
        for s in starts:
            length = rng.integers(1, 4)
            idx = np.arange(s, min(s + length, n_times))
            rows.extend(idx)
            cols.extend([f] * len(idx))
            vals.extend([rng.gamma(2.0, 0.5)] * len(idx))
    x = sparse.coo_array((vals, (rows, cols)), shape=(n_times, n_features)).tocsr()
    x.sum_duplicates()
    return x


def make_study(*, n_subjects=8, n_runs=5, run_s=60.0, n_features=20, planted=(0, 1),
               planted_channels=(0, 1, 2), n_channels=6, gain=1.0, snr=0.3, space_gain=None,
               envelope_gain=0.0, rate_hz=2.0, seed=0, sfreq=SFREQ):
    """Subjects x runs of (eeg, features); planted features drive ``planted_channels``.

    Stimuli (feature matrices) are shared by all subjects, as in a listening study.
    ``envelope_gain`` plants a response to a dense 'envelope' regressor returned in
    the truth (for variance partitioning); ``snr`` scales the planted signal against
    unit-variance noise (low-pass pink-ish).
    """
    rng = np.random.default_rng(seed)
    n_times = int(run_s * sfreq)
    stim = [bursty_features(rng, n_times, n_features, rate_hz, sfreq) for _ in range(n_runs)]
    env = [signal.lfilter([1.0], [1, -0.9], rng.standard_normal(n_times)) for _ in range(n_runs)]
    env = [(e - e.mean()) / e.std() for e in env]
    k_times = np.arange(int(0.4 * sfreq)) / sfreq
    kern = kernel(k_times)
    topo = np.zeros(n_channels)
    topo[list(planted_channels)] = 1.0
    b, a = signal.butter(2, 12 / (sfreq / 2))
    data = {}
    for s in range(n_subjects):
        runs = []
        subj_gain = gain * np.exp(rng.normal(0, 0.2))
        for r in range(n_runs):
            drive = np.zeros(n_times)
            for f in planted:
                col = stim[r][:, [f]].toarray()[:, 0]
                drive += np.convolve(col, kern)[:n_times]
            if envelope_gain:
                drive_env = envelope_gain * np.convolve(env[r], kern)[:n_times]
            else:
                drive_env = 0.0
            sig = subj_gain * drive + drive_env
            noise = signal.lfilter(b, a, rng.standard_normal((n_times, n_channels)), axis=0)
            noise /= noise.std(axis=0)
            eeg = snr * sig[:, None] * topo[None, :] + noise
            runs.append((eeg, stim[r]))
        data[f"s{s + 1:02d}"] = runs
    truth = {"planted": list(planted), "channels": list(planted_channels), "kernel": kern,
             "kernel_times": k_times, "lag_min": k_times[np.argmin(kern)],
             "lag_max": k_times[np.argmax(kern)], "envelope": env, "sfreq": sfreq}
    return data, truth
