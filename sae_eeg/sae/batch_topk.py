"""BatchTopK sparse autoencoder (Bussmann et al. 2024) and its trainer step.

Matches dictionary_learning's ``BatchTopKSAE`` / ``BatchTopKTrainer``, the code the
AudioSAE checkpoints come from: the state dict holds exactly ``encoder.weight`` (F, D),
``encoder.bias`` (F,), ``decoder.weight`` (D, F), ``b_dec`` (D,), ``k`` and
``threshold``.

The training step never forms a dense B x F matrix beyond the encoder matmul: the
batch top-k selection is exact but only sorts a small candidate set, the decoder is an
``embedding_bag`` over the kept (frame, feature, value) triplets, and the encoder
gradient is accumulated from those triplets (a sparse product, not a second matmul).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import nn
from torch.nn import functional as F_nn

from .._check import _check_range, _ensure_int, _validate_type
from ..errors import InputError
from . import _formats
from ._base import SparseAutoencoder
from ._common import (
    check_activations,
    check_use_threshold,
    geometric_median,
    lr_factor,
    remove_gradient_parallel_to_decoder_directions,
    resolve_device,
    set_decoder_norm_to_unit_norm,
)

_DIRECT_TOPK_SIZE = 1 << 20  # below this many entries, plain topk over the flat batch
_SAMPLE_STRIDE = 101  # prime stride of the sample that bounds the k*B-th largest value


@dataclasses.dataclass(frozen=True)
class SparseCodes:
    """Kept feature activations of a batch as (frame, feature, value) triplets.

    Attributes
    ----------
    rows : torch.Tensor, shape (n_kept,), int64
        Frame index of each kept activation, sorted ascending.
    features : torch.Tensor, shape (n_kept,), int64
        Feature index of each kept activation.
    values : torch.Tensor, shape (n_kept,), float32
        The activations (> 0).
    n_rows : int
        Number of frames B of the batch.
    n_features : int
        Number of features F.
    """

    rows: torch.Tensor
    features: torch.Tensor
    values: torch.Tensor
    n_rows: int
    n_features: int

    @functools.cached_property
    def by_feature(self):
        """``(order, offsets_F)``: a stable sort of the triplets by feature and each feature's start."""
        order = torch.argsort(self.features, stable=True)
        return order, _segment_offsets(self.features[order], self.n_features)

    @functools.cached_property
    def row_offsets(self):
        """Start of each frame's triplets, shape (n_rows,)."""
        return _segment_offsets(self.rows, self.n_rows)

    def with_values(self, values):
        """The same triplets with new ``values`` (the cached orderings are kept)."""
        codes = dataclasses.replace(self, values=values)
        for name in ("by_feature", "row_offsets"):
            if name in self.__dict__:
                codes.__dict__[name] = self.__dict__[name]
        return codes

    def to_dense(self):
        """The (n_rows, n_features) dense tensor (explicit densification)."""
        z_BF = self.values.new_zeros(self.n_rows, self.n_features)
        z_BF[self.rows, self.features] = self.values
        return z_BF


def _segment_offsets(sorted_ids, n_segments):
    """Start offset of each segment of the sorted id vector (for ``embedding_bag``)."""
    counts = torch.bincount(sorted_ids, minlength=n_segments)
    offsets = torch.zeros(n_segments, dtype=torch.long, device=sorted_ids.device)
    torch.cumsum(counts[:-1], dim=0, out=offsets[1:])
    return offsets


class _SelectedPreActivations(torch.autograd.Function):
    """Identity on the selected values of ``(x - b_dec) W_enc^T + b_enc``; sparse gradients.

    The values were computed without autograd; the backward pass routes the
    gradients of the kept entries to ``W_enc``, ``b_enc`` and ``b_dec`` without the
    dense B x F gradient matrix and its matmul.
    """

    @staticmethod
    def forward(ctx, values_N, W_enc_FD, b_enc_F, b_dec_D, x_BD, rows_N, feats_N, order_N, offsets_F):
        ctx.save_for_backward(W_enc_FD, b_dec_D, x_BD, rows_N, feats_N, order_N, offsets_F)
        return values_N.clone()

    @staticmethod
    def backward(ctx, grad_N):
        W_enc_FD, b_dec_D, x_BD, rows_N, feats_N, order_N, offsets_F = ctx.saved_tensors
        grad_sorted = grad_N.float()[order_N]
        grad_W_FD = F_nn.embedding_bag(rows_N[order_N], x_BD.float(), offsets_F, mode="sum",
                                       per_sample_weights=grad_sorted)
        grad_b_enc_F = torch.zeros(W_enc_FD.shape[0], dtype=grad_sorted.dtype, device=grad_sorted.device)
        grad_b_enc_F.index_add_(0, feats_N, grad_N.float())
        grad_W_FD -= grad_b_enc_F[:, None] * b_dec_D[None, :].float()
        grad_b_dec_D = -(grad_b_enc_F @ W_enc_FD.float())
        return None, grad_W_FD, grad_b_enc_F, grad_b_dec_D, None, None, None, None, None


class _SparseDecode(torch.autograd.Function):
    """``sum_i values_i W_dec[:, feats_i]`` per frame (no bias); gradients without dense B x F."""

    @staticmethod
    def forward(ctx, values_N, W_dec_DF, rows_N, feats_N, row_offsets_B, order_N, offsets_F):
        W_dec_FD = W_dec_DF.T.contiguous()
        ctx.save_for_backward(values_N, W_dec_FD, rows_N, feats_N, row_offsets_B, order_N, offsets_F)
        return F_nn.embedding_bag(feats_N, W_dec_FD, row_offsets_B, mode="sum", per_sample_weights=values_N)

    @staticmethod
    def backward(ctx, grad_BD):
        values_N, W_dec_FD, rows_N, feats_N, row_offsets_B, order_N, offsets_F = ctx.saved_tensors
        grad_BD = grad_BD.contiguous()
        grad_values_N = torch.ops.aten._embedding_bag_per_sample_weights_backward(
            grad_BD, W_dec_FD, feats_N, row_offsets_B, rows_N, 0, -1)
        grad_W_FD = F_nn.embedding_bag(rows_N[order_N], grad_BD, offsets_F, mode="sum",
                                       per_sample_weights=values_N[order_N])
        return grad_values_N, grad_W_FD.T, None, None, None, None, None


def _select_batch_topk(pre_BF, n_keep):
    """Flat indices (sorted) of the ``n_keep`` largest positive entries of ``pre_BF``.

    Exact: a strided sample gives a lower bound on the n_keep-th largest value, the
    entries above it are the candidates, and only those are sorted. If there are
    fewer than ``n_keep`` positive entries, all positive entries are returned.
    """
    flat = pre_BF.reshape(-1)
    n = flat.numel()
    n_keep = min(n_keep, n)
    candidates = None
    if n > _DIRECT_TOPK_SIZE:
        sample = flat[::_SAMPLE_STRIDE]
        rank = min(sample.numel(), int(math.ceil(1.25 * n_keep * sample.numel() / n)) + 16)
        bound = sample.topk(rank, sorted=False).values.min()
        if bound > 0:
            candidates = torch.nonzero(flat >= bound).squeeze(1)
            if candidates.numel() < n_keep:
                candidates = None
    if candidates is None:
        top = flat.topk(n_keep, sorted=False)
        candidates = top.indices[top.values > 0]
    elif candidates.numel() > n_keep:
        candidates = candidates[flat[candidates].topk(n_keep, sorted=False).indices]
    return torch.sort(candidates).values


class BatchTopKSAE(SparseAutoencoder):
    """BatchTopK sparse autoencoder.

    Encoding is ``h = ReLU((x - b_dec) W_enc^T + b_enc)``. During training the
    ``k * B`` largest entries of a batch of B frames are kept (flattened over frames
    and features); at inference the entries above the learned scalar ``threshold``
    are kept, or the exact top ``k`` per frame on request. Decoding is
    ``x_hat = z W_dec^T + b_dec``.

    Parameters
    ----------
    d_model : int
        Width D of the activations.
    n_features : int
        Number F of dictionary features.
    k : int
        Mean number of active features per frame (1 <= k <= n_features).
    normalize_input : bool
        Scale every frame to unit L2 norm before encoding (the AudioSAE setting);
        :meth:`forward` restores the frame's norm, :meth:`decode` returns the
        unit-norm-space reconstruction. Stored in the checkpoint's config.
        Default False.
    random_state : int | None
        Seed of the initial weights (a local :class:`torch.Generator`). Default None
        (non-reproducible).

    Attributes
    ----------
    encoder : torch.nn.Linear
        ``weight`` (F, D) and ``bias`` (F,).
    decoder : torch.nn.Linear
        ``weight`` (D, F), unit-norm columns; no bias.
    b_dec : torch.nn.Parameter, shape (D,)
    k : torch.Tensor
        Buffer (int32 scalar).
    threshold : torch.Tensor
        Buffer (float32 scalar, or (F,) when read from a per-feature JumpReLU
        checkpoint); -1 until it has been estimated during training.

    Examples
    --------
    >>> import torch
    >>> sae = BatchTopKSAE(384, 3072, 50, random_state=0)
    >>> codes = sae.encode_sparse(torch.randn(1000, 384))  # per-frame top-k until trained
    >>> codes.shape, codes.nnz
    ((1000, 3072), 50000)
    """

    architecture = "batch_topk"

    def __init__(self, d_model, n_features, k, *, normalize_input=False, random_state=None):
        super().__init__()
        d_model = _ensure_int(d_model, "d_model")
        n_features = _ensure_int(n_features, "n_features")
        k = _ensure_int(k, "k")
        _check_range("d_model", d_model, 1)
        _check_range("n_features", n_features, 1)
        if not 1 <= k <= n_features:
            raise InputError(f"k must be in [1, n_features={n_features}], got {k!r}.")
        _validate_type(normalize_input, bool, "normalize_input")
        _validate_type(random_state, ("int-like", None), "random_state")
        self.d_model, self.n_features, self.normalize_input = d_model, n_features, normalize_input
        self.register_buffer("k", torch.tensor(k, dtype=torch.int32))
        self.register_buffer("threshold", torch.tensor(-1.0, dtype=torch.float32))
        self.encoder = nn.Linear(d_model, n_features)
        self.decoder = nn.Linear(n_features, d_model, bias=False)
        self.b_dec = nn.Parameter(torch.zeros(d_model))
        gen = torch.Generator()
        if random_state is None:
            gen.seed()
        else:
            gen.manual_seed(int(random_state))
        with torch.no_grad():
            self.decoder.weight.copy_(torch.randn(d_model, n_features, generator=gen))
            set_decoder_norm_to_unit_norm(self.decoder.weight, d_model, n_features)
            self.encoder.weight.copy_(self.decoder.weight.T)
            self.encoder.bias.zero_()

    # ------------------------------------------------------------------ config
    def to_config(self):
        """The constructor arguments, as stored in a checkpoint's config.

        Returns
        -------
        config : dict
            ``architecture``, ``d_model``, ``n_features``, ``k``, ``normalize_input``.
        """
        return {
            "architecture": self.architecture,
            "d_model": self.d_model,
            "n_features": self.n_features,
            "k": int(self.k),
            "normalize_input": self.normalize_input,
        }

    @property
    def has_threshold(self):
        """Whether the inference threshold has been estimated (or loaded)."""
        return bool((self.threshold >= 0).all())

    def _check_threshold_estimated(self):
        """Raise unless every feature has an estimated (non-negative) inference threshold."""
        if self.has_threshold:
            return
        missing = torch.nonzero(self.threshold.reshape(-1) < 0).squeeze(1)
        where = ("" if self.threshold.ndim == 0 else
                 f" for {missing.numel()} of {self.n_features} features (e.g. feature {int(missing[0])})")
        raise InputError(
            f"use_threshold=True, but this SAE's inference threshold was never estimated{where} "
            "(it is -1: trained for fewer than threshold_start steps, or read from a TopK checkpoint), so "
            "every positive pre-activation would be kept. Use use_threshold=None (the threshold when "
            "estimated, else the per-frame top-k) or False (the exact per-frame top-k).")

    # ---------------------------------------------------------------- encoding
    def _prepare_input(self, x_BD):
        """Cast to the parameters' dtype/device; unit-normalise if configured."""
        x_BD = check_activations(x_BD, self.d_model, name="x_BD").to(self.b_dec.device)
        if not self.normalize_input:
            return x_BD, None
        norms_B = torch.linalg.vector_norm(x_BD, dim=-1, keepdim=True).clamp_min(1e-8)
        return x_BD / norms_B, norms_B

    def pre_activations(self, x_BD):
        """ReLU((x - b_dec) W_enc^T + b_enc) of already prepared input, shape (B, F)."""
        return torch.relu(self.encoder(x_BD - self.b_dec))

    def encode(self, x_BD, *, use_threshold=None):
        """Inference-mode feature activations.

        Parameters
        ----------
        x_BD : torch.Tensor | ndarray, shape (B, d_model)
            Activations (raw; normalised inside when ``normalize_input``).
        use_threshold : bool | None
            True keeps entries above the learned threshold; False keeps the exact top
            ``k`` per frame; None (default) uses the threshold when it has been
            estimated and the per-frame top-k otherwise (e.g. a TopK checkpoint).

        Returns
        -------
        z_BF : torch.Tensor, shape (B, n_features)

        Raises
        ------
        InputError
            ``use_threshold=True`` on an SAE whose threshold was never estimated
            (-1: trained for fewer than ``threshold_start`` steps, or read from a
            TopK checkpoint), which would keep every positive pre-activation.
        """
        use_threshold = check_use_threshold(use_threshold)
        if use_threshold is None:
            use_threshold = self.has_threshold
        elif use_threshold:
            self._check_threshold_estimated()
        x_BD, _ = self._prepare_input(x_BD)
        h_BF = self.pre_activations(x_BD)
        if use_threshold:
            return h_BF * (h_BF > self.threshold)
        top = h_BF.topk(int(self.k), dim=-1)
        return torch.zeros_like(h_BF).scatter_(-1, top.indices, top.values)

    def _encode_chunk_sparse(self, x_BD):
        """Threshold encoding of a chunk with in-place ops: one F-wide buffer and a mask."""
        if not self.has_threshold:
            return super()._encode_chunk_sparse(x_BD)
        x_BD, _ = self._prepare_input(x_BD)
        h_BF = self.encoder(x_BD - self.b_dec)  # same arithmetic as encode(): identical values
        rows_N, feats_N = torch.nonzero(h_BF > self.threshold.clamp_min(0), as_tuple=True)
        return rows_N, feats_N, h_BF[rows_N, feats_N]

    def encode_batch_topk(self, x_BD):
        """Training-mode encoding: the ``k * B`` largest entries of the batch.

        Parameters
        ----------
        x_BD : torch.Tensor | ndarray, shape (B, d_model)

        Returns
        -------
        codes : SparseCodes
            Differentiable ``values`` with respect to the encoder and ``b_dec``.
        """
        x_BD, _ = self._prepare_input(x_BD)
        codes, _ = self._batch_topk(x_BD, n_keep=int(self.k) * x_BD.shape[0])
        return codes

    def _batch_topk(self, x_BD, *, n_keep):
        W_enc_FD, b_enc_F = self.encoder.weight, self.encoder.bias
        with torch.no_grad():
            bias_F = b_enc_F - W_enc_FD @ self.b_dec
            with torch.autocast(x_BD.device.type, dtype=torch.bfloat16, enabled=x_BD.device.type == "cuda"):
                pre_BF = torch.addmm(bias_F, x_BD, W_enc_FD.T)
            flat_N = _select_batch_topk(pre_BF, n_keep)
            rows_N = torch.div(flat_N, self.n_features, rounding_mode="floor")
            feats_N = flat_N - rows_N * self.n_features
            values_N = pre_BF.reshape(-1)[flat_N].float()
        codes = SparseCodes(rows_N, feats_N, values_N, x_BD.shape[0], self.n_features)
        return self._attach_encoder_grad(codes, x_BD), pre_BF

    def _attach_encoder_grad(self, codes, x_BD):
        """``codes`` whose values carry the (sparse) gradient of the encoder and ``b_dec``."""
        order_N, offsets_F = codes.by_feature
        values_N = _SelectedPreActivations.apply(codes.values, self.encoder.weight, self.encoder.bias, self.b_dec,
                                                 x_BD, codes.rows, codes.features, order_N, offsets_F)
        return codes.with_values(values_N)

    # ---------------------------------------------------------------- decoding
    def decode(self, z_BF):
        """Reconstruction ``z W_dec^T + b_dec`` in the SAE's input space.

        Parameters
        ----------
        z_BF : torch.Tensor, shape (B, n_features)

        Returns
        -------
        x_hat_BD : torch.Tensor, shape (B, d_model)
            Unit-norm space when ``normalize_input`` (see :meth:`forward`).
        """
        return self.decoder(z_BF) + self.b_dec

    def decode_sparse(self, codes, *, add_bias=True):
        """Reconstruction from :class:`SparseCodes`, without a dense B x F matrix.

        Parameters
        ----------
        codes : SparseCodes
        add_bias : bool
            Add ``b_dec``. Default True.

        Returns
        -------
        x_hat_BD : torch.Tensor, shape (codes.n_rows, d_model)
        """
        order_N, offsets_F = codes.by_feature
        x_hat_BD = _SparseDecode.apply(codes.values, self.decoder.weight, codes.rows, codes.features,
                                       codes.row_offsets, order_N, offsets_F)
        return x_hat_BD + self.b_dec if add_bias else x_hat_BD

    def forward(self, x_BD, *, use_threshold=None):
        """Reconstruct ``x_BD`` in its own scale (inference encoding).

        Parameters
        ----------
        x_BD : torch.Tensor | ndarray, shape (B, d_model)
        use_threshold : bool | None
            As in :meth:`encode`.

        Returns
        -------
        x_hat_BD : torch.Tensor, shape (B, d_model)
        """
        x_in_BD, norms_B = self._prepare_input(x_BD)
        x_hat_BD = self.decode(self.encode(x_in_BD, use_threshold=use_threshold))
        return x_hat_BD if norms_B is None else x_hat_BD * norms_B

    # ------------------------------------------------------------- checkpoints
    @classmethod
    def from_state(cls, state, config, *, device="cpu", source="state dict"):
        """Build a model from a state dict in the AudioSAE layout and its config.

        Parameters
        ----------
        state : dict of str to torch.Tensor
            ``encoder.weight`` (F, D), ``encoder.bias``, ``decoder.weight`` (D, F),
            ``b_dec``, ``k``, ``threshold``.
        config : dict
            ``normalize_input`` (bool, default False).
        device : str | torch.device
        source : str
            Where the state comes from, for error messages (a file name).

        Returns
        -------
        sae : BatchTopKSAE
        """
        n_features, d_model = _formats.check_state(state, source)
        model = cls(d_model, n_features, int(state["k"]), normalize_input=bool(config.get("normalize_input", False)),
                    random_state=0)
        if state["threshold"].ndim == 1:
            model.threshold = torch.full((n_features,), -1.0)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise _formats.CheckpointError(f"{source}: does not match a BatchTopK SAE ({err}).") from err
        return model.to(resolve_device(device))

    @classmethod
    def from_pretrained(cls, path_or_repo, *, layer=None, device="cpu"):
        """Load an AudioSAE/dictionary_learning, SAELens or sparsify checkpoint.

        Parameters
        ----------
        path_or_repo : path-like | str
            A checkpoint folder (holding ``layer_n/`` folders or one checkpoint), an
            ``ae.pt`` file, or a Hugging Face Hub repository id (downloaded through
            ``huggingface_hub`` when online; read from the local cache offline).
        layer : int | None
            Layer n, from 1 (``layer_n/ae.pt``); None when the path holds one SAE.
        device : str | torch.device
            Where to put the model. Default "cpu".

        Returns
        -------
        sae : BatchTopKSAE

        Raises
        ------
        CheckpointError
            If nothing or an invalid checkpoint is found, naming the file and shapes.
        """
        state, config, source = _formats.read_checkpoint(path_or_repo, layer=layer)
        return cls.from_state(state, config, device=device, source=source)

    def save(self, path, *, format="audiosae", layer=None, extra_config=None):
        """Write the SAE as a checkpoint folder (atomically).

        Parameters
        ----------
        path : path-like
            Output folder. With ``layer`` the files go to ``path/layer_n/``.
        format : str
            ``"audiosae"`` (``ae.pt`` + ``config.json``, dictionary_learning layout)
            or ``"saelens"`` (``cfg.json`` + ``sae_weights.safetensors``).
        layer : int | None
            Layer number n (from 1) for the ``layer_n`` sub-folder. Default None.
        extra_config : dict | None
            More entries for the config file (e.g. backbone name, training config).

        Returns
        -------
        folder : pathlib.Path
            The folder holding the written files.
        """
        state = {name: tensor.detach().cpu() for name, tensor in self.state_dict().items()}
        return _formats.write_checkpoint(path, state, self.to_config(), format=format, layer=layer,
                                         extra_config=extra_config)


class BatchTopKTrainer:
    """One optimisation step at a time for a :class:`BatchTopKSAE` (dictionary_learning's trainer).

    Parameters
    ----------
    sae : BatchTopKSAE
        The model, trained in place (moved to ``device``).
    n_steps : int
        Total number of steps (for the learning-rate schedule).
    lr : float
        Base learning rate of Adam (betas 0.9, 0.999). Default 2e-4.
    warmup_steps : int
        Linear warm-up steps. Default 1000.
    decay_fraction : float
        Linear decay to 0 over this final fraction of the steps. Default 0.2.
    threshold_start : int
        First step at which the inference threshold is updated. Default 1000.
    threshold_beta : float
        EMA factor of the threshold. Default 0.999.
    auxk_coef : float
        Weight of the AuxK loss on dead features (0 disables it, the default;
        dictionary_learning uses 1/32).
    dead_window : int
        A feature that has not fired on this many frames is dead. Default 10_000_000.
    grad_clip : float
        Maximal gradient norm. Default 1.0.
    device : str | torch.device
        Default "cpu".

    Attributes
    ----------
    step : int
        Number of steps done.
    frames_since_fired : torch.Tensor, shape (n_features,), int64
    """

    def __init__(self, sae, *, n_steps, lr=2e-4, warmup_steps=1000, decay_fraction=0.2, threshold_start=1000,
                 threshold_beta=0.999, auxk_coef=0.0, dead_window=10_000_000, grad_clip=1.0, device="cpu"):
        _validate_type(sae, BatchTopKSAE, "sae")
        self.n_steps = _ensure_int(n_steps, "n_steps")
        _check_range("n_steps", self.n_steps, 1)
        _check_range("lr", lr, 0, low_inclusive=False)
        _check_range("decay_fraction", decay_fraction, 0, 1)
        _check_range("threshold_beta", threshold_beta, 0, 1)
        _check_range("auxk_coef", auxk_coef, 0)
        _check_range("grad_clip", grad_clip, 0, low_inclusive=False)
        self.warmup_steps = _ensure_int(warmup_steps, "warmup_steps")
        self.threshold_start = _ensure_int(threshold_start, "threshold_start")
        self.dead_window = _ensure_int(dead_window, "dead_window")
        self.lr, self.decay_fraction, self.threshold_beta = float(lr), float(decay_fraction), float(threshold_beta)
        self.auxk_coef, self.grad_clip = float(auxk_coef), float(grad_clip)
        self.device = resolve_device(device)
        self.sae = sae.to(self.device).train()
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=self.lr, betas=(0.9, 0.999))
        self.step = 0
        self.frames_since_fired = torch.zeros(sae.n_features, dtype=torch.long, device=self.device)
        decay = self.n_steps - int(round(self.decay_fraction * self.n_steps))
        self._decay_start = decay if self.decay_fraction > 0 else None

    def _auxk_loss(self, pre_BF, residual_BD, x_BD):
        dead_F = self.frames_since_fired >= self.dead_window
        n_dead = int(dead_F.sum())
        if n_dead == 0 or self.auxk_coef == 0:
            return torch.zeros((), device=self.device)
        k_aux = min(self.sae.d_model // 2, n_dead)
        dead_ids = torch.nonzero(dead_F).squeeze(1)
        with torch.no_grad():
            top = pre_BF[:, dead_ids].float().topk(k_aux, dim=1)
            rows_N = torch.arange(pre_BF.shape[0], device=self.device).repeat_interleave(k_aux)
            feats_N = dead_ids[top.indices.reshape(-1)]
            values_N = top.values.reshape(-1)
            keep = values_N > 0
            rows_N, feats_N, values_N = rows_N[keep], feats_N[keep], values_N[keep]
        sae = self.sae
        codes = SparseCodes(rows_N, feats_N, values_N, pre_BF.shape[0], sae.n_features)
        codes = sae._attach_encoder_grad(codes, x_BD)
        recon_BD = sae.decode_sparse(codes, add_bias=False)
        l2_aux = (residual_BD - recon_BD).pow(2).sum(dim=-1).mean()
        denom = (residual_BD - residual_BD.mean(dim=0)).pow(2).sum(dim=-1).mean()
        return torch.nan_to_num(l2_aux / denom, nan=0.0)

    @torch.no_grad()
    def _update_threshold(self, values_N):
        positive = values_N[values_N > 0]
        smallest = positive.min().float() if positive.numel() else torch.zeros((), device=self.device)
        thr = self.sae.threshold
        if bool((thr < 0).all()):
            thr.fill_(smallest)
        else:
            thr.mul_(self.threshold_beta).add_((1 - self.threshold_beta) * smallest)

    def update(self, x_BD):
        """Do one optimisation step on a batch.

        Parameters
        ----------
        x_BD : torch.Tensor, shape (B, d_model)
            Raw activations (normalised inside when the SAE normalises its input).

        Returns
        -------
        logs : dict of str to float
            ``loss``, ``mse`` (sum over D, mean over frames), ``auxk``, ``l0``,
            ``fvu`` (of the batch), ``dead_fraction``, ``lr``.
        """
        sae = self.sae
        x_BD, _ = sae._prepare_input(x_BD)
        if self.step == 0:
            with torch.no_grad():
                sae.b_dec.copy_(geometric_median(x_BD))
        lr = self.lr * lr_factor(self.step, n_steps=self.n_steps, warmup_steps=self.warmup_steps,
                                 decay_start=self._decay_start)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        codes, pre_BF = sae._batch_topk(x_BD, n_keep=int(sae.k) * x_BD.shape[0])
        x_hat_BD = sae.decode_sparse(codes)
        residual_BD = x_BD - x_hat_BD
        mse = residual_BD.pow(2).sum(dim=-1).mean()
        with torch.no_grad():
            fired_F = torch.bincount(codes.features, minlength=sae.n_features) > 0
            self.frames_since_fired += x_BD.shape[0]
            self.frames_since_fired[fired_F] = 0
            if self.step >= self.threshold_start:
                self._update_threshold(codes.values)
        auxk = self._auxk_loss(pre_BF, residual_BD.detach(), x_BD)
        del pre_BF
        loss = mse + self.auxk_coef * auxk
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        remove_gradient_parallel_to_decoder_directions(sae.decoder.weight, sae.decoder.weight.grad, sae.d_model,
                                                       sae.n_features)
        torch.nn.utils.clip_grad_norm_(sae.parameters(), self.grad_clip)
        self.optimizer.step()
        set_decoder_norm_to_unit_norm(sae.decoder.weight, sae.d_model, sae.n_features)
        self.step += 1
        with torch.no_grad():
            total = (x_BD - x_BD.mean(dim=0)).pow(2).sum(dim=-1).mean()
            return {
                "loss": float(loss), "mse": float(mse), "auxk": float(auxk),
                "l0": codes.values.numel() / x_BD.shape[0], "fvu": float(mse / total.clamp_min(1e-12)),
                "dead_fraction": float((self.frames_since_fired >= self.dead_window).float().mean()), "lr": lr,
            }

    def state_dict(self):
        """Everything needed to resume: model, optimizer, step, dead-feature counters."""
        return {
            "model": self.sae.state_dict(), "optimizer": self.optimizer.state_dict(),
            "step": self.step, "frames_since_fired": self.frames_since_fired.cpu(),
        }

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict` (the model's threshold shape included)."""
        self.sae.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.frames_since_fired = state["frames_since_fired"].to(self.device)


__all__ = ["BatchTopKSAE", "BatchTopKTrainer", "SparseCodes"]
