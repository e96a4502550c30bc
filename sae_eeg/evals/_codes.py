"""Validation and small array helpers shared by the evaluation modules.

SAE codes arrive as a ``scipy.sparse`` array (T, F) from ``encode_sparse`` or as
a dense ndarray (T, F); frames belong to clips through ``clip_ids`` (T,).
Nothing here densifies a (T, F) matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._check import _check_option, _check_range, _ensure_int, _validate_type
from ..errors import InputError


def _as_csr(codes, name="codes"):
    """Return ``codes`` (T, F) as a float32 ``csr_array`` with explicit zeros removed."""
    if sp.issparse(codes):
        csr = sp.csr_array(codes, dtype=np.float32)
    elif isinstance(codes, np.ndarray) or hasattr(codes, "__array__"):
        arr = np.asarray(codes)
        if arr.ndim != 2:
            raise InputError(f"{name} must be 2-D (n_frames, n_features), got shape {arr.shape}.")
        csr = sp.csr_array(arr.astype(np.float32, copy=False))
    else:
        raise InputError(
            f"{name} must be a scipy.sparse array or a 2-D ndarray (n_frames, n_features), "
            f"got {type(codes).__name__}."
        )
    if csr.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_frames, n_features), got shape {csr.shape}.")
    if not np.all(np.isfinite(csr.data)):
        raise InputError(f"{name} holds NaN or Inf values.")
    csr.eliminate_zeros()
    csr.sort_indices()
    return csr


def _check_dense_2d(x, name):
    """Return ``x`` as a finite float64 2-D ndarray."""
    if sp.issparse(x):
        x = x.toarray()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"{name} must be 2-D, got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{name} holds NaN or Inf values.")
    return x


def _check_labels(labels, n, name="labels"):
    """Return ``labels`` as a 1-D ndarray of length ``n``."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(
            f"{name} must be 1-D with one entry per row ({n}), got shape {arr.shape}."
        )
    return arr


def _clip_index(clip_ids, n_frames):
    """Map ``clip_ids`` (T,) to (codes (T,) int in [0, n_clips), unique clip ids)."""
    ids = _check_labels(clip_ids, n_frames, "clip_ids")
    uniques, inverse = np.unique(ids, return_inverse=True)
    return inverse.astype(np.intp), uniques


def _rng(random_state):
    """A numpy Generator from an int, a Generator or None."""
    _validate_type(random_state, ("int-like", np.random.Generator, None), "random_state")
    return np.random.default_rng(random_state)


def _random_state_int(random_state):
    """An int seed (for scikit-learn estimators) drawn from ``random_state``."""
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return None if random_state is None else int(random_state)
    return int(_rng(random_state).integers(2**31 - 1))


def _positive_entries(csr):
    """Row, column and value of every positive entry of a csr array."""
    coo = csr.tocoo()
    positive = coo.data > 0
    return coo.row[positive], coo.col[positive], coo.data[positive]


def _rank_in_group(group_of_entry, values):
    """Rank (0 = largest) of each entry's value among the entries of its group."""
    order = np.lexsort((-values, group_of_entry))
    sorted_groups = group_of_entry[order]
    n_groups = int(group_of_entry.max()) + 1 if group_of_entry.size else 0
    starts = np.searchsorted(sorted_groups, np.arange(n_groups))
    rank = np.empty(order.shape[0], dtype=np.int64)
    rank[order] = np.arange(order.shape[0]) - starts[sorted_groups]
    return rank


def topk_per_frame(codes, k):
    """Keep the ``k`` largest positive codes of every frame (exact per-frame top-k).

    Parameters
    ----------
    codes : scipy.sparse array | ndarray, shape (n_frames, n_features)
        SAE codes (or any non-negative activations).
    k : int
        Number of entries kept per frame, >= 1 (ties broken by feature order).

    Returns
    -------
    sparse_codes : scipy.sparse.csr_array, shape (n_frames, n_features)
        The kept values; everything else is zero.
    """
    csr = _as_csr(codes)
    k = _ensure_int(k, "k")
    _check_range("k", k, 1)
    rows, cols, vals = _positive_entries(csr)
    keep = _rank_in_group(rows, vals) < k
    out = sp.csr_array((vals[keep], (rows[keep], cols[keep])), shape=csr.shape)
    out.sort_indices()
    return out


def clip_features(codes, clip_ids, *, how="mean"):
    """Pool frame-level codes into one row per clip.

    Parameters
    ----------
    codes : scipy.sparse array | ndarray, shape (n_frames, n_features)
        Frame-level SAE codes or dense activations.
    clip_ids : array-like, shape (n_frames,)
        Clip of each frame (any sortable labels; frames of a clip need not be
        contiguous).
    how : ``"mean"`` | ``"max"``
        Mean over the frames of a clip, or maximum. Default ``"mean"``.

    Returns
    -------
    pooled : ndarray, shape (n_clips, n_features)
        One row per clip, in the order of ``np.unique(clip_ids)``. Dense: select
        features first when F is large.
    clips : ndarray, shape (n_clips,)
        The clip ids of the rows.
    """
    _check_option("how", how, ("mean", "max"))
    if sp.issparse(codes):
        csr = _as_csr(codes)
        n_frames, n_features = csr.shape
    else:
        dense = _check_dense_2d(codes, "codes")
        n_frames, n_features = dense.shape
    clip_TC, clips = _clip_index(clip_ids, n_frames)
    n_clips = clips.shape[0]
    if how == "mean":
        counts = np.bincount(clip_TC, minlength=n_clips).astype(np.float64)
        pool = sp.csr_array(
            (1.0 / counts[clip_TC], (clip_TC, np.arange(n_frames))), shape=(n_clips, n_frames)
        )
        out = pool @ (csr if sp.issparse(codes) else dense)
        return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float64), clips
    out = np.full((n_clips, n_features), -np.inf)
    if sp.issparse(codes):
        coo = csr.tocoo()
        np.maximum.at(out, (clip_TC[coo.row], coo.col), coo.data)
        # Frames where a feature is zero count as 0 in the maximum.
        frames_per_clip = np.bincount(clip_TC, minlength=n_clips)
        out = np.where(np.isfinite(out), out, 0.0)
        has_zero = _clip_has_zero(csr, clip_TC, n_clips, frames_per_clip)
        out[has_zero] = np.maximum(out[has_zero], 0.0)
    else:
        np.maximum.at(out, clip_TC, dense)
    return out, clips


def _clip_has_zero(csr, clip_TC, n_clips, frames_per_clip):
    """Boolean (n_clips, F): does the feature have at least one zero frame in the clip."""
    active = sp.csr_array(
        (np.ones(csr.nnz), csr.indices, csr.indptr), shape=csr.shape
    )
    pool = sp.csr_array(
        (np.ones(csr.shape[0]), (clip_TC, np.arange(csr.shape[0]))), shape=(n_clips, csr.shape[0])
    )
    n_active = (pool @ active).toarray()
    return n_active < frames_per_clip[:, None]
