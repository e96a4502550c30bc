import numpy as np
import pytest
import soundfile

from sae_eeg.audio import check_waveform, file_hash, load_audio, resample, stimulus_hash
from sae_eeg.errors import InputError


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_load_formats_downmix(tmp_path, fmt):
    sfreq = 16000
    t = np.arange(sfreq) / sfreq
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.1 * np.ones_like(t)], axis=1)
    path = tmp_path / f"x.{fmt}"
    soundfile.write(path, stereo, sfreq)
    audio = load_audio(path)
    assert audio.sfreq == sfreq and audio.waveform.shape == (sfreq,)
    assert audio.waveform.dtype == np.float32
    atol = 2e-2 if fmt == "ogg" else 1e-3
    np.testing.assert_allclose(audio.waveform, stereo.mean(axis=1), atol=atol)


def test_load_resamples(tmp_path):
    path = tmp_path / "x.wav"
    soundfile.write(path, np.zeros(22050, dtype=np.float32), 22050)
    audio = load_audio(path, new_sfreq=16000)
    assert audio.sfreq == 16000 and len(audio.waveform) == 16000


def test_resample_antialiasing():
    sfreq, new = 48000, 16000
    t = np.arange(sfreq) / sfreq
    low = resample(np.sin(2 * np.pi * 1000 * t), sfreq=sfreq, new_sfreq=new)
    high = resample(np.sin(2 * np.pi * 12000 * t), sfreq=sfreq, new_sfreq=new)
    core = slice(1000, -1000)
    assert abs(np.abs(low[core]).max() - 1) < 0.01
    assert np.abs(high[core]).max() < 0.01  # > 40 dB down


def test_hash_is_content_based(tmp_path):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 1000).astype(np.float32)
    assert stimulus_hash(x, 16000) == stimulus_hash(x.copy(), 16000.0)
    assert stimulus_hash(x, 16000) != stimulus_hash(x, 8000)
    p = tmp_path / "a.bin"
    p.write_bytes(b"abc")
    assert file_hash(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(InputError, match="could not be read"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="empty"):
        load_audio(empty)
    with pytest.raises(InputError, match="2 NaN or Inf"):
        check_waveform(np.array([0.0, np.nan, np.inf]), 16000)
    with pytest.raises(InputError, match="sfreq must be > 0 Hz, got 0"):
        check_waveform(np.zeros(10), 0)
    with pytest.raises(InputError, match="new_sfreq must be > 0"):
        resample(np.zeros(10), sfreq=100, new_sfreq=-1)


def test_atomic_files_get_usual_permissions(tmp_path):
    import os
    import stat

    from sae_eeg._io import write_text_atomic

    umask = os.umask(0o022)
    os.umask(umask)
    write_text_atomic(tmp_path / "a.txt", "x")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    assert mode == 0o666 & ~umask, oct(mode)  # as open() would make it, not mkstemp's 0600
