"""Stimulus alignment: find onsets, crop runs, correct clock drift.

:func:`find_marker` locates a manifest :class:`~sae_eeg.manifests.Marker` (trigger
code, annotation or sample) in a recording; :func:`find_run_markers` gives a run's
onset and end, also from the periodic pulses of a trigger template (SparrKULee).
:func:`align_run` crops the EEG to the stimulus, resampling it in time when start and
end markers show a constant clock-rate mismatch, and returns an :class:`AlignedRun`:
EEG (and features, when given) at the same rate with the same number of samples.

The grid of a run is the stimulus's: ``floor(duration * sfreq)`` samples from the
onset. A recording that goes on after the stimulus ends is cut there (the Dryad
Broderick 2018 runs are a few samples longer than their envelopes); one that ends
before it is an error.
"""

from __future__ import annotations

import dataclasses
import re

import mne
import numpy as np
from scipy.interpolate import CubicSpline

from ..audio import audio_duration, load_audio
from ..errors import AlignmentError
from ..trajectories import FeatureTrajectory, TimeSeries
from .preprocess import preprocess
from .readers import CND_ONSET_ANNOTATION, describe_channels, read_manifest_feature, read_run

_TRAILING_INT = re.compile(r"(-?\d+)\s*$")
_TRIGGER_MASK = 2**16 - 1


@dataclasses.dataclass(frozen=True)
class AlignedRun:
    """EEG segment and stimulus features of one run, on one time grid.

    Attributes
    ----------
    eeg : ndarray, shape (T, C)
        EEG from the stimulus onset, in the Raw's units.
    features : FeatureTrajectory | TimeSeries | None
        Stimulus features, T samples at ``sfreq`` starting at the onset (None when
        only the EEG was aligned).
    sfreq : float
        Sampling rate of both, Hz.
    ch_names : list of str, length C
    subject, run, stimulus : str
    onset_sample : int
        Index of the onset in the Raw that was aligned.
    clock_ratio : float
        Measured / nominal stimulus duration in EEG samples (1.0 without end marker).
    samples_after : int
        Samples of the recording after the stimulus end, left out (a few in the
        Dryad Broderick 2018 runs, whose files outlast their envelopes).
    """

    eeg: np.ndarray
    features: object
    sfreq: float
    ch_names: list
    subject: str
    run: str
    stimulus: str
    onset_sample: int
    clock_ratio: float = 1.0
    samples_after: int = 0

    @property
    def n_times(self):
        """Number of samples T."""
        return self.eeg.shape[0]


def _trigger_events(raw):
    """(sample, code) of every trigger: stim channels first, else numeric annotations."""
    stim = mne.pick_types(raw.info, stim=True, exclude=[])
    if len(stim):
        # BioSemi (BDF) Status channels carry status bits above the 16 trigger bits
        high_bits = max(np.abs(raw._data[i]).max() for i in stim) > _TRIGGER_MASK
        events = mne.find_events(
            raw, shortest_event=1, initial_event=True, consecutive=True, verbose=False,
            mask=_TRIGGER_MASK if high_bits else None, mask_type="and",
        )
        return events[:, 0] - raw.first_samp, events[:, 2]
    samples, descriptions = _annotation_events(raw)
    matches = [_TRAILING_INT.search(d) for d in descriptions]
    keep = [i for i, m in enumerate(matches) if m]
    codes = [int(matches[i].group(1)) for i in keep]
    return samples[keep], np.asarray(codes, dtype=int)


def _annotation_events(raw):
    """(sample from the first sample, description) of every annotation inside the data."""
    descriptions = sorted(set(raw.annotations.description))
    if not descriptions:
        return np.zeros(0, dtype=int), []
    mapping = {d: i + 1 for i, d in enumerate(descriptions)}
    events, _ = mne.events_from_annotations(raw, event_id=mapping, use_rounding=True,
                                            verbose=False)
    return events[:, 0] - raw.first_samp, [descriptions[c - 1] for c in events[:, 2]]


def find_marker(raw, marker, *, where="run"):
    """Sample index (from the Raw's first sample) of a manifest marker.

    Parameters
    ----------
    raw : mne.io.Raw
        The recording (triggers on a stim channel, or annotations).
    marker : Marker
        ``trigger`` code, ``annotation`` description or ``sample`` index, and which
        ``occurrence`` (from 1).
    where : str
        Names the run in error messages.

    Returns
    -------
    sample : int

    Raises
    ------
    AlignmentError
        The trigger/annotation is absent (or has fewer occurrences), or the sample is
        beyond the recording.
    """
    if marker.kind == "trigger_template":
        raise AlignmentError(f"{where}: a trigger_template onset is found by find_run_markers (it reads the "
                             "template file named in the manifest).")
    if marker.kind == "sample":
        if marker.sample >= raw.n_times:
            raise AlignmentError(
                f"{where}: onset sample {marker.sample} is beyond the recording "
                f"({raw.n_times} samples)."
            )
        _check_outside_padding(raw, marker.sample, where)
        return int(marker.sample)
    if marker.kind == "trigger":
        samples, codes = _trigger_events(raw)
        hits = samples[codes == marker.trigger]
        what, found = f"trigger {marker.trigger}", sorted(set(codes.tolist()))
    else:
        samples, descriptions = _annotation_events(raw)
        hits = samples[[d == marker.annotation for d in descriptions]]
        what, found = f"annotation {marker.annotation!r}", sorted(set(descriptions))
    if len(hits) < marker.occurrence:
        raise AlignmentError(
            f"{where}: {what} (occurrence {marker.occurrence}) not found; the recording has "
            f"{len(hits)} of it. Markers present: {found[:20]}."
        )
    return int(np.sort(hits)[marker.occurrence - 1])


def _check_outside_padding(raw, sample, where):
    """A sample marker must not fall in a CND trial's padding (before the stimulus)."""
    samples, descriptions = _annotation_events(raw)
    starts = [int(s) for s, d in zip(samples, descriptions) if d == CND_ONSET_ANNOTATION]
    if starts and sample < starts[0]:
        raise AlignmentError(
            f"{where}: onset sample {sample} lies in the padding of this CND trial (its "
            f"stimulus starts at sample {starts[0]}, eeg.paddingStartSample). Use "
            f"onset: {{annotation: {CND_ONSET_ANNOTATION}}} in the manifest."
        )


def _warp(data_CT, start, n_times, step):
    """Sample the rows of ``data_CT`` at ``start + k * step`` (k < n_times), cubic spline."""
    pos = start + np.arange(n_times) * step
    lo, hi = int(np.floor(pos[0])) - 2, int(np.ceil(pos[-1])) + 3
    lo, hi = max(lo, 0), min(hi, data_CT.shape[1])
    spline = CubicSpline(np.arange(lo, hi), data_CT[:, lo:hi], axis=1)
    return spline(pos)


def align_run(raw, features, *, onset, end=None, stimulus_duration=None, subject="",
              run="", stimulus="", tolerance=0.05, max_clock_error=0.01):
    """Crop a recording to one stimulus and pair it with the stimulus features.

    Parameters
    ----------
    raw : mne.io.Raw
        Preloaded (usually preprocessed) recording.
    features : FeatureTrajectory | TimeSeries | None
        Stimulus features at the Raw's rate, first sample at the stimulus onset. None
        aligns the EEG alone, on ``floor(stimulus_duration * sfreq)`` samples.
    onset : float
        Stimulus onset, s from the Raw's first sample (rounded to the nearest sample
        unless ``end`` is given, in which case the segment is interpolated).
    end : float | None
        Stimulus end marker, s from the Raw's first sample. With it, a constant
        clock-rate mismatch (measured vs nominal duration) is corrected by resampling
        the EEG segment (cubic spline) onto the stimulus clock.
    stimulus_duration : float | None
        Nominal duration of the stimulus, s (default: that of the features; required
        without features).
    subject, run, stimulus : str
        Names for the result and the messages.
    tolerance : float
        Allowed difference between the features' and the stimulus' duration, s.
    max_clock_error : float
        Allowed relative clock mismatch (|measured / nominal - 1|). Default 1 %%.

    Returns
    -------
    aligned : AlignedRun
        The recording after the stimulus end is left out (``samples_after``).

    Raises
    ------
    AlignmentError
        Sampling-rate mismatch, durations differing beyond ``tolerance`` or
        ``max_clock_error``, stimulus longer than the rest of the recording, NaNs.
    """
    name = f"subject {subject!r} run {run!r} (stimulus {stimulus!r})"
    sfreq = raw.info["sfreq"]
    if features is None:
        if stimulus_duration is None:
            raise AlignmentError(f"{name}: give stimulus_duration to align the EEG without features.")
        stim_dur = float(stimulus_duration)
        n_times = int(np.floor(stim_dur * sfreq + 1e-9))
    else:
        if not isinstance(features, (FeatureTrajectory, TimeSeries)):
            raise AlignmentError(
                f"{name}: features must be a FeatureTrajectory or TimeSeries, got "
                f"{type(features).__name__}."
            )
        if abs(features.sfreq - sfreq) > 1e-6:
            raise AlignmentError(
                f"{name}: sampling-rate mismatch: features at {features.sfreq} Hz, EEG at "
                f"{sfreq} Hz; resample the features with .resample({sfreq}, tmin=0.0)."
            )
        n_times = features.data.shape[0]
        feat_dur = n_times / sfreq
        stim_dur = feat_dur if stimulus_duration is None else float(stimulus_duration)
        if abs(feat_dur - stim_dur) > tolerance:
            raise AlignmentError(
                f"{name}: features last {feat_dur:.3f} s but the stimulus {stim_dur:.3f} s "
                f"(tolerance {tolerance} s)."
            )
    onset_idx = int(round(onset * sfreq))
    ratio = 1.0
    if end is not None:
        measured = end - onset
        ratio = measured / stim_dur
        if abs(ratio - 1.0) > max_clock_error:
            raise AlignmentError(
                f"{name}: the recording has {measured:.3f} s between start and end markers but "
                f"the stimulus lasts {stim_dur:.3f} s (clock mismatch {ratio - 1:+.2%}, "
                f"allowed {max_clock_error:.2%})."
            )
    needed = onset_idx + int(np.ceil((n_times - 1) * ratio)) + 1
    if needed > raw.n_times:
        raise AlignmentError(
            f"{name}: stimulus longer than the recording: needs {stim_dur:.3f} s from the onset "
            f"at {onset:.3f} s but only {(raw.n_times - onset_idx) / sfreq:.3f} s remain "
            f"(recording {raw.n_times / sfreq:.3f} s)."
        )
    idx = mne.pick_types(raw.info, eeg=True, exclude=[])
    data_CT = raw._data[idx]
    if abs(ratio - 1.0) > 1e-12:
        eeg_CT = _warp(data_CT, onset * sfreq, n_times, ratio)
    else:
        eeg_CT = data_CT[:, onset_idx:onset_idx + n_times]
    if not np.isfinite(eeg_CT).all():
        raise AlignmentError(f"{name}: the EEG segment holds NaN or Inf samples.")
    return AlignedRun(
        eeg=np.ascontiguousarray(eeg_CT.T), features=features, sfreq=float(sfreq),
        ch_names=[raw.ch_names[i] for i in idx], subject=str(subject), run=str(run),
        stimulus=str(stimulus), onset_sample=onset_idx, clock_ratio=float(ratio),
        samples_after=int(raw.n_times - needed),
    )


def _pulse_onsets(on):
    """Indices where a boolean pulse train switches on (the first sample counts when on)."""
    on = np.asarray(on, dtype=bool)
    return np.flatnonzero(on & ~np.concatenate([[False], on[:-1]]))


def _recording_pulses(raw, where):
    """Pulse onsets of a recording's trigger channel, as brain_pipe reads BioSemi triggers.

    The lower 16 bits hold the triggers; the most common value in 1..255 is "off"
    (BioSemi's idle Status), anything else is a pulse.
    """
    stim = mne.pick_types(raw.info, stim=True, exclude=[])
    if not len(stim):
        raise AlignmentError(f"{where}: a trigger_template onset needs a trigger (stim) channel; "
                             f"{describe_channels(raw)}")
    codes = np.rint(raw._data[stim[0]]).astype(np.int64) & _TRIGGER_MASK
    values, counts = np.unique(codes, return_counts=True)
    idle = (values > 0) & (values < 256)
    off = values[idle][np.argmax(counts[idle])] if idle.any() else values[np.argmax(counts)]
    return _pulse_onsets(codes != off)


def _template_markers(raw, path, where):
    """Onset and end (s) from the pulses of a trigger template and of the recording.

    The template is the stimulus's own trigger track (pulses above 0.5), as long as
    the stimulus. The recording's pulses must match it one to one; a straight line
    through the first and last pairs maps stimulus time to recording time, so its
    offset is the onset and its slope the clock ratio (the end is the stimulus's last
    sample on that line). Every pulse must lie on the line within two samples.
    """
    template = load_audio(path)
    t_stim = _pulse_onsets(template.waveform > 0.5) / template.sfreq
    sfreq = raw.info["sfreq"]
    t_eeg = _recording_pulses(raw, where) / sfreq
    if not len(t_stim):
        raise AlignmentError(f"{where}: trigger template {str(path)!r} has no pulses (samples above 0.5).")
    if len(t_eeg) != len(t_stim):
        raise AlignmentError(f"{where}: the recording's trigger channel has {len(t_eeg)} pulses, the trigger "
                             f"template {str(path)!r} {len(t_stim)}: is it this run's stimulus?")
    ratio = 1.0 if len(t_stim) == 1 else (t_eeg[-1] - t_eeg[0]) / (t_stim[-1] - t_stim[0])
    onset = t_eeg[0] - t_stim[0] * ratio
    worst = np.abs(t_eeg - (onset + t_stim * ratio)).max()
    allowed = 2.0 / sfreq + 2.0 / template.sfreq
    if worst > allowed:
        raise AlignmentError(f"{where}: the recording's pulses depart from those of trigger template "
                             f"{str(path)!r} by up to {worst * 1e3:.1f} ms (allowed {allowed * 1e3:.1f} ms): "
                             "wrong template or missing pulses.")
    end = None if len(t_stim) == 1 else onset + ratio * template.duration
    return onset, end


def find_run_markers(raw, run_entry, *, where="run", manifest=None):
    """Onset and end (or None) of a manifest run in seconds from the Raw's first sample.

    Parameters
    ----------
    raw : mne.io.Raw
        The recording as read (markers are exact samples of its rate).
    run_entry : Run
        The manifest run (``onset`` and optional ``end`` markers).
    where : str
        Names the run in error messages.
    manifest : Manifest | None
        Its manifest, needed for an onset from a ``trigger_template`` (the file is
        under its root); such an onset also gives the end (its last pulses).

    Returns
    -------
    onset : float
    end : float | None
    """
    if run_entry.onset.kind == "trigger_template":
        if manifest is None:
            raise AlignmentError(f"{where}: give the manifest to find a trigger_template onset.")
        return _template_markers(raw, manifest.trigger_template_file(run_entry), where)
    sfreq = raw.info["sfreq"]
    onset = find_marker(raw, run_entry.onset, where=where) / sfreq
    end = None if run_entry.end is None else find_marker(raw, run_entry.end, where=where) / sfreq
    return onset, end


def stimulus_duration(manifest, name, *, audio=None):
    """Duration of a manifest's stimulus, s: declared, else its audio's, else its first release feature's.

    Parameters
    ----------
    manifest : Manifest
    name : str
        Stimulus name.
    audio : path-like | None
        Its audio file when it is given outside the manifest (a pipeline config's
        ``stimuli``); default the manifest's (when present).

    Returns
    -------
    duration : float | None
        None when the manifest declares nothing to take it from.
    """
    stim = manifest.stimuli[name]
    if stim.duration is not None:
        return float(stim.duration)
    audio = audio if audio is not None else manifest.audio_file(name)
    if audio is not None:
        return audio_duration(audio)
    for kind in stim.features:
        series = read_manifest_feature(manifest, name, kind)
        return len(series.data) / series.sfreq
    return None


def load_aligned_run(manifest, subject, run, features=None, *, config=None, duration=None, tolerance=0.05,
                     max_clock_error=0.01):
    """Read, preprocess and align one manifest run (with its stimulus features, when given).

    Markers are found on the recording as read (exact samples), then applied in
    seconds to the preprocessed recording. The run spans the stimulus duration
    (``duration``, else :func:`stimulus_duration`, else that of the features) from
    the onset; features are resampled to the EEG rate on that grid.

    Parameters
    ----------
    manifest : Manifest
    subject, run : str
    features : FeatureTrajectory | TimeSeries | None
        Features of the run's stimulus (time 0 = stimulus start), any rate; None
        aligns the EEG alone.
    config : PreprocessConfig | dict | None
        Preprocessing (default :class:`PreprocessConfig`).
    duration : float | None
        Stimulus duration, s (default as above).
    tolerance, max_clock_error : float
        See :func:`align_run`.

    Returns
    -------
    aligned : AlignedRun
    steps : list of dict
        The preprocessing record.
    """
    entry = manifest.run(subject, run)
    where = f"subject {subject!r} run {run!r}"
    raw = read_run(manifest, subject, run)
    onset, end = find_run_markers(raw, entry, where=where, manifest=manifest)
    pre, steps = preprocess(raw, config, copy=False)
    if duration is None:
        duration = stimulus_duration(manifest, entry.stimulus)
    if duration is None and features is not None:
        duration = features.data.shape[0] / features.sfreq + features.tmin
    if duration is None:
        raise AlignmentError(f"{where}: stimulus {entry.stimulus!r} has no duration: give its audio 'path', "
                             "'features' or 'duration' in the manifest.")
    if features is not None and (abs(features.sfreq - pre.info["sfreq"]) > 1e-9 or features.tmin != 0.0):
        n_times = int(np.floor(duration * pre.info["sfreq"] + 1e-9))
        features = features.resample(pre.info["sfreq"], tmin=0.0, n_times=n_times)
    aligned = align_run(
        pre, features, onset=onset, end=end, stimulus_duration=duration, subject=subject,
        run=run, stimulus=entry.stimulus, tolerance=tolerance, max_clock_error=max_clock_error,
    )
    return aligned, steps
