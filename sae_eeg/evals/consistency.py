"""Consistency of SAE features across seeds, checkpoints, layers and models.

Two complementary measures (AudioSAE, section 3.3.1):

* **Activation patterns.** Codes are binarised per clip with a batch top-k rule
  (a clip of n frames keeps its ``k_per_frame * n`` largest of all ``F * n``
  activations), and two features *match* when the intersection over union (IoU)
  of their binary patterns over the dataset's frames exceeds ``threshold``
  (0.5). The coverage c(A, B) is the share of A's live features that match some
  feature of B (many-to-one: several features of A may match the same feature of
  B); duplicates are matches between two different features of the same SAE.
  This works across layers and models, as long as the frames are the same.
* **Decoder directions.** The decoder rows of two SAEs of the same width are
  paired one-to-one by the Hungarian algorithm on their cosine similarity; a
  pair is *shared* when its cosine is at least ``threshold`` (0.7). The mean
  matched cosine is reported next to a floor: the same matching against a
  randomly initialised decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from .._check import _check_range, _ensure_int
from .._docs import fill_doc
from ..errors import InputError
from ._codes import (
    _as_csr,
    _check_dense_2d,
    _clip_index,
    _positive_entries,
    _rank_in_group,
    _rng,
)


def activation_patterns(codes, clip_ids, *, k_per_frame=50):
    """Binary activation patterns by the per-clip batch top-k rule.

    Parameters
    ----------
    codes : scipy.sparse array | ndarray, shape (n_frames, n_features)
        SAE codes of every frame of a dataset (clips concatenated).
    clip_ids : array-like, shape (n_frames,)
        Clip of each frame.
    k_per_frame : int
        A clip of n frames keeps its ``k_per_frame * n`` largest positive
        activations (ties broken by frame then feature order). Default 50.

    Returns
    -------
    patterns : scipy.sparse.csr_array of bool, shape (n_frames, n_features)
        True where a feature counts as active.
    """
    csr = _as_csr(codes)
    k_per_frame = _ensure_int(k_per_frame, "k_per_frame")
    _check_range("k_per_frame", k_per_frame, 1)
    clip_TC, clips = _clip_index(clip_ids, csr.shape[0])
    rows, cols, vals = _positive_entries(csr)
    budget = k_per_frame * np.bincount(clip_TC, minlength=clips.shape[0])
    clip_of_entry = clip_TC[rows]
    keep = _rank_in_group(clip_of_entry, vals) < budget[clip_of_entry]
    patterns = sp.csr_array(
        (np.ones(int(keep.sum()), dtype=bool), (rows[keep], cols[keep])), shape=csr.shape
    )
    patterns.sort_indices()
    return patterns


def _check_patterns(patterns, name):
    if not sp.issparse(patterns) or patterns.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D scipy.sparse boolean array from activation_patterns, "
            f"got {type(patterns).__name__}."
        )
    return sp.csc_array(patterns, dtype=np.float64)


def _iou_matrix(patterns_a, patterns_b):
    """Sparse IoU of every co-active pair of features (zero pairs omitted)."""
    a = _check_patterns(patterns_a, "patterns_a")
    b = _check_patterns(patterns_b, "patterns_b")
    if a.shape[0] != b.shape[0]:
        raise InputError(
            "patterns_a and patterns_b must cover the same frames: got "
            f"{a.shape[0]} and {b.shape[0]} rows."
        )
    inter = (a.T @ b).tocoo()
    count_a = np.asarray(a.sum(axis=0)).ravel()
    count_b = np.asarray(b.sum(axis=0)).ravel()
    union = count_a[inter.row] + count_b[inter.col] - inter.data
    iou = inter.data / union
    return inter.row, inter.col, iou, count_a, count_b


def match_features(patterns_a, patterns_b, *, threshold=0.5):
    """All pairs of features whose activation patterns overlap with IoU > ``threshold``.

    Parameters
    ----------
    patterns_a, patterns_b : scipy.sparse array of bool, shape (n_frames, F_a) and (n_frames, F_b)
        Activation patterns over the same frames (:func:`activation_patterns`).
    threshold : float
        Minimum IoU (exclusive) for a match, in [0, 1]. Default 0.5.

    Returns
    -------
    matches : pandas.DataFrame
        Columns ``feature_a``, ``feature_b``, ``iou``; one row per matching pair,
        sorted by ``feature_a`` then decreasing IoU.
    """
    _check_range("threshold", threshold, 0, 1)
    rows, cols, iou, _, _ = _iou_matrix(patterns_a, patterns_b)
    return _matches_frame(rows, cols, iou, threshold)


def _matches_frame(rows, cols, iou, threshold):
    keep = iou > threshold
    matches = pd.DataFrame(
        {"feature_a": rows[keep].astype(np.int64), "feature_b": cols[keep].astype(np.int64),
         "iou": iou[keep]}
    )
    return matches.sort_values(["feature_a", "iou"], ascending=[True, False], ignore_index=True)


def _best_iou(rows, cols, iou, n_features, *, exclude_self=False):
    """Best partner and IoU of each row feature (-1 and 0 when none)."""
    if exclude_self:
        off = rows != cols
        rows, cols, iou = rows[off], cols[off], iou[off]
    best = np.zeros(n_features)
    partner = np.full(n_features, -1, dtype=np.int64)
    if rows.size:
        order = np.lexsort((-iou, rows))
        first = np.r_[True, rows[order][1:] != rows[order][:-1]]
        top = order[first]
        best[rows[top]] = iou[top]
        partner[rows[top]] = cols[top]
    return partner, best


@dataclass(frozen=True)
class ActivationConsistency:
    """Activation-pattern consistency of two SAEs on the same frames.

    Attributes
    ----------
    coverage_ab : float
        c(A, B): share of A's live features with a match (IoU > threshold) in B.
    coverage_ba : float
        c(B, A).
    duplicates_a : float
        Share of A's live features that match another feature of A.
    duplicates_b : float
        The same for B.
    features : pandas.DataFrame
        One row per feature of each SAE: ``sae`` ("a" | "b"), ``feature``,
        ``n_active`` (frames), ``best_match`` (feature of the other SAE, -1 if
        none co-fires), ``best_iou``, ``matched`` (bool), ``duplicate_of`` (best
        partner in the same SAE, -1 if none), ``duplicate_iou``, ``is_duplicate``.
    matches : pandas.DataFrame
        ``feature_a``, ``feature_b``, ``iou`` of every match from A to B.
    threshold : float
        The IoU threshold used.
    """

    coverage_ab: float
    coverage_ba: float
    duplicates_a: float
    duplicates_b: float
    features: pd.DataFrame
    matches: pd.DataFrame
    threshold: float


def _side_table(name, other_best, self_pairs, threshold):
    rows, cols, iou, count, _ = self_pairs
    dup_partner, dup_iou = _best_iou(rows, cols, iou, count.shape[0], exclude_self=True)
    partner, best = other_best
    return pd.DataFrame(
        {
            "sae": name,
            "feature": np.arange(count.shape[0], dtype=np.int64),
            "n_active": count.astype(np.int64),
            "best_match": partner,
            "best_iou": best,
            "matched": best > threshold,
            "duplicate_of": dup_partner,
            "duplicate_iou": dup_iou,
            "is_duplicate": dup_iou > threshold,
        }
    )


def _mean_or_nan(values):
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def _share(table, column):
    return _mean_or_nan(table.loc[table["n_active"] > 0, column])


def activation_consistency(codes_a, codes_b, clip_ids, *, k_per_frame=50, threshold=0.5):
    """Coverage and duplicates of two SAEs from their codes on the same frames.

    Parameters
    ----------
    codes_a, codes_b : scipy.sparse array | ndarray, shape (n_frames, F_a) and (n_frames, F_b)
        Codes of the two SAEs (any layers or models) on the same frames.
    clip_ids : array-like, shape (n_frames,)
        Clip of each frame, for the per-clip batch top-k rule.
    k_per_frame : int
        Active budget per frame of :func:`activation_patterns`. Default 50.
    threshold : float
        IoU above which two features match. Default 0.5.

    Returns
    -------
    result : ActivationConsistency
        Coverages and duplicate shares are over *live* features (active on at
        least one frame); dead features are listed with ``n_active == 0``.
    """
    _check_range("threshold", threshold, 0, 1)
    pat_a = activation_patterns(codes_a, clip_ids, k_per_frame=k_per_frame)
    pat_b = activation_patterns(codes_b, clip_ids, k_per_frame=k_per_frame)
    ab = _iou_matrix(pat_a, pat_b)
    rows, cols, iou, count_a, count_b = ab
    best_ab = _best_iou(rows, cols, iou, count_a.shape[0])
    best_ba = _best_iou(cols, rows, iou, count_b.shape[0])
    table_a = _side_table("a", best_ab, _iou_matrix(pat_a, pat_a), threshold)
    table_b = _side_table("b", best_ba, _iou_matrix(pat_b, pat_b), threshold)
    matches = _matches_frame(rows, cols, iou, threshold)
    return ActivationConsistency(
        coverage_ab=_share(table_a, "matched"),
        coverage_ba=_share(table_b, "matched"),
        duplicates_a=_share(table_a, "is_duplicate"),
        duplicates_b=_share(table_b, "is_duplicate"),
        features=pd.concat([table_a, table_b], ignore_index=True),
        matches=matches,
        threshold=float(threshold),
    )


def consistency_table(codes, clip_ids, *, k_per_frame=50, threshold=0.5):
    """Pairwise coverage between several SAEs (seeds, checkpoints, layers, models).

    Parameters
    ----------
    codes : dict of str to scipy.sparse array | ndarray, each shape (n_frames, F_name)
        Codes of each SAE on the same frames, keyed by a name.
    clip_ids : array-like, shape (n_frames,)
        Clip of each frame.
    k_per_frame : int
        Active budget per frame. Default 50.
    threshold : float
        IoU above which two features match. Default 0.5.

    Returns
    -------
    table : pandas.DataFrame
        One row per ordered pair: ``sae_a``, ``sae_b``, ``coverage`` (c(A, B)),
        ``duplicates_a`` (share of A's live features with a duplicate in A),
        ``n_live_a``.
    """
    if not isinstance(codes, dict) or len(codes) < 1:
        raise InputError(f"codes must be a non-empty dict of name -> codes, got {type(codes).__name__}.")
    _check_range("threshold", threshold, 0, 1)
    patterns = {name: activation_patterns(c, clip_ids, k_per_frame=k_per_frame) for name, c in codes.items()}
    rows = []
    for name_a, pat_a in patterns.items():
        r, c, iou, count_a, _ = _iou_matrix(pat_a, pat_a)
        live = count_a > 0
        dup = _best_iou(r, c, iou, count_a.shape[0], exclude_self=True)[1][live] > threshold
        for name_b, pat_b in patterns.items():
            r, c, iou, _, _ = _iou_matrix(pat_a, pat_b)
            matched = _best_iou(r, c, iou, count_a.shape[0])[1][live] > threshold
            rows.append(
                {"sae_a": name_a, "sae_b": name_b, "coverage": _mean_or_nan(matched),
                 "duplicates_a": _mean_or_nan(dup), "n_live_a": int(live.sum())}
            )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class DecoderConsistency:
    """Decoder-direction consistency of two SAEs (Hungarian matching on cosine).

    Attributes
    ----------
    mean_cosine : float
        Mean cosine of the matched pairs.
    shared_fraction : float
        Share of matched pairs with cosine >= threshold (over min(F_a, F_b) pairs).
    floor_mean_cosine : float
        Mean matched cosine of A against randomly initialised decoders of B's
        shape (mean over ``n_floor`` draws).
    floor_shared_fraction : float
        Shared fraction against the random decoders.
    matches : pandas.DataFrame
        ``feature_a``, ``feature_b``, ``cosine``, ``shared`` for each matched pair.
    threshold : float
        The cosine threshold used.
    """

    mean_cosine: float
    shared_fraction: float
    floor_mean_cosine: float
    floor_shared_fraction: float
    matches: pd.DataFrame
    threshold: float


def _unit_rows(W, name):
    W = _check_dense_2d(W, name)
    norms = np.linalg.norm(W, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InputError(f"{name} has {int(np.sum(norms == 0))} all-zero rows; decoder rows need a direction.")
    return W / norms


def _hungarian(unit_a, unit_b):
    cos = unit_a @ unit_b.T
    rows, cols = linear_sum_assignment(cos, maximize=True)
    return rows, cols, cos[rows, cols]


@fill_doc
def decoder_consistency(W_dec_a, W_dec_b, *, threshold=0.7, n_floor=1, random_state=None):
    """Match decoder directions one-to-one and report the shared share and a floor.

    Parameters
    ----------
    W_dec_a, W_dec_b : ndarray, shape (F_a, D) and (F_b, D)
        Decoder directions (one row per feature) of two SAEs of the same width D
        (see :func:`decoder_directions`).
    threshold : float
        Cosine at or above which a matched pair counts as shared. Default 0.7.
    n_floor : int
        Number of random decoders (Gaussian rows, B's shape) for the floor. Default 1.
    %(random_state)s

    Returns
    -------
    result : DecoderConsistency
        Signed cosines (a feature and its negation are different features).

    Notes
    -----
    The Hungarian matching works on the dense (F_a, F_b) cosine matrix: memory
    grows as 8 F_a F_b bytes (0.5 GB at F = 8192) and time as F^3.
    """
    _check_range("threshold", threshold, -1, 1)
    n_floor = _ensure_int(n_floor, "n_floor")
    _check_range("n_floor", n_floor, 1)
    unit_a, unit_b = _unit_rows(W_dec_a, "W_dec_a"), _unit_rows(W_dec_b, "W_dec_b")
    if unit_a.shape[1] != unit_b.shape[1]:
        raise InputError(
            f"W_dec_a and W_dec_b must have the same width D: got {unit_a.shape[1]} and {unit_b.shape[1]}."
        )
    rows, cols, cos = _hungarian(unit_a, unit_b)
    rng = _rng(random_state)
    floor_cos, floor_shared = [], []
    for _ in range(n_floor):
        random_b = rng.standard_normal(unit_b.shape)
        random_b /= np.linalg.norm(random_b, axis=1, keepdims=True)
        fc = _hungarian(unit_a, random_b)[2]
        floor_cos.append(fc.mean())
        floor_shared.append(np.mean(fc >= threshold))
    matches = pd.DataFrame(
        {"feature_a": rows.astype(np.int64), "feature_b": cols.astype(np.int64), "cosine": cos,
         "shared": cos >= threshold}
    )
    return DecoderConsistency(
        mean_cosine=float(cos.mean()),
        shared_fraction=float(np.mean(cos >= threshold)),
        floor_mean_cosine=float(np.mean(floor_cos)),
        floor_shared_fraction=float(np.mean(floor_shared)),
        matches=matches,
        threshold=float(threshold),
    )
