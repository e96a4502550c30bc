"""SAE evaluations: consistency, concept erasure, steering, interpretability, probing.

``reconstruction_metrics`` is re-exported from :mod:`sae_eeg.sae` so that every
name of the AudioSAE release's evaluation toolkit lives here.

Everything here works on plain arrays of codes (sparse or dense, frames x
features) with the clip of each frame, and returns tidy pandas DataFrames that
join on ``feature``.
"""

from ..sae import reconstruction_metrics
from ._codes import clip_features, topk_per_frame
from ._spectral import LogMel, acoustic_descriptors, log_mel_spectrogram, mel_filterbank
from .compare import compare_saes, decoder_directions
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
    MelReceptiveFields,
    aggregate_max_activations,
    classify_features,
    collect_dataset_stats,
    dead_features,
    feature_activation_windows,
    feature_frequencies,
    feature_tsne,
    mel_receptive_fields,
    plot_feature_tsne,
    top_clips_for_feature,
)
from .probing import (
    DCIScores,
    LassoProbe,
    dci_scores,
    lasso_descriptors,
    linear_probes,
    probe_sparsity_levels,
)
from .steering import (
    STEER_MODES,
    SteeringReport,
    false_speech_experiment,
    hallucination_features,
    language_token_shift,
    language_tokens,
    no_speech_probability,
    steer,
    steering_vector,
)

__all__ = [
    "STEER_MODES",
    "ActivationConsistency",
    "ActivationWindows",
    "DCIScores",
    "DecoderConsistency",
    "ErasureResult",
    "LassoProbe",
    "LogMel",
    "MelReceptiveFields",
    "SteeringReport",
    "acoustic_descriptors",
    "activation_consistency",
    "activation_patterns",
    "aggregate_max_activations",
    "classify_features",
    "clip_features",
    "collect_dataset_stats",
    "compare_saes",
    "concept_erasure",
    "consistency_table",
    "dci_scores",
    "dead_features",
    "decoder_consistency",
    "decoder_directions",
    "false_speech_experiment",
    "feature_activation_windows",
    "feature_frequencies",
    "feature_tsne",
    "fisher_scores",
    "hallucination_features",
    "language_token_shift",
    "language_tokens",
    "lasso_descriptors",
    "linear_probes",
    "log_mel_spectrogram",
    "match_features",
    "mel_filterbank",
    "mel_receptive_fields",
    "no_speech_probability",
    "plot_feature_tsne",
    "probe_sparsity_levels",
    "reconstruction_metrics",
    "steer",
    "steering_vector",
    "top_clips_for_feature",
    "topk_per_frame",
]
