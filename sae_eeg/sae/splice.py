"""Spliced evaluation: run Whisper with a layer replaced by its SAE reconstruction.

Reports how much of what the model understands survives the SAE: the word error rate
of greedy transcripts and the decoder's cross-entropy on the reference transcript
(teacher forcing), with and without the splice, and the KL divergence between the two
next-token distributions.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .._check import _validate_type
from ..audio import Audio, check_waveform, resample
from ..backbones import transcribe, wer
from ..errors import InputError
from .checkpoints import check_sae_for_backbone

__all__ = ["splice_sae", "spliced_evaluation"]

_WINDOW_SECONDS = 30.0


@contextlib.contextmanager
def splice_sae(backbone, sae, layer, *, n_frames=None):
    """Replace the output of block ``layer`` by ``sae``'s reconstruction inside the block.

    Parameters
    ----------
    backbone : Backbone
        A backbone with :meth:`~sae_eeg.backbones.Backbone.hook`.
    sae : BatchTopKSAE
        An SAE reading layer ``layer`` (same width).
    layer : int
        Layer n, from 1.
    n_frames : int | None
        Replace only the first ``n_frames`` frames of every window (the frames that
        hold audio; Whisper pads to 30 s). None replaces every frame.

    Yields
    ------
    backbone : Backbone
    """
    check_sae_for_backbone(sae, backbone, layer)

    def reconstruct(h_BTD):
        n = h_BTD.shape[1] if n_frames is None else min(int(n_frames), h_BTD.shape[1])
        head = h_BTD[:, :n]
        with torch.no_grad():
            rec = sae(head.reshape(-1, head.shape[-1]).float().to(sae.b_dec.device))
        rec = rec.reshape(head.shape).to(h_BTD.dtype).to(h_BTD.device)
        return torch.cat([rec, h_BTD[:, n:]], dim=1)

    with backbone.hook(layer, reconstruct):
        yield backbone


def _prompt_ids(backbone):
    tok = backbone.tokenizer
    ids = [tok.convert_tokens_to_ids("<|startoftranscript|>")]
    if backbone.model.config.vocab_size >= 51865:  # multilingual vocabulary: English transcription
        ids += [tok.convert_tokens_to_ids("<|en|>"), tok.convert_tokens_to_ids("<|transcribe|>")]
    return ids + [tok.convert_tokens_to_ids("<|notimestamps|>")]


@torch.no_grad()
def _log_probs(backbone, waveform_16k, tokens):
    pad = int(_WINDOW_SECONDS * backbone.sampling_rate) - len(waveform_16k)
    features = backbone.input_features([np.pad(waveform_16k, (0, pad))])
    ids = torch.tensor([tokens[:-1]], device=backbone.device)
    logits = backbone.model(input_features=features, decoder_input_ids=ids).logits[0].float()
    return torch.log_softmax(logits, dim=-1).cpu()


def spliced_evaluation(backbone, sae, layer, speech, references, *, splice_padding=False):
    """WER and decoder cross-entropy/KL with layer ``layer`` replaced by the SAE reconstruction.

    Parameters
    ----------
    backbone : WhisperBackbone
        Whisper with its tokenizer.
    sae : BatchTopKSAE
        SAE of layer ``layer``.
    layer : int
        Layer n, from 1.
    speech : list of Audio
        Utterances of at most 30 s each (any sampling rate).
    references : list of str
        What is said in each utterance.
    splice_padding : bool
        Also replace the frames of Whisper's zero padding to 30 s (they are not
        speech and not what the SAE was trained on). Default False.

    Returns
    -------
    result : dict of str to float
        ``wer_plain``, ``wer_spliced``, ``wer_change`` (spliced - plain, absolute),
        ``ce_plain``, ``ce_spliced``, ``ce_change`` (nats per reference token),
        ``kl`` (KL(plain || spliced) of the next-token distributions, nats per token),
        ``n_utterances``, ``n_tokens``.
    """
    _validate_type(speech, (list, tuple), "speech")
    _validate_type(references, (list, tuple), "references")
    if len(speech) != len(references) or not speech:
        raise InputError(f"speech and references must pair up and not be empty; got {len(speech)} utterances and "
                         f"{len(references)} references.")
    prompt = _prompt_ids(backbone)
    eot = backbone.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    hyps_plain, hyps_spliced = [], []
    ce_plain = ce_spliced = kl = 0.0
    n_tokens = 0
    for i, (audio, text) in enumerate(zip(speech, references)):
        _validate_type(audio, Audio, f"speech[{i}]")
        waveform, sfreq = check_waveform(audio.waveform, audio.sfreq, name=f"speech[{i}]")
        if len(waveform) / sfreq > _WINDOW_SECONDS:
            raise InputError(f"speech[{i}] lasts {len(waveform) / sfreq:.1f} s; utterances must be at most 30 s.")
        wave16 = waveform if sfreq == backbone.sampling_rate else resample(
            waveform, sfreq=sfreq, new_sfreq=backbone.sampling_rate).astype(np.float32)
        n_frames = None if splice_padding else backbone.n_frames(len(wave16))
        tokens = prompt + backbone.tokenizer.encode(" " + text.strip(), add_special_tokens=False) + [eot]
        targets = torch.tensor(tokens[len(prompt):])
        hyps_plain.append(transcribe(backbone, wave16, backbone.sampling_rate))
        logp_plain = _log_probs(backbone, wave16, tokens)[len(prompt) - 1:]
        with splice_sae(backbone, sae, layer, n_frames=n_frames):
            hyps_spliced.append(transcribe(backbone, wave16, backbone.sampling_rate))
            logp_spliced = _log_probs(backbone, wave16, tokens)[len(prompt) - 1:]
        rows = torch.arange(len(targets))
        ce_plain -= float(logp_plain[rows, targets].sum())
        ce_spliced -= float(logp_spliced[rows, targets].sum())
        kl += float((logp_plain.exp() * (logp_plain - logp_spliced)).sum())
        n_tokens += len(targets)
    wer_plain, wer_spliced = wer(list(references), hyps_plain), wer(list(references), hyps_spliced)
    return {
        "wer_plain": wer_plain, "wer_spliced": wer_spliced, "wer_change": wer_spliced - wer_plain,
        "ce_plain": ce_plain / n_tokens, "ce_spliced": ce_spliced / n_tokens,
        "ce_change": (ce_spliced - ce_plain) / n_tokens, "kl": kl / n_tokens,
        "n_utterances": float(len(speech)), "n_tokens": float(n_tokens),
    }
