"""A realistic EEG simulator with planted feature responses, written as BIDS.

Subjects "listen" to a sequence of stimuli in one recording each. The EEG is the sum
over planted features of (feature * TRF) projected to the scalp through an MNE
forward model on a spherical head (discrete dipoles, a standard montage; nothing is
downloaded), plus 1/f background from random dipoles, alpha bursts, eye blinks on
frontal channels, line noise, channel-specific noise and a few bad channels. Gains,
latencies, SNR and clock drift vary per subject. Triggers (BIDS events) mark each
stimulus onset and end. The ground truth is written beside the data as JSON, and a
manifest YAML that validates with :func:`sae_eeg.manifests.load_manifest`.
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


def _trf(times, latency_scale, shift):
    """P1-N1-P2 shaped response (unit peak) on ``times`` s, scaled and shifted in latency."""
    comps = ((0.05, 0.012, 0.5), (0.10, 0.02, -1.0), (0.18, 0.03, 0.7))
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
    """Montage, channel info and forward topographies shared by all subjects."""

    def __init__(self, montage, sfreq, n_planted, line_freq, rng):
        self.montage = mne.channels.make_standard_montage(montage)
        names = [ch for ch in self.montage.ch_names if ch not in ("A1", "A2", "M1", "M2")]
        self.info = mne.create_info(names, sfreq, "eeg")
        self.info.set_montage(self.montage, on_missing="ignore", verbose=False)
        self.info["line_freq"] = line_freq
        sphere = mne.make_sphere_model("auto", "auto", self.info, verbose=False)
        # planted sources alternate between the left and right auditory cortex (temporal)
        sides = np.array([[-1.0, 0.1, 0.25] if i % 2 == 0 else [1.0, 0.1, 0.25]
                          for i in range(n_planted)]) + rng.normal(0, 0.1, (n_planted, 3))
        planted_rr = _in_brain(sphere, sides, np.full(n_planted, 0.7))
        planted_nn = _unit(np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.3, (n_planted, 3)))
        bg_rr = _in_brain(sphere, rng.normal(size=(24, 3)) + [0, 0, 0.5], rng.uniform(0.3, 0.8, 24))
        bg_nn = _unit(rng.normal(size=(24, 3)))
        alpha_rr = _in_brain(sphere, [[0.0, -1.0, 0.3]], [0.7])
        alpha_nn = _unit(np.array([[0.0, -1.0, 0.5]]))
        rr = np.vstack([planted_rr, bg_rr, alpha_rr])
        nn = np.vstack([planted_nn, bg_nn, alpha_nn])
        topo = _forward_topographies(self.info, sphere, rr, nn)
        topo /= np.abs(topo).max(axis=1, keepdims=True)  # unit peak: amplitudes set below
        self.planted_topo = topo[:n_planted]
        self.planted_rr, self.planted_nn = planted_rr, planted_nn
        self.bg_topo, self.alpha_topo = topo[n_planted:-1], topo[-1]
        pos = np.array([self.info["chs"][i]["loc"][:3] for i in range(len(names))])
        frontal = np.array([0.0, 0.085, 0.0])
        self.blink_topo = np.exp(-np.linalg.norm(pos - frontal, axis=1) / 0.03)


@fill_doc
def simulate_dataset(out_dir, stimuli, *, n_subjects=4, features=None, planted=None,
                     sfreq=256.0, montage="biosemi64", format="BrainVision",
                     snr_db=-5.0, snr_spread_db=3.0, latency_jitter=0.01, gain_spread=0.2,
                     n_bad_channels=(1, 3), clock_drift_ppm=0.0, gap=(2.0, 4.0),
                     line_freq=50.0, overwrite=False, random_state=None):
    """Write a BIDS EEG dataset of subjects listening to ``stimuli``, with ground truth.

    Parameters
    ----------
    out_dir : path-like
        Folder of the BIDS dataset (written atomically: a temporary sibling is
        renamed when everything succeeded; nothing is left on failure).
    stimuli : sequence of (str, Audio or float)
        Stimulus names with their audio (written to ``stimuli/<name>.wav``) or
        duration in s.
    n_subjects : int
        Number of subjects. Default 4.
    features : dict of str -> FeatureTrajectory or TimeSeries | None
        Feature time series of each stimulus (time 0 = stimulus start), any rate.
        Default: :func:`random_features` (16 features at 50 Hz).
    planted : sequence of int | None
        Feature ids (FeatureTrajectory) or column names/indices (TimeSeries) given a
        brain response. Default the first three features.
    sfreq : float
        EEG sampling rate, Hz. Default 256.
    montage : str
        MNE built-in montage (e.g. ``"standard_1020"``, ``"biosemi64"``).
    format : "BrainVision" | "EDF" | "EEGLAB"
        BIDS data format (mne-bids converts EEG to these only).
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
    n_subjects = _ensure_int(n_subjects, "n_subjects")
    _check_range("n_subjects", n_subjects, 1)
    _check_option("format", format, FORMATS)
    _check_option("montage", montage, mne.channels.get_builtin_montages())
    sfreq = float(_check_range("sfreq", sfreq, 0, None, low_inclusive=False))
    names, durations, audios = _check_stimuli(stimuli, features)
    for name, pair, low in (("n_bad_channels", n_bad_channels, 0), ("gap", gap, 0.0)):
        if len(pair) != 2 or not low <= pair[0] <= pair[1]:
            raise InputError(f"{name} must be a range (low, high) with {low} <= low <= high, "
                             f"got {pair!r}.")
    rng = np.random.default_rng(random_state)
    if features is None:
        features = {n: random_features(d, random_state=rng) for n, d in zip(names, durations)}
    first = features[names[0]]
    default_planted = list(first.feature_ids[:3]) if isinstance(first, FeatureTrajectory) \
        else list(range(min(3, first.data.shape[1])))
    planted = default_planted if planted is None else list(planted)
    columns = {n: _planted_columns(features[n], planted, sfreq, int(np.floor(d * sfreq)))
               for n, d in zip(names, durations)}
    col_max = np.max([np.abs(c).max(axis=0) for c in columns.values()], axis=0)
    columns = {n: c / np.where(col_max > 0, col_max, 1.0) for n, c in columns.items()}
    head = _Head(montage, sfreq, len(planted), line_freq, rng)
    trf_times = np.arange(int(0.5 * sfreq)) / sfreq
    latency_scales = rng.uniform(0.8, 1.2, len(planted))
    truth = {
        "sfreq": sfreq, "montage": montage, "format": format, "task": TASK,
        "feature_max": col_max.tolist(),
        "ch_names": list(head.info.ch_names), "stimuli": dict(zip(names, durations)),
        "snr_definition": "planted signal variance / (1/f + sensor noise) variance, good "
                          "channels, dB",
        "model": "eeg[c, t] = sum_j topography[j][c] * (trfs[j] conv feature_j / feature_max[j])"
                 "[t - onset] + noise; trf and trfs lags are trf_times (s)",
        "planted": [
            {"feature": p if isinstance(p, str) else int(p), "trf_times": trf_times.tolist(),
             "trf": _trf(trf_times, s, 0.0).tolist(), "latency_scale": float(s),
             "dipole_pos_m": rr.tolist(), "dipole_ori": nn.tolist(), "topography": topo.tolist()}
            for p, s, rr, nn, topo in zip(planted, latency_scales, head.planted_rr,
                                          head.planted_nn, head.planted_topo)
        ],
        "subjects": {},
    }
    ext = FORMATS[format]
    with _staging_dir(out_dir, overwrite) as tmp:
        subjects = []
        for s in range(n_subjects):
            sub = f"{s + 1:02d}"
            data_CT, events, sub_truth = _simulate_subject(
                head, names, durations, columns, trf_times, latency_scales, rng,
                snr_db=snr_db, snr_spread_db=snr_spread_db, latency_jitter=latency_jitter,
                gain_spread=gain_spread, n_bad_channels=n_bad_channels,
                clock_drift_ppm=clock_drift_ppm, gap=gap, line_freq=line_freq,
            )
            raw = mne.io.RawArray(data_CT, head.info.copy(), verbose=False)
            raw.set_meas_date(None)
            event_id = {f"onset/{n}": i + 1 for i, n in enumerate(names)}
            event_id.update({f"end/{n}": END_CODE_OFFSET + i + 1 for i, n in enumerate(names)})
            bids_path = mne_bids.BIDSPath(subject=sub, task=TASK, datatype="eeg", root=tmp,
                                          extension=ext, suffix="eeg")
            mne_bids.write_raw_bids(raw, bids_path, events=events, event_id=event_id,
                                    format=format, allow_preload=True, overwrite=True,
                                    verbose=False)
            truth["subjects"][sub] = sub_truth
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
        manifest = _manifest(tmp, subjects, names, stim_entries, montage, sfreq)
        manifest.to_yaml(tmp / "manifest.yaml")
        truth["provenance"] = provenance({"n_subjects": n_subjects, "sfreq": sfreq,
                                          "format": format, "snr_db": snr_db,
                                          "clock_drift_ppm": clock_drift_ppm})
        write_json_atomic(tmp / "ground_truth.json", truth)
        (tmp / ".bidsignore").write_text("manifest.yaml\nground_truth.json\n")
    out_dir = Path(out_dir)
    return SimulatedDataset(out_dir, out_dir / "manifest.yaml", out_dir / "ground_truth.json",
                            truth)


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


def _simulate_subject(head, names, durations, columns, trf_times, latency_scales, rng, *,
                      snr_db, snr_spread_db, latency_jitter, gain_spread, n_bad_channels,
                      clock_drift_ppm, gap, line_freq):
    sfreq = head.info["sfreq"]
    n_ch = len(head.info.ch_names)
    drift = rng.uniform(-clock_drift_ppm, clock_drift_ppm) * 1e-6
    shift = rng.normal(0.0, latency_jitter)
    gains = np.exp(rng.normal(0.0, gain_spread, len(latency_scales)))
    snr = snr_db + rng.uniform(-snr_spread_db, snr_spread_db)
    trfs = np.array([_trf(trf_times, s, shift) for s in latency_scales])  # (P, L)
    # lay out the recording: gap, stimulus, gap, stimulus, ..., final gap
    pieces, onsets, cursor = [], {}, 0
    for name, dur in zip(names, durations):
        cursor += int(rng.uniform(*gap) * sfreq)
        resp = sum(g * np.outer(head.planted_topo[j], fftconvolve(columns[name][:, j], trfs[j])
                                [: len(columns[name])]) for j, g in enumerate(gains))
        if drift != 0.0:  # the EEG clock runs at sfreq * (1 + drift) in real time
            resp = resample_dense(resp.T, sfreq=sfreq, new_sfreq=sfreq * (1 + drift)).T
        n_stim = int(round(dur * sfreq * (1 + drift)))
        resp = np.pad(resp, ((0, 0), (0, max(0, n_stim - resp.shape[1]))))[:, :n_stim]
        pieces.append((cursor, resp))
        onsets[name] = {"sample": cursor, "end_sample": cursor + n_stim}
        cursor += n_stim
    n_times = cursor + int(rng.uniform(*gap) * sfreq)
    if float(sfreq).is_integer():  # whole seconds: EDF writes 1 s records without padding
        n_times = int(np.ceil(n_times / sfreq) * sfreq)
    signal = np.zeros((n_ch, n_times))
    for start, resp in pieces:
        signal[:, start:start + resp.shape[1]] = resp
    background = head.bg_topo.T @ _pink(rng, len(head.bg_topo), n_times, sfreq)
    background *= 10 * _UV / background.std()
    background += rng.uniform(0.5, 1.5, (n_ch, 1)) * _UV * rng.standard_normal((n_ch, n_times))
    n_bad = int(rng.integers(n_bad_channels[0], n_bad_channels[1] + 1))
    bad_idx = rng.choice(n_ch, size=n_bad, replace=False)
    good = np.setdiff1d(np.arange(n_ch), bad_idx)
    p_sig = signal[good].var(axis=1).mean()
    p_bg = background[good].var(axis=1).mean()
    scale = np.sqrt(p_bg / p_sig * 10 ** (snr / 10.0)) if p_sig > 0 else 0.0
    data = scale * signal + background
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
    return data, np.array(events, dtype=int), truth
