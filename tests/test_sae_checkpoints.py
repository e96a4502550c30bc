"""Checkpoint formats: round trips, the exact AudioSAE key layout, sparsify, bad files."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sae_eeg.errors import CheckpointError, InputError
from sae_eeg.sae import BatchTopKSAE, check_sae_for_backbone, load_sae, save_sae

from _sae_helpers import FakeBackbone

D, F, K = 16, 64, 4


def _trained_like_sae(seed=0, *, normalize_input=False, threshold=0.25):
    sae = BatchTopKSAE(D, F, K, normalize_input=normalize_input, random_state=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(D, generator=gen))
        sae.encoder.bias.copy_(0.1 * torch.randn(F, generator=gen))
        sae.encoder.weight.add_(0.1 * torch.randn(F, D, generator=gen))
        sae.threshold.fill_(threshold)
    return sae.eval()


@pytest.fixture
def x_TD():
    return torch.randn(300, D, generator=torch.Generator().manual_seed(9))


@pytest.mark.parametrize("fmt", ["audiosae", "saelens"])
@pytest.mark.parametrize("normalize_input", [False, True])
@pytest.mark.parametrize("threshold", [0.25, -1.0])
def test_round_trip_gives_identical_encodings(tmp_path, x_TD, fmt, normalize_input, threshold):
    sae = _trained_like_sae(normalize_input=normalize_input, threshold=threshold)
    folder = save_sae(sae, tmp_path, format=fmt, layer=3)
    assert folder == tmp_path / "layer_3"
    loaded = load_sae(tmp_path, layer=3)
    assert loaded.normalize_input is normalize_input and int(loaded.k) == K
    with torch.no_grad():
        if fmt == "audiosae" or not normalize_input:
            assert torch.equal(loaded.encode(x_TD), sae.encode(x_TD))
        else:  # SAELens stores the sqrt(D) rescaling folded into the biases: float rounding only
            torch.testing.assert_close(loaded.encode(x_TD), sae.encode(x_TD), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loaded(x_TD), sae(x_TD), rtol=1e-5, atol=1e-5)
    assert (loaded.encode_sparse(x_TD) != sae.encode_sparse(x_TD)).nnz == 0 or fmt == "saelens"


def test_audiosae_fixture_with_exact_key_layout(tmp_path, x_TD):
    """A checkpoint written by hand in the AudioSAE / dictionary_learning layout loads and encodes."""
    gen = torch.Generator().manual_seed(0)
    W_dec_DF = torch.randn(D, F, generator=gen)
    W_dec_DF /= torch.linalg.vector_norm(W_dec_DF, dim=0)
    state = {
        "encoder.weight": torch.randn(F, D, generator=gen), "encoder.bias": torch.randn(F, generator=gen) * 0.1,
        "decoder.weight": W_dec_DF, "b_dec": torch.randn(D, generator=gen),
        "k": torch.tensor(K, dtype=torch.int), "threshold": torch.tensor(0.4),
    }
    (tmp_path / "layer_2").mkdir()
    torch.save(state, tmp_path / "layer_2" / "ae.pt")
    (tmp_path / "layer_2" / "config.json").write_text(json.dumps(
        {"trainer": {"dict_class": "BatchTopKSAE", "activation_dim": D, "dict_size": F, "k": K, "layer": 2}}))
    sae = BatchTopKSAE.from_pretrained(tmp_path, layer=2)
    h = torch.relu((x_TD - state["b_dec"]) @ state["encoder.weight"].T + state["encoder.bias"])
    expected = h * (h > 0.4)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x_TD), expected)
        torch.testing.assert_close(sae.decode(expected), expected @ W_dec_DF.T + state["b_dec"])
    np.testing.assert_allclose(sae.encode_sparse(x_TD).toarray(), expected.numpy(), rtol=1e-6)
    assert load_sae(tmp_path / "layer_2" / "ae.pt").n_features == F  # the file itself


def test_sparsify_layout_reads_as_per_frame_topk(tmp_path, x_TD):
    gen = torch.Generator().manual_seed(1)
    weights = {"encoder.weight": torch.randn(F, D, generator=gen), "encoder.bias": torch.randn(F, generator=gen),
               "W_dec": torch.randn(F, D, generator=gen), "b_dec": torch.randn(D, generator=gen)}
    folder = tmp_path / "encoder.layers.1"
    folder.mkdir()
    save_file(weights, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"expansion_factor": 4, "k": K, "num_latents": F, "d_in": D}))
    sae = load_sae(tmp_path, layer=2)
    h = torch.relu((x_TD - weights["b_dec"]) @ weights["encoder.weight"].T + weights["encoder.bias"])
    top = h.topk(K, dim=1)
    expected = torch.zeros_like(h).scatter(1, top.indices, top.values)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x_TD), expected)
        torch.testing.assert_close(sae.decode(expected), expected @ weights["W_dec"] + weights["b_dec"])


def test_saelens_jumprelu_per_feature_threshold(tmp_path, x_TD):
    gen = torch.Generator().manual_seed(2)
    thr = torch.rand(F, generator=gen)
    weights = {"W_enc": torch.randn(D, F, generator=gen), "W_dec": torch.randn(F, D, generator=gen),
               "b_enc": torch.randn(F, generator=gen), "b_dec": torch.randn(D, generator=gen), "threshold": thr}
    save_file(weights, str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "jumprelu", "d_in": D, "d_sae": F, "k": K,
                                                    "apply_b_dec_to_input": False}))
    sae = load_sae(tmp_path)
    pre = x_TD @ weights["W_enc"] + weights["b_enc"]
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x_TD), torch.relu(pre) * (pre > thr), rtol=1e-5, atol=1e-5)


def test_bad_files_raise_checkpoint_error(tmp_path):
    bad = tmp_path / "layer_1"
    bad.mkdir()
    (bad / "ae.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"ae.pt' is not a PyTorch checkpoint"):
        load_sae(tmp_path, layer=1)
    torch.save({"W": torch.zeros(3)}, bad / "ae.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['encoder.weight'.*unexpected keys \['W'\]"):
        load_sae(tmp_path, layer=1)
    state = _trained_like_sae().state_dict()
    state["decoder.weight"] = torch.zeros(D, F + 1)
    torch.save(state, bad / "ae.pt")
    with pytest.raises(CheckpointError, match=r"inconsistent shapes for \['decoder.weight'\].*decoder.weight \(16, 65\)"):
        load_sae(tmp_path, layer=1)
    with pytest.raises(CheckpointError, match=r"No checkpoint for layer 4 .* found \['layer_1'\]"):
        load_sae(tmp_path, layer=4)
    with pytest.raises(CheckpointError, match=r"layer is numbered from 1"):
        load_sae(tmp_path, layer=0)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError, match=r"notes.txt' is not a checkpoint file"):
        load_sae(tmp_path / "notes.txt")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "sae_weights.safetensors").write_bytes(b"junk")
    (tmp_path / "w" / "cfg.json").write_text(json.dumps({"architecture": "topk", "k": 3}))
    with pytest.raises(CheckpointError, match=r"is not a safetensors file"):
        load_sae(tmp_path / "w")
    with pytest.raises(CheckpointError, match=r"no such file or folder"):
        load_sae(tmp_path / "missing")


def test_several_checkpoints_need_a_layer(tmp_path):
    sae = _trained_like_sae()
    save_sae(sae, tmp_path, layer=1)
    save_sae(sae, tmp_path, layer=2)
    with pytest.raises(CheckpointError, match=r"holds 2 SAE checkpoints \['layer_1', 'layer_2'\]; pass layer=n"):
        load_sae(tmp_path)
    with pytest.raises(InputError, match=r"Invalid value for 'format'.*got 'safetensor'.*'audiosae', 'saelens'"):
        save_sae(sae, tmp_path, format="safetensor")


def test_hub_id_offline_without_cache_is_a_checkpoint_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match=r"'nobody/no-such-sae' is not a local path and could not be fetched"):
        load_sae("nobody/no-such-sae", layer=3)


def test_sae_must_match_backbone_layer():
    sae = _trained_like_sae()
    backbone = FakeBackbone(d_model=D)
    check_sae_for_backbone(sae, backbone, 2)
    with pytest.raises(CheckpointError, match=r"width 16 \(encoder.weight \(64, 16\)\), but layer 2 of 'fake-backbone' has width 384"):
        check_sae_for_backbone(sae, FakeBackbone(d_model=384), 2)
    with pytest.raises(CheckpointError, match=r"layer 5 does not exist in 'fake-backbone' \(layers 1..4\)"):
        check_sae_for_backbone(sae, backbone, 5)
