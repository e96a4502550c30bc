import pytest

from sae_eeg._check import _check_option, _check_range, _ensure_int, _soft_import, _validate_type
from sae_eeg._docs import fill_doc
from sae_eeg.errors import InputError, SaeEegError


def test_check_option_lists_allowed_and_suggests():
    assert _check_option("solver", "eigh", {"eigh": 1, "cholesky": 2}) == "eigh"
    with pytest.raises(InputError, match=r"got 'eig'.*'eigh', 'cholesky'.*Did you mean 'eigh'"):
        _check_option("solver", "eig", {"eigh": 1, "cholesky": 2})


def test_errors_refine_builtins():
    with pytest.raises(ValueError):
        _check_option("x", 1, [2])
    assert issubclass(InputError, SaeEegError)


def test_validate_type_rejects_bool_as_number():
    assert _validate_type(3.0, "numeric", "alpha") == 3.0
    with pytest.raises(InputError, match="alpha must be an instance of numeric, got bool"):
        _validate_type(True, "numeric", "alpha")
    with pytest.raises(InputError, match="k must be an instance of int-like, got float"):
        _ensure_int(2.5, "k")
    assert _validate_type(None, (None, str), "x") is None


def test_check_range_message():
    with pytest.raises(InputError, match=r"p must be in \(0, 1\], got 0"):
        _check_range("p", 0, 0, 1, low_inclusive=False)


def test_soft_import_names_feature():
    with pytest.raises(ImportError, match="the frobnicator needs the module 'no_such_mod'.*pip install no-such"):
        _soft_import("no_such_mod", "the frobnicator", pip_name="no-such")


def test_fill_doc_missing_key_fails():
    def f():
        """Doc.

        %(no_such_key)s
        """

    with pytest.raises(KeyError, match="no_such_key"):
        fill_doc(f)
