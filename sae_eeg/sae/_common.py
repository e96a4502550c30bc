"""Pieces shared by every SAE architecture and trainer.

Unit-norm decoder columns, removal of the gradient parallel to them, the learning-rate
schedule, the geometric median used to initialise ``b_dec``, device resolution and
seeded generators. Written once here and reused (dictionary_learning's
``trainers/trainer.py``).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .._check import _validate_type
from ..errors import InputError


def resolve_device(device):
    """Return a :class:`torch.device`; ``"auto"`` takes CUDA when it is available.

    Parameters
    ----------
    device : str | torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a device object.

    Returns
    -------
    device : torch.device

    Raises
    ------
    InputError
        If the string names no device, or CUDA is asked for but unavailable.
    """
    _validate_type(device, (str, torch.device), "device")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise InputError(f"device {device!r} is not a torch device ({err}); use 'cpu', 'cuda' or 'auto'.") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'.")
    return resolved


@contextmanager
def torch_threads(n_threads):
    """Run the block with ``n_threads`` intra-op torch threads, then restore the count.

    On CPU, a matrix product split over another number of threads sums in another
    order, so trained weights depend on the thread count; fixing it makes a training
    run give the same SAE on every machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def generator_from_seed(seed, device="cpu"):
    """A :class:`torch.Generator` on ``device`` seeded with the int ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def _check_decoder_shape(W_dec_DF, d_model, n_features):
    if tuple(W_dec_DF.shape) != (d_model, n_features):
        raise InputError(
            f"decoder weight must have shape (d_model, n_features) = ({d_model}, {n_features}), "
            f"got {tuple(W_dec_DF.shape)} (transposed nn.Linear layout?)."
        )


@torch.no_grad()
def set_decoder_norm_to_unit_norm(W_dec_DF, d_model, n_features, *, eps=1e-8):
    """Scale every decoder column (one per feature) to unit L2 norm, in place.

    Parameters
    ----------
    W_dec_DF : torch.Tensor, shape (d_model, n_features)
        The decoder weight in ``nn.Linear(n_features, d_model)`` layout.
    d_model, n_features : int
        Expected sizes; a transposed weight raises.

    Returns
    -------
    norms_F : torch.Tensor, shape (n_features,)
        The column norms before scaling.
    """
    _check_decoder_shape(W_dec_DF, d_model, n_features)
    norms_F = torch.linalg.vector_norm(W_dec_DF, dim=0)
    W_dec_DF.div_(norms_F.clamp_min(eps))
    return norms_F


@torch.no_grad()
def remove_gradient_parallel_to_decoder_directions(W_dec_DF, grad_DF, d_model, n_features):
    """Remove from ``grad_DF`` its component along each (unit) decoder column, in place.

    Keeps the Adam step tangent to the unit sphere of each column, so renormalising
    after the step changes little.

    Parameters
    ----------
    W_dec_DF, grad_DF : torch.Tensor, shape (d_model, n_features)
        Decoder weight (unit-norm columns) and its gradient.
    d_model, n_features : int
        Expected sizes; a transposed weight raises.
    """
    _check_decoder_shape(W_dec_DF, d_model, n_features)
    _check_decoder_shape(grad_DF, d_model, n_features)
    parallel_F = (grad_DF * W_dec_DF).sum(dim=0)
    grad_DF.sub_(W_dec_DF * parallel_F)
    return grad_DF


def lr_factor(step, *, n_steps, warmup_steps, decay_start):
    """Multiplier of the base learning rate at ``step`` (0-based).

    Linear warm-up from ~0 to 1 over ``warmup_steps``, constant, then linear decay
    to 0 from ``decay_start`` to ``n_steps`` (dictionary_learning's schedule; the
    AudioSAE setting decays over the last 20 %).

    Parameters
    ----------
    step : int
        Optimisation step, from 0.
    n_steps : int
        Total number of steps.
    warmup_steps : int
        Steps of linear warm-up (0 for none).
    decay_start : int | None
        First step of the linear decay; ``None`` for no decay.

    Returns
    -------
    factor : float
        In [0, 1].
    """
    factor = 1.0
    if warmup_steps > 0 and step < warmup_steps:
        factor = (step + 1) / warmup_steps
    if decay_start is not None and step >= decay_start:
        factor = min(factor, max(0.0, (n_steps - step) / max(1, n_steps - decay_start)))
    return factor


@torch.no_grad()
def geometric_median(points_ND, *, max_iter=100, tol=1e-5):
    """Geometric median of the rows of ``points_ND`` (Weiszfeld's algorithm).

    Parameters
    ----------
    points_ND : torch.Tensor, shape (n_points, n_dims)
    max_iter : int
        Maximal number of iterations. Default 100.
    tol : float
        Stop when the estimate moves less than ``tol`` (L2). Default 1e-5.

    Returns
    -------
    median_D : torch.Tensor, shape (n_dims,)
        Minimises the sum of Euclidean distances to the points.
    """
    points_ND = points_ND.float()
    guess_D = points_ND.mean(dim=0)
    for _ in range(max_iter):
        dist_N = torch.linalg.vector_norm(points_ND - guess_D, dim=1).clamp_min(1e-8)
        weights_N = 1.0 / dist_N
        new_D = (weights_N[:, None] * points_ND).sum(dim=0) / weights_N.sum()
        moved = torch.linalg.vector_norm(new_D - guess_D)
        guess_D = new_D
        if moved < tol:
            break
    return guess_D


def check_activations(acts, d_model, *, name="acts"):
    """Return ``acts`` as a float32 CPU/GPU tensor of shape (n, d_model), else raise.

    Parameters
    ----------
    acts : array-like | torch.Tensor, shape (n_frames, d_model)
    d_model : int
        Expected width.
    name : str
        Name used in messages.

    Returns
    -------
    acts : torch.Tensor, shape (n_frames, d_model), float32
    """
    if not isinstance(acts, torch.Tensor):
        acts = torch.as_tensor(acts)
    if acts.ndim != 2 or acts.shape[1] != d_model:
        raise InputError(
            f"{name} must have shape (n_frames, d_model={d_model}), got {tuple(acts.shape)}."
        )
    if not acts.is_floating_point():
        raise InputError(f"{name} must hold floating-point values, got dtype {acts.dtype}.")
    return acts.float()


def check_use_threshold(use_threshold):
    """Validate the ``use_threshold`` option (None, True or False) and return it."""
    return _validate_type(use_threshold, (bool, None), "use_threshold")
