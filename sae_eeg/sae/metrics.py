"""Reconstruction metrics of an SAE on a set of activations."""

from __future__ import annotations

import numpy as np
import torch

from .._check import _check_range, _ensure_int
from ._common import check_activations

__all__ = ["reconstruction_metrics"]


@torch.no_grad()
def reconstruction_metrics(sae, acts_TD, *, batch_size=4096, use_threshold=None):
    """Reconstruction quality and sparsity of ``sae`` on activations ``acts_TD``.

    Computed chunk by chunk (never a dense T x F matrix); sums accumulate in float64.

    Parameters
    ----------
    sae : BatchTopKSAE
        The SAE (its inference encoding is evaluated; ``l0_train`` uses batch top-k).
    acts_TD : ndarray | torch.Tensor, shape (n_frames, d_model)
        Held-out activations.
    batch_size : int
        Frames per chunk (also the batch of the training-mode L0). Default 4096.
    use_threshold : bool | None
        Inference encoding, as in :meth:`BatchTopKSAE.encode`. Default None.

    Returns
    -------
    metrics : dict of str to float
        ``l0`` (mean active features per frame, inference), ``l0_train`` (batch
        top-k), ``mse`` (mean over frames and dims), ``normalized_l2`` (mean over
        frames of ||x - x_hat|| / ||x||), ``fvu`` (sum ||x - x_hat||^2 / sum ||x -
        mean||^2, mean over this set), ``fve`` (1 - fvu), ``cosine`` (mean over frames),
        ``dead_fraction`` (features that never fire in these frames),
        ``dense_1pct_fraction`` / ``dense_10pct_fraction`` (features firing on more
        than 1 % / 10 % of frames), ``n_frames`` (the window of the dead/dense counts).
    """
    batch_size = _ensure_int(batch_size, "batch_size")
    _check_range("batch_size", batch_size, 1)
    acts_TD = check_activations(acts_TD, sae.d_model, name="acts_TD")
    device = sae.b_dec.device
    n_frames = acts_TD.shape[0]
    sums = dict.fromkeys(("sq_err", "sq_norm", "nl2", "cos", "l0", "l0_train"), 0.0)
    sum_D = torch.zeros(sae.d_model, dtype=torch.float64)
    fires_F = torch.zeros(sae.n_features, dtype=torch.float64, device=device)
    for start in range(0, n_frames, batch_size):
        x_BD = acts_TD[start:start + batch_size].to(device)
        z_BF = sae.encode(x_BD, use_threshold=use_threshold)
        _, norms_B = sae._prepare_input(x_BD)
        x_hat_BD = sae.decode(z_BF)
        x_hat_BD = x_hat_BD if norms_B is None else x_hat_BD * norms_B
        x64, x_hat64 = x_BD.double(), x_hat_BD.double()
        err_B = torch.linalg.vector_norm(x64 - x_hat64, dim=1)
        norm_B = torch.linalg.vector_norm(x64, dim=1)
        sums["sq_err"] += float(err_B.pow(2).sum())
        sums["sq_norm"] += float(norm_B.pow(2).sum())
        sums["nl2"] += float((err_B / norm_B.clamp_min(1e-12)).sum())
        sums["cos"] += float(torch.nn.functional.cosine_similarity(x64, x_hat64, dim=1).sum())
        active_BF = z_BF > 0
        sums["l0"] += float(active_BF.sum())
        fires_F += active_BF.sum(dim=0).double()
        sums["l0_train"] += sae.encode_batch_topk(x_BD).values.numel()
        sum_D += x64.sum(dim=0).cpu()
    mean_sq = float(sum_D.pow(2).sum()) / n_frames
    total_var = sums["sq_norm"] - mean_sq  # sum ||x - mean||^2
    fvu = sums["sq_err"] / total_var if total_var > 0 else float("nan")
    rate_F = (fires_F / n_frames).cpu().numpy()
    return {
        "l0": sums["l0"] / n_frames,
        "l0_train": sums["l0_train"] / n_frames,
        "mse": sums["sq_err"] / (n_frames * sae.d_model),
        "normalized_l2": sums["nl2"] / n_frames,
        "fvu": fvu,
        "fve": 1.0 - fvu,
        "cosine": sums["cos"] / n_frames,
        "dead_fraction": float(np.mean(rate_F == 0)),
        "dense_1pct_fraction": float(np.mean(rate_F > 0.01)),
        "dense_10pct_fraction": float(np.mean(rate_F > 0.10)),
        "n_frames": float(n_frames),
    }
