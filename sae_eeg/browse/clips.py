"""The audio side of the browser: each feature's top clips as short compressed excerpts.

The stimuli are cut into clips of ``clip_length`` seconds; a feature's top clips
are those where its maximum activation is largest (AudioSAE's
``aggregate_max_activations``). Each top clip is played as an excerpt of the same
length whose start lies on a grid of half a clip, chosen so that the peak falls in
its middle half. Excerpts are shared by every feature that peaks in them, so the
audio of a site never exceeds twice the stimulus duration, whatever the number of
features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import soundfile

from .._check import _check_range
from .._io import atomic_path
from ..audio import Audio, resample
from ..errors import InputError
from ..evals import aggregate_max_activations
from ..trajectories import FeatureTrajectory
from ._encode import plain, quantized

#: libsndfile's compression level of the Vorbis excerpts (0 best quality .. 1 smallest): about
#: 45 kbit/s for 16 kHz speech, clear to listen to, encoded in ~6 ms per 2 s (Opus is half
#: the size but 15 times slower to encode: minutes for an hour of stimuli).
VORBIS_COMPRESSION = 0.9


@dataclass(frozen=True)
class StackedCodes:
    """The SAE codes of every stimulus stacked in time, with where each frame comes from.

    Attributes
    ----------
    codes : scipy.sparse.csc_array, shape (n_frames, n_features)
        Codes of all stimuli, one after the other (column access: one feature at a time).
    stimulus : ndarray of int, shape (n_frames,)
        Index (into ``names``) of each frame's stimulus.
    times : ndarray, shape (n_frames,)
        Time of each frame in its stimulus, s (frame centre).
    offsets : ndarray of int, shape (n_stimuli + 1,)
        First frame of each stimulus (and the total).
    names : list of str
        Stimulus names.
    sfreq : float
        Frame rate, Hz.
    per_stimulus : list of scipy.sparse.csr_array
        The codes of each stimulus (for per-stimulus statistics).
    """

    codes: sp.csc_array
    stimulus: np.ndarray
    times: np.ndarray
    offsets: np.ndarray
    names: list
    sfreq: float
    per_stimulus: list

    @property
    def n_features(self):
        """Number F of features."""
        return self.codes.shape[1]


def stack_codes(trajectories):
    """Stack the trajectories of the stimuli (all features of one SAE, one frame rate).

    Parameters
    ----------
    trajectories : dict of str -> FeatureTrajectory
        Codes of each stimulus at the backbone's frame rate, every feature of the
        SAE (``feature_ids`` 0..F-1).

    Returns
    -------
    stacked : StackedCodes

    Raises
    ------
    InputError
        No stimuli, trajectories of other types, frame rates or feature sets.
    """
    if not isinstance(trajectories, dict) or not trajectories:
        raise InputError("trajectories must be a non-empty dict of stimulus name -> FeatureTrajectory, got "
                         f"{trajectories!r:.80}.")
    names = list(trajectories)
    first = trajectories[names[0]]
    for name, traj in trajectories.items():
        if not isinstance(traj, FeatureTrajectory):
            raise InputError(f"trajectories[{name!r}] must be a FeatureTrajectory, got {type(traj).__name__}.")
        if traj.sfreq != first.sfreq:
            raise InputError(f"trajectories[{name!r}] has sfreq {traj.sfreq} Hz, trajectories[{names[0]!r}] "
                             f"{first.sfreq} Hz; give every stimulus at the backbone's frame rate.")
        if not np.array_equal(traj.feature_ids, np.arange(first.data.shape[1])):
            raise InputError(f"trajectories[{name!r}] must hold every feature of the SAE in order (feature_ids "
                             f"0..{first.data.shape[1] - 1}), got ids {traj.feature_ids[:5].tolist()}... "
                             f"({len(traj.feature_ids)} features).")
    per_stimulus = [trajectories[n].data for n in names]
    lengths = np.array([m.shape[0] for m in per_stimulus])
    offsets = np.r_[0, np.cumsum(lengths)]
    return StackedCodes(
        codes=sp.csc_array(sp.vstack(per_stimulus, format="csr").astype(np.float32)),
        stimulus=np.repeat(np.arange(len(names)), lengths),
        times=np.concatenate([trajectories[n].times for n in names]),
        offsets=offsets, names=names, sfreq=float(first.sfreq), per_stimulus=per_stimulus,
    )


def top_clip_table(stacked, *, clip_length, n_clips):
    """Each feature's top clips: the clips of its ``n_clips`` largest maximum activations.

    Parameters
    ----------
    stacked : StackedCodes
    clip_length : float
        Clip length, s.
    n_clips : int
        Clips per feature (fewer when the feature fires in fewer clips).

    Returns
    -------
    table : pandas.DataFrame
        One row per (feature, top clip), features ascending, largest activation
        first: ``feature``, ``max_activation``, ``frame`` (row of the maximum in
        the stacked codes), ``time`` (s in its stimulus), ``stimulus`` (index).
    """
    segment = np.floor(stacked.times / clip_length).astype(np.int64)
    clip_ids = stacked.stimulus.astype(np.int64) * (1 << 32) + segment
    maxima = aggregate_max_activations(stacked.codes, clip_ids, times=stacked.times)
    top = maxima.groupby("feature", sort=False).head(n_clips).reset_index(drop=True)
    top["stimulus"] = stacked.stimulus[top["frame"].to_numpy()]
    return top[["feature", "max_activation", "frame", "time", "stimulus"]]


def excerpt_starts(peak_times, durations, *, clip_length):
    """Start of the excerpt (s) shown for each peak: on a half-clip grid, the peak in its middle half.

    Parameters
    ----------
    peak_times : ndarray, shape (n,)
        Time of each peak in its stimulus, s.
    durations : ndarray, shape (n,)
        Duration of each peak's stimulus, s.
    clip_length : float
        Excerpt length, s.

    Returns
    -------
    grid_index : ndarray of int, shape (n,)
        Start of each excerpt in units of ``clip_length / 2``; the last excerpt of a
        stimulus may be shorter than ``clip_length`` (the stimulus ends).
    """
    hop = clip_length / 2
    last = np.maximum(np.ceil((durations - clip_length) / hop - 1e-9), 0).astype(np.int64)
    return np.clip(np.rint((peak_times - clip_length / 2) / hop).astype(np.int64), 0, last)


@dataclass(frozen=True)
class Excerpt:
    """One short audio excerpt of a stimulus, written as a compressed file.

    Attributes
    ----------
    stimulus : int
        Stimulus index.
    start : float
        Start in the stimulus, s.
    duration : float
        Length, s (the clip length, or less at a stimulus' end).
    frames : slice
        Rows of the stacked codes whose frame centre lies in the excerpt.
    """

    stimulus: int
    start: float
    duration: float
    frames: slice


def plan_excerpts(top, stacked, durations, *, clip_length):
    """The excerpts the top clips need, and which one each top clip plays.

    Parameters
    ----------
    top : pandas.DataFrame
        :func:`top_clip_table` output.
    stacked : StackedCodes
    durations : ndarray, shape (n_stimuli,)
        Duration of each stimulus, s.
    clip_length : float
        Excerpt length, s.

    Returns
    -------
    excerpts : list of Excerpt
        In stimulus then time order.
    excerpt_of_row : ndarray of int, shape (len(top),)
        Index into ``excerpts`` of each top clip.
    """
    stim = top["stimulus"].to_numpy()
    grid = excerpt_starts(top["time"].to_numpy(), durations[stim], clip_length=clip_length)
    keys, excerpt_of_row = np.unique(np.stack([stim, grid], axis=1), axis=0, return_inverse=True)
    hop = clip_length / 2
    excerpts = []
    for s, k in keys:
        start = k * hop
        duration = min(clip_length, float(durations[s]) - start)
        lo, hi = stacked.offsets[s], stacked.offsets[s + 1]
        times = stacked.times[lo:hi]
        first = lo + int(np.searchsorted(times, start, side="left"))
        stop = lo + int(np.searchsorted(times, start + duration, side="left"))
        excerpts.append(Excerpt(int(s), float(start), float(duration), slice(first, stop)))
    return excerpts, excerpt_of_row.ravel()


def write_excerpt_audio(excerpts, audio, folder, *, audio_sfreq=16000.0):
    """Write each excerpt as Ogg Vorbis (mono, ~45 kbit/s); return the file names (relative to ``folder``'s parent).

    Parameters
    ----------
    excerpts : list of Excerpt
    audio : list of Audio
        The stimuli, in stimulus index order.
    folder : pathlib.Path
        Where the files go (``s<stimulus>_<start ms>.ogg``: ids, never names).
    audio_sfreq : float
        Rate of the written audio, Hz (8 to 48 kHz). Default 16 kHz (what Whisper
        and HuBERT hear).

    Returns
    -------
    files : list of str
        ``<folder name>/<file>`` of each excerpt.
    """
    _check_range("audio_sfreq", audio_sfreq, 8000, 48000)
    folder.mkdir(parents=True, exist_ok=True)
    resampled = {}
    files = []
    for ex in excerpts:
        if ex.stimulus not in resampled:
            clip = audio[ex.stimulus]
            resampled[ex.stimulus] = (clip.waveform if clip.sfreq == audio_sfreq else
                                      resample(clip.waveform, sfreq=clip.sfreq, new_sfreq=audio_sfreq))
        wave = resampled[ex.stimulus]
        start = int(round(ex.start * audio_sfreq))
        piece = wave[start:start + max(int(round(ex.duration * audio_sfreq)), 1)]
        name = f"s{ex.stimulus:04d}_{int(round(ex.start * 1000)):09d}.ogg"
        with atomic_path(folder / name) as tmp:
            soundfile.write(str(tmp), np.clip(piece, -1, 1), int(audio_sfreq), format="OGG", subtype="VORBIS",
                            compression_level=VORBIS_COMPRESSION)
        files.append(f"{folder.name}/{name}")
    return files


def waveform_envelope(audio, excerpt, stacked):
    """Minimum and maximum of the waveform around each code frame of an excerpt.

    Returns
    -------
    envelope : ndarray, shape (n_frames, 2)
        (min, max) over the samples within half a frame of each frame centre.
    """
    frames = stacked.times[excerpt.frames]
    if frames.size == 0:
        return np.zeros((0, 2))
    half = 0.5 / stacked.sfreq
    edges = np.clip(np.rint((np.r_[frames - half, frames[-1] + half]) * audio.sfreq).astype(np.int64), 0,
                    audio.waveform.size)
    wave = np.r_[audio.waveform, 0.0]  # reduceat needs every start inside the array
    starts = np.minimum(edges[:-1], wave.size - 1)
    lo = np.minimum.reduceat(wave, starts)
    hi = np.maximum.reduceat(wave, starts)
    empty = edges[1:] <= edges[:-1]
    lo[empty] = hi[empty] = 0.0
    return np.stack([lo, hi], axis=1)


def excerpt_records(excerpts, files, audio, stacked):
    """JSON-ready description of each excerpt: file, stimulus, start, frame times, waveform envelope."""
    records = []
    for ex, src in zip(excerpts, files):
        env = waveform_envelope(audio[ex.stimulus], ex, stacked)
        peak = float(np.abs(env).max()) if env.size else 0.0
        frames = stacked.times[ex.frames]
        records.append({
            "src": src, "stimulus": stacked.names[ex.stimulus], "start": round(ex.start, 4),
            "duration": round(ex.duration, 4),
            "t0": round(float(frames[0] - ex.start), 4) if frames.size else 0.0,
            "dt": 1.0 / stacked.sfreq, "n": int(frames.size),
            "env": quantized(env, lo=-peak, hi=peak),
        })
    return records


def activation_traces(stacked, top, excerpts, excerpt_of_row):
    """The activation of each top clip's feature over its excerpt, on a common scale per feature.

    Returns
    -------
    traces : list of dict
        One per row of ``top``: ``excerpt`` (index), ``peak`` (s in the stimulus),
        ``max`` (activation), ``act`` (quantised values at the excerpt's frames,
        from 0 to the feature's largest top-clip activation).
    """
    codes = stacked.codes
    scale = top.groupby("feature")["max_activation"].transform("max").to_numpy()
    traces = []
    for row, (feature, value, peak, e) in enumerate(zip(top["feature"].to_numpy(), top["max_activation"].to_numpy(),
                                                        top["time"].to_numpy(), excerpt_of_row)):
        ex = excerpts[e]
        lo, hi = codes.indptr[feature], codes.indptr[feature + 1]
        rows, vals = codes.indices[lo:hi], codes.data[lo:hi]
        inside = (rows >= ex.frames.start) & (rows < ex.frames.stop)
        trace = np.zeros(ex.frames.stop - ex.frames.start)
        trace[rows[inside] - ex.frames.start] = vals[inside]
        traces.append({"excerpt": int(e), "peak": round(float(peak), 3), "max": plain(value),
                       "act": quantized(trace, lo=0.0, hi=float(scale[row]))})
    return traces


def stimulus_durations(audio, names):
    """Duration of each stimulus (s), checking that every stimulus has audio."""
    missing = [n for n in names if n not in audio]
    if missing:
        raise InputError(f"audio has no entry for the stimuli {missing}; give the Audio of every stimulus "
                         f"(stimuli: {names}).")
    for name in names:
        if not isinstance(audio[name], Audio):
            raise InputError(f"audio[{name!r}] must be an Audio (sae_eeg.audio.load_audio), got "
                             f"{type(audio[name]).__name__}.")
    return np.array([audio[n].waveform.size / audio[n].sfreq for n in names])


__all__ = ["Excerpt", "StackedCodes", "excerpt_starts", "plan_excerpts", "stack_codes", "top_clip_table"]

