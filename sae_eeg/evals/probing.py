"""Probing and disentanglement of SAE codes (Mariotte et al. 2025).

* Clip-level linear probes on SAE codes at several sparsity levels next to the
  dense activations they were encoded from (cross-validated accuracy).
* LASSO regressions from clip-level codes to acoustic descriptors, scored by the
  R^2 on held-out clips (never in-sample), whose absolute coefficients feed
* DCI (Eastwood & Williams 2018): disentanglement (does each code explain one
  descriptor) and completeness (is each descriptor explained by one code).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LassoCV, LogisticRegression
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .._check import _check_range, _ensure_int, _validate_type
from .._docs import fill_doc
from ..errors import InputError
from ._codes import (
    _check_dense_2d,
    _check_labels,
    _random_state_int,
    clip_features,
    topk_per_frame,
)


@fill_doc
def linear_probes(representations, y, *, n_splits=5, C=1.0, max_iter=2000, random_state=None):
    """Cross-validated logistic-regression probes on several clip-level representations.

    Parameters
    ----------
    representations : dict of str to ndarray, each shape (n_clips, n_dims)
        Clip-level inputs (e.g. ``"dense"`` activations and ``"sae_k8"`` codes),
        rows in the same clip order.
    y : array-like, shape (n_clips,)
        Class of each clip.
    n_splits : int
        Stratified folds. Default 5.
    C : float
        Inverse L2 penalty of the probe (features standardised). Default 1.
    max_iter : int
        Solver iterations. Default 2000.
    %(random_state)s

    Returns
    -------
    scores : pandas.DataFrame
        One row per (representation, fold): ``representation``, ``fold``,
        ``accuracy``, ``balanced_accuracy``, ``n_dims``. The same folds serve
        every representation.
    """
    _validate_type(representations, dict, "representations")
    if not representations:
        raise InputError("representations is empty; give at least one name -> (n_clips, n_dims) array.")
    arrays = {name: _check_dense_2d(X, f"representations[{name!r}]") for name, X in representations.items()}
    n = next(iter(arrays.values())).shape[0]
    for name, X in arrays.items():
        if X.shape[0] != n:
            raise InputError(f"representations[{name!r}] has {X.shape[0]} rows; the first has {n}.")
    y = _check_labels(y, n, "y")
    n_splits = _ensure_int(n_splits, "n_splits")
    _check_range("n_splits", n_splits, 2)
    folds = StratifiedKFold(n_splits, shuffle=True, random_state=_random_state_int(random_state))
    rows = []
    for fold, (train, test) in enumerate(folds.split(np.zeros(n), y)):
        for name, X in arrays.items():
            model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(X[train], y[train])
            pred = model.predict(X[test])
            rows.append({
                "representation": name, "fold": fold, "accuracy": float(np.mean(pred == y[test])),
                "balanced_accuracy": float(balanced_accuracy_score(y[test], pred)), "n_dims": X.shape[1],
            })
    return pd.DataFrame(rows)


@fill_doc
def probe_sparsity_levels(codes, dense, clip_ids, y, *, ks=(8, 16, 32, 64), how="mean", n_splits=5,
                          random_state=None):
    """Probe clip-level SAE codes kept at several per-frame sparsity levels vs the dense activations.

    Parameters
    ----------
    codes : scipy.sparse array | ndarray, shape (n_frames, n_features)
        Frame-level SAE codes (their per-frame top-k gives each sparsity level).
    dense : ndarray, shape (n_frames, D)
        The dense activations the codes were encoded from.
    clip_ids : array-like, shape (n_frames,)
        Clip of each frame.
    y : mapping | pandas.Series
        Class of each clip, keyed by clip id.
    ks : sequence of int
        Per-frame numbers of active codes. Default (8, 16, 32, 64).
    how : ``"mean"`` | ``"max"``
        Pooling of frames into a clip. Default ``"mean"``.
    n_splits : int
        Stratified folds. Default 5.
    %(random_state)s

    Returns
    -------
    scores : pandas.DataFrame
        :func:`linear_probes` output with representations ``"dense"`` and
        ``"sae_k{k}"`` plus a ``k`` column (NaN for dense).
    """
    y_map = pd.Series(y) if not isinstance(y, pd.Series) else y
    reps = {}
    pooled, clips = clip_features(dense, clip_ids, how=how)
    reps["dense"] = pooled
    for k in ks:
        reps[f"sae_k{int(k)}"] = clip_features(topk_per_frame(codes, k), clip_ids, how=how)[0]
    missing = [c for c in clips if c not in y_map.index]
    if missing:
        raise InputError(f"y has no class for the clips {missing[:5]!r}; give one per clip id.")
    scores = linear_probes(reps, y_map.loc[clips].to_numpy(), n_splits=n_splits, random_state=random_state)
    scores["k"] = scores["representation"].str.extract(r"sae_k(\d+)")[0].astype(float)
    return scores


@dataclass(frozen=True)
class LassoProbe:
    """Held-out LASSO regressions from codes to descriptors.

    Attributes
    ----------
    scores : pandas.DataFrame
        ``descriptor``, ``r2_test`` (held-out clips), ``r2_train``, ``alpha``,
        ``n_selected`` (non-zero coefficients).
    coefficients : pandas.DataFrame
        ``descriptor``, ``feature``, ``coef`` (standardised units), non-zero only.
    importance : ndarray, shape (n_features, n_descriptors)
        Absolute standardised coefficients, the DCI importance matrix.
    """

    scores: pd.DataFrame
    coefficients: pd.DataFrame
    importance: np.ndarray


@fill_doc
def lasso_descriptors(X, descriptors, *, test_size=0.3, n_alphas=30, cv=5, random_state=None):
    """LASSO from clip-level codes to each acoustic descriptor, scored on held-out clips.

    Parameters
    ----------
    X : ndarray | scipy.sparse array, shape (n_clips, n_features)
        Clip-level codes.
    descriptors : pandas.DataFrame, shape (n_clips, n_descriptors)
        One numeric column per descriptor (e.g. :func:`acoustic_descriptors` rows).
    test_size : float
        Share of clips held out for ``r2_test``. Default 0.3.
    n_alphas : int
        Penalties tried by the inner cross-validation (on training clips only). Default 30.
    cv : int
        Inner folds. Default 5.
    %(random_state)s

    Returns
    -------
    probe : LassoProbe
        Codes and descriptors are standardised on the training clips.
    """
    X = _check_dense_2d(X, "X")
    _validate_type(descriptors, pd.DataFrame, "descriptors")
    if descriptors.shape[0] != X.shape[0]:
        raise InputError(f"descriptors has {descriptors.shape[0]} rows; X has {X.shape[0]} clips.")
    Y = _check_dense_2d(descriptors.to_numpy(dtype=np.float64), "descriptors")
    _check_range("test_size", test_size, 0, 1, low_inclusive=False, high_inclusive=False)
    n_alphas = _ensure_int(n_alphas, "n_alphas")
    _check_range("n_alphas", n_alphas, 1)
    seed = _random_state_int(random_state)
    train, test = train_test_split(np.arange(X.shape[0]), test_size=test_size, random_state=seed)
    x_scaler = StandardScaler().fit(X[train])
    Xtr, Xte = x_scaler.transform(X[train]), x_scaler.transform(X[test])
    importance = np.zeros((X.shape[1], Y.shape[1]))
    scores, coefs = [], []
    for j, name in enumerate(descriptors.columns):
        mu, sd = Y[train, j].mean(), Y[train, j].std() or 1.0
        ytr, yte = (Y[train, j] - mu) / sd, (Y[test, j] - mu) / sd
        alpha_max = max(np.max(np.abs(Xtr.T @ ytr)) / len(ytr), 1e-12)
        alphas = np.geomspace(alpha_max, alpha_max * 1e-3, n_alphas)  # explicit: any sklearn version
        model = LassoCV(alphas=alphas, cv=cv, random_state=seed, max_iter=5000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Xtr, ytr)
        importance[:, j] = np.abs(model.coef_)
        nz = np.flatnonzero(model.coef_)
        coefs.append(pd.DataFrame({"descriptor": str(name), "feature": nz.astype(np.int64), "coef": model.coef_[nz]}))
        scores.append({
            "descriptor": str(name), "r2_test": float(r2_score(yte, model.predict(Xte))),
            "r2_train": float(r2_score(ytr, model.predict(Xtr))), "alpha": float(model.alpha_),
            "n_selected": int(nz.size),
        })
    return LassoProbe(scores=pd.DataFrame(scores), coefficients=pd.concat(coefs, ignore_index=True),
                      importance=importance)


@dataclass(frozen=True)
class DCIScores:
    """Disentanglement and completeness of an importance matrix.

    Attributes
    ----------
    disentanglement : float
        Importance-weighted mean over codes of 1 - H_K(code's importance over factors).
    completeness : float
        Mean over factors of 1 - H_F(factor's importance over codes).
    codes : pandas.DataFrame
        ``feature``, ``disentanglement``, ``weight`` (share of total importance)
        for codes with non-zero importance.
    factors : pandas.DataFrame
        ``factor``, ``completeness``.
    """

    disentanglement: float
    completeness: float
    codes: pd.DataFrame
    factors: pd.DataFrame


def _entropy(P, axis, base):
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(P > 0, P * np.log(P), 0.0)
    return -terms.sum(axis=axis) / np.log(base)


def dci_scores(importance, *, factor_names=None):
    """DCI disentanglement and completeness (Eastwood & Williams 2018).

    Parameters
    ----------
    importance : ndarray, shape (n_features, n_factors)
        Non-negative importance of each code for each factor (e.g.
        :attr:`LassoProbe.importance`). At least 2 codes and 2 factors.
    factor_names : sequence of str | None
        Names of the factors (default ``"0"``, ``"1"``, ...).

    Returns
    -------
    scores : DCIScores
        Codes of zero importance carry zero weight; a factor no code explains
        has completeness 0.
    """
    R = _check_dense_2d(importance, "importance")
    if np.any(R < 0):
        raise InputError("importance must be non-negative (e.g. absolute coefficients).")
    n_codes, n_factors = R.shape
    if n_codes < 2 or n_factors < 2:
        raise InputError(f"importance must have at least 2 codes and 2 factors, got shape {R.shape}.")
    names = [str(i) for i in range(n_factors)] if factor_names is None else [str(n) for n in factor_names]
    if len(names) != n_factors:
        raise InputError(f"factor_names has {len(names)} names for {n_factors} factors.")
    if R.sum() == 0:
        raise InputError("importance is all zeros; no code explains any factor.")
    row = R.sum(axis=1)
    live = np.flatnonzero(row > 0)
    D_i = 1.0 - _entropy(R[live] / row[live, None], axis=1, base=n_factors)
    weight = row[live] / row.sum()
    col = R.sum(axis=0)
    C_j = np.zeros(n_factors)
    ok = col > 0
    C_j[ok] = 1.0 - _entropy(R[:, ok] / col[ok], axis=0, base=n_codes)
    return DCIScores(
        disentanglement=float(np.sum(weight * D_i)),
        completeness=float(C_j.mean()),
        codes=pd.DataFrame({"feature": live.astype(np.int64), "disentanglement": D_i, "weight": weight}),
        factors=pd.DataFrame({"factor": names, "completeness": C_j}),
    )
