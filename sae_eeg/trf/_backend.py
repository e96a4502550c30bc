"""Array backends of the TRF engine: one code path over NumPy and torch.

A backend is resolved once per call into an ops object (``xp``); the math is written once
against it: the array methods NumPy and torch share plus this vocabulary, the same on both:
``asarray`` (float array, no copy when it already is one), ``zeros``, ``eye``, ``index``
(integer index array), ``concat``, ``stack``, ``flip``, ``permute``, ``contiguous``, ``einsum``,
``eigh``, ``cho_factor``/``cho_solve``, ``subtract_product`` (``c -= a @ b`` in place),
``windows`` (a strided view of overlapping row blocks), ``rfft``/``irfft`` and ``to_numpy``.
No module-level state: the backend is a parameter, never a global.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.fft
import scipy.linalg
from scipy.linalg import blas

from ._check import _check_option

try:  # torch is optional for the engine: the numpy path is the reference
    import torch
except ImportError:  # pragma: no cover - torch is a dependency of sae-eeg
    torch = None


class NumpyOps:
    """Operations on NumPy arrays (float64, CPU)."""

    name, device = "numpy", "cpu"
    zeros, eye, concat, stack, flip, permute, contiguous, einsum, eigh = map(staticmethod, (
        np.zeros, np.eye, np.concatenate, np.stack, np.flip, np.transpose, np.ascontiguousarray, np.einsum,
        np.linalg.eigh))

    def asarray(self, a):
        return np.asarray(a, dtype=np.float64)

    def index(self, a):
        return np.asarray(a, dtype=np.int64)

    def cho_factor(self, a):
        """Cholesky factor of symmetric ``a`` in its memory: ``a.T`` is the same matrix in Fortran order, which
        LAPACK factorises in place (SciPy copies a C-ordered one first: 38 -> 30 ms at P = 1248)."""
        return scipy.linalg.cho_factor(np.swapaxes(a, -1, -2), overwrite_a=True, check_finite=False)

    def cho_solve(self, factor, b):
        return scipy.linalg.cho_solve(factor, b, check_finite=False)

    def subtract_product(self, c, a, b):
        """``c -= a @ b`` in place (BLAS ``gemm`` on a C-ordered 2-D ``c``: no temporary of its size)."""
        if c.ndim == 2 and c.flags.c_contiguous:           # on the transposes: c^T is Fortran-ordered
            if np.shares_memory(blas.dgemm(-1.0, b.T, a.T, beta=1.0, c=c.T, overwrite_c=1), c):
                return c
        c -= a @ b
        return c

    def windows(self, a, n, size, step):
        """Read-only view (n, size, F) of rows ``k * step .. k * step + size - 1`` of C-ordered ``a`` (T, F)."""
        s0, s1 = a.strides
        return np.lib.stride_tricks.as_strided(a, (n, size, a.shape[1]), (step * s0, s0, s1), writeable=False)

    def rfft(self, a, axis, n=None):
        return scipy.fft.rfft(a, n=n, axis=axis)

    def irfft(self, a, axis, n):
        return scipy.fft.irfft(a, n=n, axis=axis)

    def to_numpy(self, a):
        return np.asarray(a, dtype=np.float64)


class TorchOps:
    """The operations of :class:`NumpyOps` on torch tensors (float64 on CPU, float32 on GPU)."""

    name = "torch"

    def __init__(self, device=None):
        if torch is None:  # pragma: no cover
            raise ValueError("backend='torch' needs torch: pip install torch")
        device = torch.device("cpu" if device is None else device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} was asked for but CUDA is not available; "
                             "use device='cpu' or None.")
        self.device, self.dtype = device, torch.float64 if device.type == "cpu" else torch.float32
        if device.type != "cpu":
            warnings.warn("The torch TRF backend computes in float32 on GPU (results differ from the "
                          "float64 numpy reference at ~1e-5). Use backend='numpy' for float64; silence "
                          "with warnings.filterwarnings('ignore', 'The torch TRF backend').",
                          UserWarning, stacklevel=3)
        kw, t = {"dtype": self.dtype, "device": device}, torch
        self.concat, self.stack, self.einsum, self.eigh, self.cho_factor = (
            t.cat, t.stack, t.einsum, t.linalg.eigh, t.linalg.cholesky)
        self.zeros, self.eye = lambda shape: t.zeros(shape, **kw), lambda n: t.eye(n, **kw)
        self.index = lambda a: t.as_tensor(np.asarray(a, dtype=np.int64), device=device)
        self.flip, self.permute = lambda a, axis: t.flip(a, (axis,)), lambda a, axes: a.permute(*axes)
        self.contiguous, self.cho_solve = lambda a: a.contiguous(), lambda f, b: t.cholesky_solve(b, f)
        self.subtract_product = lambda c, a, b: c.sub_(a @ b)
        self.windows = lambda a, n, size, step: a.as_strided((n, size, a.shape[1]), (step * a.shape[1], a.shape[1], 1))
        self.rfft, self.irfft = (lambda a, axis, n=None: t.fft.rfft(a, n=n, dim=axis),
                                 lambda a, axis, n: t.fft.irfft(a, n=n, dim=axis))
        self.to_numpy = lambda a: a.detach().cpu().numpy().astype(np.float64)

    def asarray(self, a):
        if isinstance(a, torch.Tensor):
            return a.to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.ascontiguousarray(a), dtype=self.dtype, device=self.device)


BACKENDS = {"numpy": NumpyOps, "torch": TorchOps}


def ops_of(a):
    """The ops of the backend holding array ``a``: torch on its device for a tensor, else numpy."""
    if torch is not None and isinstance(a, torch.Tensor):
        with warnings.catch_warnings():          # the float32-on-GPU warning came when the array was made
            warnings.simplefilter("ignore", UserWarning)
            return TorchOps(a.device)
    return NumpyOps()


def get_ops(backend="numpy", device=None):
    """The ops namespace of ``backend`` ('numpy': float64 on CPU, the reference; 'torch' on ``device``,
    e.g. 'cuda', None: CPU)."""
    _check_option("backend", backend, BACKENDS)
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"device={device!r} needs backend='torch'; the numpy backend runs on 'cpu'.")
        return NumpyOps()
    return TorchOps(device)
