"""Preprocessing: each step does what it says and is recorded."""

import mne
import numpy as np
import pytest

import json
import tracemalloc

from sae_eeg.eeg import PreprocessConfig, detect_bad_channels, preprocess, save_preprocessed
from sae_eeg.errors import ConfigError, InputError

SFREQ = 512.0


@pytest.fixture
def raw():
    """16 biosemi channels: 4 Hz (in band) + 20 Hz (out of band) + 50 Hz line, 1 noisy."""
    rng = np.random.default_rng(0)
    montage = mne.channels.make_standard_montage("biosemi64")
    names = montage.ch_names[:16] + ["M1", "M2"]
    info = mne.create_info(names, SFREQ, ["eeg"] * 16 + ["misc"] * 2)
    t = np.arange(int(SFREQ * 30)) / SFREQ
    gains = rng.uniform(0.5, 1.5, (18, 1))
    data = gains * (np.sin(2 * np.pi * 4 * t) + np.sin(2 * np.pi * 20 * t)
                    + 0.5 * np.sin(2 * np.pi * 50 * t)) * 1e-5
    data += rng.standard_normal(data.shape) * 1e-6
    data[5] += rng.standard_normal(len(t)) * 3e-4  # a noisy channel
    raw = mne.io.RawArray(data, info, verbose=False)
    raw.set_montage(montage, on_missing="ignore", verbose=False)
    return raw


def _amp(x, freq, sfreq):
    spec = np.abs(np.fft.rfft(x)) * 2 / len(x)
    return spec[np.argmin(np.abs(np.fft.rfftfreq(len(x), 1 / sfreq) - freq))]


def test_default_pipeline(raw):
    orig = raw.get_data()
    out, steps = preprocess(raw, {"notch": [50.0], "scaling": "none", "reference": "none"})
    np.testing.assert_array_equal(raw.get_data(), orig)  # copy=True leaves the input alone
    assert [s["step"] for s in steps] == [
        "input", "pick", "notch", "bad_channels", "bandpass", "resample", "interpolate",
        "reference", "scaling"]
    assert out.info["sfreq"] == 128.0
    assert steps[1]["dropped"] == ["M1", "M2"]
    names = mne.channels.make_standard_montage("biosemi64").ch_names
    assert steps[3]["detected"] == [names[5]] and steps[6]["channels"] == [names[5]]
    assert out.info["bads"] == []
    good = out.get_data()[0]
    m = len(good) // 4
    ratio = _amp(good[m:-m], 20, 128) / _amp(good[m:-m], 4, 128)
    assert ratio < 1e-2  # 20 Hz removed by the 1-8 Hz band-pass
    assert _amp(good[m:-m], 4, 128) == pytest.approx(_amp(orig[0], 4, SFREQ), rel=0.05)
    # the interpolated channel now looks like its neighbours, not like noise
    assert out.get_data()[5].std() < 3 * np.median(out.get_data().std(axis=1))


def test_reference_and_scaling(raw):
    out, steps = preprocess(raw, {"reference": "average", "scaling": "median_iqr"})
    data = out.get_data()
    # average reference: the channel mean is constant (0 up to the per-channel centring)
    assert data.mean(axis=0).std() < 1e-10
    pooled = data.ravel()
    q75, q25 = np.percentile(pooled, [75, 25])
    assert q75 - q25 == pytest.approx(1.0, rel=0.05)
    np.testing.assert_allclose(np.median(data, axis=1), 0, atol=0.05)
    out, _ = preprocess(raw, {"reference": "mastoids", "reference_channels": ["M1", "M2"],
                              "scaling": "zscore", "scaling_scope": "channel",
                              "detect_bads": False, "interpolate_bads": False})
    assert "M1" not in out.ch_names
    np.testing.assert_allclose(out.get_data().std(axis=1), 1.0, rtol=1e-6)


def test_mastoid_reference_subtracts_mean_of_mastoids(raw):
    cfg = {"reference": "mastoids", "reference_channels": ["M1", "M2"], "scaling": "none",
           "l_freq": None, "h_freq": None, "sfreq": None, "detect_bads": False}
    out, _ = preprocess(raw, cfg)
    expected = raw.get_data()[:16] - raw.get_data()[16:18].mean(axis=0)
    np.testing.assert_allclose(out.get_data(), expected, atol=1e-15)


def test_in_place_saves_a_copy(raw):
    out, _ = preprocess(raw, copy=False)
    assert out is raw


def test_detect_bad_channels_flat_and_noisy(raw):
    raw._data[3] *= 1e-5
    names = mne.channels.make_standard_montage("biosemi64").ch_names
    assert detect_bad_channels(raw) == [names[3], names[5]]


def test_config_errors_list_every_problem(raw):
    with pytest.raises(ConfigError) as info:
        preprocess(raw, {"reference": "avg", "l_freq": -1, "bogus": 1})
    message = str(info.value)
    assert "reference" in message and "'avg'" in message
    assert "l_freq" in message and "greater than 0" in message
    assert "bogus" in message and "Extra inputs are not permitted" in message


def test_bad_inputs(raw):
    raw_no_montage = raw.copy().set_montage(None)
    with pytest.raises(InputError, match=r"cannot interpolate bad channels \['C1'\]|"
                                         r"cannot interpolate bad channels"):
        preprocess(raw_no_montage)
    with pytest.raises(InputError, match=r"h_freq = 300.0 Hz is not below the Nyquist rate 256.0"):
        preprocess(raw, {"h_freq": 300.0})
    with pytest.raises(InputError, match="reference='mastoids' needs reference_channels"):
        preprocess(raw, {"reference": "mastoids", "reference_channels": ["TP9"]})
    config = PreprocessConfig(sfreq=None)
    assert config.model_dump()["l_freq"] == 1.0


def test_save_preprocessed_with_provenance(raw, tmp_path):
    out, steps = preprocess(raw, {"sfreq": 128.0})
    path = save_preprocessed(out, steps, tmp_path / "sub-01_eeg.fif", inputs={"eeg": "abc"})
    back = mne.io.read_raw_fif(path, preload=True, verbose=False)
    np.testing.assert_array_equal(back.get_data(), out.get_data())
    record = json.loads(path.with_suffix(".json").read_text())
    assert [s["step"] for s in record["config"]["preprocess"]] == [s["step"] for s in steps]
    assert record["inputs"] == {"eeg": "abc"} and "mne" in record["versions"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01_eeg.fif", "sub-01_eeg.json"]
    with pytest.raises(InputError, match=r"must end in '_raw.fif' or '_eeg.fif', got 'x.fif'"):
        save_preprocessed(out, steps, tmp_path / "x.fif")


def test_preprocessing_memory_stays_near_one_copy():
    """In place, preprocessing allocates about the recording's own size at most (see
    benchmarks/preprocess_memory.py for 64 ch x 60 min x 512 Hz)."""
    rng = np.random.default_rng(0)
    montage = mne.channels.make_standard_montage("biosemi64")
    info = mne.create_info(montage.ch_names, SFREQ, "eeg")
    raw = mne.io.RawArray(rng.standard_normal((64, int(SFREQ * 120))) * 1e-5, info,
                          verbose=False)
    raw.set_montage(montage, verbose=False)
    raw._data[7] *= 50
    size = raw._data.nbytes
    tracemalloc.start()
    try:
        out, steps = preprocess(raw, {"notch": [50.0]}, copy=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert steps[3]["detected"] == [montage.ch_names[7]]
    # one extra copy of the data would already exceed this (measured: 0.94 at 2 min,
    # 0.76 at 60 min, the benchmark's size)
    assert peak < 1.25 * size, peak / size


def test_all_flat_or_all_bad_recordings_are_errors(raw):
    flat = raw.copy()
    flat._data[:16] = 0.0
    with pytest.raises(InputError, match=r"all 16 EEG channels are flat \(constant\): the recording holds no signal"):
        preprocess(flat)
    dead = raw.copy()
    dead.info["bads"] = list(dead.ch_names[:15])
    dead._data[15] = 1e-6                                # the one channel not marked bad is constant
    with pytest.raises(InputError, match=r"all 16 EEG channels are bad \(given \[.*\], detected .*, flat "
                                         rf"\['{dead.ch_names[15]}'\]\): nothing is left to analyse"):
        preprocess(dead)
    marked = raw.copy()
    marked.info["bads"] = list(marked.ch_names[:16])
    with pytest.raises(InputError, match=r"all 16 EEG channels are bad"):
        preprocess(marked, {"detect_bads": False})
