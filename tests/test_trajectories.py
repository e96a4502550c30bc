"""Feature trajectories: sparse resampling, baselines, SAE trajectories, cache."""

import numpy as np
import pytest
import torch
from scipy import sparse

from _sae_helpers import FakeLayerActivations  # tests/_sae_helpers.py
from sae_eeg.errors import InputError
from sae_eeg.trajectories import (
    FeatureTrajectory, TimeSeries, TrajectoryCache, envelope, envelope_onsets, mel_envelopes,
    module_hash, resample_dense, resample_matrix, sae_trajectory,
)


def _amplitude(y):
    m = len(y) // 4
    return np.sqrt(2) * y[m:-m].std()


@pytest.mark.parametrize("sfreq, new_sfreq", [(512, 128), (50, 128), (50, 20), (100, 64.3)])
def test_sinusoid_below_nyquist_keeps_amplitude(sfreq, new_sfreq):
    t = np.arange(int(40 * sfreq)) / sfreq
    freq = 0.5 * min(sfreq, new_sfreq) / 2
    x = np.sin(2 * np.pi * freq * t)
    traj = FeatureTrajectory.from_dense(x[:, None], sfreq=sfreq).resample(new_sfreq)
    y = traj.data.toarray()[:, 0]
    assert abs(_amplitude(y) - 1.0) < 0.01
    # and the output is the same sinusoid on the new grid (no delay)
    expected = np.sin(2 * np.pi * freq * traj.times)
    m = len(y) // 4
    assert np.abs(y[m:-m] - expected[m:-m]).max() < 0.01


@pytest.mark.parametrize("sfreq, new_sfreq", [(512, 128), (50, 20), (100, 64.3)])
@pytest.mark.parametrize("fraction", [0.02, 0.4, 0.95])
def test_sinusoid_above_new_nyquist_attenuated_40db(sfreq, new_sfreq, fraction):
    # frequencies between the new and the old Nyquist rate
    t = np.arange(int(40 * sfreq)) / sfreq
    freq = new_sfreq / 2 + fraction * (sfreq - new_sfreq) / 2
    y = resample_dense(np.sin(2 * np.pi * freq * t), sfreq=sfreq, new_sfreq=new_sfreq)
    assert 20 * np.log10(_amplitude(y)) <= -40


def test_sparse_and_dense_paths_agree(rng):
    x = sparse.random(3000, 40, density=0.02, random_state=1, format="csr")
    traj = FeatureTrajectory(x, 50.0, 0.01, np.arange(40))
    out = traj.resample(128.0, tmin=0.0, n_times=7000)
    dense = resample_dense(x.toarray(), sfreq=50.0, new_sfreq=128.0, tmin=0.01, new_tmin=0.0,
                           n_times=7000)
    assert out.data.shape == (7000, 40)
    np.testing.assert_allclose(out.data.toarray(), dense, atol=1e-6)
    assert out.tmin == 0.0 and out.sfreq == 128.0


def test_resampling_never_densifies_all_features():
    # 2 million features: a dense (T_new x F) float64 array would need ~150 GB
    n_feat = 2_000_000
    rows = np.array([100, 101, 500])
    cols = np.array([5, 5, 1_999_999])
    x = sparse.csr_array((np.ones(3, np.float32), (rows, cols)), shape=(1000, n_feat))
    out = FeatureTrajectory(x, 50.0, 0.0, np.arange(n_feat)).resample(128.0)
    assert out.data.shape[1] == n_feat
    assert out.data.nnz < 500
    assert out.data[:, [5]].toarray().sum() == pytest.approx(2 * 128 / 50, rel=1e-3)


def test_impulse_lands_at_its_time():
    x = np.zeros((500, 1))
    x[200, 0] = 1.0  # t = 0.01 + 200 / 50 = 4.01 s
    traj = FeatureTrajectory.from_dense(x, sfreq=50.0, tmin=0.01).resample(200.0, tmin=0.0)
    y = traj.data.toarray()[:, 0]
    assert traj.times[np.argmax(y)] == pytest.approx(4.01, abs=0.5 / 200)


def test_resample_matrix_is_banded():
    matrix = resample_matrix(1000, sfreq=50.0, new_sfreq=128.0)
    assert matrix.shape == (int(999 * 128 / 50) + 1, 1000)
    assert matrix.nnz < 60 * matrix.shape[0]


def test_select_scale_save_load(tmp_path, rng):
    data = np.maximum(rng.standard_normal((100, 6)), 0)
    traj = FeatureTrajectory.from_dense(data, sfreq=50.0, tmin=0.02, feature_ids=[3, 9, 4, 7, 1, 0])
    sub = traj.select([7, 3])
    np.testing.assert_array_equal(sub.data.toarray(), data[:, [3, 0]])
    np.testing.assert_array_equal(sub.feature_ids, [7, 3])
    scaled = traj.scale_max()
    np.testing.assert_allclose(scaled.feature_max(), 1.0)
    shared = traj.scale_max(2 * traj.feature_max())
    np.testing.assert_allclose(shared.feature_max(), 0.5)
    traj.save(tmp_path / "t.npz")
    back = FeatureTrajectory.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.data.toarray(), traj.data.toarray())
    assert (back.sfreq, back.tmin) == (50.0, 0.02)
    np.testing.assert_array_equal(back.feature_ids, traj.feature_ids)
    with pytest.raises(InputError, match=r"feature ids \[42\] are not in"):
        traj.select([42])
    with pytest.raises(InputError, match="must be a scipy sparse array, got ndarray"):
        FeatureTrajectory(data, 50.0, 0.0, np.arange(6))
    with pytest.raises(InputError, match=r"feature_max must have shape \(6,\)"):
        traj.scale_max(np.ones(3))
    with pytest.raises(InputError, match="not a FeatureTrajectory"):
        (tmp_path / "bad.npz").write_bytes(b"nope")
        FeatureTrajectory.load(tmp_path / "bad.npz")


# --- SAE trajectories with stand-ins that have exactly the Backbone / SAE interface


class FakeBackbone:
    name = "fake-whisper"
    frame_rate = 50.0

    def __init__(self):
        self.calls = 0

    def activations(self, waveform, sfreq, layers, *, batch_size=8):
        self.calls += 1
        n_frames = int(len(waveform) / sfreq * self.frame_rate)
        frames = waveform[: n_frames * int(sfreq / 50)].reshape(n_frames, -1)
        values = np.stack([frames.mean(1), frames.std(1), frames.max(1), frames.min(1)], axis=1)
        times = (np.arange(n_frames) + 0.5) / self.frame_rate
        return {layer: FakeLayerActivations(values.astype(np.float32) * layer, times,
                                            self.frame_rate, layer) for layer in layers}


class FakeSAE(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.W_enc = torch.nn.Parameter(torch.randn(4, 12, generator=gen))

    def encode_sparse(self, acts_TD, *, batch_size=4096):
        z = torch.relu(torch.as_tensor(acts_TD) @ self.W_enc).detach().numpy()
        return sparse.csr_array(z.astype(np.float32))


def test_sae_trajectory_uses_frame_times(rng):
    wave = rng.standard_normal(16000 * 2).astype(np.float32)
    backbone, sae = FakeBackbone(), FakeSAE()
    traj = sae_trajectory(backbone, sae, 3, wave, 16000)
    acts = backbone.activations(wave, 16000, [3])[3]
    expected = np.maximum(acts.values @ sae.W_enc.detach().numpy(), 0)
    np.testing.assert_allclose(traj.data.toarray(), expected, rtol=1e-5)
    assert traj.sfreq == 50.0 and traj.tmin == pytest.approx(0.01)
    np.testing.assert_array_equal(traj.feature_ids, np.arange(12))


def test_sae_trajectory_with_the_real_sae(rng):
    """The package's BatchTopKSAE (once merged) through sae_trajectory, on fake activations."""
    sae_mod = pytest.importorskip("sae_eeg.sae")
    if not hasattr(sae_mod, "BatchTopKSAE"):
        pytest.skip("sae_eeg.sae is not merged into this branch yet")
    sae = sae_mod.BatchTopKSAE(4, 16, 2).eval()
    wave = rng.standard_normal(16000).astype(np.float32)
    traj = sae_trajectory(FakeBackbone(), sae, 1, wave, 16000)
    acts = FakeBackbone().activations(wave, 16000, [1])[1]
    expected = sae.encode(torch.as_tensor(acts.values)).detach().numpy()
    np.testing.assert_allclose(traj.data.toarray(), expected, rtol=1e-5, atol=1e-6)
    assert traj.data.shape == (50, 16) and traj.sfreq == 50.0


def test_trajectory_cache_hits_and_keys(tmp_path, rng):
    wave = rng.standard_normal(16000).astype(np.float32)
    cache, backbone = TrajectoryCache(tmp_path / "cache"), FakeBackbone()
    first = cache.trajectory(backbone, FakeSAE(), 2, wave, 16000, new_sfreq=128.0)
    again = cache.trajectory(backbone, FakeSAE(), 2, wave, 16000, new_sfreq=128.0)
    assert backbone.calls == 1
    np.testing.assert_array_equal(first.data.toarray(), again.data.toarray())
    assert first.sfreq == 128.0 and first.tmin == 0.0
    cache.trajectory(backbone, FakeSAE(seed=1), 2, wave, 16000, new_sfreq=128.0)
    cache.trajectory(backbone, FakeSAE(), 3, wave, 16000, new_sfreq=128.0)
    cache.trajectory(backbone, FakeSAE(), 2, wave, 16000, new_sfreq=64.0)
    assert backbone.calls == 4
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 4
    assert not list((tmp_path / "cache").glob(".*tmp"))
    assert module_hash(FakeSAE()) == module_hash(FakeSAE())


# --- acoustic baselines


def _am_tone(sfreq=16000, duration=4.0, mod_freq=3.0):
    t = np.arange(int(sfreq * duration)) / sfreq
    modulator = 1.0 + 0.8 * np.sin(2 * np.pi * mod_freq * t)
    return (modulator * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), t, modulator


@pytest.mark.parametrize("method", ["hilbert", "rectify"])
def test_envelope_tracks_modulator(method):
    wave, _, _ = _am_tone()
    env = envelope(wave, 16000, new_sfreq=128.0, method=method)
    assert env.data.shape == (512, 1) and env.sfreq == 128.0 and env.tmin == 0.0
    truth = 1.0 + 0.8 * np.sin(2 * np.pi * 3.0 * env.times)
    r = np.corrcoef(env.data[50:-50, 0], truth[50:-50])[0, 1]
    assert r > 0.99
    with pytest.raises(InputError, match="Invalid value for 'method': got 'hilbret'"):
        envelope(wave, 16000, new_sfreq=128.0, method="hilbret")


def test_mel_envelopes_band_of_tone():
    wave, _, _ = _am_tone()
    bands = mel_envelopes(wave, 16000, new_sfreq=100.0, n_mels=16)
    assert bands.data.shape == (400, 16)
    centres = np.array([float(n.split("_")[1]) for n in bands.names])
    loudest = np.argmax(bands.data[50:-50].mean(axis=0))
    assert np.argmin(np.abs(centres - 1000)) == loudest


def test_envelope_onsets_peak_at_sound_onset():
    sfreq = 16000
    t = np.arange(sfreq * 3) / sfreq
    wave = np.where(t >= 1.5, np.sin(2 * np.pi * 500 * t), 0.0).astype(np.float32)
    ons = envelope_onsets(wave, sfreq, new_sfreq=128.0)
    assert ons.data.min() >= 0
    assert ons.times[np.argmax(ons.data[:, 0])] == pytest.approx(1.5, abs=0.03)


def test_timeseries_resample_and_checks():
    ts = TimeSeries(np.ones((100, 2)), 50.0, 0.0, ("a", "b"))
    out = ts.resample(128.0)
    np.testing.assert_allclose(out.data[60:-60], 1.0, atol=1e-3)  # away from the edges
    with pytest.raises(InputError, match="2 columns but 1 names"):
        TimeSeries(np.ones((10, 2)), 50.0, 0.0, ("a",))
    with pytest.raises(InputError, match=r"sfreq must be in \(0, inf\], got -1"):
        TimeSeries(np.ones((10, 1)), -1, 0.0, ("a",))


@pytest.mark.slow
def test_sae_trajectory_with_the_real_whisper(tmp_path):
    """The bundled Whisper tiny.en through sae_trajectory (SAE stand-in of width 384)."""
    backbones = pytest.importorskip("sae_eeg.backbones")
    from sae_eeg.speech import speak

    backbone = backbones.load_backbone(backbones.bundled_whisper_path(tmp_path / "cache"))
    audio = speak("The brain tracks the sound of speech.")

    class WideSAE(FakeSAE):
        def __init__(self):
            super().__init__()
            gen = torch.Generator().manual_seed(0)
            self.W_enc = torch.nn.Parameter(torch.randn(backbone.d_model, 32, generator=gen))

    traj = sae_trajectory(backbone, WideSAE(), 2, audio.waveform, audio.sfreq)
    acts = backbone.activations(audio.waveform, audio.sfreq, [2])[2]
    assert traj.sfreq == backbone.frame_rate == 50.0
    assert traj.tmin == pytest.approx(acts.times[0])
    assert traj.n_times == len(acts.times) == pytest.approx(audio.duration * 50, abs=2)
    at_eeg = traj.resample(128.0, tmin=0.0, n_times=int(audio.duration * 128))
    assert at_eeg.data.shape == (int(audio.duration * 128), 32)
