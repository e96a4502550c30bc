"""SAEs on the real Whisper tiny.en (offline): store over real speech, splicing, FVU and WER.

The full check of the issue (4 layers, F = 3072, k = 50, FVU <= 0.3 on held-out speech,
spliced WER within +0.05) is ``test_whisper_tiny_all_layers`` (slow); it runs
``benchmarks/sae_whisper_check.py``. The fast tests use one layer and fewer steps.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from sae_eeg.backbones import bundled_whisper_path, load_backbone
from sae_eeg.sae import ActivationStore, BatchTopKSAE, TrainingConfig, reconstruction_metrics, train_saes
from sae_eeg.sae.splice import spliced_evaluation

_SPEC = importlib.util.spec_from_file_location(
    "sae_whisper_check", Path(__file__).parents[1] / "benchmarks" / "sae_whisper_check.py")
check = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(check)


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    return load_backbone(bundled_whisper_path(tmp_path_factory.mktemp("sae_eeg_cache")))


@pytest.fixture(scope="module")
def speech():
    """(train stimuli, held-out texts, held-out utterances) spoken by eSpeak NG."""
    train_texts = check.sentences(30, seed=0)
    test_texts = [t for t in check.sentences(60, seed=1) if t not in set(train_texts)][:3]
    return (check.concatenate(check.spoken(train_texts, seed=0)), test_texts,
            check.spoken(test_texts, seed=1))


def _exact_sae(d_model):
    """F = 2D features [x, -x] with threshold 0: reconstructs every input exactly."""
    sae = BatchTopKSAE(d_model, 2 * d_model, 1, random_state=0).eval()
    eye = torch.eye(d_model)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.cat([eye, -eye]))
        sae.encoder.bias.zero_()
        sae.decoder.weight.copy_(torch.cat([eye, -eye], dim=1))
        sae.threshold.fill_(0.0)
    return sae


def test_exact_splice_changes_nothing(whisper, speech):
    _, texts, audio = speech
    sae = _exact_sae(whisper.d_model)
    result = spliced_evaluation(whisper, sae, 3, audio[:1], texts[:1])
    assert result["wer_change"] == 0.0 and result["wer_plain"] < 0.3
    assert abs(result["ce_change"]) < 1e-3 and result["kl"] < 1e-4
    assert result["n_tokens"] > 5


def test_store_streams_real_whisper_activations(whisper, speech):
    stimuli, _, _ = speech
    clip = type(stimuli[0])(stimuli[0].waveform[: 16000 * 15], stimuli[0].sfreq)
    store = ActivationStore(whisper, [clip], [1, 4], buffer_size=256, seed=0)
    batch = store.next_batch(64)
    direct = whisper.activations(clip.waveform, clip.sfreq, [1, 4])
    for layer in (1, 4):
        rows = direct[layer].values
        dist = np.abs(batch[layer].numpy()[:, None, :] - rows[None]).max(axis=2).min(axis=1)
        assert dist.max() < 1e-4  # every served frame is a frame of that layer
    # the same frame index in both layers: the row found in layer 1 is the row found in layer 4
    idx1 = np.abs(batch[1].numpy()[:, None, :] - direct[1].values[None]).max(axis=2).argmin(axis=1)
    idx4 = np.abs(batch[4].numpy()[:, None, :] - direct[4].values[None]).max(axis=2).argmin(axis=1)
    np.testing.assert_array_equal(idx1, idx4)


def test_reduced_whisper_sae_reconstructs_held_out_speech(whisper, speech):
    """One layer, 2x expansion, 120 steps: held-out FVU and spliced cross-entropy far below mean ablation.

    Measured: FVU 0.29, L0 53.8, spliced CE change 0.72 nats/token against 5.09 for the
    mean ablation. The bounds are looser than the full check (FVU <= 0.3 there, with
    8x expansion and 500 steps) so that the reduced run passes robustly.
    """
    stimuli, texts, audio = speech
    layer = 2
    store = ActivationStore(whisper, stimuli, [layer], buffer_size=4096, seed=0)
    config = TrainingConfig(layers=(layer,), expansion=2, k=50, n_steps=120, batch_size=512, lr=2e-3,
                            warmup_steps=12, threshold_start=60, threshold_beta=0.99, seed=0)
    sae = train_saes(store, config)[layer]
    held_out = np.concatenate([whisper.activations(a.waveform, a.sfreq, [layer])[layer].values for a in audio])
    metrics = reconstruction_metrics(sae, held_out)
    assert metrics["fvu"] <= 0.4, metrics
    assert abs(metrics["l0"] - 50) <= 15, metrics
    spliced = spliced_evaluation(whisper, sae, layer, audio[:1], texts[:1])
    mean_sae = _exact_sae(whisper.d_model)  # the frame-mean ablation, through the same splice path
    with torch.no_grad():
        mean_sae.encoder.weight.zero_()
        mean_sae.b_dec.copy_(torch.from_numpy(held_out.mean(axis=0)))
    ablated = spliced_evaluation(whisper, mean_sae, layer, audio[:1], texts[:1])
    assert spliced["ce_change"] < 0.25 * ablated["ce_change"], (spliced, ablated)


@pytest.mark.slow
def test_whisper_tiny_all_layers():
    """The issue's check: 4 layers, F = 3072, k = 50; FVU <= 0.3 held out, spliced WER within +0.05."""
    out = check.run_check(layers=(1, 2, 3, 4), expansion=8, k=50, n_steps=500)
    for layer, metrics in out["layers"].items():
        assert metrics["fvu"] <= 0.3, (layer, metrics)
        assert metrics["wer_change"] <= 0.05, (layer, metrics)
