"""Fixture trees in the exact file layouts of the public releases the shipped manifests name.

One builder per shipped manifest (``data_manifests/*.yaml``), each writing a small tree
(few channels' worth of seconds, two subjects and two runs by default) with the release's
folder layout, file names, variable names, MATLAB cell/struct shapes and file versions:

* :func:`build_broderick_cnd` — CNSP's ``datasetCND_LalorNatSpeech``: ``dataCND/dataSub<N>.mat``
  and ``dataCND/dataStim.mat`` as CNSP's ``eeg2cnd_LalorNatSpeech.m`` saves them
  (``eeg.data`` a 1 x trials cell, ``eeg.extChan{1}`` with ``description = 'Mastoids'``,
  ``stim.data`` a features x trials cell, ``stim.names``), MATLAB -v7 (scipy) or -v7.3
  (HDF5, hdf5storage) files.
* :func:`build_broderick_dryad` — Dryad doi:10.5061/dryad.070jc, ``Natural Speech/``:
  ``EEG/Subject<N>/Subject<N>_Run<M>.mat`` (``eegData``, ``mastoids``, ``fs``),
  ``Stimuli/Envelopes/audio<M>_128Hz.mat`` (``env``, ``fs``), ``Stimuli/Text/Run<M>.mat``.
* :func:`build_sparrkulee` — SparrKULee (doi:10.48804/K3VSND): gzipped BioSemi
  ``sub-<NNN>/ses-<s>/eeg/*_eeg.bdf.gz`` with a ``Status`` channel, ``*_events.tsv``
  naming ``stim_file``/``trigger_file``, ``stimuli/eeg/<stim>.npz.gz`` (``audio``, ``fs``).
* :func:`build_alice` — Eelbrain's Alice release (UMD DRUM hdl:1903/27591):
  ``eeg/S<NN>/S<NN>_alice-raw.fif`` (channels ``1``..``61`` + VEOG/Aux5/AUD, annotations
  ``1``..``12`` at the segment onsets) and ``stimuli/<k>.wav``.
* The demo manifest's tree is written by :func:`sae_eeg.eeg.simulate_dataset` itself.

Stimulus audio is synthesised (amplitude-modulated noise) unless the caller passes its
own; it is only as long as the EEG after the onset allows. The Broderick releases ship no
audio: ``with_audio=False`` writes their trees as released, and the default adds the audio
where the shipped manifests expect a user's copy (``Stimuli/Audio/audio<k>.wav``).
"""

from __future__ import annotations

import gzip
import io

import mne
import numpy as np
import scipy.io
import soundfile

AUDIO_SFREQ = 16000


def cell(items, shape):
    """A MATLAB cell array (object ndarray) of ``shape`` filled in C order."""
    out = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        out.flat[i] = item
    return out


def savemat(path, variables, *, version):
    """Write ``variables`` as MATLAB does: ``"v7"`` (v5 container, compressed) or ``"v7.3"`` (HDF5)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if version == "v7":
        scipy.io.savemat(path, variables, do_compression=True, oned_as="column")
    elif version == "v7.3":
        import hdf5storage  # test extra

        hdf5storage.savemat(str(path), variables, format="7.3", matlab_compatible=True,
                            oned_as="column")
    else:
        raise ValueError(f"version must be 'v7' or 'v7.3', got {version!r}")
    return path


def chanlocs(labels):
    """An EEGLAB ``chanlocs`` struct array (1 x C) with ``labels`` and positions."""
    out = np.zeros((1, len(labels)), dtype=[(f, object) for f in ("labels", "type", "X", "Y", "Z")])
    for i, label in enumerate(labels):
        out[0, i] = (label, "EEG", float(i), 0.0, 1.0)
    return out


def synth_audio(seconds, rng, sfreq=AUDIO_SFREQ):
    """Amplitude-modulated noise, float32 in [-1, 1]: a stand-in for speech."""
    t = np.arange(int(seconds * sfreq)) / sfreq
    envelope = 0.5 * (1.0 + np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 2 * np.pi)))
    return (0.3 * envelope * rng.standard_normal(len(t))).astype(np.float32)


def _write_wav(path, waveform, sfreq=AUDIO_SFREQ):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, waveform, sfreq)
    return path


# --- Broderick 2018, CND (CNSP) -----------------------------------------------------------

#: Feature names CNSP's eeg2cnd_LalorNatSpeech.m gives the two dataStim features.
CND_FEATURES = ("Speech Envelope Vectors", "Word Onset Vectors")


def cnd_eeg_struct(trials, mastoids, labels, *, fs, padding=None, description="Mastoids"):
    """The ``eeg`` struct of a ``dataSub<N>.mat`` as eeg2cnd_LalorNatSpeech.m builds it."""
    n = len(trials)
    eeg = {
        "dataType": "EEG", "deviceName": "BioSemi",
        "origTrialPosition": np.arange(1, n + 1, dtype=float)[None, :],
        "fs": float(fs), "data": cell(trials, (1, n)),
        "extChan": cell([{"data": cell(mastoids, (1, n)), "description": description}], (1, 1)),
        "chanlocs": chanlocs(labels),
    }
    if padding is not None:
        eeg["paddingStartSample"] = float(padding)
    return eeg


def cnd_stim_struct(features, *, fs, names=CND_FEATURES):
    """``stim`` of a ``dataStim.mat``: ``features[i][k]`` is feature i of trial k (T x 1)."""
    n_feat, n_trials = len(features), len(features[0])
    flat = [features[i][k] for i in range(n_feat) for k in range(n_trials)]
    return {
        "names": cell(list(names), (1, n_feat)), "fs": float(fs),
        "stimIdxs": np.arange(1, n_trials + 1, dtype=float)[None, :],
        "condIdxs": np.ones((1, n_trials)), "condNames": cell(["Listening"], (1, 1)),
        "data": cell(flat, (n_feat, n_trials)),
    }


def build_broderick_cnd(root, rng, *, subjects=("1", "2"), runs=("1", "2"), n_channels=128,
                        sfreq=128.0, seconds=6.0, padding=None, version="v7", audio=None, with_audio=True):
    """Write ``dataCND/`` (and ``Stimuli/Audio/audio<k>.wav``) as the CND release has them.

    Trial k of every subject presents stimulus ``audio<k>`` from its first sample (after
    ``padding`` samples when given). Returns the per-trial stimulus features written.
    """
    labels = mne.channels.make_standard_montage("biosemi128").ch_names[:n_channels]
    pad = 0 if padding is None else int(padding)
    n_times = int(seconds * sfreq)
    envs, onsets = [], []
    for k, run in enumerate(runs):
        env = np.abs(rng.standard_normal((n_times, 1)))
        words = np.zeros((n_times, 1))
        words[rng.choice(n_times, size=max(1, n_times // 40), replace=False)] = 1.0
        envs.append(env)
        onsets.append(words)
        waveform = (audio or {}).get(run)
        if waveform is None:
            waveform = synth_audio(seconds - 0.5, rng)
        if with_audio:
            _write_wav(root / "Stimuli" / "Audio" / f"audio{run}.wav", waveform)
    for subject in subjects:
        trials = [rng.standard_normal((pad + n_times, n_channels)) * 10 for _ in runs]
        mastoids = [rng.standard_normal((pad + n_times, 2)) * 10 for _ in runs]
        eeg = cnd_eeg_struct(trials, mastoids, labels, fs=sfreq, padding=padding)
        savemat(root / "dataCND" / f"dataSub{subject}.mat", {"eeg": eeg}, version=version)
    stim = cnd_stim_struct([envs, onsets], fs=sfreq)
    savemat(root / "dataCND" / "dataStim.mat", {"stim": stim}, version=version)
    return {"envelope": envs, "word_onsets": onsets}


# --- Broderick 2018, Dryad --------------------------------------------------------------------

def build_broderick_dryad(root, rng, *, subjects=("1", "2"), runs=("1", "2"), sfreq=128.0,
                          seconds=6.0, audio=None, with_audio=True):
    """Write the Dryad ``Natural Speech/`` layout (``root`` is that folder).

    Run files start at the stimulus onset; like the release's, they are a few samples
    longer than the envelope. Returns the envelopes written, by run.
    """
    n_times = int(seconds * sfreq)
    envelopes = {}
    for run in runs:
        env = np.abs(rng.standard_normal((n_times - 3, 1)))
        envelopes[run] = env
        savemat(root / "Stimuli" / "Envelopes" / f"audio{run}_128Hz.mat",
                {"env": env, "fs": float(sfreq)}, version="v7")
        n_words = 5
        onset = np.sort(rng.uniform(0, seconds - 1, n_words))[:, None]
        savemat(root / "Stimuli" / "Text" / f"Run{run}.mat", {
            "onset_time": onset, "offset_time": onset + 0.3,
            "sentence_boundaries": np.array([[1.0], [float(n_words)]]),
            "wordVec": cell([f"w{i}" for i in range(n_words)], (n_words, 1)),
        }, version="v7")
        waveform = (audio or {}).get(run)
        if waveform is None:
            waveform = synth_audio(seconds - 0.5, rng)
        if with_audio:
            _write_wav(root / "Stimuli" / "Audio" / f"audio{run}.wav", waveform)
    for subject in subjects:
        for run in runs:
            savemat(root / "EEG" / f"Subject{subject}" / f"Subject{subject}_Run{run}.mat", {
                "eegData": rng.standard_normal((n_times, 128)) * 10,
                "mastoids": rng.standard_normal((n_times, 2)) * 10, "fs": float(sfreq),
            }, version="v7")
    return envelopes


# --- SparrKULee (BioSemi BDF, gzipped) ---------------------------------------------------------

def write_bdf(path, data_uV, ch_names, sfreq, status):
    """A BioSemi 24-bit BDF file: EEG rows in microvolts plus the ``Status`` channel.

    Follows the BioSemi header (0xFF "BIOSEMI", "24BIT") with one-second records and
    BioSemi's scaling (digital +-2^23 over +-262144 uV).
    """
    sfreq = int(sfreq)
    n_ch = len(ch_names) + 1
    n_rec = data_uV.shape[1] // sfreq
    labels = list(ch_names) + ["Status"]
    dig_min, dig_max = -(2**23), 2**23 - 1
    phys = [("uV", -262144, 262143)] * len(ch_names) + [("Boolean", dig_min, dig_max)]

    def field(text, width):
        return str(text).ljust(width)[:width].encode("ascii")

    header = b"\xffBIOSEMI" + field("X X X X", 80) + field("Startdate 01-JAN-2024 X X BioSemi", 80)
    header += field("01.01.24", 8) + field("10.00.00", 8) + field(256 * (n_ch + 1), 8)
    header += field("24BIT", 44) + field(n_rec, 8) + field(1, 8) + field(n_ch, 4)
    header += b"".join(field(lbl, 16) for lbl in labels)
    header += b"".join(field("Active electrode" if lbl != "Status" else "Triggers and Status", 80)
                       for lbl in labels)
    header += b"".join(field(unit, 8) for unit, _, _ in phys)
    header += b"".join(field(lo, 8) for _, lo, _ in phys)
    header += b"".join(field(hi, 8) for _, _, hi in phys)
    header += b"".join(field(dig_min, 8) for _ in labels) + b"".join(field(dig_max, 8) for _ in labels)
    header += b"".join(field("HP:DC; LP:1638 Hz" if lbl != "Status" else "No filtering", 80)
                       for lbl in labels)
    header += b"".join(field(sfreq, 8) for _ in labels) + b"".join(field("", 32) for _ in labels)
    scale = (dig_max - dig_min) / (262143 - -262144)
    digital = np.vstack([np.round((data_uV - -262144) * scale + dig_min), status[None, :]])
    digital = np.clip(digital[:, : n_rec * sfreq], dig_min, dig_max).astype(np.int32)
    body = io.BytesIO()
    for r in range(n_rec):
        block = digital[:, r * sfreq:(r + 1) * sfreq].astype("<i4").view(np.uint8).reshape(-1, 4)
        body.write(block[:, :3].tobytes())  # little-endian 24-bit
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + body.getvalue())
    return path


def _gzip_file(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(payload)
    return path


def _npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


#: Status baseline and pulse of the fixture's periodic triggers (lower 16 bits). BioSemi
#: sets status bits above them (here bit 20, "CMS in range"), which readers must mask.
STATUS_BASELINE, STATUS_PULSE, STATUS_HIGH_BITS = 255, 254, 1 << 20


def build_sparrkulee(root, rng, *, runs=(("001", "shortstories01", "01", "audiobook_5_1"),),
                     sfreq=8192, seconds=4.0, onset=0.5, n_channels=64, audio_sfreq=48000, clock_ratio=1.0):
    """Write SparrKULee's BIDS layout: gzipped BDF runs, events.tsv, gzipped npz stimuli.

    ``runs`` holds (subject, session, run, stimulus). The stimulus starts ``onset`` s into
    the recording; its trigger file ``t_<stim>.npz.gz`` and the EEG's Status channel carry
    a 10 ms pulse every second of the stimulus (the periodic block triggers brain_pipe
    aligns), those of the EEG ``clock_ratio`` times as far apart (clock drift). Returns
    {stimulus: waveform}.
    """
    names = mne.channels.make_standard_montage("biosemi64").ch_names[:n_channels]
    waveforms = {}
    for subject, session, run, stim in runs:
        if stim not in waveforms:
            n_audio = int((seconds - onset - 0.5) * audio_sfreq)
            waveform = synth_audio(n_audio / audio_sfreq, rng, audio_sfreq)
            trigger = np.zeros(n_audio, dtype=np.float32)
            for t in np.arange(0.0, n_audio / audio_sfreq, 1.0):
                trigger[int(t * audio_sfreq):int((t + 0.01) * audio_sfreq)] = 1.0
            _gzip_file(root / "stimuli" / "eeg" / f"{stim}.npz.gz",
                       _npz_bytes(audio=waveform, fs=np.array(audio_sfreq)))
            _gzip_file(root / "stimuli" / "eeg" / f"t_{stim}.npz.gz",
                       _npz_bytes(audio=trigger, fs=np.array(audio_sfreq)))
            waveforms[stim] = (waveform, trigger)
        n_times = int(seconds * sfreq)
        status = np.full(n_times, STATUS_BASELINE + STATUS_HIGH_BITS, dtype=np.int64)
        audio_seconds = len(waveforms[stim][0]) / audio_sfreq
        for t in np.arange(0.0, audio_seconds, 1.0):
            start = int(round((onset + t * clock_ratio) * sfreq))
            status[start:start + int(0.01 * sfreq)] = STATUS_PULSE + STATUS_HIGH_BITS
        base = f"sub-{subject}_ses-{session}_task-listeningActive_run-{run}"
        folder = root / f"sub-{subject}" / f"ses-{session}" / "eeg"
        plain = write_bdf(folder / f"{base}_eeg.bdf", rng.standard_normal((n_channels, n_times)) * 20,
                          names, sfreq, status)
        _gzip_file(folder / f"{base}_eeg.bdf.gz", plain.read_bytes())
        plain.unlink()
        (folder / f"{base}_events.tsv").write_text(
            "onset\tduration\tstim_file\ttrigger_file\tnoise_file\tvideo_file\tcondition\tsnr\n"
            f"{onset}\t{audio_seconds}\teeg/{stim}.npz.gz\teeg/t_{stim}.npz.gz\tn/a\tn/a\t"
            "n/a\t100.0\n")
    return {stim: w for stim, (w, _) in waveforms.items()}


# --- Alice (Eelbrain's .fif release) -------------------------------------------------------------

def build_alice(root, rng, *, subjects=("S01", "S03"), segments=("1", "2"), sfreq=500.0,
                segment_seconds=3.0, gap=1.0):
    """Write ``eeg/S<NN>/S<NN>_alice-raw.fif`` and ``stimuli/<k>.wav`` as Eelbrain's release.

    As Eelbrain's convert-all.py writes them: 61 EEG channels named ``1``..``61``, the
    channels VEOG, Aux5 and AUD with FIFF kind 3 (stim), and one annotation per segment
    (description ``"<k>"``, 0.1 s) at its audio onset; no trigger channel.
    """
    waveforms = {k: synth_audio(segment_seconds, rng) for k in segments}
    for k, waveform in waveforms.items():
        _write_wav(root / "stimuli" / f"{k}.wav", waveform)
    (root / "stimuli" / "AliceChapterOne-EEG.csv").write_text(
        "Word,Segment,onset,offset\n" + "".join(f"w,{k},0.1,0.4\n" for k in segments))
    names = [str(i) for i in range(1, 62)] + ["VEOG", "Aux5", "AUD"]
    types = ["eeg"] * 61 + ["stim"] * 3
    onsets = [gap + i * (segment_seconds + gap) for i in range(len(segments))]
    n_times = int((onsets[-1] + segment_seconds + gap) * sfreq)
    for subject in subjects:
        info = mne.create_info(names, sfreq, types)
        data = rng.standard_normal((len(names), n_times)) * 1e-5
        raw = mne.io.RawArray(data, info, verbose=False)
        raw.set_annotations(mne.Annotations(onsets, [0.1] * len(onsets), list(segments)))
        path = root / "eeg" / subject / f"{subject}_alice-raw.fif"
        path.parent.mkdir(parents=True, exist_ok=True)
        raw.save(path, verbose=False)
    return waveforms


__all__ = [
    "AUDIO_SFREQ", "CND_FEATURES", "build_alice", "build_broderick_cnd", "build_broderick_dryad",
    "build_sparrkulee", "cell", "chanlocs", "cnd_eeg_struct", "cnd_stim_struct", "savemat",
    "synth_audio", "write_bdf",
]
