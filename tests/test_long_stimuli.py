"""Long stimuli in bounded memory: the block-wise envelope, mel bands, resampling and
Whisper window plan give the results of one pass over the whole signal.

Blocks are made small here (monkeypatched) so that a minute of audio spans many of them.
Tolerances: resampling and the window plan are exact (the same arithmetic on the same
samples); mel bands differ by float32 rounding of the STFT (the old code is float32 too)
seen in the log domain near the floor (< 1e-3 dB); the Hilbert envelope differs by the
tail of the Hilbert kernel beyond the 5 s block margin, ~1e-5 of the envelope's RMS for
speech-band audio (bounded at 1e-4 here).
"""

import numpy as np
import pytest
from scipy.signal import butter, hilbert, sosfilt, stft

import sae_eeg.trajectories as trajectories
from sae_eeg.audio import resample, resample_blocks
from sae_eeg.backbones import plan_windows
from sae_eeg.trajectories import envelope, mel_envelopes, resample_dense


def _speech_band(seconds, sfreq, rng):
    """Noise in the speech band (100-4000 Hz) modulated at a syllable rate, float32."""
    n = int(seconds * sfreq)
    sos = butter(4, [100, 4000], btype="band", fs=sfreq, output="sos")
    t = np.arange(n) / sfreq
    return (sosfilt(sos, rng.standard_normal(n)) * 0.5 * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _whole_envelope(waveform, sfreq, new_sfreq):
    """The one-pass reference: |analytic signal| of the whole waveform, resampled."""
    env = resample(np.abs(hilbert(waveform.astype(np.float64))), sfreq=sfreq, new_sfreq=new_sfreq)
    n_times = int(np.floor(len(waveform) / sfreq * new_sfreq + 1e-9))
    return np.pad(env, (0, max(0, n_times - len(env))))[:n_times]


def _whole_mel(waveform, sfreq, new_sfreq, n_mels=16, fmin=50.0, floor_db=-80.0):
    """The one-pass reference: log-mel power of one STFT over the whole waveform."""
    hop, n_fft = int(round(sfreq / 100.0)), int(2 ** np.ceil(np.log2(0.025 * sfreq)))
    _, _, spec = stft(waveform, fs=sfreq, nperseg=n_fft, noverlap=n_fft - hop, boundary="even",
                      padded=True)
    fbank, _ = trajectories._mel_filterbank(n_mels, n_fft, sfreq, fmin, sfreq / 2.0)
    mel = (np.abs(spec) ** 2).T @ fbank.T
    log_mel = 10.0 * np.log10(np.maximum(mel, mel.max() * 10 ** (floor_db / 10.0)))
    n_times = int(np.floor(len(waveform) / sfreq * new_sfreq + 1e-9))
    return resample_dense(log_mel, sfreq=sfreq / hop, new_sfreq=new_sfreq, n_times=n_times)


@pytest.mark.parametrize("sfreq, new_sfreq, n, block", [
    (16000, 128, 300_001, 2**15), (44100, 16000, 400_000, 50_000), (22050, 16000, 123_457, 10_000),
    (16000, 128, 10_000, 2**20), (16000, 16000, 70_000, 2**14),
])
def test_resample_blocks_equals_one_pass(rng, sfreq, new_sfreq, n, block):
    x = rng.standard_normal(n)
    whole = resample(x, sfreq=sfreq, new_sfreq=new_sfreq)
    blocks = resample_blocks(lambda a, b: x[a:b], n, sfreq=sfreq, new_sfreq=new_sfreq,
                             block_samples=block)
    assert blocks.shape == whole.shape
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sfreq", [16000, 44100])
def test_envelope_in_blocks_equals_one_pass(monkeypatch, rng, sfreq):
    monkeypatch.setattr(trajectories, "BLOCK_SAMPLES", 1 << 17)  # 45 s: 10+ blocks at 16 kHz
    waveform = _speech_band(61.3, sfreq, rng)
    got = envelope(waveform, sfreq, new_sfreq=128.0).data[:, 0]
    want = _whole_envelope(waveform, sfreq, 128.0)
    assert got.shape == want.shape == (int(61.3 * 128),)
    assert np.abs(got - want).max() < 1e-4 * np.sqrt(np.mean(want**2))
    rectified = envelope(waveform, sfreq, new_sfreq=128.0, method="rectify").data[:, 0]
    np.testing.assert_allclose(rectified, resample(np.abs(waveform.astype(np.float64)), sfreq=sfreq,
                                                   new_sfreq=128.0)[:len(rectified)], rtol=0, atol=1e-12)


@pytest.mark.parametrize("sfreq", [16000, 22050])
def test_mel_envelopes_in_blocks_equal_one_pass(monkeypatch, rng, sfreq):
    monkeypatch.setattr(trajectories, "BLOCK_SAMPLES", 1 << 15)
    monkeypatch.setattr(trajectories, "_ROWS_PER_CHUNK", 1000)
    waveform = _speech_band(47.7, sfreq, rng)
    got = mel_envelopes(waveform, sfreq, new_sfreq=128.0).data
    want = _whole_mel(waveform, sfreq, 128.0)
    assert got.shape == want.shape == (int(47.7 * 128), 16)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)  # dB


def test_mel_envelopes_of_too_short_audio(rng):
    from sae_eeg.errors import InputError

    with pytest.raises(InputError, match=r"waveform of 200 samples is too short for mel bands at "
                                         r"16000.0 Hz: give more than 256 samples"):
        mel_envelopes(rng.standard_normal(200).astype(np.float32), 16000, new_sfreq=128.0)
    assert mel_envelopes(rng.standard_normal(257).astype(np.float32), 16000, new_sfreq=128.0).data.shape == (2, 16)


def test_resample_dense_in_row_chunks_is_exact(monkeypatch, rng):
    x = rng.standard_normal((5000, 3))
    whole = resample_dense(x, sfreq=100.0, new_sfreq=128.0, tmin=0.013)
    monkeypatch.setattr(trajectories, "_ROWS_PER_CHUNK", 77)
    np.testing.assert_array_equal(resample_dense(x, sfreq=100.0, new_sfreq=128.0, tmin=0.013), whole)


def _dense_plan(n_frames, window_frames, hop_frames):
    """The window plan as one (windows x frames) table: the reference of plan_windows."""
    if n_frames <= window_frames:
        return np.zeros(1, dtype=int), np.zeros(n_frames, dtype=int)
    starts = np.array(sorted(set(list(range(0, n_frames - window_frames, hop_frames))
                                 + [n_frames - window_frames])))
    frames = np.arange(n_frames)
    context = np.full((len(starts), n_frames), -1.0)
    for w, start in enumerate(starts):
        inside = (frames >= start) & (frames < start + window_frames)
        left = np.inf if start == 0 else frames - start
        right = np.inf if start + window_frames >= n_frames else start + window_frames - 1 - frames
        context[w, inside] = np.minimum(left, right)[inside]
    return starts, np.argmax(context, axis=0)


@pytest.mark.parametrize("window_frames, hop_frames", [(1500, 1000), (10, 3), (7, 7), (5, 1)])
def test_plan_windows_equals_the_dense_plan(window_frames, hop_frames):
    sizes = [*range(1, 4000, 97), 1500, 1501, 2500, 2501, 3500, 3501, 36_017]
    if window_frames < 100:  # the dense reference is (windows x frames): keep it small
        sizes = [*range(1, 300, 7), 20 * window_frames + 1]
    for n_frames in sizes:
        starts, owner = plan_windows(n_frames, window_frames, hop_frames)
        want_starts, want_owner = _dense_plan(n_frames, window_frames, hop_frames)
        np.testing.assert_array_equal(starts, want_starts)
        np.testing.assert_array_equal(owner, want_owner)


def test_whisper_activations_stitch_the_window_plan(tmp_path, rng):
    """75 s through a random Whisper: every frame equals the same frame computed in its
    owning window alone (the stitching reads each window's frames from a slice)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from sae_eeg.backbones import load_backbone

    config = transformers.WhisperConfig(
        vocab_size=51865, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64)
    torch.manual_seed(3)
    transformers.WhisperModel(config).eval().save_pretrained(tmp_path)
    backbone = load_backbone(tmp_path)
    waveform = _speech_band(75.0, 16000, rng)
    acts = backbone.activations(waveform, 16000, [2], batch_size=2)[2]
    n_frames = len(acts.times)
    starts, owner = plan_windows(n_frames, 1500, 1000)
    assert list(starts) == [0, 1000, 2000, 2250] and acts.values.shape == (3750, 32)
    for w, start in enumerate(starts):
        chunk = waveform[start * 320:start * 320 + 480000]
        alone = backbone.activations(np.pad(chunk, (0, 480000 - len(chunk))), 16000, [2])[2]
        frames = np.flatnonzero(owner == w)
        np.testing.assert_allclose(acts.values[frames], alone.values[frames - start], atol=1e-5)
