"""Steering primitives on a tiny random multilingual Whisper (language-token shift)."""

import numpy as np
import pytest
import torch

from sae_eeg import sae as sae_mod
from sae_eeg.audio import Audio
from sae_eeg.backbones import bundled_whisper_path, load_backbone
from sae_eeg.errors import InputError
from sae_eeg.evals import language_token_shift, language_tokens, steering_vector


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    """A random-weight multilingual-size Whisper saved and loaded back like a user's folder."""
    import transformers

    folder = tmp_path_factory.mktemp("whisper-ml")
    config = transformers.WhisperConfig(
        vocab_size=51865, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=448,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)  # local to this block: weights reproducible, global state restored
        model = transformers.WhisperForConditionalGeneration(config)
    model.save_pretrained(folder)
    source = bundled_whisper_path()  # its tokenizer carries the <|xx|> language tokens
    transformers.WhisperTokenizer.from_pretrained(source).save_pretrained(folder)
    transformers.WhisperFeatureExtractor.from_pretrained(source).save_pretrained(folder)
    return load_backbone(folder)


def test_language_token_shift(multilingual, rng):
    sae = sae_mod.BatchTopKSAE(64, 128, 4, random_state=0).eval()
    clips = [Audio(0.1 * rng.standard_normal(16000).astype(np.float32), 16000.0) for _ in range(2)]
    tokens = language_tokens(multilingual)
    assert tokens["en"] != tokens["de"] and len(tokens) > 50
    features = {int(f): 1.0 for f in range(10)}
    table = language_token_shift(multilingual, sae, 2, features, clips, alphas=(0.0, 20.0),
                                 languages=["en", "de", "fr"])
    assert len(table) == 2 * 2 * 3
    zero = table[table.alpha == 0.0]
    np.testing.assert_array_equal(zero["shift"], 0.0)  # alpha 0: no hook, identical logits
    steered = table[table.alpha == 20.0]
    assert np.abs(steered["shift"]).max() > 1e-4
    np.testing.assert_allclose(steered["probability"] - steered["baseline"], steered["shift"])
    full = language_token_shift(multilingual, sae, 2, features, clips[:1], alphas=(20.0,))
    np.testing.assert_allclose(full.groupby("alpha").probability.sum(), 1.0)
    with pytest.raises(InputError, match="Invalid value for 'languages': got 'xx'"):
        language_token_shift(multilingual, sae, 2, features, clips, languages=["xx"])


def test_steering_vector():
    np.testing.assert_array_equal(steering_vector([1, 3, 3], 5), [0, 1, 0, 2, 0])
    np.testing.assert_array_equal(steering_vector({0: -1.0, 4: 0.5}, 5), [-1, 0, 0, 0, 0.5])
    with pytest.raises(InputError, match="features is empty"):
        steering_vector([], 5)
    with pytest.raises(InputError, match=r"outside \[0, 4\]: \[-1\]"):
        steering_vector([-1], 5)
