"""The TRF engine: fast, exact, cross-validated temporal response functions.

It imports only numpy, scipy, torch and scikit-learn's estimator contract, so it lifts out of
sae-eeg whole (``_check.py`` raises built-in errors). The core reads along the flow: ``lags``
(lags, rows, the design), ``stats`` (the one statistics type, :class:`LagStats`), ``ridge`` (the
one ridge path, :class:`RidgePath`), ``crossval`` (folds, scorers), ``model`` (:class:`TRF`). On
it: ``univariate`` (single-feature and shared-stimulus fits), ``banded``, ``nulls``,
``multisubject``, ``conventions`` (mTRF converters and API); ``fast``: every opt-in fast path.
"""

from .banded import BandedTRF
from .conventions import (alpha_from_mtrf, alpha_from_mtrfpy, mtrf_from_alpha, mtrfpy_from_alpha, trf_crossval,
                          trf_nested_crossval, trf_predict, trf_train, weights_from_mtrf, weights_to_mtrf)
from .crossval import SCORERS, AlphaAtGridEdgeWarning, NestedCV, fold_scores, make_folds, moments
from .lags import direction_lags, lag_matrix, times_to_lags
from .model import TRF, haufe_patterns
from .multisubject import MultiSubjectTRF, multisubject_trf
from .nulls import NullResult, bootstrap_coef, permutation_null
from .ridge import CENTERINGS, SOLVERS, RidgePath, ridge_path
from .stats import LagStats, lagged_stats
from .univariate import UnivariateTRFs, shared_stimulus_trfs, univariate_trfs

__all__ = ["CENTERINGS", "SCORERS", "SOLVERS", "TRF", "AlphaAtGridEdgeWarning", "BandedTRF", "LagStats",
           "MultiSubjectTRF", "NestedCV", "NullResult", "RidgePath", "UnivariateTRFs", "alpha_from_mtrf",
           "alpha_from_mtrfpy", "bootstrap_coef", "direction_lags", "fold_scores", "haufe_patterns", "lag_matrix",
           "lagged_stats", "make_folds", "moments", "mtrf_from_alpha", "mtrfpy_from_alpha", "multisubject_trf",
           "permutation_null", "ridge_path", "shared_stimulus_trfs", "times_to_lags", "trf_crossval",
           "trf_nested_crossval", "trf_predict", "trf_train", "univariate_trfs", "weights_from_mtrf",
           "weights_to_mtrf"]
