"""BatchTopK model: encoding modes, sparse training path against a dense reference, helpers."""

import numpy as np
import pytest
import scipy.sparse
import torch

from sae_eeg.errors import InputError
from sae_eeg.sae import BatchTopKSAE
from sae_eeg.sae._common import (
    geometric_median,
    lr_factor,
    remove_gradient_parallel_to_decoder_directions,
    set_decoder_norm_to_unit_norm,
)
from sae_eeg.sae.batch_topk import _select_batch_topk


def _random_sae(d_model=16, n_features=64, k=4, seed=0):
    sae = BatchTopKSAE(d_model, n_features, k, random_state=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(d_model, generator=gen))
        sae.encoder.bias.copy_(0.1 * torch.randn(n_features, generator=gen))
    return sae


def test_init_matches_dictionary_learning():
    sae = BatchTopKSAE(16, 64, 4, random_state=3)
    assert list(sae.state_dict()) == ["b_dec", "k", "threshold", "encoder.weight", "encoder.bias", "decoder.weight"]
    norms = torch.linalg.vector_norm(sae.decoder.weight, dim=0)
    torch.testing.assert_close(norms, torch.ones(64))
    torch.testing.assert_close(sae.encoder.weight, sae.decoder.weight.T)
    assert float(sae.encoder.bias.detach().abs().max()) == 0 and float(sae.threshold) == -1
    assert sae.k.dtype == torch.int32 and int(sae.k) == 4
    torch.testing.assert_close(BatchTopKSAE(16, 64, 4, random_state=3).decoder.weight, sae.decoder.weight)


def test_sparse_training_path_matches_dense_reference():
    """Loss and every gradient of the sparse step equal the dense dictionary_learning formulas."""
    sae = _random_sae()
    x_BD = torch.randn(300, 16, generator=torch.Generator().manual_seed(5))
    codes, _ = sae._batch_topk(x_BD, n_keep=4 * 300)
    loss = (x_BD - sae.decode_sparse(codes)).pow(2).sum(-1).mean()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in sae.named_parameters()}
    sae.zero_grad()
    h_BF = torch.relu(sae.encoder(x_BD - sae.b_dec))
    top = h_BF.flatten().topk(4 * 300)
    z_BF = torch.zeros_like(h_BF.flatten()).scatter(0, top.indices, top.values).view_as(h_BF)
    ref = (x_BD - (sae.decoder(z_BF) + sae.b_dec)).pow(2).sum(-1).mean()
    ref.backward()
    torch.testing.assert_close(loss, ref)
    for name, p in sae.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(codes.to_dense(), z_BF.detach())


def test_selection_is_exact_on_large_batches():
    """The candidate path (sample bound) gives the same set as a full top-k."""
    gen = torch.Generator().manual_seed(0)
    pre_BF = torch.randn(400, 3072, generator=gen)
    got = _select_batch_topk(pre_BF, 50 * 400)
    ref = torch.sort(pre_BF.flatten().topk(50 * 400).indices).values
    assert torch.equal(got, ref)
    few = torch.full((400, 3072), -1.0)
    few[::7, 3] = 2.0  # fewer positive entries than k*B: only positives kept
    assert torch.equal(_select_batch_topk(few, 50 * 400), torch.nonzero(few.flatten() > 0).squeeze(1))


def test_encode_modes_and_sparse_encoding():
    sae = _random_sae(k=5)
    x_TD = torch.randn(1000, 16, generator=torch.Generator().manual_seed(1))
    z_topk = sae.encode(x_TD)  # threshold unset: per-frame top-k
    assert torch.equal((z_topk > 0).sum(1), torch.full((1000,), 5))
    sae.threshold.fill_(0.3)
    z_thr = sae.encode(x_TD)
    h = torch.relu(sae.encoder(x_TD - sae.b_dec))
    torch.testing.assert_close(z_thr, h * (h > 0.3))
    torch.testing.assert_close(sae.encode(x_TD, use_threshold=False), z_topk)
    csr = sae.encode_sparse(x_TD.numpy(), batch_size=77)
    assert isinstance(csr, scipy.sparse.csr_array) and csr.dtype == np.float32 and csr.shape == (1000, 64)
    np.testing.assert_allclose(csr.toarray(), z_thr.detach().numpy(), rtol=1e-6)
    assert csr.nnz == int((z_thr > 0).sum())


def test_threshold_encoding_without_estimated_threshold_is_an_error():
    """use_threshold=True never silently keeps every positive pre-activation (threshold -1)."""
    sae = _random_sae(k=5)
    x_TD = torch.randn(50, 16, generator=torch.Generator().manual_seed(1))
    with pytest.raises(InputError, match=r"use_threshold=True.*threshold was never estimated.*-1.*"
                                         r"use_threshold=None.*False"):
        sae.encode(x_TD, use_threshold=True)
    with pytest.raises(InputError, match=r"use_threshold=True"):
        sae(x_TD, use_threshold=True)
    sae.threshold = torch.full((64,), 0.2)
    sae.threshold[7] = -1.0  # a per-feature (JumpReLU) threshold missing for one feature
    with pytest.raises(InputError, match=r"never estimated for 1 of 64 features \(e\.g\. feature 7\)"):
        sae.encode(x_TD, use_threshold=True)
    sae.threshold[7] = 0.2
    h = torch.relu(sae.encoder(x_TD - sae.b_dec))
    torch.testing.assert_close(sae.encode(x_TD, use_threshold=True), h * (h > 0.2))


def test_normalize_input_restores_scale():
    sae = _random_sae()
    sae.normalize_input = True
    x_BD = torch.randn(20, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        unit = x_BD / torch.linalg.vector_norm(x_BD, dim=1, keepdim=True)
        torch.testing.assert_close(sae.encode(3 * x_BD), sae.encode(unit))
        torch.testing.assert_close(sae(x_BD), sae.decode(sae.encode(unit)) * torch.linalg.vector_norm(
            x_BD, dim=1, keepdim=True))


def test_decoder_helpers():
    gen = torch.Generator().manual_seed(0)
    W_DF = torch.randn(8, 32, generator=gen)
    norms = set_decoder_norm_to_unit_norm(W_DF, 8, 32)
    assert norms.shape == (32,)
    torch.testing.assert_close(torch.linalg.vector_norm(W_DF, dim=0), torch.ones(32))
    grad_DF = torch.randn(8, 32, generator=gen)
    remove_gradient_parallel_to_decoder_directions(W_DF, grad_DF, 8, 32)
    torch.testing.assert_close((grad_DF * W_DF).sum(0), torch.zeros(32), atol=1e-6, rtol=0)
    with pytest.raises(InputError, match=r"\(8, 32\), got \(32, 8\)"):
        set_decoder_norm_to_unit_norm(W_DF.T, 8, 32)
    # renormalising unit-norm columns leaves the model's outputs unchanged
    sae = _random_sae()
    x_BD = torch.randn(50, 16, generator=gen)
    before = sae(x_BD).detach()
    set_decoder_norm_to_unit_norm(sae.decoder.weight.data, 16, 64)
    torch.testing.assert_close(sae(x_BD).detach(), before)


def test_lr_schedule():
    kw = dict(n_steps=100, warmup_steps=10, decay_start=80)
    factors = [lr_factor(s, **kw) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == 1.0 and factors[50] == 1.0
    assert factors[80] == pytest.approx(1.0) and factors[90] == pytest.approx(0.5) and factors[99] == pytest.approx(0.05)
    assert lr_factor(5, n_steps=100, warmup_steps=0, decay_start=None) == 1.0


def test_geometric_median():
    rng = np.random.default_rng(0)
    points = rng.standard_normal((200, 3))
    points[:20] += 100.0  # outliers pull the mean, not the median
    med = geometric_median(torch.tensor(points, dtype=torch.float32)).double().numpy()

    def cost(c):
        return np.linalg.norm(points - c, axis=1).sum()

    for step in rng.standard_normal((50, 3)) * 0.05:
        assert cost(med) <= cost(med + step) + 1e-6
    assert cost(med) < cost(points.mean(0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(d_model=16, n_features=64, k=0), r"k must be in \[1, n_features=64\], got 0"),
        (dict(d_model=16, n_features=64, k=65), r"got 65"),
        (dict(d_model=True, n_features=64, k=4), r"d_model must be an instance of int-like, got bool"),
        (dict(d_model=16, n_features=64, k=4, normalize_input="yes"), r"normalize_input .* got str"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        BatchTopKSAE(**kwargs)


def test_encode_input_errors():
    sae = _random_sae()
    with pytest.raises(InputError, match=r"x_BD must have shape \(n_frames, d_model=16\), got \(5, 15\)"):
        sae.encode(torch.zeros(5, 15))
    with pytest.raises(InputError, match=r"use_threshold must be .*bool.*got str"):
        sae.encode(torch.zeros(5, 16), use_threshold="yes")
    with pytest.raises(InputError, match=r"batch_size must be in \[1, inf\], got 0"):
        sae.encode_sparse(np.zeros((5, 16), np.float32), batch_size=0)
