"""The top-level facade: AudioSAE's names on ``sae_eeg``, imported only when first used."""

import subprocess
import sys

import pytest

import sae_eeg
from sae_eeg import backbones, evals, sae, trf

HEAVY = ("torch", "transformers", "sklearn", "matplotlib", "pandas", "scipy", "mne")


def test_import_is_light_and_the_first_use_imports_the_subpackage():
    """``python -c "import sae_eeg; sae_eeg.BatchTopKSAE"``: nothing heavy until the name is touched."""
    code = ("import sys, sae_eeg; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules) or '-'); "
            "print(sae_eeg.BatchTopKSAE.__module__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["-", "sae_eeg.sae.batch_topk", "True"]


@pytest.mark.parametrize(("name", "home"), [
    ("BatchTopKSAE", sae), ("load_sae", sae), ("reconstruction_metrics", sae),
    ("aggregate_max_activations", evals), ("classify_features", evals), ("collect_dataset_stats", evals),
    ("dead_features", evals), ("feature_activation_windows", evals), ("plot_feature_tsne", evals),
    ("top_clips_for_feature", evals), ("load_backbone", backbones), ("TRF", trf),
])
def test_every_facade_name_is_the_subpackage_object(name, home):
    assert getattr(sae_eeg, name) is getattr(home, name)
    assert name in sae_eeg.__all__ and name in dir(sae_eeg)


def test_unknown_name_is_an_attribute_error_listing_the_names():
    with pytest.raises(AttributeError, match=r"no attribute 'BatchTopK'; the top-level names are .*BatchTopKSAE"):
        sae_eeg.BatchTopK  # noqa: B018
    assert not hasattr(sae_eeg, "plot_tsne")
