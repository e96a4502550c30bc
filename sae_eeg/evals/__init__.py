"""SAE evaluations: consistency, concept erasure, steering, interpretability, probing."""

from ._codes import clip_features, topk_per_frame
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

__all__ = [
    "ActivationConsistency",
    "DecoderConsistency",
    "ErasureResult",
    "activation_consistency",
    "activation_patterns",
    "clip_features",
    "concept_erasure",
    "consistency_table",
    "decoder_consistency",
    "fisher_scores",
    "match_features",
    "topk_per_frame",
]
