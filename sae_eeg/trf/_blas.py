"""BLAS updates of a block of a larger Fortran-ordered matrix, where the block lies.

``scipy.linalg.blas`` (f2py) copies every array that is not contiguous, so updating the
trailing block ``A[s:, s:]`` of a reduction through it copies the block at each step
(about 8 copies of the whole matrix per reduction). The same routines taken from
``scipy.linalg.cython_blas`` take a leading dimension and work on the block in place.
Their addresses come from the module's C-API capsules, as numba finds them.
"""

from __future__ import annotations

import ctypes

import numpy as np
from scipy.linalg import cython_blas

_INT = ctypes.POINTER(ctypes.c_int)
_PTR = ctypes.c_void_p
# dsymm and dsyr2k: (char, char, int, int, alpha, a, lda, b, ldb, beta, c, ldc), all by reference
_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, _INT, _INT, _PTR, _PTR, _INT,
                              _PTR, _INT, _PTR, _PTR, _INT)


def _routine(name):
    capsule = cython_blas.__pyx_capi__[name]
    get_name, get_pointer = ctypes.pythonapi.PyCapsule_GetName, ctypes.pythonapi.PyCapsule_GetPointer
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return _SIGNATURE(get_pointer(capsule, get_name(capsule)))


_DSYMM, _DSYR2K = _routine("dsymm"), _routine("dsyr2k")


def _column_major(a):
    """Pointer and leading dimension of a float64 array with unit row stride (a Fortran block)."""
    if a.dtype != np.float64 or a.strides[0] != 8 or a.strides[1] % 8 or a.strides[1] < 8 * a.shape[0]:
        raise ValueError("expected a float64 Fortran-ordered array or block of one")
    return _PTR(a.ctypes.data), ctypes.c_int(max(1, a.strides[1] // 8))


def _scalar(value):
    return ctypes.byref(ctypes.c_double(value))


def symm_lower(a, b):
    """``a @ b`` for symmetric ``a`` (n, n) known by its lower triangle; ``a`` may be a block."""
    b = np.asfortranarray(b, dtype=np.float64)
    out = np.zeros(b.shape, dtype=np.float64, order="F")
    (pa, lda), (pb, ldb), (pc, ldc) = _column_major(a), _column_major(b), _column_major(out)
    m, n = ctypes.c_int(b.shape[0]), ctypes.c_int(b.shape[1])
    _DSYMM(b"L", b"L", ctypes.byref(m), ctypes.byref(n), _scalar(1.0), pa, ctypes.byref(lda),
           pb, ctypes.byref(ldb), _scalar(0.0), pc, ctypes.byref(ldc))
    return out


def syr2k_lower(c, a, b, alpha):
    """``c += alpha (a b^T + b a^T)`` on the lower triangle of ``c`` (n, n), in place; returns ``c``."""
    a, b = np.asfortranarray(a, dtype=np.float64), np.asfortranarray(b, dtype=np.float64)
    (pa, lda), (pb, ldb), (pc, ldc) = _column_major(a), _column_major(b), _column_major(c)
    n, k = ctypes.c_int(a.shape[0]), ctypes.c_int(a.shape[1])
    _DSYR2K(b"L", b"N", ctypes.byref(n), ctypes.byref(k), _scalar(alpha), pa, ctypes.byref(lda),
            pb, ctypes.byref(ldb), _scalar(1.0), pc, ctypes.byref(ldc))
    return c
