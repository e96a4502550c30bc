"""Greedy Whisper transcription and word error rate, to check a backbone still hears speech."""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from .._check import _ensure_int, _soft_import, _validate_type
from ..errors import BackboneError, InputError
from .whisper import WINDOW_SAMPLES, WhisperBackbone

#: Longest decoded text per 30 s window, in tokens (half of Whisper's 448 positions).
MAX_NEW_TOKENS = 224


def _prompt(backbone, language):
    """Decoder prompt: <|startoftranscript|> [<|lang|> <|transcribe|>] <|notimestamps|>."""
    tokenizer = backbone.tokenizer
    ids = [tokenizer.convert_tokens_to_ids("<|startoftranscript|>")]
    if backbone.model.config.vocab_size >= 51865:  # multilingual vocabulary
        ids += [tokenizer.convert_tokens_to_ids(f"<|{language}|>"),
                tokenizer.convert_tokens_to_ids("<|transcribe|>")]
    ids.append(tokenizer.convert_tokens_to_ids("<|notimestamps|>"))
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids[1:]:
        raise InputError(f"Whisper's tokenizer has no language token for language={language!r}.")
    return ids


def _greedy(backbone, features, prompt, eot, max_new_tokens, torch):
    """Greedy decoding of a batch of windows; returns token lists without prompt and <|endoftext|>."""
    model, config = backbone.model, backbone.model.config
    suppress = list(config.suppress_tokens or [])
    begin_suppress = list(config.begin_suppress_tokens or [])
    batch = features.shape[0]
    encoder_out = model.get_encoder()(features)
    tokens = torch.tensor([prompt] * batch, device=backbone.device)
    done = torch.zeros(batch, dtype=torch.bool, device=backbone.device)
    new, past, step_input = [], None, tokens
    for step in range(max_new_tokens):
        out = model(encoder_outputs=encoder_out, decoder_input_ids=step_input,
                    past_key_values=past, use_cache=True)
        logits = out.logits[:, -1, :].float()
        if suppress:
            logits[:, suppress] = -np.inf
        if step == 0 and begin_suppress:
            logits[:, begin_suppress] = -np.inf
        next_token = logits.argmax(dim=-1)
        next_token = torch.where(done, torch.full_like(next_token, eot), next_token)
        new.append(next_token)
        done |= next_token == eot
        if bool(done.all()):
            break
        past, step_input = out.past_key_values, next_token[:, None]
    rows = torch.stack(new, dim=1).cpu().tolist() if new else [[] for _ in range(batch)]
    return [row[: row.index(eot)] if eot in row else row for row in rows]


def transcribe(backbone, waveform, sfreq, *, language="en", batch_size=4,
               max_new_tokens=MAX_NEW_TOKENS):
    """Transcribe speech with Whisper, greedily, 30 s window after 30 s window.

    The decoder starts from ``<|startoftranscript|>`` (then ``<|language|>
    <|transcribe|>`` for multilingual models) and ``<|notimestamps|>``, takes
    the most likely token at every step with Whisper's suppressed tokens
    masked, and stops at ``<|endoftext|>``. Hooks set with
    :meth:`Backbone.hook` apply, so this measures how an edit of the encoder
    changes what Whisper understands.

    Parameters
    ----------
    backbone : WhisperBackbone
        A Whisper backbone with its tokenizer (e.g. ``load_backbone(bundled_whisper_path())``).
    waveform : array-like, shape (n_samples,) or (n_samples, n_channels)
        The audio; channels are averaged.
    sfreq : float
        Sampling rate of ``waveform`` in Hz; any rate (resampled to 16 kHz).
    language : str
        Language code for multilingual models (ignored by ``*.en`` models). Default "en".
    batch_size : int
        Windows decoded together. Default 4.
    max_new_tokens : int
        Most tokens decoded per window. Default 224.

    Returns
    -------
    text : str
        The transcript, windows joined by a space, stripped.

    Raises
    ------
    BackboneError
        If ``backbone`` is not a Whisper backbone with a tokenizer.
    InputError
        Bad waveform, sampling rate or language.
    """
    torch = _soft_import("torch", "Whisper transcription")
    _validate_type(backbone, WhisperBackbone, "backbone")
    if backbone.tokenizer is None or not hasattr(backbone.model, "proj_out"):
        raise BackboneError(
            f"{backbone.name!r} cannot transcribe: it needs a WhisperForConditionalGeneration with "
            "a tokenizer (tokenizer.json in the model folder)."
        )
    _validate_type(language, str, "language")
    batch_size = _ensure_int(batch_size, "batch_size")
    max_new_tokens = _ensure_int(max_new_tokens, "max_new_tokens")
    if batch_size < 1 or max_new_tokens < 1:
        raise InputError(f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}.")
    waveform = backbone._prepare(waveform, sfreq)
    chunks = [waveform[i:i + WINDOW_SAMPLES] for i in range(0, len(waveform), WINDOW_SAMPLES)]
    chunks = [np.pad(c, (0, WINDOW_SAMPLES - len(c))) for c in chunks]
    prompt = _prompt(backbone, language)
    eot = backbone.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    texts = []
    with torch.inference_mode():
        for b0 in range(0, len(chunks), batch_size):
            features = backbone.input_features(chunks[b0:b0 + batch_size])
            for ids in _greedy(backbone, features, prompt, eot, max_new_tokens, torch):
                texts.append(backbone.tokenizer.decode(ids, skip_special_tokens=True).strip())
    return " ".join(t for t in texts if t)


_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


def normalize_text(text):
    """Normalise a transcript for word error rates.

    Unicode NFKC; lower case; curly apostrophes to ``'``; hyphens, dashes and
    slashes to spaces; every other character that is not a letter, a digit or
    an apostrophe inside a word removed; runs of whitespace collapsed. Numbers
    are not spelled out (``"12"`` and ``"twelve"`` differ), so test sentences
    avoid them.

    Parameters
    ----------
    text : str

    Returns
    -------
    normalized : str

    Examples
    --------
    >>> normalize_text("Hello, World! It's a well-known fact.")
    "hello world it's a well known fact"
    """
    _validate_type(text, str, "text")
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    text = re.sub(r"[-\u2010-\u2015/]", " ", text)
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)  # keep only in-word apostrophes
    return " ".join(text.split())


def wer(references, hypotheses):
    """Corpus word error rate after :func:`normalize_text`.

    Parameters
    ----------
    references : str | sequence of str
        What was said.
    hypotheses : str | sequence of str
        What was transcribed, one per reference.

    Returns
    -------
    wer : float
        (substitutions + deletions + insertions) / number of reference words,
        summed over all pairs (jiwer's corpus WER).

    Raises
    ------
    InputError
        Different numbers of references and hypotheses, or references without any word.
    """
    jiwer = _soft_import("jiwer", "Word error rates")
    references = [references] if isinstance(references, str) else list(references)
    hypotheses = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    if len(references) != len(hypotheses):
        raise InputError(
            f"references and hypotheses must pair up; got {len(references)} references and "
            f"{len(hypotheses)} hypotheses."
        )
    refs = [normalize_text(r) for r in references]
    hyps = [normalize_text(h) for h in hypotheses]
    if not references or not any(refs) or not all(refs):
        empty = [i for i, r in enumerate(refs) if not r]
        raise InputError(f"Every reference needs at least one word; empty after normalisation: {empty or 'all'}.")
    return float(jiwer.wer(refs, hyps))
