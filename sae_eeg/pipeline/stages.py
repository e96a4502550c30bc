"""The stages of the analysis, declared once, and the one task graph they make.

``activations`` (per stimulus) -> ``train_sae`` -> ``encode`` (per stimulus), or
``release_features`` (per stimulus without audio), and ``preprocess`` (per subject)
-> ``subject`` (per subject) -> ``group``; ``acoustic`` (per subject) ->
``acoustic_group``; with audio, ``attribution`` (every subject and layer at once) ->
``attribution_features``; and ``evaluate``. Each :class:`Stage`
names the stages it reads from and a planner that
declares its tasks: for each task the function and its arguments, the slice of
the config it reads, the files it reads, the tasks it needs and the outputs it
writes. :func:`build_graph` turns the declarations into content-addressed tasks
(:func:`~sae_eeg.pipeline.graph.task_key`), so adding a stage means writing its task
function (:mod:`~sae_eeg.pipeline.steps`), its planner and one line of
:data:`STAGES`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError
from .config import PipelineConfig, check_scheduler, load_pipeline_config, missing_audio_message, model_name
from .browser import browse_task, browser_montage
from .evaluate import evaluate_task
from .fingerprints import Fingerprints
from .graph import Task, TaskGraph, run_graph, task_key
from .outputs import STATE_DIR, claim_output_dir, output_path
from .analyses import without_audio
from .resources import (
    BASELINES, acoustic_dir, analysis_sfreq, attribution_dir, attribution_layers, audio_files, backbone_files,
    browser_dir, checkpoint_files, duration_files, eeg_files, evals_dir, feature_file, group_dir, manifest_of,
    preprocess_settings, release_feature_files, release_feature_kinds, runs_dir, subject_dir,
)
from .steps import (
    acoustic_group_task, acoustic_task, activations_task, attribution_features_task, attribution_task, encode_task,
    group_task, preprocess_task, release_features_task, subject_task, train_sae_task,
)

logger = logging.getLogger(__name__)


class Planner:
    """Builds the tasks of a config, stage after stage, computing each task's content key.

    Attributes
    ----------
    cfg : PipelineConfig
    fingerprints : Fingerprints
    verbose : bool
        Whether tasks that can show progress (SAE training) do.
    tasks : dict of str -> Task
        The tasks planned so far, in order.
    """

    def __init__(self, cfg, fingerprints, *, verbose=False):
        self.cfg = cfg
        self.fingerprints = fingerprints
        self.verbose = verbose
        self.tasks = {}

    @functools.cached_property
    def manifest(self):
        """The config's manifest (read once)."""
        return manifest_of(self.cfg)

    @functools.cached_property
    def audio(self):
        """Stimulus name -> audio file, of the stimuli whose audio is there."""
        return audio_files(self.cfg, None if self.cfg.stimuli else self.manifest)

    @functools.cached_property
    def presented(self):
        """The stimuli the runs present (the config's ``stimuli`` without a manifest)."""
        return self.manifest.presented_stimuli() if self.cfg.manifest is not None else list(self.cfg.stimuli)

    @functools.cached_property
    def has_audio(self):
        """Whether the presented stimuli have their audio (all of them; none without).

        Raises
        ------
        ConfigError
            Some have it and others not (the config check reports this at load).
        """
        missing = [name for name in self.presented if name not in self.audio]
        if missing and len(missing) < len(self.presented):
            raise ConfigError(missing_audio_message(missing, self.presented))
        return not missing

    @functools.cached_property
    def stimuli(self):
        """Stimulus name -> audio file of the stimuli the backbone stages process (none without audio)."""
        return self.audio if self.has_audio else {}

    @functools.cached_property
    def analyses(self):
        """The alignment settings that run; without audio those that need it are off, each with a warning."""
        if self.has_audio:
            return self.cfg.alignment
        settings, skipped = without_audio(self.cfg.alignment, release_feature_kinds(self.manifest, self.presented))
        for line in skipped:
            logger.warning("no audio: %s.", line)
        return settings

    @functools.cached_property
    def subjects(self):
        """The subject ids to analyse."""
        return [s.id for s in self.manifest.all_subjects()]

    def add(self, name, func, *, args=(), config=None, files=None, needs=(), outputs=(), where=None, local=False):
        """Declare one task; its key is computed from ``config``, the contents of ``files`` and ``needs``' keys.

        Parameters
        ----------
        name : str
            ``"<stage>/<id>"`` or ``"<stage>"``.
        func : callable
            The task function, called as ``func(*args)``.
        args : tuple
            Its arguments.
        config : dict | None
            The slice of the config the task reads.
        files : dict | None
            Label -> path of every input file it reads (fingerprinted by content).
        needs : sequence of str
            Tasks whose outputs it reads.
        outputs : sequence of path
            What it writes (inside the output folder).
        where : dict | None
            Labels for its error messages (``subject``, ``stimulus``, ``file``).
        local : bool
            Run in the main process even with a Dask scheduler.

        Returns
        -------
        task : Task
        """
        needs = tuple(dict.fromkeys(needs))
        key = task_key(func, config=config, files=self.fingerprints.digests(files or {}),
                       upstream={n: self.tasks[n].key for n in needs})
        task = Task(name, func, tuple(args), tuple(outputs), key, needs, dict(where or {}), local)
        self.tasks[name] = task
        return task

    def keys(self, names):
        """Name -> key of planned tasks (recorded in the provenance of tables)."""
        return {n: self.tasks[n].key for n in names}


def _common(cfg):
    return {"backbone": model_name(cfg), "device": cfg.device, "layers": list(cfg.layers)}


def plan_activations(p):
    """Per stimulus: layer activations and acoustic baselines; reads the audio and the backbone's weights."""
    cfg = p.cfg
    weights = backbone_files(cfg)
    for name, audio in p.stimuli.items():
        outputs = [feature_file(cfg, name, f"dense_layer_{n}") for n in cfg.layers]
        outputs += [feature_file(cfg, name, b) for b in BASELINES]
        p.add(f"activations/{name}", activations_task, args=(cfg, name, str(audio)),
              config={**_common(cfg), "sfreq": analysis_sfreq(cfg)}, files={"audio": audio, **weights},
              outputs=outputs, where={"stimulus": name, "file": audio})


def _sae_source(p):
    """What the SAEs come from: their checkpoint files, or the training task."""
    if p.cfg.sae.checkpoint is not None:
        return checkpoint_files(p.cfg), ()
    return {}, ("train_sae",)


def plan_train_sae(p):
    """One task training every layer's SAE on all stimuli's activations (none with a checkpoint)."""
    cfg = p.cfg
    if cfg.sae.checkpoint is not None or not p.stimuli:
        return
    stimuli = list(p.stimuli)
    p.add("train_sae", train_sae_task, args=(cfg, stimuli, p.verbose),
          config={**_common(cfg), "training": cfg.sae.training.model_dump(mode="json"), "stimuli": stimuli},
          needs=[f"activations/{s}" for s in stimuli], outputs=[output_path(cfg.output_dir, "sae")], local=True)


def plan_encode(p):
    """Per stimulus: SAE feature trajectories; reads its activations and the SAEs (checkpoint files or training)."""
    cfg = p.cfg
    files, trained = _sae_source(p)
    for name in p.stimuli:
        p.add(f"encode/{name}", encode_task, args=(cfg, name), config=_common(cfg), files=files,
              needs=[f"activations/{name}", *trained],
              outputs=[feature_file(cfg, name, f"layer_{n}") for n in cfg.layers], where={"stimulus": name})


def plan_release_features(p):
    """Per stimulus without audio: its release features as acoustic baselines; reads the release's files."""
    if p.cfg.manifest is None or p.has_audio:
        return
    for name in p.presented:
        stim = p.manifest.stimuli[name]
        if not stim.features:
            continue
        entries = {kind: entry.model_dump(mode="json", exclude={"path", "sha256"})
                   for kind, entry in stim.features.items()}
        p.add(f"release_features/{name}", release_features_task, args=(p.cfg, name), config={"features": entries},
              files=release_feature_files(p.manifest, name),
              outputs=[feature_file(p.cfg, name, kind) for kind in stim.features], where={"stimulus": name})


def _manifest_slice(manifest, subject):
    """What the manifest says about a subject, minus file paths (their contents are fingerprinted)."""
    runs = [run.model_dump(mode="json", exclude={"eeg": {"path", "sha256"}}) for run in manifest.subject(subject).runs]
    stimuli = {r["stimulus"]: manifest.stimuli[r["stimulus"]].model_dump(
        mode="json", exclude={"path": True, "sha256": True, "features": {"__all__": {"path", "sha256"}}})
        for r in runs}
    return {"runs": runs, "bad_channels": manifest.subject_bad_channels(subject), "stimuli": stimuli,
            "channels": manifest.channels.model_dump(mode="json"), "montage": manifest.montage}


def plan_preprocess(p):
    """Per subject: preprocessed runs cut to their stimuli; reads its EEG files, manifest entries, stimulus durations.

    The layers, the backbone and the features do not enter: the run files hold EEG only.
    """
    cfg = p.cfg
    for s in p.subjects:
        stimuli = list(dict.fromkeys(run.stimulus for run in p.manifest.subject(s).runs))
        p.add(f"preprocess/{s}", preprocess_task, args=(cfg, s),
              config={"preprocess": preprocess_settings(cfg, p.manifest).model_dump(mode="json"),
                      "manifest": _manifest_slice(p.manifest, s)},
              files={**eeg_files(p.manifest, s), **duration_files(cfg, p.manifest, stimuli)},
              outputs=[runs_dir(cfg, s)], where={"subject": s})


def _alignment_config(cfg, settings, audio):
    return {"backbone": model_name(cfg), "layers": list(cfg.layers), "audio": audio,
            "alignment": settings.model_dump(mode="json")}


def _stimulus_tasks(p, stimuli, sae=True):
    """The tasks that write the features of ``stimuli`` (without ``sae``: only their acoustic series)."""
    if p.has_audio:
        stages = ("activations", "encode") if sae else ("activations",)
        return [f"{stage}/{name}" for name in stimuli for stage in stages]
    return [f"release_features/{name}" for name in stimuli if f"release_features/{name}" in p.tasks]


def plan_subject(p):
    """Per subject: the alignment analyses of every layer; reads its run files and its stimuli's features."""
    cfg = p.cfg
    settings = p.analyses
    for s in p.subjects:
        stimuli = list(dict.fromkeys(run.stimulus for run in p.manifest.subject(s).runs))
        needs = [f"preprocess/{s}", *_stimulus_tasks(p, stimuli)]
        p.add(f"subject/{s}", subject_task, args=(cfg, s, p.keys(needs), settings, p.has_audio),
              config={**_alignment_config(cfg, settings, p.has_audio),
                      "runs": [run.id for run in p.manifest.subject(s).runs]},
              needs=needs, outputs=[subject_dir(cfg, n, s) for n in cfg.layers], where={"subject": s})


def plan_group(p):
    """One task: the group statistics of every layer; reads every subject's tables."""
    cfg = p.cfg
    subjects = sorted(p.subjects)
    needs = [f"subject/{s}" for s in subjects]
    montage = cfg.alignment.clusters.montage or p.manifest.montage
    settings = p.analyses
    p.add("group", group_task, args=(cfg, subjects, p.keys(needs), montage, settings, p.has_audio),
          config={**_alignment_config(cfg, settings, p.has_audio), "subjects": subjects, "montage": montage},
          needs=needs, outputs=[group_dir(cfg, n) for n in cfg.layers], local=True)


def _band_config(cfg):
    return {"band": [cfg.preprocess.l_freq, cfg.preprocess.h_freq]}


def plan_acoustic(p):
    """Per subject: the acoustic TRFs; reads its run files and its stimuli's acoustic series.

    The series are made from the audio or, without it, are the release's (the spaces
    it provides). Nothing of a layer: other layers reuse them."""
    cfg = p.cfg
    acoustic = p.analyses.acoustic
    if not acoustic.enabled:
        return
    for s in p.subjects:
        stimuli = list(dict.fromkeys(run.stimulus for run in p.manifest.subject(s).runs))
        needs = [f"preprocess/{s}", *_stimulus_tasks(p, stimuli, sae=False)]
        p.add(f"acoustic/{s}", acoustic_task, args=(cfg, s, p.keys(needs), acoustic),
              config={"acoustic": acoustic.model_dump(mode="json"), **_band_config(cfg),
                      "runs": [(run.id, run.stimulus) for run in p.manifest.subject(s).runs]},
              needs=needs, outputs=[acoustic_dir(cfg, s)], where={"subject": s})


def plan_acoustic_group(p):
    """One task: the group acoustic TRFs and their peaks; reads every subject's acoustic tables."""
    cfg = p.cfg
    acoustic = p.analyses.acoustic
    if not acoustic.enabled:
        return
    subjects = sorted(p.subjects)
    needs = [f"acoustic/{s}" for s in subjects]
    p.add("acoustic_group", acoustic_group_task, args=(cfg, subjects, p.keys(needs), acoustic),
          config={"acoustic": acoustic.model_dump(mode="json"), "subjects": subjects}, needs=needs,
          outputs=[acoustic_dir(cfg)], local=True)


def plan_attribution(p):
    """One task: the feature attribution of every subject and its layers; reads their run files and the features."""
    cfg = p.cfg
    if not p.analyses.attribution.enabled:
        return
    subjects = sorted(p.subjects)
    layers = attribution_layers(cfg)
    stimuli = list(dict.fromkeys(run.stimulus for s in subjects for run in p.manifest.subject(s).runs))
    needs = [f"preprocess/{s}" for s in subjects] + _stimulus_tasks(p, stimuli)
    p.add("attribution", attribution_task, args=(cfg, subjects, p.keys(needs)),
          config={"backbone": model_name(cfg), "layers": layers, "subjects": subjects, **_band_config(cfg),
                  "attribution": cfg.alignment.attribution.model_dump(mode="json"),
                  "spaces": list(cfg.alignment.acoustic.spaces),
                  "runs": {s: [(run.id, run.stimulus) for run in p.manifest.subject(s).runs] for s in subjects}},
          needs=needs, outputs=[attribution_dir(cfg)], local=True)


def plan_attribution_features(p):
    """One task: each layer's rows of the attribution as ``alignment/layer_n/group/attribution_features``.

    A copy for the browser, which joins the ``*_features`` tables of the group folders. It comes
    after the ``group`` task, which clears that folder when it reruns: then only this copy is redone.
    """
    cfg = p.cfg
    if "attribution" not in p.tasks:
        return
    layers = attribution_layers(cfg)
    needs = ["attribution", "group"]
    p.add("attribution_features", attribution_features_task, args=(cfg, p.keys(needs)),
          config={"layers": layers}, needs=needs, local=True,
          outputs=[group_dir(cfg, n) / f"attribution_features.{ext}" for n in layers
                   for ext in ("parquet", "csv", "provenance.json")])


def plan_evaluate(p):
    """One task: the SAE evaluations; reads the clips, the SAEs, the backbone and the stimuli's activations."""
    cfg = p.cfg
    if cfg.evaluate is None or not p.stimuli:
        return
    e = cfg.evaluate
    files, trained = _sae_source(p)
    clips = {f"{kind} {i}": path for kind in ("speech", "music", "noise") for i, path in enumerate(getattr(e, kind))}
    p.add("evaluate", evaluate_task, args=(cfg, list(p.stimuli)),
          config={**_common(cfg), "evaluate": e.model_dump(mode="json", exclude={"speech", "music", "noise"}),
                  "training": cfg.sae.training.model_dump(mode="json"), "stimuli": list(p.stimuli)},
          files={**clips, **files, **backbone_files(cfg)},
          needs=[*(f"activations/{s}" for s in p.stimuli), *trained],
          outputs=[evals_dir(cfg), output_path(cfg.output_dir, "sae_second_seed")], local=True)


#: The error of the ``evaluate`` stage asked for on a config without an ``evaluate`` section.
EVALUATE_MISSING = """the 'evaluate' stage needs an 'evaluate' section in the config, which has none. Add one, e.g.:

evaluate:
  speech: [clips/speech_0.wav, clips/speech_1.wav]  # utterances (at most 30 s each), relative to the config
  references: ["the first utterance's words", "the second's"]   # one transcript per speech clip
  music: [clips/music_0.wav]     # non-speech clips (optional)
  noise: [clips/noise_0.wav]     # (optional)
  layer: 12                      # layer of the consistency, erasure and steering evaluations (default the last)"""


def _where_audio(cfg):
    return ("give each stimulus's audio in the config's 'stimuli'" if cfg.manifest is None else
            "put each stimulus's audio file where its manifest 'path' says, or give them in the config's 'stimuli'")


def plan_browse(p):
    """One task: the feature browser of every layer; reads the trajectories, SAEs, EEG and evaluation results.

    With a manifest, the EEG results join the pages: their stages are planned here when not asked for.
    Without audio there are no SAE features to browse: no task.
    """
    cfg = p.cfg
    if not p.stimuli:
        return
    if cfg.manifest is not None:
        for stage in ("preprocess", "subject", "group", "attribution", "attribution_features"):
            if not any(task.stage == stage for task in p.tasks.values()):
                STAGES[stage].plan(p)
    files, trained = _sae_source(p)
    needs = [name for name, task in p.tasks.items()
             if task.stage in ("encode", "subject", "group", "attribution_features", "evaluate")]
    needs += trained
    p.add("browse", browse_task, args=(cfg, p.keys(needs)),
          config={**_common(cfg), "stimuli": list(p.stimuli), "montage": browser_montage(cfg)}, files=files,
          needs=needs, outputs=[browser_dir(cfg)], local=True)


@dataclass(frozen=True)
class Stage:
    """A stage of the analysis.

    Attributes
    ----------
    name : str
    plan : callable
        ``plan(planner)`` declares the stage's tasks with :meth:`Planner.add`.
    needs : tuple of str
        Stages whose tasks its tasks read (planned before it).
    per_subject : bool
        Its tasks are named ``<stage>/<subject>`` (``subjects=`` selects among them).
    """

    name: str
    plan: Callable
    needs: tuple = ()
    per_subject: bool = False


#: Every stage, in an order where each comes after the stages it needs.
STAGES = {stage.name: stage for stage in (
    Stage("activations", plan_activations),
    Stage("train_sae", plan_train_sae, needs=("activations",)),
    Stage("encode", plan_encode, needs=("activations", "train_sae")),
    Stage("release_features", plan_release_features),
    Stage("preprocess", plan_preprocess, per_subject=True),
    Stage("subject", plan_subject, needs=("preprocess", "activations", "encode", "release_features"),
          per_subject=True),
    Stage("group", plan_group, needs=("subject",)),
    Stage("acoustic", plan_acoustic, needs=("preprocess", "activations", "release_features"), per_subject=True),
    Stage("acoustic_group", plan_acoustic_group, needs=("acoustic",)),
    Stage("attribution", plan_attribution, needs=("preprocess", "activations", "encode")),
    Stage("attribution_features", plan_attribution_features, needs=("attribution", "group")),
    Stage("evaluate", plan_evaluate, needs=("activations", "train_sae")),
    Stage("browse", plan_browse, needs=("encode", "evaluate")),
)}
#: The stages that need no EEG.
EXTRACT = ("activations", "train_sae", "encode")
#: The stages that need the stimuli's audio.
AUDIO_STAGES = ("activations", "train_sae", "encode", "attribution",
                "attribution_features", "evaluate", "browse")
#: The stages a run brings up to date unless told which: all but ``browse``, a view asked for by name.
ANALYSES = tuple(name for name in STAGES if name != "browse")


def build_graph(cfg, stages=ANALYSES, *, subjects=None, verbose=False):
    """The task graph of ``stages`` (with every task they need) for a config.

    Parameters
    ----------
    cfg : PipelineConfig
        A validated config.
    stages : sequence of str
        Names of :data:`STAGES` to bring up to date.
    subjects : sequence of str | None
        Only these subjects' tasks of per-subject stages (default all).
    verbose : bool
        Let tasks that can show progress (SAE training) do.

    Returns
    -------
    graph : TaskGraph
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}.")
    wanted, todo = set(), list(stages)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(STAGES[name].needs)
    fingerprints = Fingerprints(output_path(cfg.output_dir, STATE_DIR, "fingerprints.json"))
    planner = Planner(cfg, fingerprints, verbose=verbose)
    if subjects is not None:
        unknown = sorted(set(subjects) - set(planner.subjects))
        if unknown:
            raise ConfigError(f"unknown subject(s) {unknown}; the manifest's subjects are {planner.subjects}.")
    if "evaluate" in stages and cfg.evaluate is None and set(stages) <= {"evaluate", *STAGES["evaluate"].needs}:
        raise ConfigError(EVALUATE_MISSING)
    if not planner.has_audio and all(s in AUDIO_STAGES for s in stages):
        raise ConfigError(f"stage(s) {list(stages)} need the stimuli's audio, and the stimuli have none: "
                          f"{_where_audio(cfg)}.")
    for name, stage in STAGES.items():
        if name in wanted:
            stage.plan(planner)
    fingerprints.save()
    graph = TaskGraph(planner.tasks.values(), cfg.output_dir)
    targets = [t.name for t in graph.tasks if t.stage in stages and (
        subjects is None or not STAGES[t.stage].per_subject or t.name.split("/", 1)[1] in subjects)]
    return graph.select(targets)


def run_stages(config, stages=ANALYSES, *, subjects=None, verbose=False):
    """Bring ``stages`` up to date in a folder the caller has claimed (see :func:`run_pipeline`).

    Every task whose key changed, or whose outputs are missing, runs; the others
    are skipped. Tasks of failed tasks are not run; all others are.

    Parameters
    ----------
    config : path-like | dict | PipelineConfig
    stages : sequence of str
        Names of :data:`STAGES` (their upstream tasks are included).
    subjects : sequence of str | None
        Only these subjects in per-subject stages (default all).
    verbose : bool
        Progress bars.

    Returns
    -------
    report : TaskReport

    Raises
    ------
    TaskFailedError
        One line per failed task, and the log file with the tracebacks.
    """
    cfg = config if isinstance(config, PipelineConfig) else load_pipeline_config(config)
    graph = build_graph(cfg, stages, subjects=subjects, verbose=verbose)
    report = run_graph(graph, scheduler=cfg.scheduler, n_workers=cfg.n_workers, verbose=verbose,
                       log_dir=output_path(cfg.output_dir, "logs"))
    report.raise_for_failures()
    return report


def run_pipeline(config, stages=ANALYSES, *, subjects=None, scheduler=None, force=False, verbose=False,
                 overrides=None):
    """Check a config whole, claim its output folder and bring ``stages`` up to date.

    Parameters
    ----------
    config : path-like | dict | PipelineConfig
        The pipeline config; every problem of every section and of the inputs is
        reported before any task runs.
    stages : sequence of str
        Names of :data:`STAGES` (default :data:`ANALYSES`, all but ``browse``; upstream tasks are included).
    subjects : sequence of str | None
        Only these subjects in per-subject stages.
    scheduler : str | None
        Override the config's scheduler (``"serial"`` for one process).
    force : bool
        Take over an output folder written with another configuration.
    verbose : bool
        Progress bars.
    overrides : dict | None
        Settings of a config file or dict to change before it is checked (see
        :func:`~sae_eeg.pipeline.config.load_pipeline_config`).

    Returns
    -------
    report : TaskReport

    Raises
    ------
    ConfigError
        The config or its inputs are invalid (every problem listed).
    OutputExistsError
        The output folder belongs to another configuration, or is in use.
    TaskFailedError
        Tasks failed (one line each); the others' results are kept.
    """
    override = scheduler is not None
    if override:  # checked first: a bad option is reported even when the config has problems too
        scheduler = check_scheduler(None if scheduler == "serial" else scheduler)
    cfg = load_pipeline_config(config, overrides=overrides)
    if override:
        cfg = cfg.model_copy(update={"scheduler": scheduler})
    with claim_output_dir(cfg.output_dir, cfg.results_config(), force=force):
        return run_stages(cfg, stages, subjects=subjects, verbose=verbose)
