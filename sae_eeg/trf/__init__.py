"""The TRF engine: fast, exact, cross-validated temporal response functions.

It imports only numpy, scipy and torch (plus ``sklearn.base`` for the estimator
contract), so it lifts out of sae-eeg whole.
"""

from .lags import LagStats, lag_matrix, lagged_stats, times_to_lags
from .model import TRF

__all__ = ["TRF", "LagStats", "lag_matrix", "lagged_stats", "times_to_lags"]
