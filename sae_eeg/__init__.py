"""sae-eeg: which sparse-autoencoder features of audio models does the brain track?

The names a user of the AudioSAE release writes are available at the top level
(``sae_eeg.BatchTopKSAE``, ``sae_eeg.classify_features``, ...), plus ``TRF``,
``load_sae`` and ``load_backbone``. They are imported on first use (PEP 562), so
``import sae_eeg`` stays fast: torch, transformers, scikit-learn and matplotlib
load only when a name that needs them is touched (``benchmarks/import_time.py``).
"""

import importlib

__version__ = "0.1.0.dev0"

#: Top-level name -> the subpackage that defines it (the one place it lives).
_LAZY = {
    "BatchTopKSAE": "sae",
    "load_sae": "sae",
    "reconstruction_metrics": "sae",
    "aggregate_max_activations": "evals",
    "classify_features": "evals",
    "collect_dataset_stats": "evals",
    "dead_features": "evals",
    "feature_activation_windows": "evals",
    "plot_feature_tsne": "evals",
    "top_clips_for_feature": "evals",
    "load_backbone": "backbones",
    "TRF": "trf",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'sae_eeg' has no attribute {name!r}; the top-level names are "
                             f"{', '.join(sorted(_LAZY))} (others live in the subpackages, e.g. sae_eeg.evals).")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})
