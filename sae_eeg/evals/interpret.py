"""Interpretability primitives of the AudioSAE release, on arrays of codes.

Codes are frame-level SAE activations (T, F), sparse or dense, of a dataset of
clips concatenated along time; ``clip_ids`` (T,) says which clip each frame
belongs to. Every table is a tidy :class:`pandas.DataFrame` with a ``feature``
column, so results join on feature id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from .._check import _check_range, _ensure_int, _validate_type
from .._docs import fill_doc
from ..errors import InputError
from ._codes import (
    _as_csr,
    _check_dense_2d,
    _check_labels,
    _clip_index,
    _positive_entries,
    _rank_in_group,
    _rng,
)
from ._spectral import LogMel


def aggregate_max_activations(codes, clip_ids, *, times=None):
    """Maximum activation of every feature in every clip where it fires.

    Parameters
    ----------
    codes : scipy.sparse array | ndarray, shape (n_frames, n_features)
        Frame-level codes.
    clip_ids : array-like, shape (n_frames,)
        Clip of each frame.
    times : array-like, shape (n_frames,) | None
        Time of each frame within its clip, in s; adds a ``time`` column.

    Returns
    -------
    table : pandas.DataFrame
        One row per (clip, feature) with a positive activation: ``clip``,
        ``feature``, ``max_activation``, ``frame`` (row index in ``codes`` of the
        maximum) and ``time`` if ``times`` is given.
    """
    csr = _as_csr(codes)
    clip_TC, clips = _clip_index(clip_ids, csr.shape[0])
    rows, cols, vals = _positive_entries(csr)
    group = clip_TC[rows].astype(np.int64) * csr.shape[1] + cols
    _, group = np.unique(group, return_inverse=True)
    first = _rank_in_group(group, vals) == 0
    table = pd.DataFrame(
        {"clip": clips[clip_TC[rows[first]]], "feature": cols[first].astype(np.int64),
         "max_activation": vals[first].astype(np.float64), "frame": rows[first].astype(np.int64)}
    )
    if times is not None:
        times = _check_labels(times, csr.shape[0], "times").astype(np.float64)
        table["time"] = times[table["frame"].to_numpy()]
    return table.sort_values(["feature", "max_activation"], ascending=[True, False], ignore_index=True)


def top_clips_for_feature(max_activations, feature, *, n=10):
    """The clips where a feature reaches its largest activations.

    Parameters
    ----------
    max_activations : pandas.DataFrame
        Output of :func:`aggregate_max_activations`.
    feature : int
        Feature id.
    n : int
        Number of clips. Default 10.

    Returns
    -------
    table : pandas.DataFrame
        The rows of ``max_activations`` for ``feature``, largest first, at most
        ``n`` (empty if the feature never fires).
    """
    _validate_type(max_activations, pd.DataFrame, "max_activations")
    missing = {"clip", "feature", "max_activation"} - set(max_activations.columns)
    if missing:
        raise InputError(f"max_activations lacks the columns {sorted(missing)}; pass aggregate_max_activations output.")
    feature = _ensure_int(feature, "feature")
    n = _ensure_int(n, "n")
    _check_range("n", n, 1)
    rows = max_activations[max_activations["feature"] == feature]
    return rows.nlargest(n, "max_activation").reset_index(drop=True)


def feature_frequencies(codes):
    """Share of frames on which each feature fires.

    Parameters
    ----------
    codes : scipy.sparse array | ndarray, shape (n_frames, n_features)
        Frame-level codes.

    Returns
    -------
    table : pandas.DataFrame
        ``feature``, ``n_active`` (frames with a positive code), ``frequency``
        (``n_active / n_frames``).
    """
    csr = _as_csr(codes)
    _, cols, _ = _positive_entries(csr)
    counts = np.bincount(cols, minlength=csr.shape[1])
    return pd.DataFrame(
        {"feature": np.arange(csr.shape[1], dtype=np.int64), "n_active": counts,
         "frequency": counts / max(csr.shape[0], 1)}
    )


def dead_features(codes):
    """Ids of the features that never fire on the given frames.

    Parameters
    ----------
    codes : scipy.sparse array | ndarray, shape (n_frames, n_features)
        Frame-level codes over the window that defines "dead" (e.g. the last
        10 million training frames, or an evaluation set).

    Returns
    -------
    feature_ids : ndarray of int64, shape (n_dead,)
        Sorted ids of features with no positive code.
    """
    table = feature_frequencies(codes)
    return table.loc[table["n_active"] == 0, "feature"].to_numpy()


def collect_dataset_stats(codes, clip_ids, categories):
    """Firing statistics of every feature in each category of clips.

    Parameters
    ----------
    codes : scipy.sparse array | ndarray, shape (n_frames, n_features)
        Frame-level codes of clips from several categories.
    clip_ids : array-like, shape (n_frames,)
        Clip of each frame.
    categories : array-like, shape (n_frames,)
        Category of each frame's clip (e.g. "speech", "sounds", "music").

    Returns
    -------
    stats : pandas.DataFrame
        One row per (feature, category): ``feature``, ``category``,
        ``n_frames`` (frames of the category), ``n_active``, ``firing_rate``
        (``n_active / n_frames``), ``n_clips``, ``n_clips_active``,
        ``mean_activation`` (over active frames; 0 if none), ``max_activation``.
    """
    csr = _as_csr(codes)
    n_frames, n_features = csr.shape
    clip_TC, _ = _clip_index(clip_ids, n_frames)
    cat_T = _check_labels(categories, n_frames, "categories")
    cats, cat_idx = np.unique(cat_T, return_inverse=True)
    clip_cats = pd.DataFrame({"clip": clip_TC, "cat": cat_idx}).drop_duplicates()
    if clip_cats["clip"].duplicated().any():
        bad = clip_cats.loc[clip_cats["clip"].duplicated(), "clip"].iloc[0]
        raise InputError(f"categories must be constant within a clip; clip number {bad} has several.")
    rows, cols, vals = _positive_entries(csr)
    n_cat = cats.shape[0]
    shape = (n_cat, n_features)
    n_active = np.zeros(shape)
    np.add.at(n_active, (cat_idx[rows], cols), 1)
    total = np.zeros(shape)
    np.add.at(total, (cat_idx[rows], cols), vals)
    peak = np.zeros(shape)
    np.maximum.at(peak, (cat_idx[rows], cols), vals)
    clip_feature = np.unique(clip_TC[rows].astype(np.int64) * n_features + cols)
    clip_active = np.zeros(shape)
    cat_of_clip = np.zeros(int(clip_TC.max()) + 1, dtype=np.intp)
    cat_of_clip[clip_cats["clip"].to_numpy()] = clip_cats["cat"].to_numpy()
    np.add.at(clip_active, (cat_of_clip[clip_feature // n_features], clip_feature % n_features), 1)
    frames_per_cat = np.bincount(cat_idx, minlength=n_cat)
    clips_per_cat = np.bincount(clip_cats["cat"].to_numpy(), minlength=n_cat)
    cat_grid, feature_grid = np.meshgrid(np.arange(n_cat), np.arange(n_features), indexing="ij")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_active > 0, total / np.maximum(n_active, 1), 0.0)
    stats = pd.DataFrame(
        {
            "feature": feature_grid.ravel().astype(np.int64),
            "category": cats[cat_grid.ravel()],
            "n_frames": frames_per_cat[cat_grid.ravel()],
            "n_active": n_active.ravel().astype(np.int64),
            "firing_rate": (n_active / frames_per_cat[:, None]).ravel(),
            "n_clips": clips_per_cat[cat_grid.ravel()],
            "n_clips_active": clip_active.ravel().astype(np.int64),
            "mean_activation": mean.ravel(),
            "max_activation": peak.ravel(),
        }
    )
    return stats.sort_values(["feature", "category"], ignore_index=True)


def classify_features(stats, *, min_purity=0.0):
    """Label each feature by the category where it fires most often.

    Parameters
    ----------
    stats : pandas.DataFrame
        Output of :func:`collect_dataset_stats`.
    min_purity : float
        A feature whose top category holds less than this share of its summed
        firing rates is labelled ``"mixed"``. Default 0 (never).

    Returns
    -------
    labels : pandas.DataFrame
        ``feature``, ``label`` (a category, ``"mixed"`` or ``"dead"``),
        ``purity`` (top firing rate / sum of firing rates; NaN if dead) and one
        ``rate_<category>`` column per category.
    """
    _validate_type(stats, pd.DataFrame, "stats")
    missing = {"feature", "category", "firing_rate"} - set(stats.columns)
    if missing:
        raise InputError(f"stats lacks the columns {sorted(missing)}; pass collect_dataset_stats output.")
    _check_range("min_purity", min_purity, 0, 1)
    rates = stats.pivot(index="feature", columns="category", values="firing_rate").fillna(0.0)
    total = rates.sum(axis=1)
    top = rates.idxmax(axis=1)
    purity = rates.max(axis=1) / total.where(total > 0)
    label = top.astype(object).where(purity >= min_purity, "mixed").where(total > 0, "dead")
    out = pd.DataFrame({"feature": rates.index.to_numpy(), "label": label.to_numpy(), "purity": purity.to_numpy()})
    for cat in rates.columns:
        out[f"rate_{cat}"] = rates[cat].to_numpy()
    return out


@dataclass(frozen=True)
class ActivationWindows:
    """Log-mel windows around the strongest activations of one feature.

    Attributes
    ----------
    windows : ndarray, shape (n_windows, n_lags, n_mels)
        Log-mel frames from ``lags[0]`` to ``lags[-1]`` s around each activation.
    lags : ndarray, shape (n_lags,)
        Time of each window row relative to the activating frame, in s.
    events : pandas.DataFrame
        ``feature``, ``clip``, ``frame`` (row in ``codes``), ``time`` (s in the
        clip), ``activation`` for each window.
    mel_freqs : ndarray, shape (n_mels,)
        Centre frequency of each mel band, in Hz.
    """

    windows: np.ndarray
    lags: np.ndarray
    events: pd.DataFrame
    mel_freqs: np.ndarray

    def receptive_field(self):
        """Mean window (n_lags, n_mels): the feature's receptive field in mel space."""
        if self.windows.shape[0] == 0:
            raise InputError("No activation windows: the feature never fires on these clips.")
        return self.windows.mean(axis=0)


def _window_lags(tmin, tmax, n_windows, log_mels):
    """Checked window settings: the lags in log-mel frames, the number of windows and one LogMel of the clips."""
    n_windows = _ensure_int(n_windows, "n_windows")
    _check_range("n_windows", n_windows, 1)
    if not tmin <= 0 <= tmax:
        raise InputError(f"tmin <= 0 <= tmax is required, got tmin={tmin!r}, tmax={tmax!r}.")
    _validate_type(log_mels, dict, "log_mels")
    any_mel = next(iter(log_mels.values()), None)
    if any_mel is None:
        raise InputError("log_mels is empty; give one LogMel per clip.")
    lag_idx = np.arange(int(np.round(tmin * any_mel.sfreq)), int(np.round(tmax * any_mel.sfreq)) + 1)
    return lag_idx, n_windows, any_mel


def _gather_windows(frame_clips, frame_times, log_mels, lag_idx, n_mels):
    """Log-mel windows (n, n_lags, n_mels) around frames of the given clips and times."""
    windows = np.empty((frame_clips.size, lag_idx.size, n_mels), np.float32)
    # one clip at a time, in order of first appearance (the first unknown clip is the one reported)
    _, first = np.unique(frame_clips, return_index=True)
    for clip in frame_clips[np.sort(first)]:
        clip = clip.item()  # a plain Python id, as the dict keys are
        if clip not in log_mels:
            raise InputError(f"log_mels has no entry for clip {clip!r}.")
        mel = log_mels[clip]
        _validate_type(mel, LogMel, f"log_mels[{clip!r}]")
        rows = np.flatnonzero(frame_clips == clip)
        centre = np.round((frame_times[rows] - mel.tmin) * mel.sfreq).astype(np.int64)
        idx = centre[:, None] + lag_idx[None, :]
        n_times = mel.values.shape[0]
        block = mel.values[np.clip(idx, 0, n_times - 1)].astype(np.float32, copy=False)
        outside = (idx < 0) | (idx >= n_times)
        if outside.any():  # a window past the clip's edge: pad with its minimum (a pass over the clip)
            block[outside] = mel.values.min()
        windows[rows] = block
    return windows


def _strongest(rows, values, n_windows):
    """The ``n_windows`` largest ``values`` (ties: the earlier row first) and their rows."""
    order = np.argsort(-values, kind="stable")[:n_windows]
    return rows[order], values[order]


@fill_doc
def feature_activation_windows(codes, feature, clip_ids, times, log_mels, *, tmin=-0.1, tmax=0.1, n_windows=50):
    """Log-mel windows around the largest activations of a feature.

    Parameters
    ----------
    codes : scipy.sparse array | ndarray, shape (n_frames, n_features)
        Frame-level codes.
    feature : int
        Feature id.
    clip_ids : array-like, shape (n_frames,)
        Clip of each frame.
    times : array-like, shape (n_frames,)
        Time of each frame in its clip, in s (frame centres).
    log_mels : dict
        Clip id -> :class:`LogMel` of that clip (:func:`log_mel_spectrogram`).
    tmin, tmax : float
        Window start and end relative to the activating frame, in s. Defaults
        -0.1 and 0.1.
    n_windows : int
        Keep the ``n_windows`` largest activations. Default 50.

    Returns
    -------
    windows : ActivationWindows
        Windows that would run past a clip's edges are padded with the clip's
        minimum log-mel value.

    See Also
    --------
    mel_receptive_fields : the mean window of many features at once.
    """
    csr = _as_csr(codes)
    feature = _ensure_int(feature, "feature")
    _check_range("feature", feature, 0, csr.shape[1] - 1)
    lag_idx, n_windows, any_mel = _window_lags(tmin, tmax, n_windows, log_mels)
    clip_ids = _check_labels(clip_ids, csr.shape[0], "clip_ids")
    times = _check_labels(times, csr.shape[0], "times").astype(np.float64)
    column = csr[:, [feature]].tocoo()
    frames, values = _strongest(column.row, column.data, n_windows)
    windows = _gather_windows(clip_ids[frames], times[frames], log_mels, lag_idx, any_mel.values.shape[1])
    events = pd.DataFrame(
        {"feature": feature, "clip": clip_ids[frames], "frame": frames.astype(np.int64),
         "time": times[frames], "activation": values.astype(np.float64)}
    )
    return ActivationWindows(
        windows=windows,
        lags=lag_idx / any_mel.sfreq,
        events=events,
        mel_freqs=any_mel.mel_freqs,
    )


@dataclass(frozen=True)
class MelReceptiveFields:
    """The receptive field in mel space of several features.

    Attributes
    ----------
    fields : ndarray, shape (n, n_lags, n_mels), float32
        Mean log-mel window around the strongest activations of each feature
        (:meth:`ActivationWindows.receptive_field`).
    features : ndarray of int, shape (n,)
        The feature of each field: those asked for that fire, in the order asked.
    lags : ndarray, shape (n_lags,)
        Time of each window row relative to the activating frame, in s.
    mel_freqs : ndarray, shape (n_mels,)
        Centre frequency of each mel band, in Hz.
    """

    fields: np.ndarray
    features: np.ndarray
    lags: np.ndarray
    mel_freqs: np.ndarray


def mel_receptive_fields(codes, clip_ids, times, log_mels, *, features=None, tmin=-0.1, tmax=0.1, n_windows=50):
    """Mean log-mel window around the largest activations of each feature (its receptive field).

    The same windows as :func:`feature_activation_windows`, averaged, for many
    features at once: the inputs are checked and the codes converted once, then
    each feature costs only its own activations (thousands of features take a
    second).

    Parameters
    ----------
    codes : scipy.sparse array | ndarray, shape (n_frames, n_features)
        Frame-level codes.
    clip_ids : array-like, shape (n_frames,)
        Clip of each frame.
    times : array-like, shape (n_frames,)
        Time of each frame in its clip, in s (frame centres).
    log_mels : dict
        Clip id -> :class:`LogMel` of that clip (:func:`log_mel_spectrogram`).
    features : array-like of int | None
        Features, in the order wanted; default all.
    tmin, tmax : float
        Window start and end relative to the activating frame, in s. Defaults
        -0.1 and 0.1.
    n_windows : int
        Average the windows of the ``n_windows`` largest activations. Default 50.

    Returns
    -------
    fields : MelReceptiveFields
        Features that never fire are left out.
    """
    csr = _as_csr(codes)
    n_features = csr.shape[1]
    lag_idx, n_windows, any_mel = _window_lags(tmin, tmax, n_windows, log_mels)
    clip_ids = _check_labels(clip_ids, csr.shape[0], "clip_ids")
    times = _check_labels(times, csr.shape[0], "times").astype(np.float64)
    ids = np.arange(n_features) if features is None else np.asarray(features, dtype=np.int64).ravel()
    bad = ids[(ids < 0) | (ids >= n_features)]
    if bad.size:
        raise InputError(f"features must be ids in [0, {n_features - 1}], got {bad[:5].tolist()}.")
    csc = csr.tocsc()
    csc.sort_indices()  # rows ascending in each column: ties go to the earlier frame, as for one feature
    n_mels = any_mel.values.shape[1]
    fields, used = [], []
    for feature in ids:
        lo, hi = csc.indptr[feature], csc.indptr[feature + 1]
        if lo == hi:
            continue
        frames, _ = _strongest(csc.indices[lo:hi], csc.data[lo:hi], n_windows)
        fields.append(_gather_windows(clip_ids[frames], times[frames], log_mels, lag_idx, n_mels).mean(axis=0))
        used.append(int(feature))
    return MelReceptiveFields(
        fields=np.stack(fields) if fields else np.zeros((0, lag_idx.size, n_mels), np.float32),
        features=np.array(used, dtype=np.int64),
        lags=lag_idx / any_mel.sfreq,
        mel_freqs=any_mel.mel_freqs,
    )


@fill_doc
def feature_tsne(W_enc, *, features=None, perplexity=30.0, random_state=None):
    """2-D t-SNE embedding of encoder rows (one point per feature).

    Parameters
    ----------
    W_enc : ndarray, shape (n_features, D)
        Encoder weights, one row per feature.
    features : array-like of int | None
        Features to embed (default all).
    perplexity : float
        t-SNE perplexity, clipped below the number of points. Default 30.
    %(random_state)s

    Returns
    -------
    embedding : pandas.DataFrame
        ``feature``, ``x``, ``y``.
    """
    W = _check_dense_2d(W_enc, "W_enc")
    ids = np.arange(W.shape[0]) if features is None else np.asarray(features, dtype=np.int64)
    if ids.size < 3 or ids.min() < 0 or ids.max() >= W.shape[0]:
        raise InputError(f"features must hold at least 3 ids in [0, {W.shape[0] - 1}], got {ids!r:.80}.")
    X = W[ids] / np.maximum(np.linalg.norm(W[ids], axis=1, keepdims=True), 1e-12)
    perplexity = float(min(perplexity, (ids.size - 1) / 3))
    seed = int(_rng(random_state).integers(2**31 - 1))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X)
    return pd.DataFrame({"feature": ids, "x": xy[:, 0], "y": xy[:, 1]})


@fill_doc
def plot_feature_tsne(W_enc, labels, *, features=None, perplexity=30.0, ax=None, random_state=None):
    """Scatter of the encoder rows in 2-D (t-SNE), coloured by label.

    Parameters
    ----------
    W_enc : ndarray, shape (n_features, D)
        Encoder weights, one row per feature.
    labels : pandas.DataFrame
        ``feature`` and ``label`` columns (e.g. :func:`classify_features`);
        features without a row are labelled ``"unlabelled"``.
    features : array-like of int | None
        Features to show (default all).
    perplexity : float
        t-SNE perplexity. Default 30.
    ax : matplotlib.axes.Axes | None
        Axes to draw in; a new figure when None.
    %(random_state)s

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure, one scatter per label in sorted label order (the coordinates
        come from :func:`feature_tsne` with the same arguments).
    """
    _validate_type(labels, pd.DataFrame, "labels")
    missing = {"feature", "label"} - set(labels.columns)
    if missing:
        raise InputError(f"labels lacks the columns {sorted(missing)}; pass e.g. classify_features output.")
    emb = feature_tsne(W_enc, features=features, perplexity=perplexity, random_state=random_state)
    emb = emb.merge(labels[["feature", "label"]], on="feature", how="left").fillna({"label": "unlabelled"})
    if ax is None:
        fig = Figure(figsize=(5, 5))  # no pyplot: no global figure state, any backend
        ax = fig.subplots()
    else:
        fig = ax.figure
    for name, group in emb.groupby("label", sort=True):
        ax.scatter(group["x"], group["y"], s=6, label=str(name))
    ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2", title="SAE encoder rows")
    ax.legend(markerscale=2, fontsize="small")
    return fig
