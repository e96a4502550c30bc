"""A realistic EEG simulator with planted feature responses, written as BIDS.

Subjects "listen" to a sequence of stimuli in one recording each; every subject hears
the same stimuli, as in a listening study. The EEG is the sum over planted features
of (feature * TRF) projected to the scalp through an MNE forward model on a
spherical head (discrete dipoles, a standard montage; nothing is downloaded),
optionally plus an auditory response to acoustic time series (e.g. the envelope)
from a bilateral pair of auditory-cortex dipoles, plus 1/f background from random
dipoles, alpha bursts, eye blinks on frontal channels, line noise, channel-specific
noise and a few bad channels. Gains, latencies, SNR and clock drift vary per
subject. Triggers mark each stimulus onset and end.

:func:`simulate_recordings` returns the recordings in memory (studies of many
datasets); :func:`simulate_dataset` writes the same recordings as BIDS with the
ground truth beside them as JSON, and a manifest YAML that validates with
:func:`sae_eeg.manifests.load_manifest`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path

import mne
import numpy as np
import soundfile
from scipy.fft import irfft, next_fast_len, rfft, rfftfreq
from scipy.signal import fftconvolve

from .._check import _check_option, _check_range, _ensure_int, _soft_import, _validate_type
from .._docs import fill_doc
from .._io import provenance, write_json_atomic
from ..audio import Audio, file_hash
from ..errors import InputError, OutputExistsError
from ..manifests import Manifest
from ..trajectories import FeatureTrajectory, TimeSeries, resample_dense

logger = logging.getLogger(__name__)

#: BIDS data formats the simulator writes, with their file extensions.
FORMATS = {"BrainVision": ".vhdr", "EDF": ".edf", "EEGLAB": ".set"}
TASK = "listening"
END_CODE_OFFSET = 100
_UV = 1e-6


@dataclasses.dataclass(frozen=True)
class SimulatedDataset:
    """Where a simulated dataset was written.

    Attributes
    ----------
    root : pathlib.Path
        The BIDS root.
    manifest_path : pathlib.Path
        ``root / "manifest.yaml"``.
    truth_path : pathlib.Path
        ``root / "ground_truth.json"``.
    truth : dict
        The ground truth (the JSON's content).
    """

    root: Path
    manifest_path: Path
    truth_path: Path
    truth: dict


def random_features(duration, *, n_features=16, sfreq=50.0, rate=1.0, random_state=None):
    """Sparse bursty feature trajectories (a stand-in for SAE features).

    Each feature switches on at Poisson times (``rate`` per second) for 2-10 frames
    with a gamma-distributed amplitude.

    Parameters
    ----------
    duration : float
        Length, s.
    n_features : int
        Number of features F. Default 16.
    sfreq : float
        Frame rate, Hz. Default 50.
    rate : float
        Bursts per second per feature. Default 1.
    random_state : int | numpy.random.Generator | None
        Seed or generator.

    Returns
    -------
    trajectory : FeatureTrajectory, shape (floor(duration * sfreq), n_features)
    """
    rng = np.random.default_rng(random_state)
    n_times = int(np.floor(duration * sfreq))
    data = np.zeros((n_times, n_features), np.float32)
    for f in range(n_features):
        starts = rng.choice(n_times, size=rng.poisson(rate * duration), replace=True)
        for s in starts:
            data[s:s + rng.integers(2, 11), f] += rng.gamma(2.0, 0.5)
    return FeatureTrajectory.from_dense(data, sfreq=sfreq)


#: (latency s, width s, amplitude) of the P1, N1 and P2 of a planted feature response.
FEATURE_COMPONENTS = ((0.05, 0.012, 0.5), (0.10, 0.02, -1.0), (0.18, 0.03, 0.7))
#: The same for the auditory response to acoustic series: a dominant N1, as in envelope TRFs.
ACOUSTIC_COMPONENTS = ((0.05, 0.012, 0.4), (0.10, 0.025, -1.0), (0.19, 0.035, 0.45))


def _trf(times, latency_scale, shift, comps=FEATURE_COMPONENTS):
    """P1-N1-P2 shaped response (unit peak) on ``times`` s, scaled and shifted in latency."""
    t = times - shift
    return sum(a * np.exp(-((t - lat * latency_scale) ** 2) / (2 * w**2)) for lat, w, a in comps)


def _forward_topographies(info, sphere, pos_rr, ori_nn):
    """Scalp topography (C,) of each fixed-orientation dipole, volts per A*m."""
    src = mne.setup_volume_source_space(pos={"rr": pos_rr, "nn": ori_nn}, verbose=False)
    fwd = mne.make_forward_solution(info, trans=None, src=src, bem=sphere, eeg=True, meg=False,
                                    mindist=0.0, verbose=False)
    gain = fwd["sol"]["data"].reshape(len(info.ch_names), len(pos_rr), 3)
    return np.einsum("cnk,nk->nc", gain, ori_nn)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _in_brain(sphere, directions, fractions):
    """Positions at ``fractions`` of the innermost sphere radius along ``directions``."""
    inner = min(layer["rad"] for layer in sphere["layers"])
    return sphere["r0"] + _unit(np.atleast_2d(directions)) * inner * np.asarray(fractions)[:, None]


def _pink(rng, n_sources, n_times, sfreq):
    n_fft = next_fast_len(n_times, real=True)
    spec = rfft(rng.standard_normal((n_sources, n_fft)), axis=1)
    freqs = rfftfreq(n_fft, 1.0 / sfreq)
    spec /= np.sqrt(np.maximum(freqs, freqs[1]))
    noise = irfft(spec, n=n_fft, axis=1)[:, :n_times]
    return noise / noise.std(axis=1, keepdims=True)


def _bursts(rng, n_times, sfreq, freq, rate, length):
    """Sinusoid at ``freq`` Hz gated by Hann bursts (``rate`` per s, ``length`` s)."""
    gate = np.zeros(n_times)
    width = int(length * sfreq)
    for s in rng.integers(0, max(n_times - width, 1), size=rng.poisson(rate * n_times / sfreq)):
        gate[s:s + width] += np.hanning(width)[: n_times - s]
    phase = 2 * np.pi * np.cumsum(freq + 0.5 * rng.standard_normal(n_times) / sfreq * 10) / sfreq
    return np.minimum(gate, 1.0) * np.sin(phase)


def _blinks(rng, n_times, sfreq):
    t = np.arange(int(0.4 * sfreq)) / sfreq
    shape = (t / 0.1) ** 2 * np.exp(-t / 0.05)
    shape /= shape.max()
    train = np.zeros(n_times)
    for s in rng.integers(0, n_times, size=rng.poisson(0.25 * n_times / sfreq)):
        train[s] += rng.uniform(80, 150)
    return fftconvolve(train, shape)[:n_times] * _UV


def _planted_columns(features, planted, sfreq, n_times):
    """Planted feature columns of one stimulus at the EEG rate, dense (n_times, P)."""
    if not planted:
        return np.zeros((n_times, 0))
    if isinstance(features, FeatureTrajectory):
        sub = features.select(planted).resample(sfreq, tmin=0.0, n_times=n_times)
        return sub.data.toarray().astype(np.float64)
    if isinstance(features, TimeSeries):
        cols = [features.names.index(p) if isinstance(p, str) else int(p) for p in planted]
        return resample_dense(features.data[:, cols], sfreq=features.sfreq, new_sfreq=sfreq,
                              tmin=features.tmin, new_tmin=0.0, n_times=n_times)
    raise InputError(
        f"features must be FeatureTrajectory or TimeSeries, got {type(features).__name__}."
    )


def _unit_max_columns(columns):
    """Each column divided by its largest absolute value over all stimuli, and those maxima."""
    col_max = np.max([np.abs(c).max(axis=0, initial=0.0) for c in columns.values()], axis=0)
    scaled = {n: c / np.where(col_max > 0, col_max, 1.0) for n, c in columns.items()}
    return scaled, col_max


def _acoustic_columns(acoustic, names, durations, sfreq):
    """Acoustic time series of every stimulus at the EEG rate (n_times, K), unit maximum."""
    _validate_type(acoustic, dict, "acoustic")
    missing = [n for n in names if n not in acoustic]
    if missing:
        raise InputError(f"acoustic has no entry for stimuli {missing}; it has {sorted(acoustic)}.")
    columns = {}
    for name, dur in zip(names, durations):
        series = acoustic[name]
        _validate_type(series, TimeSeries, f"acoustic[{name!r}]")
        columns[name] = resample_dense(series.data, sfreq=series.sfreq, new_sfreq=sfreq,
                                       tmin=series.tmin, new_tmin=0.0,
                                       n_times=int(np.floor(dur * sfreq)))
    widths = {c.shape[1] for c in columns.values()}
    if len(widths) != 1:
        raise InputError(f"acoustic series must have the same columns for every stimulus; got "
                         f"{sorted(widths)} columns.")
    return columns


def _check_stimuli(stimuli, features):
    names, durations, audios = [], [], {}
    for item in stimuli:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise InputError(f"each stimulus must be (name, Audio or duration), got {item!r:.80}.")
        name, what = item
        _validate_type(name, str, "stimulus name")
        if name in names:
            raise InputError(f"duplicate stimulus name {name!r}.")
        if isinstance(what, Audio):
            audios[name] = what
            durations.append(len(what.waveform) / what.sfreq)
        else:
            _validate_type(what, "numeric", f"duration of stimulus {name!r}")
            _check_range(f"duration of stimulus {name!r}", what, 0, None, low_inclusive=False)
            durations.append(float(what))
        names.append(name)
    if not names:
        raise InputError("stimuli is empty; give at least one (name, Audio or duration).")
    if features is not None:
        missing = [n for n in names if n not in features]
        if missing:
            raise InputError(f"features has no entry for stimuli {missing}; it has {sorted(features)}.")
    return names, durations, audios


@contextlib.contextmanager
def _staging_dir(out_dir, overwrite):
    """A temporary sibling folder renamed onto ``out_dir`` when the block succeeds."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputExistsError(
            f"output folder {str(out_dir)!r} exists; pass overwrite=True to replace it."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


class _Head:
    """Montage, channel info and forward topographies shared by all subjects.

    ``acoustic_rng`` (given when acoustic responses are simulated) places the two
    auditory-cortex dipoles; the other draws come from ``rng`` in a fixed order, so
    the feature responses and the noise do not change when acoustic responses are
    added.
    """

    def __init__(self, montage, sfreq, n_planted, line_freq, rng, acoustic_rng=None):
        self.montage = mne.channels.make_standard_montage(montage)
        names = [ch for ch in self.montage.ch_names if ch not in ("A1", "A2", "M1", "M2")]
        self.info = mne.create_info(names, sfreq, "eeg")
        self.info.set_montage(self.montage, on_missing="ignore", verbose=False)
        self.info["line_freq"] = line_freq
        sphere = mne.make_sphere_model("auto", "auto", self.info, verbose=False)
        # planted sources alternate between the left and right auditory cortex (temporal)
        sides = np.array([[-1.0, 0.1, 0.25] if i % 2 == 0 else [1.0, 0.1, 0.25]
                          for i in range(n_planted)]).reshape(-1, 3) + rng.normal(0, 0.1, (n_planted, 3))
        planted_rr = _in_brain(sphere, sides, np.full(n_planted, 0.7))
        planted_nn = _unit(np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.3, (n_planted, 3)))
        bg_rr = _in_brain(sphere, rng.normal(size=(24, 3)) + [0, 0, 0.5], rng.uniform(0.3, 0.8, 24))
        bg_nn = _unit(rng.normal(size=(24, 3)))
        alpha_rr = _in_brain(sphere, [[0.0, -1.0, 0.3]], [0.7])
        alpha_nn = _unit(np.array([[0.0, -1.0, 0.5]]))
        rr = [planted_rr, bg_rr, alpha_rr]
        nn = [planted_nn, bg_nn, alpha_nn]
        if acoustic_rng is not None:
            # one dipole in each auditory cortex, both pointing up: a fronto-central N1
            pair = np.array([[-1.0, 0.1, 0.2], [1.0, 0.1, 0.2]]) + acoustic_rng.normal(0, 0.05, (2, 3))
            rr.append(_in_brain(sphere, pair, np.full(2, 0.7)))
            nn.append(_unit(np.array([0.0, 0.0, 1.0]) + acoustic_rng.normal(0, 0.1, (2, 3))))
        rr, nn = np.vstack(rr), np.vstack(nn)
        topo = _forward_topographies(self.info, sphere, rr, nn)
        n_main = n_planted + 25
        self.acoustic_rr, self.acoustic_nn = rr[n_main:], nn[n_main:]
        self.acoustic_topo = None
        if len(topo) > n_main:
            pair_topo = topo[n_main:].sum(axis=0)
            self.acoustic_topo = pair_topo / np.abs(pair_topo).max()
        topo = topo[:n_main] / np.abs(topo[:n_main]).max(axis=1, keepdims=True)  # unit peak
        self.planted_topo = topo[:n_planted]
        self.planted_rr, self.planted_nn = planted_rr, planted_nn
        self.bg_topo, self.alpha_topo = topo[n_planted:-1], topo[-1]
        pos = np.array([self.info["chs"][i]["loc"][:3] for i in range(len(names))])
        frontal = np.array([0.0, 0.085, 0.0])
        self.blink_topo = np.exp(-np.linalg.norm(pos - frontal, axis=1) / 0.03)


@dataclasses.dataclass(frozen=True)
class SimulatedRecordings:
    """Simulated recordings in memory (what :func:`simulate_dataset` writes as BIDS).

    Attributes
    ----------
    raws : dict of str -> mne.io.RawArray
        Per subject id (``"01"``, ...) its continuous recording, volts.
    events : dict of str -> ndarray of int, shape (n_events, 3)
        Per subject the triggers (MNE events): code ``i + 1`` at the onset of
        stimulus ``i`` and ``END_CODE_OFFSET + i + 1`` at its end.
    event_id : dict of str -> int
        ``"onset/<stimulus>"`` and ``"end/<stimulus>"`` codes.
    truth : dict
        The ground truth (see :func:`simulate_dataset`).
    """

    raws: dict
    events: dict
    event_id: dict
    truth: dict


@fill_doc
def simulate_recordings(stimuli, *, n_subjects=4, features=None, planted=None, acoustic=None,
                        acoustic_snr_db=0.0, sfreq=256.0, montage="biosemi64", snr_db=-5.0,
                        snr_spread_db=3.0, latency_jitter=0.01, gain_spread=0.2, n_bad_channels=(1, 3),
                        clock_drift_ppm=0.0, gap=(2.0, 4.0), line_freq=50.0, random_state=None):
    """Simulate subjects listening to ``stimuli``, in memory, with the ground truth.

    Parameters
    ----------
    stimuli : sequence of (str, Audio or float)
        Stimulus names with their audio or duration in s, in the order they are played.
        Every subject hears every stimulus.
    n_subjects : int
        Number of subjects. Default 4.
    features : dict of str -> FeatureTrajectory or TimeSeries | None
        Feature time series of each stimulus (time 0 = stimulus start), any rate.
        Default: :func:`random_features` (16 features at 50 Hz).
    planted : sequence of int | None
        Feature ids (FeatureTrajectory) or column names/indices (TimeSeries) given a
        brain response. Default the first three features; ``[]`` plants none (a null
        dataset; combine with ``acoustic`` for acoustic responses only).
    acoustic : dict of str -> TimeSeries | None
        Acoustic time series of each stimulus (e.g. :func:`sae_eeg.trajectories.envelope`),
        any rate, time 0 = stimulus start. Each column, divided by its maximum over the
        stimuli, drives the same auditory response (:data:`ACOUSTIC_COMPONENTS`: P1, N1
        and P2 at 50, 100 and 190 ms, shifted by the subject's latency shift) from two auditory-cortex
        dipoles, scaled per subject to ``acoustic_snr_db``. Default None (no acoustic
        response).
    acoustic_snr_db : float
        Mean SNR of the acoustic response (acoustic signal variance over the same
        background as ``snr_db``), dB; per subject within ``+- snr_spread_db``.
    sfreq : float
        EEG sampling rate, Hz. Default 256.
    montage : str
        MNE built-in montage (e.g. ``"standard_1020"``, ``"biosemi64"``).
    snr_db : float
        Mean SNR: planted signal variance over 1/f + sensor background variance,
        averaged over good channels, in dB. Default -5.
    snr_spread_db : float
        Per-subject SNR is drawn uniformly within ``snr_db +- snr_spread_db``.
    latency_jitter : float
        Standard deviation of the per-subject TRF latency shift, s.
    gain_spread : float
        Standard deviation of the log per-subject, per-feature gains.
    n_bad_channels : (int, int)
        Range (inclusive) of the number of bad channels per subject.
    clock_drift_ppm : float
        Largest per-subject EEG clock error, parts per million (drawn uniformly in
        +-). End triggers let the alignment correct it. Default 0.
    gap : (float, float)
        Range of the silence before each stimulus, s.
    line_freq : float
        Line-noise frequency, Hz.
    %(random_state)s

    Returns
    -------
    recordings : SimulatedRecordings

    Raises
    ------
    InputError
        Bad stimuli, features, acoustic series or parameters.

    Notes
    -----
    The draws of the feature responses and of the noise do not depend on
    ``acoustic``: the acoustic response draws from a generator spawned from
    ``random_state``, so adding it leaves everything else identical.
    """
    n_subjects = _ensure_int(n_subjects, "n_subjects")
    _check_range("n_subjects", n_subjects, 1)
    _check_option("montage", montage, mne.channels.get_builtin_montages())
    sfreq = float(_check_range("sfreq", sfreq, 0, None, low_inclusive=False))
    names, durations, _ = _check_stimuli(stimuli, features)
    for name, pair, low in (("n_bad_channels", n_bad_channels, 0), ("gap", gap, 0.0)):
        if len(pair) != 2 or not low <= pair[0] <= pair[1]:
            raise InputError(f"{name} must be a range (low, high) with {low} <= low <= high, "
                             f"got {pair!r}.")
    rng = np.random.default_rng(random_state)
    acoustic_rng = None if acoustic is None else rng.spawn(1)[0]   # leaves rng's stream as it is
    if features is None:
        features = {n: random_features(d, random_state=rng) for n, d in zip(names, durations)}
    first = features[names[0]]
    default_planted = list(first.feature_ids[:3]) if isinstance(first, FeatureTrajectory) \
        else list(range(min(3, first.data.shape[1])))
    planted = default_planted if planted is None else list(planted)
    columns, col_max = _unit_max_columns(
        {n: _planted_columns(features[n], planted, sfreq, int(np.floor(d * sfreq)))
         for n, d in zip(names, durations)})
    acoustic_columns, acoustic_max = (None, None) if acoustic is None else _unit_max_columns(
        _acoustic_columns(acoustic, names, durations, sfreq))
    head = _Head(montage, sfreq, len(planted), line_freq, rng, acoustic_rng)
    trf_times = np.arange(int(0.5 * sfreq)) / sfreq
    latency_scales = rng.uniform(0.8, 1.2, len(planted))
    truth = {
        "sfreq": sfreq, "montage": montage, "task": TASK,
        "feature_max": col_max.tolist(),
        "ch_names": list(head.info.ch_names), "stimuli": dict(zip(names, durations)),
        "snr_definition": "planted signal variance / (1/f + sensor noise) variance, good "
                          "channels, dB",
        "model": "eeg[c, t] = sum_j topography[j][c] * (trfs[j] conv feature_j / feature_max[j])"
                 "[t - onset] + acoustic topography[c] * sum_k (acoustic_trf conv acoustic_k / "
                 "acoustic max_k)[t - onset] + noise; trf and trfs lags are trf_times (s)",
        "planted": [
            {"feature": p if isinstance(p, str) else int(p), "trf_times": trf_times.tolist(),
             "trf": _trf(trf_times, s, 0.0).tolist(), "latency_scale": float(s),
             "dipole_pos_m": rr.tolist(), "dipole_ori": nn.tolist(), "topography": topo.tolist()}
            for p, s, rr, nn, topo in zip(planted, latency_scales, head.planted_rr,
                                          head.planted_nn, head.planted_topo)
        ],
        "acoustic": None if acoustic is None else {
            "names": list(acoustic[names[0]].names), "max": acoustic_max.tolist(),
            "snr_db": float(acoustic_snr_db), "trf_times": trf_times.tolist(),
            "trf": _trf(trf_times, 1.0, 0.0, ACOUSTIC_COMPONENTS).tolist(),
            "topography": head.acoustic_topo.tolist(),
            "dipole_pos_m": head.acoustic_rr.tolist(), "dipole_ori": head.acoustic_nn.tolist(),
        },
        "subjects": {},
    }
    acoustic_setup = None if acoustic is None else (acoustic_columns, acoustic_snr_db, acoustic_rng)
    raws, all_events = {}, {}
    event_id = {f"onset/{n}": i + 1 for i, n in enumerate(names)}
    event_id.update({f"end/{n}": END_CODE_OFFSET + i + 1 for i, n in enumerate(names)})
    for s in range(n_subjects):
        sub = f"{s + 1:02d}"
        data_CT, events, sub_truth = _simulate_subject(
            head, names, durations, columns, trf_times, latency_scales, rng,
            snr_db=snr_db, snr_spread_db=snr_spread_db, latency_jitter=latency_jitter,
            gain_spread=gain_spread, n_bad_channels=n_bad_channels,
            clock_drift_ppm=clock_drift_ppm, gap=gap, line_freq=line_freq, acoustic=acoustic_setup,
        )
        raw = mne.io.RawArray(data_CT, head.info.copy(), verbose=False)
        raw.set_meas_date(None)
        raws[sub], all_events[sub] = raw, events
        truth["subjects"][sub] = sub_truth
    return SimulatedRecordings(raws, all_events, event_id, truth)


@fill_doc
def simulate_dataset(out_dir, stimuli, *, n_subjects=4, features=None, planted=None, acoustic=None,
                     acoustic_snr_db=0.0, sfreq=256.0, montage="biosemi64", format="BrainVision",
                     snr_db=-5.0, snr_spread_db=3.0, latency_jitter=0.01, gain_spread=0.2,
                     n_bad_channels=(1, 3), clock_drift_ppm=0.0, gap=(2.0, 4.0),
                     line_freq=50.0, overwrite=False, random_state=None):
    """Write a BIDS EEG dataset of subjects listening to ``stimuli``, with ground truth.

    The recordings are those of :func:`simulate_recordings` with the same arguments.

    Parameters
    ----------
    out_dir : path-like
        Folder of the BIDS dataset (written atomically: a temporary sibling is
        renamed when everything succeeded; nothing is left on failure).
    stimuli : sequence of (str, Audio or float)
        Stimulus names with their audio (written to ``stimuli/<name>.wav``) or
        duration in s.
    n_subjects, features, planted, acoustic, acoustic_snr_db, sfreq, montage
        See :func:`simulate_recordings`.
    format : "BrainVision" | "EDF" | "EEGLAB"
        BIDS data format (mne-bids converts EEG to these only).
    snr_db, snr_spread_db, latency_jitter, gain_spread, n_bad_channels, clock_drift_ppm, gap, line_freq
        See :func:`simulate_recordings`.
    overwrite : bool
        Replace an existing ``out_dir``.
    %(random_state)s

    Returns
    -------
    dataset : SimulatedDataset

    Raises
    ------
    OutputExistsError
        ``out_dir`` exists and ``overwrite`` is False.
    InputError
        Bad stimuli, features or parameters.
    """
    mne_bids = _soft_import("mne_bids", "writing the simulated BIDS dataset", pip_name="mne-bids")
    _validate_type(out_dir, "path-like", "out_dir")
    _check_option("format", format, FORMATS)
    names, durations, audios = _check_stimuli(stimuli, features)
    if Path(out_dir).exists() and not overwrite:   # before the expensive simulation
        raise OutputExistsError(
            f"output folder {str(out_dir)!r} exists; pass overwrite=True to replace it."
        )
    rec = simulate_recordings(
        stimuli, n_subjects=n_subjects, features=features, planted=planted, acoustic=acoustic,
        acoustic_snr_db=acoustic_snr_db, sfreq=sfreq, montage=montage, snr_db=snr_db,
        snr_spread_db=snr_spread_db, latency_jitter=latency_jitter, gain_spread=gain_spread,
        n_bad_channels=n_bad_channels, clock_drift_ppm=clock_drift_ppm, gap=gap, line_freq=line_freq,
        random_state=random_state)
    truth = {**rec.truth, "format": format}
    ext = FORMATS[format]
    with _staging_dir(out_dir, overwrite) as tmp:
        subjects = []
        for sub, raw in rec.raws.items():
            bids_path = mne_bids.BIDSPath(subject=sub, task=TASK, datatype="eeg", root=tmp,
                                          extension=ext, suffix="eeg")
            mne_bids.write_raw_bids(raw, bids_path, events=rec.events[sub], event_id=rec.event_id,
                                    format=format, allow_preload=True, overwrite=True,
                                    verbose=False)
            subjects.append((sub, bids_path.fpath.relative_to(tmp)))
        stim_entries = {}
        for name, dur in zip(names, durations):
            entry = {"duration": dur}
            if name in audios:
                rel = Path("stimuli") / f"{name}.wav"
                (tmp / rel.parent).mkdir(exist_ok=True)
                soundfile.write(tmp / rel, audios[name].waveform, int(round(audios[name].sfreq)))
                entry.update(path=str(rel), sha256=file_hash(tmp / rel))
            stim_entries[name] = entry
        manifest = _manifest(tmp, subjects, names, stim_entries, montage, truth["sfreq"])
        manifest.to_yaml(tmp / "manifest.yaml")
        truth["provenance"] = provenance({"n_subjects": n_subjects, "sfreq": truth["sfreq"],
                                          "format": format, "snr_db": snr_db,
                                          "acoustic_snr_db": None if acoustic is None else acoustic_snr_db,
                                          "clock_drift_ppm": clock_drift_ppm})
        write_json_atomic(tmp / "ground_truth.json", truth)
        (tmp / ".bidsignore").write_text("manifest.yaml\nground_truth.json\n")
    out_dir = Path(out_dir)
    return SimulatedDataset(out_dir, out_dir / "manifest.yaml", out_dir / "ground_truth.json",
                            truth)



def planted_acoustic_peak(truth, *, sfreq, l_freq=1.0, h_freq=8.0, window=(0.03, 0.3)):
    """Where the planted auditory response peaks, as a TRF of the preprocessed EEG should find it.

    The response is the subjects' planted auditory TRF (the mean of their unit-peak
    kernels) seen through the EEG's band-pass, on the lag grid of ``sfreq``.

    Parameters
    ----------
    truth : dict
        The ground truth of :func:`simulate_recordings` or :func:`simulate_dataset`
        (``ground_truth.json``), simulated with ``acoustic``.
    sfreq : float
        Rate of the analysis (Hz): the lag grid.
    l_freq, h_freq : float
        The band-pass the EEG went through. Default 1-8 Hz.
    window : (float, float)
        Lags (s) searched for the peak, as the acoustic TRFs' ``peak_window``.

    Returns
    -------
    channel : str
        The channel of the auditory dipoles' largest loading.
    latency : float
        Lag (s) of the largest absolute response within ``window``.
    """
    acoustic = truth.get("acoustic")
    if acoustic is None:
        raise InputError("the ground truth has no acoustic response: simulate with acoustic=...")
    topo = np.asarray(acoustic["topography"])
    channel = int(np.argmax(np.abs(topo)))
    kernel = np.mean([np.asarray(s["acoustic_trf"]) / np.abs(s["acoustic_trf"]).max()
                      for s in truth["subjects"].values()], axis=0)
    pad = np.zeros(4 * int(truth["sfreq"]))
    seen = mne.filter.filter_data(np.concatenate([pad, kernel, pad]), truth["sfreq"], l_freq, h_freq,
                                  verbose="error")[len(pad):len(pad) + len(kernel)]
    grid = np.arange(0.0, acoustic["trf_times"][-1], 1 / sfreq)
    on_grid = np.interp(grid, acoustic["trf_times"], seen)
    inside = np.flatnonzero((grid >= window[0]) & (grid <= window[1]))
    return truth["ch_names"][channel], float(grid[inside[np.argmax(np.abs(on_grid[inside]))]])

def _manifest(root, subjects, names, stim_entries, montage, sfreq):
    subject_entries = []
    for sub, rel in subjects:
        eeg = {"path": str(rel), "format": "bids", "sha256": file_hash(root / rel), "sfreq": sfreq}
        runs = [{"id": name, "eeg": eeg, "stimulus": name,
                 "onset": {"annotation": f"onset/{name}"}, "end": {"annotation": f"end/{name}"}}
                for name in names]
        subject_entries.append({"id": sub, "runs": runs})
    return Manifest.model_validate({
        "name": "sae-eeg simulated dataset",
        "description": "EEG simulated by sae_eeg.eeg.simulate_dataset; ground truth in "
                       "ground_truth.json",
        "licence": "CC0-1.0", "source_url": "https://github.com/sae-eeg/sae-eeg (generated)",
        "root": ".", "montage": montage, "stimuli": stim_entries, "subjects": subject_entries,
    })


def _response(columns, trfs, topo_KC, gains):
    """Scalp response (C, T + L - 1) to unit-maximum columns (T, K), each through its TRF and topography.

    The response outlasts the stimulus by the TRF's length (the brain keeps responding
    to the last sounds after the stimulus ends).
    """
    n_T = columns.shape[0] + trfs.shape[1] - 1
    resp = np.zeros((topo_KC.shape[1], n_T))
    for j, g in enumerate(gains):
        resp += g * np.outer(topo_KC[j], fftconvolve(columns[:, j], trfs[j]))
    return resp


def _place(pieces, n_ch, n_times):
    signal = np.zeros((n_ch, n_times))
    for start, resp in pieces:
        stop = min(n_times, start + resp.shape[1])
        signal[:, start:stop] += resp[:, :stop - start]
    return signal


def _snr_scale(signal, p_bg, good, snr_db):
    """Factor bringing the mean variance of ``signal`` on good channels to ``snr_db`` over ``p_bg``."""
    p_sig = signal[good].var(axis=1).mean()
    return np.sqrt(p_bg / p_sig * 10 ** (snr_db / 10.0)) if p_sig > 0 else 0.0


def _simulate_subject(head, names, durations, columns, trf_times, latency_scales, rng, *,
                      snr_db, snr_spread_db, latency_jitter, gain_spread, n_bad_channels,
                      clock_drift_ppm, gap, line_freq, acoustic=None):
    sfreq = head.info["sfreq"]
    n_ch = len(head.info.ch_names)
    drift = rng.uniform(-clock_drift_ppm, clock_drift_ppm) * 1e-6
    shift = rng.normal(0.0, latency_jitter)
    gains = np.exp(rng.normal(0.0, gain_spread, len(latency_scales)))
    snr = snr_db + rng.uniform(-snr_spread_db, snr_spread_db)
    trfs = np.array([_trf(trf_times, s, shift) for s in latency_scales]).reshape(-1, len(trf_times))
    if acoustic is not None:
        acoustic_columns, acoustic_snr_db, acoustic_rng = acoustic
        acoustic_gain = float(np.exp(acoustic_rng.normal(0.0, gain_spread)))
        acoustic_snr = acoustic_snr_db + acoustic_rng.uniform(-snr_spread_db, snr_spread_db)
        acoustic_trf = _trf(trf_times, 1.0, shift, ACOUSTIC_COMPONENTS)
    # lay out the recording: gap, stimulus, gap, stimulus, ..., final gap
    pieces, acoustic_pieces, onsets, cursor = [], [], {}, 0
    for name, dur in zip(names, durations):
        cursor += int(rng.uniform(*gap) * sfreq)
        n_stim = int(round(dur * sfreq * (1 + drift)))
        responses = [(pieces, _response(columns[name], trfs, head.planted_topo, gains))]
        if acoustic is not None:
            n_k = acoustic_columns[name].shape[1]
            responses.append((acoustic_pieces, _response(
                acoustic_columns[name], np.tile(acoustic_trf, (n_k, 1)),
                np.tile(head.acoustic_topo, (n_k, 1)), np.ones(n_k))))
        for where, resp in responses:
            if drift != 0.0:  # the EEG clock runs at sfreq * (1 + drift) in real time
                resp = resample_dense(resp.T, sfreq=sfreq, new_sfreq=sfreq * (1 + drift)).T
            where.append((cursor, resp))
        onsets[name] = {"sample": cursor, "end_sample": cursor + n_stim}
        cursor += n_stim
    n_times = cursor + int(rng.uniform(*gap) * sfreq)
    if float(sfreq).is_integer():  # whole seconds: EDF writes 1 s records without padding
        n_times = int(np.ceil(n_times / sfreq) * sfreq)
    signal = _place(pieces, n_ch, n_times)
    background = head.bg_topo.T @ _pink(rng, len(head.bg_topo), n_times, sfreq)
    background *= 10 * _UV / background.std()
    background += rng.uniform(0.5, 1.5, (n_ch, 1)) * _UV * rng.standard_normal((n_ch, n_times))
    n_bad = int(rng.integers(n_bad_channels[0], n_bad_channels[1] + 1))
    bad_idx = rng.choice(n_ch, size=n_bad, replace=False)
    good = np.setdiff1d(np.arange(n_ch), bad_idx)
    p_bg = background[good].var(axis=1).mean()
    scale = _snr_scale(signal, p_bg, good, snr)
    data = scale * signal + background
    if acoustic is not None:
        acoustic_signal = _place(acoustic_pieces, n_ch, n_times)
        acoustic_scale = _snr_scale(acoustic_signal, p_bg, good, acoustic_snr)
        data += acoustic_scale * acoustic_gain * acoustic_signal
    data += np.outer(head.alpha_topo, _bursts(rng, n_times, sfreq, 10.0, 0.2, 1.5)) * 8 * _UV
    data += np.outer(head.blink_topo, _blinks(rng, n_times, sfreq))
    t = np.arange(n_times) / sfreq
    line_amp = rng.uniform(0.5, 2.0, (n_ch, 1)) * _UV
    data += line_amp * np.sin(2 * np.pi * line_freq * t + rng.uniform(0, 2 * np.pi, (n_ch, 1)))
    kinds = rng.choice(["noisy", "flat", "drift"], size=n_bad)
    for i, kind in zip(bad_idx, kinds):
        if kind == "noisy":
            data[i] += rng.uniform(150, 250) * _UV * rng.standard_normal(n_times)
        elif kind == "flat":
            data[i] *= 1e-3
        else:
            data[i] += np.cumsum(rng.standard_normal(n_times)) * 5 * _UV
    events = []
    for i, name in enumerate(names):
        events.append([onsets[name]["sample"], 0, i + 1])
        events.append([onsets[name]["end_sample"], 0, END_CODE_OFFSET + i + 1])
    truth = {
        "snr_db": float(snr), "latency_shift_s": float(shift), "clock_drift": float(drift),
        "gains": gains.tolist(), "signal_scale": float(scale), "n_times": int(n_times),
        # response to a unit feature (after division by the feature's maximum, see
        # "feature_max"), at the peak channel of the topography, volts; (P, L)
        "trfs": (scale * gains[:, None] * trfs).tolist(),
        "bad_channels": [{"name": head.info.ch_names[i], "kind": str(k)}
                         for i, k in zip(bad_idx, kinds)],
        "onsets": onsets,
    }
    if acoustic is not None:
        # response to a unit acoustic column (after division by its maximum) at the
        # peak channel of the acoustic topography, volts; (L,)
        truth.update(acoustic_snr_db=float(acoustic_snr), acoustic_gain=acoustic_gain,
                     acoustic_trf=(acoustic_scale * acoustic_gain * acoustic_trf).tolist())
    return data, np.array(events, dtype=int), truth
