"""Config-driven training (the `sae-eeg train-sae` entry point)."""

import numpy as np
import pytest
import soundfile
import yaml

from sae_eeg.errors import ConfigError
from sae_eeg.sae import Augmentation, load_sae, read_training_config, train_saes_from_config

from _sae_helpers import FakeBackbone


@pytest.fixture
def config_file(tmp_path, rng):
    for folder, n in (("speech", 3), ("noise", 1), ("music", 1)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            soundfile.write(tmp_path / folder / f"{i}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32),
                            16000)
    config = {
        "backbone": "fake", "out_dir": "run",
        "data": {"datasets": {"speech": {"folder": "speech", "weight": 2.0}},
                 "augmentation": {"noise_folder": "noise", "music_folder": "music", "p_noise": 0.5, "p_music": 0.2},
                 "buffer_size": 128, "cache_dir": "cache"},
        "training": {"layers": [1, 2], "expansion": 2, "k": 4, "n_steps": 6, "batch_size": 32, "warmup_steps": 2,
                     "threshold_start": 2, "checkpoint_every": 3},
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_config_file_trains_every_layer(config_file, tmp_path):
    checked = read_training_config(config_file)
    assert checked["out_dir"] == tmp_path / "run"
    assert checked["sources"]["speech"] == sorted((tmp_path / "speech").glob("*.wav"))
    assert checked["augmentation"] == Augmentation(noise=(tmp_path / "noise" / "0.wav",),
                                                   music=(tmp_path / "music" / "0.wav",), p_noise=0.5, p_music=0.2)
    saes = train_saes_from_config(config_file, backbone=FakeBackbone(d_model=8))
    assert sorted(saes) == [1, 2]
    for layer in (1, 2):
        loaded = load_sae(tmp_path / "run", layer=layer)
        assert loaded.n_features == 16 and int(loaded.k) == 4


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda c: c.update(epochs=3), r"epochs: Extra inputs are not permitted"),
        (lambda c: c.pop("out_dir"), r"out_dir: Field required"),
        (lambda c: c["data"]["datasets"]["speech"].update(path="x"),
         r"data.datasets.speech.path: Extra inputs are not permitted \(got 'x'\)"),
        (lambda c: c["training"].update(steps=3), r"training.steps: Extra inputs are not permitted"),
        (lambda c: c["data"].update(datasets={}), r"data.datasets: Dictionary should have at least 1 item"),
        (lambda c: c["training"].update(k=True), r"training.k: Input should be a valid integer \(got True\)"),
    ],
)
def test_config_errors(config_file, change, match):
    config = yaml.safe_load(config_file.read_text())
    change(config)
    config_file.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=match):
        read_training_config(config_file)


def test_every_problem_of_a_training_file_at_once(config_file):
    config = yaml.safe_load(config_file.read_text())
    config["epochs"] = 3
    config["training"].update(steps=3, lr=-1.0)
    config["data"]["augmentation"]["p_noise"] = 2.0
    config_file.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"train.yaml' has 4 problem\(s\)") as err:
        read_training_config(config_file)
    for field in ("epochs", "training.steps", "training.lr", "data.augmentation.p_noise"):
        assert f"  - {field}: " in str(err.value)


def test_a_short_run_that_would_never_set_a_threshold_is_refused_with_the_fix(config_file, tmp_path):
    """A short run with the default schedule (warm-up and threshold from step 1000) is an error, not silence."""
    from sae_eeg.sae import TrainingConfig
    from sae_eeg.pipeline import load_pipeline_config

    with pytest.raises(ConfigError, match=r"threshold_start \(1000\) must be below n_steps \(400\): the inference "
                                          r"threshold would never be estimated .* set threshold_start: 200 .*; "
                                          r"warmup_steps \(1000\) must be below n_steps \(400\).* set "
                                          r"warmup_steps: 40"):
        TrainingConfig(n_steps=400)
    config = yaml.safe_load(config_file.read_text())
    config["training"].update(threshold_start=6)
    config_file.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"training: threshold_start \(6\) must be below n_steps \(6\)"):
        read_training_config(config_file)
    with pytest.raises(ConfigError, match=r"sae.training: threshold_start \(1000\) must be below n_steps \(50\)"):
        load_pipeline_config({"output_dir": str(tmp_path / "o"), "stimuli": {"a": str(config_file)}, "layers": [1],
                              "sae": {"training": {"n_steps": 50, "warmup_steps": 5}}}, check_files=False)
    assert TrainingConfig(n_steps=400, threshold_start=200, warmup_steps=40).threshold_start == 200
