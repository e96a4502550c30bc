"""SAE evaluations: consistency, concept erasure, steering, interpretability, probing.

Everything here works on plain arrays of codes (sparse or dense, frames x
features) with the clip of each frame, and returns tidy pandas DataFrames that
join on ``feature``.
"""

from ._codes import clip_features, topk_per_frame
from ._spectral import LogMel, acoustic_descriptors, log_mel_spectrogram, mel_filterbank
from .consistency import (
    ActivationConsistency,
    DecoderConsistency,
    activation_consistency,
    activation_patterns,
    consistency_table,
    decoder_consistency,
    match_features,
)
from .erasure import ErasureResult, concept_erasure, fisher_scores
from .interpret import (
    ActivationWindows,
    aggregate_max_activations,
    classify_features,
    collect_dataset_stats,
    dead_features,
    feature_activation_windows,
    feature_frequencies,
    feature_tsne,
    plot_feature_tsne,
    top_clips_for_feature,
)
from .probing import DCIScores, LassoProbe, dci_scores, lasso_descriptors, linear_probes, probe_sparsity_levels

__all__ = [
    "ActivationConsistency",
    "ActivationWindows",
    "DCIScores",
    "DecoderConsistency",
    "ErasureResult",
    "LassoProbe",
    "LogMel",
    "acoustic_descriptors",
    "activation_consistency",
    "activation_patterns",
    "aggregate_max_activations",
    "classify_features",
    "clip_features",
    "collect_dataset_stats",
    "concept_erasure",
    "consistency_table",
    "dci_scores",
    "dead_features",
    "decoder_consistency",
    "feature_activation_windows",
    "feature_frequencies",
    "feature_tsne",
    "fisher_scores",
    "lasso_descriptors",
    "linear_probes",
    "log_mel_spectrogram",
    "match_features",
    "mel_filterbank",
    "plot_feature_tsne",
    "probe_sparsity_levels",
    "top_clips_for_feature",
    "topk_per_frame",
]
