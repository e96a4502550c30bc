"""reconstruction_metrics against hand computations."""

import numpy as np
import pytest
import torch

from sae_eeg.sae import BatchTopKSAE, reconstruction_metrics


def test_metrics_match_hand_computation(rng):
    sae = BatchTopKSAE(6, 12, 2, random_state=0).eval()
    with torch.no_grad():
        sae.b_dec.copy_(torch.tensor(rng.standard_normal(6), dtype=torch.float32))
        sae.threshold.fill_(0.1)
        sae.encoder.bias[:3] = -100.0  # three features never fire
        sae.encoder.bias[3] = 100.0  # one always fires
    x_TD = rng.standard_normal((500, 6)).astype(np.float32) * 2 + 1
    m = reconstruction_metrics(sae, x_TD, batch_size=64)
    with torch.no_grad():
        z = sae.encode(torch.tensor(x_TD)).numpy()
        x_hat = sae(torch.tensor(x_TD)).numpy().astype(np.float64)
    x = x_TD.astype(np.float64)
    err = x - x_hat
    fvu = (err**2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert m["fvu"] == pytest.approx(fvu, rel=1e-6)
    assert m["fve"] == pytest.approx(1 - fvu, rel=1e-6)
    assert m["mse"] == pytest.approx((err**2).mean(), rel=1e-6)
    assert m["normalized_l2"] == pytest.approx(np.mean(np.linalg.norm(err, axis=1) / np.linalg.norm(x, axis=1)), rel=1e-6)
    cos = (x * x_hat).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(x_hat, axis=1)
    assert m["cosine"] == pytest.approx(cos.mean(), rel=1e-6)
    assert m["l0"] == pytest.approx((z > 0).sum(1).mean())
    rate = (z > 0).mean(0)
    assert m["dead_fraction"] == pytest.approx(np.mean(rate == 0)) and m["dead_fraction"] >= 3 / 12
    assert m["dense_10pct_fraction"] == pytest.approx(np.mean(rate > 0.1)) and m["dense_10pct_fraction"] >= 1 / 12
    assert m["dense_1pct_fraction"] == pytest.approx(np.mean(rate > 0.01))
    assert m["n_frames"] == 500
    assert m["l0_train"] == pytest.approx(2.0)


def test_perfect_reconstruction_has_zero_fvu():
    sae = BatchTopKSAE(4, 8, 4, random_state=0).eval()
    with torch.no_grad():
        sae.decoder.weight.zero_()
        sae.decoder.weight[:, :4] = torch.eye(4)
        sae.encoder.weight.zero_()
        sae.encoder.weight[:4] = torch.eye(4)
        sae.threshold.fill_(0.0)
    x_TD = np.abs(np.random.default_rng(0).standard_normal((100, 4))).astype(np.float32) + 0.1
    m = reconstruction_metrics(sae, x_TD)
    assert m["fvu"] == pytest.approx(0.0, abs=1e-10) and m["cosine"] == pytest.approx(1.0)
