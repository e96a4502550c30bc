"""Tiny random-weight HuBERT and multilingual Whisper, saved with save_pretrained and loaded back."""

import numpy as np
import pytest
import torch
from transformers import HubertConfig, HubertModel, WhisperConfig, WhisperModel

from sae_eeg.backbones import HubertBackbone, WhisperBackbone, load_backbone, transcribe
from sae_eeg.errors import BackboneError, InputError


def _tiny_hubert(stable_layer_norm):
    config = HubertConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=stable_layer_norm, feat_extract_norm="layer" if stable_layer_norm else "group",
    )
    torch.manual_seed(1)
    return HubertModel(config).eval()


@pytest.fixture(scope="module", params=[False, True], ids=["base-like", "large-like"])
def hubert(request, tmp_path_factory):
    """(backbone, reference model): the model is saved and loaded back through load_backbone."""
    model = _tiny_hubert(request.param)
    folder = tmp_path_factory.mktemp("hubert")
    model.save_pretrained(folder)
    return load_backbone(folder), model


@pytest.fixture(scope="module")
def speechlike(tmp_path_factory):
    """12.3456 s of amplitude-modulated noise at 16 kHz."""
    rng = np.random.default_rng(5)
    n = int(12.3456 * 16000)
    t = np.arange(n) / 16000
    return (rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * 0.1).astype(np.float32)


def test_hubert_shapes_times_and_hidden_states(hubert, speechlike):
    backbone, reference = hubert
    assert isinstance(backbone, HubertBackbone) and backbone.kind == "hubert"
    assert (backbone.n_layers, backbone.d_model, backbone.frame_rate) == (3, 32, 50.0)
    assert (backbone.hop_samples, backbone.receptive_field) == (320, 400)
    acts = backbone.activations(speechlike, 16000, [1, 2, 3])
    n_frames = (len(speechlike) - 400) // 320 + 1
    with torch.no_grad():
        values = torch.from_numpy(backbone.feature_extractor(speechlike, sampling_rate=16000).input_values[0])
        out = reference(values[None], output_hidden_states=True)
    assert out.last_hidden_state.shape[1] == n_frames  # the frame count of the real front-end
    for layer in (1, 2, 3):
        assert acts[layer].values.shape == (n_frames, 32)
        np.testing.assert_allclose(acts[layer].times, (320 * np.arange(n_frames) + 200) / 16000)
    np.testing.assert_allclose(acts[1].values, out.hidden_states[1][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(acts[2].values, out.hidden_states[2][0].numpy(), atol=1e-5)
    # The last layer is the last block's output; HuBERT-large (stable layer norm) normalises it afterwards.
    # (transformers 5 reports it before that LayerNorm in hidden_states[-1], transformers 4 after it.)
    last = out.last_hidden_state[0]
    if reference.config.do_stable_layer_norm:
        with torch.no_grad():
            last_after_norm = reference.encoder.layer_norm(torch.from_numpy(acts[3].values))
        np.testing.assert_allclose(last_after_norm.numpy(), last.numpy(), atol=1e-5)
        assert not np.allclose(acts[3].values, last.numpy(), atol=1e-3)
    else:
        np.testing.assert_allclose(acts[3].values, last.numpy(), atol=1e-5)


def test_hubert_any_rate_and_short_input(hubert, speechlike):
    backbone, _ = hubert
    acts = backbone.activations(np.zeros(400), 16000, [1])[1]  # exactly one receptive field
    assert acts.values.shape == (1, 32) and acts.times[0] == pytest.approx(0.0125)
    with pytest.raises(InputError, match="too short.*399 samples at 16 kHz give no frame"):
        backbone.activations(np.zeros(399), 16000, [1])
    at_8k = backbone.activations(speechlike[::2], 8000, [2])[2]
    assert at_8k.values.shape[0] == (len(speechlike) - 400) // 320 + 1


def test_hubert_long_audio_is_stitched(hubert):
    backbone, _ = hubert
    rng = np.random.default_rng(11)
    n = 16000 * 65
    waveform = (rng.standard_normal(n) * 0.1).astype(np.float32)
    acts = backbone.activations(waveform, 16000, [2], batch_size=2)[2]
    n_frames = (n - 400) // 320 + 1
    assert acts.values.shape == (n_frames, 32)
    np.testing.assert_allclose(acts.times[-1], (320 * (n_frames - 1) + 200) / 16000)
    # windows start at frames 0, 1000 and 1749 (the last one ends with the audio); frames 1250 ... 2124
    # come from the second, which holds 1500 frames (samples 320*1000 ... +1499*320+400)
    window = backbone.activations(waveform[320000:320000 + 1499 * 320 + 400], 16000, [2])[2]
    np.testing.assert_allclose(acts.values[1300:2100], window.values[300:1100], atol=1e-5)


def test_hubert_hook(hubert, speechlike):
    backbone, _ = hubert
    inputs = torch.from_numpy(speechlike[None, :32000])
    with torch.no_grad():
        plain = backbone.model(inputs).last_hidden_state
        with backbone.hook(2, lambda h: h):
            same = backbone.model(inputs).last_hidden_state
        with backbone.hook(2, torch.zeros_like):
            zeroed = backbone.model(inputs).last_hidden_state
    assert torch.equal(plain, same) and not torch.allclose(plain, zeroed, atol=1e-3)


@pytest.fixture(scope="module")
def multilingual_whisper(tmp_path_factory):
    """A random multilingual Whisper encoder-decoder (``WhisperModel``, no tokenizer) on disk."""
    config = WhisperConfig(vocab_size=51865, num_mel_bins=80, d_model=48, encoder_layers=3, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=96,
                           decoder_ffn_dim=96)
    torch.manual_seed(2)
    model = WhisperModel(config).eval()
    folder = tmp_path_factory.mktemp("whisper-multilingual")
    model.save_pretrained(folder)
    return folder, model


def test_random_multilingual_whisper(multilingual_whisper, speechlike):
    folder, reference = multilingual_whisper
    backbone = load_backbone(folder)
    assert isinstance(backbone, WhisperBackbone) and backbone.tokenizer is None
    assert (backbone.n_layers, backbone.d_model) == (3, 48)
    acts = backbone.activations(speechlike, 16000, [3, 1])
    n_frames = int(np.ceil(len(speechlike) / 320))
    assert sorted(acts) == [1, 3] and acts[1].values.shape == (n_frames, 48) == (618, 48)
    np.testing.assert_allclose(acts[3].times, 0.01 + 0.02 * np.arange(n_frames))
    with torch.no_grad():
        features = backbone.input_features([np.pad(speechlike, (0, 480000 - len(speechlike)))])
        hidden = reference.encoder(features, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(acts[1].values, hidden[1][0, :n_frames].numpy(), atol=1e-5)
    with pytest.raises(BackboneError, match="cannot transcribe: it needs a WhisperForConditionalGeneration"):
        transcribe(backbone, speechlike, 16000)


def test_transcribe_needs_whisper(hubert, speechlike):
    backbone, _ = hubert
    with pytest.raises(InputError, match="backbone must be an instance of WhisperBackbone, got HubertBackbone"):
        transcribe(backbone, speechlike, 16000)
