"""The CTranslate2 model.bin reader and the Whisper import, on model files written here."""

import json
import struct

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from sae_eeg.backbones import (
    WhisperBackbone,
    convert_ctranslate2_whisper,
    ctranslate2_whisper_path,
    load_backbone,
    read_ctranslate2_model,
)
from sae_eeg.errors import BackboneError

_DTYPE_IDS = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("int32"): 3,
              np.dtype("float16"): 4}


def _string(s):
    data = s.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def write_ct2(path, variables, aliases=(), spec="WhisperSpec", version=6, bfloat16=()):
    """Write a CTranslate2 model.bin (the layout of CTranslate2's model_spec.py serializer)."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, value in variables.items():
        value = np.asarray(value)
        if name in bfloat16:  # the upper 16 bits of float32
            data, dtype_id = (value.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes(), 5
        else:
            data, dtype_id = value.tobytes(), _DTYPE_IDS[value.dtype]
        out += [_string(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape),
                struct.pack("<BI", dtype_id, len(data)), data]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases:
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))


def test_reader_round_trip_dtypes_quantization_aliases(tmp_path, rng):
    weight = rng.standard_normal((4, 6)).astype(np.float32)
    scale = (127.0 / np.abs(weight).max(axis=1)).astype(np.float32)
    q = np.round(weight * scale[:, None]).astype(np.int8)
    variables = {
        "a/weight": q, "a/weight_scale": scale,
        "b/half": rng.standard_normal((3, 2)).astype(np.float16),
        "c/bf16": np.array([1.5, -2.25, 3.0], dtype=np.float32),
        "d/flag": np.array(1, dtype=np.int8), "e/heads": np.array(6, dtype=np.int16),
    }
    write_ct2(tmp_path / "model.bin", variables, aliases=[("z/alias", "b/half")], bfloat16={"c/bf16"})
    model = read_ctranslate2_model(tmp_path)  # a folder works as well as the file
    assert (model.spec, model.revision, model.binary_version) == ("WhisperSpec", 3, 6)
    v = model.variables
    np.testing.assert_allclose(v["a/weight"], weight, atol=np.abs(weight).max() / 127)
    assert v["a/weight"].dtype == np.float32 and "a/weight_scale" not in v
    np.testing.assert_array_equal(v["b/half"], variables["b/half"])
    assert v["z/alias"] is v["b/half"] and model.aliases == {"z/alias": "b/half"}
    np.testing.assert_array_equal(v["c/bf16"], [1.5, -2.25, 3.0])  # exact in bfloat16
    assert v["d/flag"].shape == () and int(v["e/heads"]) == 6


def test_reader_rejects_bad_files(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x99\x00\x00\x00 not a model")
    with pytest.raises(BackboneError, match="binary version 153; versions 2-6 are supported"):
        read_ctranslate2_model(bad)
    write_ct2(bad, {"x": np.zeros((100,), np.float32)})
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(BackboneError, match="model.bin' is truncated or corrupt"):
        read_ctranslate2_model(bad)
    with pytest.raises(BackboneError, match="not found"):
        read_ctranslate2_model(tmp_path / "missing")


def _ct2_whisper_variables(model):
    """CTranslate2 WhisperSpec variables of a transformers Whisper (the converter's inverse)."""
    s = {k: t.detach().numpy().astype(np.float32) for k, t in model.state_dict().items()}
    d = model.config.d_model
    zeros = np.zeros(d, np.float32)
    v = {
        "encoder/conv1/weight": s["model.encoder.conv1.weight"], "encoder/conv1/bias": s["model.encoder.conv1.bias"],
        "encoder/conv2/weight": s["model.encoder.conv2.weight"], "encoder/conv2/bias": s["model.encoder.conv2.bias"],
        "encoder/position_encodings/encodings": s["model.encoder.embed_positions.weight"],
        "encoder/layer_norm/gamma": s["model.encoder.layer_norm.weight"],
        "encoder/layer_norm/beta": s["model.encoder.layer_norm.bias"],
        "encoder/num_heads": np.array(model.config.encoder_attention_heads, np.int16),
        "decoder/embeddings/weight": s["model.decoder.embed_tokens.weight"],
        "decoder/position_encodings/encodings": s["model.decoder.embed_positions.weight"],
        "decoder/layer_norm/gamma": s["model.decoder.layer_norm.weight"],
        "decoder/layer_norm/beta": s["model.decoder.layer_norm.bias"],
    }

    def norm(ct, hf):
        v[f"{ct}/gamma"], v[f"{ct}/beta"] = s[f"{hf}.weight"], s[f"{hf}.bias"]

    def linear(ct, hf):
        v[f"{ct}/weight"], v[f"{ct}/bias"] = s[f"{hf}.weight"], s[f"{hf}.bias"]

    for side, n in (("encoder", model.config.encoder_layers), ("decoder", model.config.decoder_layers)):
        for i in range(n):
            ct, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            a = f"{hf}.self_attn"
            v[f"{ct}/self_attention/linear_0/weight"] = np.concatenate(
                [s[f"{a}.q_proj.weight"], s[f"{a}.k_proj.weight"], s[f"{a}.v_proj.weight"]])
            v[f"{ct}/self_attention/linear_0/bias"] = np.concatenate([s[f"{a}.q_proj.bias"], zeros, s[f"{a}.v_proj.bias"]])
            linear(f"{ct}/self_attention/linear_1", f"{a}.out_proj")
            norm(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            linear(f"{ct}/ffn/linear_0", f"{hf}.fc1")
            linear(f"{ct}/ffn/linear_1", f"{hf}.fc2")
            norm(f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm")
            if side == "decoder":
                c = f"{hf}.encoder_attn"
                linear(f"{ct}/attention/linear_0", f"{c}.q_proj")
                v[f"{ct}/attention/linear_1/weight"] = np.concatenate([s[f"{c}.k_proj.weight"], s[f"{c}.v_proj.weight"]])
                v[f"{ct}/attention/linear_1/bias"] = np.concatenate([zeros, s[f"{c}.v_proj.bias"]])
                linear(f"{ct}/attention/linear_2", f"{c}.out_proj")
                norm(f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
    return v


@pytest.fixture(scope="module")
def random_multilingual_ct2(tmp_path_factory, tiny_en_path):
    """A random multilingual Whisper with 128 mel bands (large-v3 layout), as a CTranslate2 folder."""
    config = WhisperConfig(vocab_size=51866, num_mel_bins=128, d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                           decoder_ffn_dim=128)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # random, not zero, biases so that dropping one would show
        for name, p in model.named_parameters():
            if name.endswith("bias") and "k_proj" not in name:
                p.normal_(0, 0.1)
    folder = tmp_path_factory.mktemp("faster-whisper-random")
    variables = _ct2_whisper_variables(model)
    write_ct2(folder / "model.bin", variables, aliases=[("decoder/projection/weight", "decoder/embeddings/weight")])
    (folder / "config.json").write_text(json.dumps({"lang_ids": [50259, 50260], "suppress_ids": [1, 2],
                                                    "suppress_ids_begin": [220, 50257], "alignment_heads": [[1, 0]]}))
    (folder / "tokenizer.json").write_bytes((tiny_en_path / "tokenizer.json").read_bytes())
    return folder, model


def test_load_backbone_imports_a_ctranslate2_folder(random_multilingual_ct2, tmp_path, rng):
    folder, reference = random_multilingual_ct2
    backbone = load_backbone(folder, cache_dir=tmp_path)
    assert isinstance(backbone, WhisperBackbone)
    assert (backbone.n_layers, backbone.d_model, backbone.feature_extractor.feature_size) == (2, 64, 128)
    converted = backbone.model.state_dict()
    for name, tensor in reference.state_dict().items():
        expected = torch.zeros_like(tensor) if name.endswith("k_proj.bias") else tensor
        if name.endswith("k_proj.bias"):
            assert name not in converted  # Whisper's keys have no bias
            continue
        torch.testing.assert_close(converted[name], expected, rtol=0, atol=0, msg=name)
    assert backbone.model.config.decoder_start_token_id == 50258  # multilingual <|startoftranscript|>
    lang_to_id = backbone.model.generation_config.lang_to_id  # language tokens named by the tokenizer
    assert lang_to_id == {backbone.tokenizer.convert_ids_to_tokens(i): i for i in (50259, 50260)}
    waveform = rng.standard_normal(16000 * 3).astype(np.float32) * 0.1
    acts = backbone.activations(waveform, 16000, [1, 2])
    assert acts[2].values.shape == (150, 64)
    np.testing.assert_allclose(acts[1].times, 0.01 + 0.02 * np.arange(150))
    with torch.no_grad():
        features = backbone.input_features([np.pad(waveform, (0, 480000 - len(waveform)))])
        hidden = reference.model.encoder(features, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(acts[1].values, hidden[1][0, :150].numpy(), atol=1e-5)
    # converted once: a second load reuses the cached folder
    cached = ctranslate2_whisper_path(folder, cache_dir=tmp_path)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [cached.name]
    assert cached.name.startswith(folder.name + "-ct2-")


def test_conversion_is_atomic(random_multilingual_ct2, tmp_path, monkeypatch):
    folder, _ = random_multilingual_ct2
    dest = tmp_path / "out"

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("transformers.WhisperFeatureExtractor.save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        convert_ctranslate2_whisper(folder, dest)
    assert list(tmp_path.iterdir()) == []  # neither dest nor a temporary folder is left


def test_import_rejects_other_specs_and_missing_parts(tmp_path, tiny_en_path):
    other = tmp_path / "other"
    other.mkdir()
    write_ct2(other / "model.bin", {"x": np.zeros(2, np.float32)}, spec="TransformerSpec")
    with pytest.raises(BackboneError, match="holds a CTranslate2 'TransformerSpec' model; only 'WhisperSpec'"):
        load_backbone(other, cache_dir=tmp_path / "cache")
    partial = tmp_path / "partial"
    partial.mkdir()
    write_ct2(partial / "model.bin", {"encoder/conv1/weight": np.zeros((8, 80, 3), np.float32)})
    with pytest.raises(BackboneError, match="lacks the variable|decoder/embeddings/weight"):
        convert_ctranslate2_whisper(partial, tmp_path / "out")
