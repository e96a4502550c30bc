"""``load_backbone``: Hugging Face ids, local ``save_pretrained`` folders, CTranslate2 folders."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .._check import _soft_import, _validate_type
from ..errors import BackboneError
from ._base import resolve_device
from .ctranslate2 import _is_ct2_folder, ctranslate2_whisper_path
from .hubert import HubertBackbone
from .whisper import WhisperBackbone

logger = logging.getLogger(__name__)

#: Short names accepted by :func:`load_backbone`, mapped to Hugging Face ids.
KNOWN_MODELS = {
    **{f"whisper-{size}": f"openai/whisper-{size}" for size in (
        "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
        "large", "large-v2", "large-v3", "large-v3-turbo")},
    "hubert-base": "facebook/hubert-base-ls960",
    "hubert-large": "facebook/hubert-large-ll60k",
    "hubert-xlarge": "facebook/hubert-xlarge-ll60k",
}


#: (d_model, n_layers) of the encoders of :data:`KNOWN_MODELS`, to check SAEs and layers before loading.
KNOWN_DIMS = {
    **{f"whisper-{size}{en}": dims for size, dims in (
        ("tiny", (384, 4)), ("base", (512, 6)), ("small", (768, 12)), ("medium", (1024, 24)))
       for en in ("", ".en")},
    **{f"whisper-{size}": (1280, 32) for size in ("large", "large-v2", "large-v3", "large-v3-turbo")},
    "hubert-base": (768, 12), "hubert-large": (1024, 24), "hubert-xlarge": (1280, 48),
}


def model_dims(name_or_path):
    """Width and number of encoder layers of a model, without loading its weights.

    Parameters
    ----------
    name_or_path : str | path-like
        A short name of :data:`KNOWN_MODELS`, or a transformers model folder
        (its ``config.json`` is read).

    Returns
    -------
    dims : tuple of (int, int) | None
        ``(d_model, n_layers)``, or None when it cannot be known without loading
        (a hub id, a CTranslate2 folder, an unreadable config).
    """
    name = str(name_or_path)
    if name in KNOWN_DIMS:
        return KNOWN_DIMS[name]
    config_file = Path(name).expanduser() / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    keys = {"whisper": ("d_model", "encoder_layers"), "hubert": ("hidden_size", "num_hidden_layers")}
    width, depth = keys.get(config.get("model_type"), (None, None))
    if width in config and depth in config:
        return int(config[width]), int(config[depth])
    return None


def _load_whisper(source, transformers, name, device, **hub):
    model = transformers.WhisperForConditionalGeneration.from_pretrained(source, dtype="float32", **hub)
    try:
        tokenizer = transformers.WhisperTokenizer.from_pretrained(source, **hub)
    except (OSError, ValueError, TypeError):
        tokenizer = None
    # without tokenizer files transformers builds an empty tokenizer instead of raising
    if tokenizer is not None and not {"<|startoftranscript|>", "<|notimestamps|>"} <= set(tokenizer.get_vocab()):
        tokenizer = None
    if tokenizer is None:
        logger.info("No Whisper tokenizer with %s: transcription is unavailable.", name)
    try:
        feature_extractor = transformers.WhisperFeatureExtractor.from_pretrained(source, **hub)
    except OSError:
        feature_extractor = transformers.WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    return WhisperBackbone(model, name=name, device=device, feature_extractor=feature_extractor,
                           tokenizer=tokenizer)


def _load_hubert(source, transformers, name, device, **hub):
    model = transformers.HubertModel.from_pretrained(source, dtype="float32", **hub)
    try:
        feature_extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(source, **hub)
    except OSError:  # HuBERT with layer-norm front-end (large) expects normalised input
        feature_extractor = transformers.Wav2Vec2FeatureExtractor(
            do_normalize=model.config.feat_extract_norm == "layer", return_attention_mask=False)
    return HubertBackbone(model, name=name, device=device, feature_extractor=feature_extractor)


#: Supported ``model_type`` values of a transformers ``config.json``.
LOADERS = {"whisper": _load_whisper, "hubert": _load_hubert}


def _model_type(folder):
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BackboneError(f"{str(config_file)!r} is not a readable JSON model config: {err}") from err
    model_type = config.get("model_type")
    if model_type not in LOADERS:
        raise BackboneError(
            f"{str(folder)!r} holds a {model_type!r} model; supported model types are "
            f"{', '.join(map(repr, LOADERS))}."
        )
    return model_type


def _looks_like_hub_id(name):
    parts = name.split("/")
    return (len(parts) == 2 and all(parts) and not name.startswith((".", "~"))
            and "\\" not in name)


def load_backbone(name_or_path, *, device="cpu", cache_dir=None):
    """Load a Whisper or HuBERT encoder as a :class:`Backbone`.

    Parameters
    ----------
    name_or_path : str | path-like
        One of

        * a local folder written by ``save_pretrained`` (``config.json`` with
          ``model_type`` "whisper" or "hubert" + weights);
        * a CTranslate2 Whisper folder (``model.bin``, e.g. a faster-whisper
          model): converted once into the cache, then loaded from there;
        * a Hugging Face id such as ``"openai/whisper-base"`` or
          ``"facebook/hubert-base-ls960"`` (downloaded by transformers into the
          Hugging Face cache when online);
        * a short name from :data:`KNOWN_MODELS` (``"whisper-tiny.en"`` ...
          ``"whisper-large-v3-turbo"``, ``"hubert-base"``, ``"hubert-large"``).

        For the offline Whisper tiny.en use
        ``load_backbone(bundled_whisper_path())``.
    device : str | torch.device
        ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
    cache_dir : path-like | None
        Root of sae_eeg's cache for converted CTranslate2 models (default
        ``$SAE_EEG_CACHE`` or ``~/.cache/sae_eeg``). Hub downloads use the
        Hugging Face cache.

    Returns
    -------
    backbone : Backbone
        :class:`WhisperBackbone` or :class:`HubertBackbone`, in eval mode on ``device``.

    Raises
    ------
    BackboneError
        Unknown short name, a folder that is neither a transformers nor a
        CTranslate2 model, an unsupported model type, or a hub id that cannot be
        fetched (offline or not found).
    InputError
        A bad ``device`` or argument type.
    """
    transformers = _soft_import("transformers", "Audio backbones")
    _validate_type(name_or_path, "path-like", "name_or_path")
    resolve_device(device)  # fail before loading weights
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if _is_ct2_folder(path):
            path = ctranslate2_whisper_path(path, cache_dir=cache_dir)
        elif not (path / "config.json").is_file():
            raise BackboneError(
                f"{name!r} is neither a transformers model folder (no config.json) nor a CTranslate2 "
                "model folder (no model.bin)."
            )
        return LOADERS[_model_type(path)](str(path), transformers, name, device)
    if path.exists():
        raise BackboneError(f"{name!r} is a file; give a model folder, a Hugging Face id or a known name.")
    if isinstance(name_or_path, str) and name in KNOWN_MODELS:
        name = KNOWN_MODELS[name]
    elif not (isinstance(name_or_path, str) and _looks_like_hub_id(name)):
        known = ", ".join(map(repr, KNOWN_MODELS))
        raise BackboneError(
            f"Unknown model {name!r}: no such folder, not a Hugging Face id ('owner/name') and not one "
            f"of the known names {known}."
        )
    try:
        config = transformers.AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise BackboneError(
            f"Could not fetch the model {name!r} from the Hugging Face Hub (offline, or no such "
            f"model): {err}"
        ) from err
    if config.model_type not in LOADERS:
        raise BackboneError(
            f"{name!r} is a {config.model_type!r} model; supported model types are "
            f"{', '.join(map(repr, LOADERS))}."
        )
    return LOADERS[config.model_type](name, transformers, name, device)
