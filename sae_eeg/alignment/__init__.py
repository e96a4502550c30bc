"""Feature-to-EEG analyses: the AudioSAE EEG protocol and the analyses beyond it.

Inputs are plain arrays: ``data`` maps each subject to its runs, each run a pair
``Run(eeg (n_times, n_channels), features (n_times, n_features) sparse or dense)`` on
the same grid. Results are tidy pandas tables, joinable with the SAE
interpretability tables by feature id.
"""

from ._data import Run, data_from_aligned
from .acoustic import PEAK_COLUMNS, AcousticTRFs, acoustic_group, acoustic_trfs
from .attribution import ATTRIBUTION_COLUMNS, MEMBER_COLUMNS, AttributionResult, attribute_features
from .channels import CLUSTER_COLUMNS, ClusterTable, feature_cluster_test
from .encoding import (
    SCORE_COLUMNS,
    SPLIT_COLUMNS,
    GroupEncodingStats,
    encoding_scores,
    feature_pca,
    group_encoding_stats,
    layer_curves,
    pca_reduce,
    variance_partition,
)
from .features import feature_max, firing_rates, scale_max, select_features
from .protocol import FEATURE_COLUMNS, ProtocolResult, paper_protocol, summarize

__all__ = [
    "ATTRIBUTION_COLUMNS", "MEMBER_COLUMNS", "PEAK_COLUMNS", "AcousticTRFs", "AttributionResult",
    "acoustic_group", "acoustic_trfs", "attribute_features",
    "CLUSTER_COLUMNS", "FEATURE_COLUMNS", "SCORE_COLUMNS", "SPLIT_COLUMNS", "ClusterTable", "Run",
    "GroupEncodingStats", "ProtocolResult", "data_from_aligned", "encoding_scores", "feature_cluster_test", "feature_max",
    "feature_pca",
    "firing_rates", "group_encoding_stats", "layer_curves", "paper_protocol", "pca_reduce",
    "scale_max", "select_features", "summarize", "variance_partition",
]
