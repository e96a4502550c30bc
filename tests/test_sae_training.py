"""Training on a planted dictionary; reproducibility and resume after an interruption."""

import os

import numpy as np
import pytest
import soundfile
import torch

from sae_eeg.errors import ConfigError, OutputExistsError
from sae_eeg.sae import ActivationStore, ArrayActivationStore, BatchTopKSAE, BatchTopKTrainer, TrainingConfig
from sae_eeg.sae import reconstruction_metrics, train_saes

from _sae_helpers import FakeBackbone, planted_data

K = 4


@pytest.fixture(scope="module")
def planted():
    """A BatchTopK SAE trained on frames built from 128 planted unit atoms, 4 active each."""
    atoms_AD, x_TD = planted_data(np.random.default_rng(0), k=K)
    train, held_out = x_TD[:35000], x_TD[35000:]
    config = TrainingConfig(layers=(1,), expansion=4, k=K, n_steps=400, batch_size=1024, lr=6e-3,
                            warmup_steps=50, threshold_start=200, seed=0)
    sae = train_saes(ArrayActivationStore({1: train}, seed=0), config)[1]
    return atoms_AD, held_out, sae


def test_planted_atoms_recovered(planted):
    atoms_AD, _, sae = planted
    W_dec_FD = sae.decoder.weight.detach().numpy().T
    best_cos_A = (atoms_AD @ W_dec_FD.T).max(axis=1)
    assert np.mean(best_cos_A >= 0.9) >= 0.9, np.sort(best_cos_A)[:20]


def test_threshold_l0_close_to_k_and_reconstruction(planted):
    _, held_out, sae = planted
    assert sae.has_threshold
    metrics = reconstruction_metrics(sae, held_out)
    assert abs(metrics["l0"] - K) <= 0.2 * K, metrics
    assert metrics["l0_train"] == pytest.approx(K)
    assert metrics["fvu"] < 0.15, metrics


def _small_config(**kw):
    base = dict(layers=(1, 3), expansion=2, k=3, n_steps=30, batch_size=64, lr=3e-3, warmup_steps=5,
                threshold_start=10, checkpoint_every=10, seed=7, auxk_coef=1 / 32, dead_window=128)
    base.update(kw)
    return TrainingConfig(**base)


def _states(saes):
    return {layer: {k: v.clone() for k, v in sae.state_dict().items()} for layer, sae in saes.items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for layer in a:
        for key in a[layer]:
            assert torch.equal(a[layer][key], b[layer][key]), (layer, key)


@pytest.fixture
def wav_files(tmp_path, rng):
    files = []
    for i in range(5):
        path = tmp_path / "audio" / f"clip{i}.wav"
        path.parent.mkdir(exist_ok=True)
        soundfile.write(path, (0.1 * rng.standard_normal(16000 * (1 + i % 3))).astype(np.float32), 16000)
        files.append(path)
    return files


class _CrashingStore(ActivationStore):
    """Raises once on the n-th batch, like a killed job."""

    def __init__(self, *args, crash_at, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_at, self.n_batches = crash_at, 0

    def next_batch(self, batch_size):
        self.n_batches += 1
        if self.n_batches == self.crash_at:
            raise KeyboardInterrupt("simulated interruption")
        return super().next_batch(batch_size)


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, wav_files):
    config = _small_config()

    def store(cls=ActivationStore, **kw):
        return cls(FakeBackbone(), {"a": wav_files[:3], "b": wav_files[3:]}, [1, 3], weights={"a": 2, "b": 1},
                   buffer_size=300, seed=11, **kw)

    full = _states(train_saes(store(), config, out_dir=tmp_path / "full"))
    with pytest.raises(KeyboardInterrupt):
        train_saes(store(_CrashingStore, crash_at=26), config, out_dir=tmp_path / "crash")
    state = torch.load(tmp_path / "crash" / "checkpoint" / "state.pt", weights_only=True)
    assert state["trainers"][1]["step"] == 20
    resumed = _states(train_saes(store(), config, out_dir=tmp_path / "crash"))
    _assert_same(full, resumed)
    for layer in (1, 3):
        loaded = BatchTopKSAE.from_pretrained(tmp_path / "crash", layer=layer)
        assert torch.equal(loaded.decoder.weight, resumed[layer]["decoder.weight"])
    with pytest.raises(OutputExistsError, match="another configuration"):
        train_saes(store(), _small_config(lr=1e-3), out_dir=tmp_path / "crash")


def test_max_steps_then_resume_and_seed_reproducibility(tmp_path, rng):
    acts = {1: rng.standard_normal((500, 8)).astype(np.float32), 3: rng.standard_normal((500, 8)).astype(np.float32)}
    config = _small_config()
    full = _states(train_saes(ArrayActivationStore(acts, seed=1), config))
    again = _states(train_saes(ArrayActivationStore(acts, seed=1), config))
    _assert_same(full, again)
    train_saes(ArrayActivationStore(acts, seed=1), config, out_dir=tmp_path, max_steps=15)
    resumed = _states(train_saes(ArrayActivationStore(acts, seed=1), config, out_dir=tmp_path))
    _assert_same(full, resumed)
    other = _states(train_saes(ArrayActivationStore(acts, seed=1), _small_config(seed=8)))
    assert not torch.equal(other[1]["decoder.weight"], full[1]["decoder.weight"])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")
def test_weights_do_not_depend_on_the_thread_count(rng):
    """The same SAE under 1 or 2 torch threads (OMP_NUM_THREADS); cpu_threads: 2 sums in another order."""
    acts = {1: rng.standard_normal((2000, 384)).astype(np.float32)}

    def train(outer_threads, **kw):
        previous = torch.get_num_threads()
        torch.set_num_threads(outer_threads)
        try:
            saes = train_saes(ArrayActivationStore(acts, seed=0), _small_config(layers=(1,), expansion=4, k=8,
                                                                               batch_size=256, **kw))
            assert torch.get_num_threads() == outer_threads   # restored after training
        finally:
            torch.set_num_threads(previous)
        return _states(saes)

    one = train(1)
    _assert_same(one, train(2))
    assert not all(torch.equal(one[1][key], value) for key, value in train(1, cpu_threads=2)[1].items())


def test_trainer_threshold_and_auxk():
    gen = torch.Generator().manual_seed(0)
    sae = BatchTopKSAE(8, 64, 2, random_state=0)
    trainer = BatchTopKTrainer(sae, n_steps=40, threshold_start=20, auxk_coef=1 / 32, dead_window=64, lr=1e-3)
    x_BD = torch.randn(32, 8, generator=gen)
    aux_seen = False
    for step in range(40):
        logs = trainer.update(x_BD)
        if step < 20:
            assert float(sae.threshold) == -1.0
        aux_seen |= logs["auxk"] > 0
    assert float(sae.threshold) > 0 and aux_seen
    torch.testing.assert_close(torch.linalg.vector_norm(sae.decoder.weight, dim=0), torch.ones(64))
    assert logs["l0"] == pytest.approx(2.0) and 0 <= logs["dead_fraction"] <= 1


def test_training_config_errors():
    with pytest.raises(ConfigError, match=r"n_step: Extra inputs are not permitted \(got 10\)"):
        TrainingConfig.from_config({"n_step": 10})
    with pytest.raises(ConfigError, match=r"layers.0: Input should be greater than 0 \(got 0\)"):
        TrainingConfig(layers=(0,))
    with pytest.raises(ValueError, match=r"k: Input should be greater than 0 \(got 0\)"):
        TrainingConfig(k=0)
    with pytest.raises(ConfigError, match=r"normalize_input: Input should be a valid boolean \(got 1\)"):
        TrainingConfig(normalize_input=1)
    acts = {1: np.zeros((10, 4), np.float32)}
    with pytest.raises(ConfigError, match=r"layers \[2\] are not streamed by the store \(it streams \[1\]\)"):
        train_saes(ArrayActivationStore(acts), TrainingConfig(layers=(2,)))
