"""The TRF engine: fast, exact, cross-validated temporal response functions.

It imports only numpy, scipy and torch, plus ``sklearn.base`` / ``sklearn.utils.validation``
for the estimator contract (``RegressorMixin``, ``BaseEstimator``, ``check_is_fitted``),
so it lifts out of sae-eeg whole. Validation lives in its own ``_check.py`` and raises
the built-in ``ValueError`` / ``TypeError``.

Modules along the flow: ``lags`` (lags and lagged sufficient statistics), ``solvers``
(ridge paths), ``crossval`` (folds and scorers), ``model`` (:class:`TRF`),
``univariate`` (many single-feature TRFs), ``banded`` (:class:`BandedTRF`), ``haufe``,
``nulls``, ``multisubject`` and ``conventions`` (lambda converters, mTRF-like API).
"""

from .banded import BandedTRF
from .conventions import (
    alpha_from_mtrf,
    alpha_from_mtrfpy,
    mtrf_from_alpha,
    mtrfpy_from_alpha,
    trf_crossval,
    trf_predict,
    trf_train,
    weights_from_mtrf,
    weights_to_mtrf,
)
from .crossval import SCORERS, make_folds
from .haufe import haufe_patterns
from .lags import LagStats, lag_matrix, lagged_stats, times_to_lags
from .model import TRF
from .multisubject import MultiSubjectTRF, multisubject_trf
from .nulls import NullResult, bootstrap_coef, permutation_null
from .solvers import SOLVERS
from .univariate import UnivariateTRFs, univariate_trfs

__all__ = [
    "TRF", "BandedTRF", "LagStats", "MultiSubjectTRF", "NullResult", "UnivariateTRFs",
    "SCORERS", "SOLVERS", "alpha_from_mtrf", "alpha_from_mtrfpy", "bootstrap_coef",
    "haufe_patterns", "lag_matrix", "lagged_stats", "make_folds", "mtrf_from_alpha",
    "mtrfpy_from_alpha", "multisubject_trf", "permutation_null", "times_to_lags",
    "trf_crossval", "trf_predict", "trf_train", "univariate_trfs", "weights_from_mtrf",
    "weights_to_mtrf",
]
