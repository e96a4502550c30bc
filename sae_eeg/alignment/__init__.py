"""Feature-to-EEG analyses: the AudioSAE EEG protocol and the analyses beyond it.

Inputs are plain arrays (see :mod:`sae_eeg.alignment._data`); results are tidy pandas
tables joinable with the SAE interpretability tables by feature id.
"""

from .features import feature_max, firing_rates, scale_max, select_features
from .protocol import FEATURE_COLUMNS, ProtocolResult, paper_protocol, summarize

__all__ = [
    "FEATURE_COLUMNS", "ProtocolResult", "feature_max", "firing_rates", "paper_protocol",
    "scale_max", "select_features", "summarize",
]
