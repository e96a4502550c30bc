"""Steering an audio model through its SAE features.

:func:`steer` adds ``alpha`` times a steering vector ``s`` (in feature space) to
the SAE codes of one layer during every forward pass, through
:meth:`~sae_eeg.backbones.Backbone.hook`. Two splicing modes:

* ``"residual"`` (default): ``h -> h + decode(encode(h) + alpha s) - decode(encode(h))``.
  The SAE's decoder is affine, so this is ``h + alpha * (decode(s) - decode(0))``
  (times the frame norm for an input-normalising SAE): the SAE's
  reconstruction error is kept and only the steered direction is added. With
  ``alpha == 0`` no hook is installed at all, so outputs are bit-identical to
  the plain model.
* ``"reconstruction"`` (AudioSAE's wording): ``h -> decode(encode(h) + alpha s)``.
  At ``alpha == 0`` this is the SAE-spliced model (reconstruction error
  included), not the plain model.

The false-speech-detection experiment (AudioSAE) fits a logistic regression on
the SAE codes of non-speech clips to predict Whisper's hallucinations (its
no-speech probability below 0.5), steers against the features with the largest
coefficients, and reports the false-positive rate on held-out non-speech clips
and the word error rate on speech for each ``alpha``. :func:`language_token_shift`
measures how steering moves Whisper's language-token probabilities
(cross-lingual steering, Pluth et al. 2026).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from .._check import _check_option, _check_range, _ensure_int, _validate_type
from .._docs import fill_doc
from ..audio import Audio, check_waveform, resample
from ..backbones import Backbone, transcribe, wer
from ..backbones.whisper import WINDOW_SAMPLES, WhisperBackbone
from ..errors import BackboneError, InputError
from ..sae import SparseAutoencoder, check_sae_for_backbone
from ._codes import _random_state_int, clip_features

logger = logging.getLogger(__name__)

#: Splicing modes of :func:`steer`.
STEER_MODES = ("residual", "reconstruction")


def steering_vector(features, n_features):
    """A steering vector in feature space.

    Parameters
    ----------
    features : dict of int to float | pandas.Series | sequence of int
        Feature id -> weight, or feature ids (weight +1 each).
    n_features : int
        Number F of SAE features.

    Returns
    -------
    s : ndarray, shape (n_features,), float32
        Zero except at the given features.
    """
    n_features = _ensure_int(n_features, "n_features")
    if isinstance(features, pd.Series):
        features = features.to_dict()
    if isinstance(features, dict):
        ids = np.asarray(list(features.keys()), dtype=np.int64)
        weights = np.asarray(list(features.values()), dtype=np.float64)
    else:
        ids = np.asarray(features, dtype=np.int64).ravel()
        weights = np.ones(ids.shape[0])
    if ids.size == 0:
        raise InputError("features is empty; give at least one feature id.")
    bad = ids[(ids < 0) | (ids >= n_features)]
    if bad.size:
        raise InputError(f"features holds ids outside [0, {n_features - 1}]: {bad[:5].tolist()!r}.")
    if not np.all(np.isfinite(weights)):
        raise InputError("features holds NaN or Inf weights.")
    s = np.zeros(n_features, dtype=np.float32)
    np.add.at(s, ids, weights)
    return s


def _sae_dtype_device(sae):
    param = next(sae.parameters())
    return param.dtype, param.device


@fill_doc
@contextlib.contextmanager
def steer(backbone, sae, layer, features, alpha, *, mode="residual"):
    """Steer ``backbone`` along SAE features during every forward pass inside the block.

    Parameters
    ----------
    backbone : Backbone
        The audio model.
    sae : SparseAutoencoder
        An SAE of ``layer`` of this backbone.
    %(layer)s
    features : dict of int to float | pandas.Series | sequence of int
        The steering vector ``s`` (see :func:`steering_vector`).
    alpha : float
        Steering strength; 0 leaves the model untouched in ``"residual"`` mode.
    mode : ``"residual"`` | ``"reconstruction"``
        How the steered codes are spliced in (module docstring). Default
        ``"residual"``.

    Yields
    ------
    backbone : Backbone
        The same backbone, hooked.

    Raises
    ------
    InputError
        Bad ``alpha``, ``mode`` or feature ids.
    CheckpointError
        An SAE whose width differs from the layer's, or a layer the backbone lacks.

    Examples
    --------
    >>> with steer(backbone, sae, 3, {12: -1.0, 40: 1.0}, alpha=0.5):  # doctest: +SKIP
    ...     text = transcribe(backbone, waveform, sfreq)
    """
    _validate_type(backbone, Backbone, "backbone")
    _validate_type(sae, SparseAutoencoder, "sae")
    _check_option("mode", mode, STEER_MODES)
    _validate_type(alpha, "numeric", "alpha")
    if not np.isfinite(alpha):
        raise InputError(f"alpha must be finite, got {alpha!r}.")
    check_sae_for_backbone(sae, backbone, layer)
    s_F = steering_vector(features, int(sae.n_features))
    if mode == "residual" and alpha == 0:
        yield backbone  # no hook at all: bit-identical to the plain model
        return
    dtype, device = _sae_dtype_device(sae)
    normalize = bool(getattr(sae, "normalize_input", False))
    with torch.no_grad():
        s_1F = torch.as_tensor(s_F, dtype=dtype, device=device)[None]
        direction_D = (sae.decode(s_1F) - sae.decode(torch.zeros_like(s_1F)))[0]

    def residual(h):
        h_flat = h.reshape(-1, h.shape[-1])
        scale = torch.linalg.vector_norm(h_flat.float(), dim=-1, keepdim=True) if normalize else 1.0
        shift = float(alpha) * direction_D.to(device=h.device, dtype=torch.float32) * scale
        return (h_flat.float() + shift).to(h.dtype).reshape(h.shape)

    def reconstruction(h):
        h_BD = h.reshape(-1, h.shape[-1]).to(device=device, dtype=dtype)
        with torch.no_grad():
            z_BF = sae.encode(h_BD) + float(alpha) * s_1F
            x_hat = sae.decode(z_BF)
            if normalize:
                x_hat = x_hat * torch.linalg.vector_norm(h_BD, dim=-1, keepdim=True).clamp_min(1e-8)
        return x_hat.to(device=h.device, dtype=h.dtype).reshape(h.shape)

    with backbone.hook(layer, residual if mode == "residual" else reconstruction):
        yield backbone


def _check_clips(clips, name):
    """A list of :class:`~sae_eeg.audio.Audio` clips, each validated."""
    _validate_type(clips, (list, tuple), name)
    if not clips:
        raise InputError(f"{name} is empty; give at least one Audio(waveform, sfreq) clip.")
    out = []
    for i, clip in enumerate(clips):
        if not (isinstance(clip, tuple) and len(clip) == 2):
            raise InputError(f"{name}[{i}] must be an Audio(waveform, sfreq) pair, got {type(clip).__name__}.")
        waveform, sfreq = check_waveform(clip[0], clip[1], name=f"{name}[{i}]")
        out.append(Audio(waveform, sfreq))
    return out


def _whisper_windows(backbone, clips):
    """Each clip resampled to 16 kHz and padded to one 30 s Whisper window."""
    windows = []
    for i, (waveform, sfreq) in enumerate(clips):
        if sfreq != backbone.sampling_rate:
            waveform = resample(waveform, sfreq=sfreq, new_sfreq=backbone.sampling_rate)
        if waveform.shape[0] > WINDOW_SAMPLES:
            raise InputError(
                f"clip {i} lasts {waveform.shape[0] / backbone.sampling_rate:.1f} s; clips for "
                "no-speech/language probabilities must fit one 30 s Whisper window."
            )
        windows.append(np.pad(np.asarray(waveform, np.float32), (0, WINDOW_SAMPLES - waveform.shape[0])))
    return windows


def _check_whisper(backbone):
    _validate_type(backbone, WhisperBackbone, "backbone")
    if backbone.tokenizer is None or not hasattr(backbone.model, "proj_out"):
        raise BackboneError(
            f"{backbone.name!r} has no decoder or tokenizer; this needs a WhisperForConditionalGeneration "
            "with tokenizer.json in its folder."
        )


def _token_id(tokenizer, token):
    idx = tokenizer.convert_tokens_to_ids(token)
    if idx is None or idx == tokenizer.unk_token_id:
        return None
    return int(idx)


def _first_step_logits(backbone, clips, batch_size):
    """Decoder logits (n_clips, vocab) at the <|startoftranscript|> position."""
    sot = _token_id(backbone.tokenizer, "<|startoftranscript|>")
    windows = _whisper_windows(backbone, clips)
    out = []
    with torch.inference_mode():
        for b0 in range(0, len(windows), batch_size):
            features = backbone.input_features(windows[b0:b0 + batch_size])
            prompt = torch.full((features.shape[0], 1), sot, device=backbone.device)
            logits = backbone.model(input_features=features, decoder_input_ids=prompt).logits[:, 0]
            out.append(logits.float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def _softmax(logits, axis=-1):
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def no_speech_probability(backbone, clips, *, batch_size=8):
    """Whisper's no-speech probability of each clip (as in OpenAI's decoder).

    The softmax of the decoder's logits after ``<|startoftranscript|>``, at the
    ``<|nospeech|>`` token (``<|nocaptions|>`` in older vocabularies). Hooks and
    :func:`steer` apply.

    Parameters
    ----------
    backbone : WhisperBackbone
        Whisper with its tokenizer.
    clips : list of Audio
        ``(waveform, sfreq)`` clips of at most 30 s.
    batch_size : int
        Clips per forward pass. Default 8.

    Returns
    -------
    prob : ndarray, shape (n_clips,)
        No-speech probability of each clip.
    """
    _check_whisper(backbone)
    clips = _check_clips(clips, "clips")
    batch_size = _ensure_int(batch_size, "batch_size")
    _check_range("batch_size", batch_size, 1)
    tokenizer = backbone.tokenizer
    no_speech = _token_id(tokenizer, "<|nospeech|>") or _token_id(tokenizer, "<|nocaptions|>")
    if no_speech is None:
        raise BackboneError(f"{backbone.name!r}: the tokenizer has neither <|nospeech|> nor <|nocaptions|>.")
    return _softmax(_first_step_logits(backbone, clips, batch_size))[:, no_speech]


def _encode_clips(backbone, sae, layer, clips):
    """Mean SAE code of each clip (n_clips, F)."""
    rows = []
    for waveform, sfreq in clips:
        acts = backbone.activations(waveform, sfreq, [layer])[layer].values
        codes = sae.encode_sparse(acts)
        rows.append(clip_features(codes, np.zeros(codes.shape[0], dtype=int), how="mean")[0][0])
    return np.vstack(rows)


@dataclass(frozen=True)
class SteeringReport:
    """Result of :func:`false_speech_experiment`.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per alpha: ``alpha``, ``fpr`` (share of held-out non-speech
        clips with no-speech probability < threshold), ``mean_no_speech_prob``,
        ``wer`` (corpus WER on the speech clips), ``n_nonspeech``, ``n_speech``.
    features : pandas.DataFrame
        The steering features: ``feature``, ``beta``, ``rank`` (by |beta|),
        ``weight`` (= -sign(beta)).
    clips : pandas.DataFrame
        Per clip and alpha: ``alpha``, ``kind`` ("nonspeech" | "speech"),
        ``clip`` (index in its list), ``split`` ("fit" | "test" | "speech"),
        ``no_speech_prob`` (non-speech) or ``hypothesis`` (speech).
    """

    summary: pd.DataFrame
    features: pd.DataFrame
    clips: pd.DataFrame


def hallucination_features(X, hallucinated, *, n_features=100, C=1.0, max_iter=2000):
    """Features whose codes predict hallucinations, and the steering weights against them.

    Parameters
    ----------
    X : ndarray, shape (n_clips, n_features_sae)
        Clip-level SAE codes of non-speech clips.
    hallucinated : array-like of bool, shape (n_clips,)
        Whether Whisper hallucinated speech on each clip.
    n_features : int
        Number of features with the largest |beta| kept. Default 100.
    C : float
        Inverse L2 penalty of the logistic regression. Default 1.
    max_iter : int
        Solver iterations. Default 2000.

    Returns
    -------
    features : pandas.DataFrame
        ``feature``, ``beta``, ``rank``, ``weight`` (= -sign(beta)), largest |beta| first.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(hallucinated, dtype=bool)
    if y.shape != (X.shape[0],):
        raise InputError(f"hallucinated must have one entry per clip ({X.shape[0]}), got shape {y.shape}.")
    if y.all() or not y.any():
        raise InputError(
            f"All {y.size} non-speech clips are {'hallucinated' if y.all() else 'not hallucinated'}; the "
            "logistic regression needs both outcomes (use more or more varied non-speech clips)."
        )
    n_features = _ensure_int(n_features, "n_features")
    _check_range("n_features", n_features, 1)
    model = LogisticRegression(C=C, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    beta = model.coef_[0]
    order = np.argsort(-np.abs(beta), kind="stable")[: min(n_features, beta.size)]
    order = order[beta[order] != 0]
    return pd.DataFrame(
        {"feature": order.astype(np.int64), "beta": beta[order], "rank": np.arange(order.size),
         "weight": -np.sign(beta[order])}
    )


@fill_doc
def false_speech_experiment(
    backbone, sae, layer, nonspeech, speech, references, *, alphas=(0.0, 1.0, 2.0, 4.0), n_features=100,
    threshold=0.5, test_size=0.5, mode="residual", random_state=None, verbose=False,
):
    """Steer Whisper against hallucinated speech; report FPR and WER per alpha.

    Parameters
    ----------
    backbone : WhisperBackbone
        Whisper with its tokenizer.
    sae : SparseAutoencoder
        SAE of ``layer``.
    %(layer)s
    nonspeech : list of Audio
        Non-speech clips (noise, music), at most 30 s each.
    speech : list of Audio
        Spoken clips.
    references : list of str
        What is said in each ``speech`` clip.
    alphas : sequence of float
        Steering strengths. Default (0, 1, 2, 4).
    n_features : int
        Size of the steering vector (features with the largest |beta|). Default 100.
    threshold : float
        A clip is hallucinated when its no-speech probability is below this. Default 0.5.
    test_size : float
        Share of non-speech clips held out from the logistic regression for the
        FPR (stratified). 0 fits and evaluates on all clips. Default 0.5.
    mode : ``"residual"`` | ``"reconstruction"``
        Splicing mode of :func:`steer`. Default ``"residual"``.
    %(random_state)s
    %(verbose)s

    Returns
    -------
    report : SteeringReport

    Notes
    -----
    Each non-speech clip is one sample: its SAE codes are averaged over its
    frames, and an L2-regularised logistic regression (C = 1, codes not
    standardised, so rarely firing features are not inflated) predicts whether
    Whisper's no-speech probability of the unsteered clip is below
    ``threshold``. Synthetic music and noise rarely fool Whisper tiny.en;
    time-reversed or shuffled speech does, so such clips make useful
    "hallucinated" non-speech. The FPR is measured on the held-out clips only.
    """
    _check_whisper(backbone)
    nonspeech = _check_clips(nonspeech, "nonspeech")
    speech = _check_clips(speech, "speech")
    _validate_type(references, (list, tuple), "references")
    if len(references) != len(speech):
        raise InputError(f"references has {len(references)} texts for {len(speech)} speech clips.")
    _check_range("threshold", threshold, 0, 1)
    _check_range("test_size", test_size, 0, 1, high_inclusive=False)
    alphas = [float(a) for a in alphas]
    base_prob = no_speech_probability(backbone, nonspeech)
    hallucinated = base_prob < threshold
    X = _encode_clips(backbone, sae, layer, nonspeech)
    idx = np.arange(len(nonspeech))
    if test_size > 0:
        fit_idx, test_idx = train_test_split(idx, test_size=test_size, stratify=hallucinated,
                                             random_state=_random_state_int(random_state))
    else:
        fit_idx = test_idx = idx
    features = hallucination_features(X[fit_idx], hallucinated[fit_idx], n_features=n_features)
    weights = dict(zip(features["feature"].tolist(), features["weight"].tolist()))
    split = np.where(np.isin(idx, test_idx), "test", "fit")
    summary, clip_rows = [], []
    for alpha in alphas:
        with steer(backbone, sae, layer, weights, alpha, mode=mode):
            prob = no_speech_probability(backbone, nonspeech)
            hyps = [transcribe(backbone, w, s) for w, s in speech]
        fpr = float(np.mean(prob[test_idx] < threshold))
        error = float(wer(list(references), hyps))
        if verbose:
            logger.info("alpha %.3g: FPR %.3f, WER %.3f", alpha, fpr, error)
        summary.append({"alpha": alpha, "fpr": fpr, "mean_no_speech_prob": float(prob[test_idx].mean()),
                        "wer": error, "n_nonspeech": len(test_idx), "n_speech": len(speech)})
        clip_rows += [{"alpha": alpha, "kind": "nonspeech", "clip": i, "split": split[i],
                       "no_speech_prob": float(prob[i]), "hypothesis": None} for i in idx]
        clip_rows += [{"alpha": alpha, "kind": "speech", "clip": i, "split": "speech",
                       "no_speech_prob": np.nan, "hypothesis": h} for i, h in enumerate(hyps)]
    return SteeringReport(summary=pd.DataFrame(summary), features=features, clips=pd.DataFrame(clip_rows))


def language_tokens(backbone):
    """Language tokens of a Whisper tokenizer.

    Returns
    -------
    tokens : dict of str to int
        Language code (e.g. ``"en"``) -> token id, for every ``<|xx|>`` language token.
    """
    _check_whisper(backbone)
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    found = {code: _token_id(backbone.tokenizer, f"<|{code}|>") for code in LANGUAGES}
    return {code: idx for code, idx in found.items() if idx is not None}


@fill_doc
def language_token_shift(backbone, sae, layer, features, clips, *, alphas=(0.0, 1.0), languages=None,
                         mode="residual", batch_size=8):
    """Language-token probabilities of Whisper under steering, and their shift from alpha = 0.

    The probability of each language is the softmax over the language tokens of
    the decoder's logits after ``<|startoftranscript|>`` (Whisper's language
    detection).

    Parameters
    ----------
    backbone : WhisperBackbone
        A (multilingual) Whisper with its tokenizer.
    sae : SparseAutoencoder
        SAE of ``layer``.
    %(layer)s
    features : dict of int to float | pandas.Series | sequence of int
        Steering vector (:func:`steering_vector`).
    clips : list of Audio
        Clips of at most 30 s.
    alphas : sequence of float
        Steering strengths. Default (0, 1).
    languages : sequence of str | None
        Language codes reported (the softmax runs over all language tokens).
        Default all.
    mode : ``"residual"`` | ``"reconstruction"``
        Splicing mode of :func:`steer`. Default ``"residual"``.
    batch_size : int
        Clips per forward pass. Default 8.

    Returns
    -------
    table : pandas.DataFrame
        ``clip``, ``alpha``, ``language``, ``probability``, ``baseline``
        (probability without steering) and ``shift`` (``probability - baseline``).
    """
    _check_whisper(backbone)
    clips = _check_clips(clips, "clips")
    tokens = language_tokens(backbone)
    if not tokens:
        raise BackboneError(f"{backbone.name!r}: the tokenizer has no language tokens.")
    codes = list(tokens) if languages is None else list(languages)
    for code in codes:
        _check_option("languages", code, tokens)
    ids = np.array([tokens[c] for c in tokens])
    report = [list(tokens).index(c) for c in codes]
    baseline = _softmax(_first_step_logits(backbone, clips, batch_size)[:, ids])[:, report]
    rows = []
    for alpha in alphas:
        with steer(backbone, sae, layer, features, alpha, mode=mode):
            prob = _softmax(_first_step_logits(backbone, clips, batch_size)[:, ids])[:, report]
        for i in range(len(clips)):
            for j, code in enumerate(codes):
                rows.append({"clip": i, "alpha": float(alpha), "language": code, "probability": prob[i, j],
                             "baseline": baseline[i, j], "shift": prob[i, j] - baseline[i, j]})
    return pd.DataFrame(rows)
