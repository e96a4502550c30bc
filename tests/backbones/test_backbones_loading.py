"""load_backbone: what it accepts and the errors for what it does not."""

import json

import pytest

from sae_eeg.backbones import KNOWN_MODELS, load_backbone, normalize_text, wer
from sae_eeg.errors import BackboneError, InputError


def test_unknown_short_name():
    with pytest.raises(BackboneError, match=r"Unknown model 'whisper-tinyy'.*'whisper-tiny.en'"):
        load_backbone("whisper-tinyy")


def test_missing_folder(tmp_path):
    with pytest.raises(BackboneError, match="Unknown model .*no_such_folder.*no such folder"):
        load_backbone(tmp_path / "no_such_folder")


def test_hub_id_offline_or_missing():
    # tests run with HF_HUB_OFFLINE=1: the hub path is taken and fails with a clear message
    with pytest.raises(BackboneError, match="Could not fetch the model 'sae-eeg-tests/no-such-model'"):
        load_backbone("sae-eeg-tests/no-such-model")
    assert KNOWN_MODELS["hubert-base"] == "facebook/hubert-base-ls960"


def test_folder_that_is_no_model(tmp_path):
    with pytest.raises(BackboneError, match="neither a transformers model folder .* nor a CTranslate2"):
        load_backbone(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(BackboneError, match="holds a 'bert' model; supported model types are 'whisper', 'hubert'"):
        load_backbone(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(BackboneError, match="config.json' is not a readable JSON model config"):
        load_backbone(tmp_path)


def test_file_instead_of_folder(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")
    with pytest.raises(BackboneError, match="is a file; give a model folder"):
        load_backbone(file)


def test_bad_types_and_device(tiny_en_path):
    with pytest.raises(InputError, match="name_or_path must be an instance of path-like, got int"):
        load_backbone(3)
    with pytest.raises(InputError, match="Invalid device 'tpu'"):
        load_backbone(tiny_en_path, device="tpu")


def test_wer_and_normalize_text():
    assert normalize_text("  Hello, World!  It’s a WELL-known fact... ") == "hello world it's a well known fact"
    assert wer("the cat sat", "The cat, sat!") == 0.0
    assert wer(["the cat sat on the mat", "a dog"], ["the cat sat on mat", "a big dog"]) == pytest.approx(2 / 8)
    with pytest.raises(InputError, match="got 2 references and 1 hypotheses"):
        wer(["a", "b"], ["a"])
    with pytest.raises(InputError, match=r"empty after normalisation: \[1\]"):
        wer(["a", "?!"], ["a", "b"])
