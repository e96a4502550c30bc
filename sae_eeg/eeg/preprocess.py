"""Configurable EEG preprocessing; every step is recorded for the output's provenance.

Order: pick EEG (+ stim and reference channels) -> notch -> bad-channel detection (on
broadband data) -> band-pass -> resample -> interpolation -> re-reference -> scaling. Steps work in place
on the (optionally copied) Raw, channel by channel where numpy would otherwise copy
the whole recording, so memory stays near one copy of the data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import Literal, Optional

import mne
import numpy as np
from pydantic import Field

from .._check import _validate_type
from .._config import StrictModel, validate_model
from .._io import provenance, write_json_atomic
from ..errors import InputError
from .readers import describe_channels

logger = logging.getLogger(__name__)


class PreprocessConfig(StrictModel):
    """Preprocessing parameters (defaults follow the paper: 1-8 Hz, 128 Hz, median/IQR).

    Attributes
    ----------
    notch : list of float
        Line-noise frequencies to remove (Hz), e.g. ``[50, 100]``. Default none.
    l_freq, h_freq : float | None
        Band-pass edges in Hz (None: no high-/low-pass). Default 1 and 8 Hz.
    phase : "zero" | "minimum"
        FIR phase; zero-phase (non-causal) by default.
    sfreq : float | None
        Resample to this rate, Hz (None keeps the rate). Default 128.
    detect_bads : bool
        Mark flat, noisy and drifting channels as bad (:func:`detect_bad_channels`).
        Default True.
    bad_z : float
        Threshold of the detection. Default 5.
    interpolate_bads : bool
        Spherical-spline interpolation of bad channels (needs a montage). Default True.
    reference : "average" | "mastoids" | "none"
        Re-reference; ``mastoids`` uses ``reference_channels``, then drops them.
    reference_channels : list of str
        The mastoid (or other) reference channels.
    scaling : "median_iqr" | "zscore" | "none"
        Centre each channel (median / mean), divide by the IQR / standard deviation.
    scaling_scope : "global" | "channel"
        One scale for all channels (keeps topographies) or one per channel.
    """

    notch: list[float] = Field(default_factory=list)
    l_freq: Optional[float] = Field(default=1.0, gt=0)
    h_freq: Optional[float] = Field(default=8.0, gt=0)
    phase: Literal["zero", "minimum"] = "zero"
    sfreq: Optional[float] = Field(default=128.0, gt=0)
    detect_bads: bool = True
    bad_z: float = Field(default=5.0, gt=0)
    interpolate_bads: bool = True
    reference: Literal["average", "mastoids", "none"] = "average"
    reference_channels: list[str] = Field(default_factory=list)
    scaling: Literal["median_iqr", "zscore", "none"] = "median_iqr"
    scaling_scope: Literal["global", "channel"] = "global"

    @classmethod
    def from_dict(cls, config):
        """Validate a dict; every problem is listed in one :class:`~sae_eeg.errors.ConfigError`."""
        return validate_model(cls, dict(config), source="the preprocessing config")


def _eeg_idx(raw):
    return mne.pick_types(raw.info, eeg=True, exclude=[])


def _pick(raw, config):
    keep = set(_eeg_idx(raw)) | set(mne.pick_types(raw.info, stim=True, exclude=[]))
    keep |= {raw.ch_names.index(ch) for ch in config.reference_channels if ch in raw.ch_names}
    dropped = [ch for i, ch in enumerate(raw.ch_names) if i not in keep]
    if dropped:
        raw.drop_channels(dropped)
    return {"step": "pick", "dropped": dropped}


def _filter_picks(raw, config):
    picks = list(_eeg_idx(raw))
    picks += [raw.ch_names.index(ch) for ch in config.reference_channels if ch in raw.ch_names]
    return sorted(set(picks))


def _chunks(picks, size=8):
    """Channel groups: MNE filters copy the channels they get, so give it a few at a time."""
    return [picks[i:i + size] for i in range(0, len(picks), size)]


def _notch(raw, config):
    nyq = raw.info["sfreq"] / 2
    freqs = [f for f in config.notch if f < nyq]
    for chunk in _chunks(_filter_picks(raw, config)) if freqs else []:
        raw.notch_filter(freqs, picks=chunk, phase=config.phase, verbose=False)
    return {"step": "notch", "freqs": freqs, "phase": config.phase}


def _bandpass(raw, config):
    h_freq = config.h_freq
    if h_freq is not None and h_freq >= raw.info["sfreq"] / 2:
        raise InputError(
            f"h_freq = {h_freq} Hz is not below the Nyquist rate {raw.info['sfreq'] / 2} Hz."
        )
    if config.l_freq is not None or h_freq is not None:
        for chunk in _chunks(_filter_picks(raw, config)):
            raw.filter(config.l_freq, h_freq, picks=chunk, method="fir", phase=config.phase,
                       fir_design="firwin", verbose=False)
    return {"step": "bandpass", "l_freq": config.l_freq, "h_freq": h_freq, "method": "fir",
            "phase": config.phase, "fir_design": "firwin"}


def _resample(raw, config):
    old = raw.info["sfreq"]
    if config.sfreq is not None and abs(old - config.sfreq) > 1e-9:
        raw.resample(config.sfreq, verbose=False)
    return {"step": "resample", "from_sfreq": old, "sfreq": raw.info["sfreq"]}


def _robust_z(values):
    logs = np.log(np.maximum(values, np.finfo(float).tiny))
    centre = np.median(logs)
    mad = 1.4826 * np.median(np.abs(logs - centre))
    return (logs - centre) / max(mad, 1e-12)


def detect_bad_channels(raw, *, bad_z=5.0):
    """EEG channels that are flat, noisy or drifting, by robust z-scores.

    Two statistics per channel, on broadband data (run it before band-pass
    filtering): the standard deviation of the first difference (high-frequency
    noise) and the standard deviation (drifts, large artefacts). A channel is bad if
    the robust z-score (median and 1.4826 MAD over channels) of the log of either
    exceeds ``bad_z`` in absolute value, or if it is flat (difference standard
    deviation below 1 %% of the median).

    Parameters
    ----------
    raw : mne.io.Raw
        Preloaded recording.
    bad_z : float
        Robust z-score threshold. Default 5.

    Returns
    -------
    bads : list of str
    """
    idx = _eeg_idx(raw)
    diff_std = np.array([np.diff(raw._data[i]).std() for i in idx])
    std = np.array([raw._data[i].std() for i in idx])
    flat = (diff_std < 0.01 * np.median(diff_std)) | (diff_std == 0)
    z = np.maximum(np.abs(_robust_z(diff_std)), np.abs(_robust_z(std)))
    return [raw.ch_names[i] for i, f, zi in zip(idx, flat, z) if f or zi > bad_z]


def _bads(raw, config):
    given = list(raw.info["bads"])
    eeg = [raw.ch_names[i] for i in _eeg_idx(raw)]
    if not eeg:
        raise InputError("the recording has no EEG channels (check the channel types of the manifest).")
    flat = [ch for i, ch in zip(_eeg_idx(raw), eeg) if np.ptp(raw._data[i]) == 0]
    if len(flat) == len(eeg):
        raise InputError(f"all {len(eeg)} EEG channels are flat (constant): the recording holds no signal. "
                         "Check the file and its units.")
    found = detect_bad_channels(raw, bad_z=config.bad_z) if config.detect_bads else []
    raw.info["bads"] = sorted(set(given) | set(found) | set(flat))
    if set(eeg) <= set(raw.info["bads"]):
        raise InputError(f"all {len(eeg)} EEG channels are bad (given {sorted(given)}, detected {found}, "
                         f"flat {flat}): nothing is left to analyse. Check the recording and the manifest's "
                         "bad_channels.")
    return {"step": "bad_channels", "given": given, "detected": found, "flat": flat, "bad_z": config.bad_z}


def _interpolate(raw, config):
    bads = [b for b in raw.info["bads"] if b in [raw.ch_names[i] for i in _eeg_idx(raw)]]
    if not (config.interpolate_bads and bads):
        return {"step": "interpolate", "channels": []}
    if raw.get_montage() is None:
        raise InputError(
            f"cannot interpolate bad channels {bads}: the recording has no montage (set "
            "'montage' in the manifest) — or use interpolate_bads=False."
        )
    raw.interpolate_bads(reset_bads=True, verbose=False)
    return {"step": "interpolate", "channels": bads, "method": "spline"}


def _reference(raw, config):
    if config.reference == "average":
        raw.set_eeg_reference("average", projection=False, verbose=False)
    elif config.reference == "mastoids":
        missing = [ch for ch in config.reference_channels if ch not in raw.ch_names]
        if not config.reference_channels or missing:
            raise InputError(
                f"reference='mastoids' needs reference_channels present in the recording; "
                f"given {config.reference_channels}, missing {missing}."
            )
        ref = np.mean([raw._data[raw.ch_names.index(ch)] for ch in config.reference_channels],
                      axis=0)
        for i in _eeg_idx(raw):
            raw._data[i] -= ref
    extra = [ch for ch in config.reference_channels if ch in raw.ch_names]
    if extra:
        raw.drop_channels(extra)
    return {"step": "reference", "reference": config.reference,
            "channels": list(config.reference_channels)}


def _scale(raw, config):
    if config.scaling == "none":
        return {"step": "scaling", "scaling": "none"}
    idx = _eeg_idx(raw)
    centre_fn = np.median if config.scaling == "median_iqr" else np.mean
    for i in idx:
        raw._data[i] -= centre_fn(raw._data[i])

    def spread(x):
        if config.scaling == "median_iqr":
            q75, q25 = np.percentile(x, [75, 25])
            return q75 - q25
        return x.std()

    if config.scaling_scope == "global":
        scales = np.full(len(idx), spread(raw._data[idx]))
    else:
        scales = np.array([spread(raw._data[i]) for i in idx])
    for i, s in zip(idx, scales):
        raw._data[i] /= s if s > 0 else 1.0
    return {"step": "scaling", "scaling": config.scaling, "scope": config.scaling_scope,
            "scales": scales.tolist()}


_STEPS = (_pick, _notch, _bads, _bandpass, _resample, _interpolate, _reference, _scale)


def _check_reference_channels(raw, config):
    """Before anything is dropped: mastoid references must be there, else list what is."""
    if config.reference != "mastoids":
        return
    missing = [ch for ch in config.reference_channels if ch not in raw.ch_names]
    if config.reference_channels and not missing:
        return
    raise InputError(
        f"reference='mastoids' needs reference_channels present in the recording; given "
        f"{config.reference_channels}, missing {missing}; {describe_channels(raw)}"
    )


def preprocess(raw, config=None, *, copy=True):
    """Preprocess a Raw and record every step.

    Parameters
    ----------
    raw : mne.io.Raw
        Preloaded recording (see :func:`sae_eeg.eeg.read_run`).
    config : PreprocessConfig | dict | None
        Parameters (default :class:`PreprocessConfig`'s defaults).
    copy : bool
        Work on a copy (default). ``False`` modifies ``raw`` in place and saves one
        copy of the data in memory.

    Returns
    -------
    raw : mne.io.Raw
        The preprocessed recording (EEG and stim channels).
    steps : list of dict
        One record per step (``step`` name and its parameters/results), in order.

    Raises
    ------
    ConfigError
        Invalid configuration (all problems listed).
    InputError
        Data not preloaded, NaN samples, every EEG channel flat or bad, h_freq
        above Nyquist, interpolation without montage, missing reference channels.
    """
    if config is None:
        config = PreprocessConfig()
    elif not isinstance(config, PreprocessConfig):
        config = PreprocessConfig.from_dict(config)
    if not raw.preload:
        raise InputError("preprocess needs preloaded data: read with preload=True or call raw.load_data().")
    _check_reference_channels(raw, config)
    if copy:
        raw = raw.copy()
    steps = [{"step": "input", "sfreq": raw.info["sfreq"], "n_channels": len(raw.ch_names),
              "n_times": raw.n_times, "config": config.model_dump()}]
    for step in _STEPS:
        steps.append(step(raw, config))
        logger.info("preprocess: %s", steps[-1]["step"])
    return raw, steps


def save_preprocessed(raw, steps, path, *, inputs=None):
    """Write a preprocessed Raw as FIF with its provenance beside it, atomically.

    Parameters
    ----------
    raw : mne.io.Raw
        From :func:`preprocess`.
    steps : list of dict
        The step records returned by :func:`preprocess`.
    path : path-like
        Output file, ending in ``_raw.fif`` or ``_eeg.fif``. The provenance (steps as
        config, package versions, ``inputs``) goes to the same name with ``.json``.
    inputs : dict | None
        Input names mapped to content hashes (e.g. the EEG file's sha256).

    Returns
    -------
    path : pathlib.Path
        The FIF file.
    """
    _validate_type(path, "path-like", "path")
    path = Path(path)
    if not path.name.endswith(("_raw.fif", "_eeg.fif")):
        raise InputError(f"path must end in '_raw.fif' or '_eeg.fif', got {path.name!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}_raw.fif")
    try:
        raw.save(tmp, fmt="double", overwrite=True, verbose=False)
        write_json_atomic(path.with_suffix(".json"), provenance({"preprocess": steps},
                                                               inputs=inputs))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    return path
