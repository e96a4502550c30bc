"""Array backends of the TRF engine: one code path over NumPy and torch.

A backend is resolved once per call into an ops object (``xp``); the math is written once
against it (the array methods NumPy and torch share plus the functions below). No
module-level state: the backend is a parameter, never a global.
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
    concat, stack, flip, eye, einsum, permute, contiguous = map(staticmethod, (
        np.concatenate, np.stack, np.flip, np.eye, np.einsum, np.transpose, np.ascontiguousarray))

    def asarray(self, a):
        """``a`` as a float64 array (no copy of a float64 array, whatever its layout)."""
        return np.asarray(a, dtype=np.float64)

    def zeros(self, shape):
        """Zeros of ``shape``."""
        return np.zeros(shape)

    def index(self, a):
        """Integer index array for fancy indexing."""
        return np.asarray(a, dtype=np.int64)

    def eigh(self, a):
        """Eigenvalues (ascending) and eigenvectors of symmetric matrices ([B, ]P, P)."""
        return np.linalg.eigh(a)

    def cho_factor(self, a):
        """Cholesky factor of symmetric positive definite ``a`` ([B, ]P, P), computed in ``a``'s memory.

        ``a`` is symmetric, so its transpose is the same matrix in Fortran order, which LAPACK
        factorises in place (SciPy copies a C-ordered matrix first: 38 -> 30 ms at P = 1248).
        """
        return scipy.linalg.cho_factor(np.swapaxes(a, -1, -2), overwrite_a=True, check_finite=False)

    def cho_solve(self, factor, b):
        """Solve ``a x = b`` from :meth:`cho_factor` of ``a``."""
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
        """Real FFT along ``axis`` (of ``n`` points)."""
        return scipy.fft.rfft(a, n=n, axis=axis)

    def irfft(self, a, axis, n):
        """Inverse real FFT of ``n`` points along ``axis``."""
        return scipy.fft.irfft(a, n=n, axis=axis)

    def to_numpy(self, a):
        """A NumPy float64 array on CPU."""
        return np.asarray(a, dtype=np.float64)


class TorchOps:
    """Operations on torch tensors (float64 on CPU, float32 on GPU): the methods of :class:`NumpyOps`."""

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
        self.concat, self.stack, self.einsum = torch.cat, torch.stack, torch.einsum
        self.eigh, self.cho_factor = torch.linalg.eigh, torch.linalg.cholesky

    def asarray(self, a):
        if isinstance(a, torch.Tensor):
            return a.to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.ascontiguousarray(a), dtype=self.dtype, device=self.device)

    def zeros(self, shape):
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def index(self, a):
        return torch.as_tensor(np.asarray(a, dtype=np.int64), device=self.device)

    def flip(self, a, axis):
        return torch.flip(a, (axis,))

    def permute(self, a, axes):
        return a.permute(*axes)

    def contiguous(self, a):
        return a.contiguous()

    def eye(self, n):
        return torch.eye(n, dtype=self.dtype, device=self.device)

    def cho_solve(self, factor, b):
        return torch.cholesky_solve(b, factor)

    def subtract_product(self, c, a, b):
        return c.sub_(a @ b)

    def windows(self, a, n, size, step):
        return a.as_strided((n, size, a.shape[1]), (step * a.shape[1], a.shape[1], 1))

    def rfft(self, a, axis, n=None):
        return torch.fft.rfft(a, n=n, dim=axis)

    def irfft(self, a, axis, n):
        return torch.fft.irfft(a, n=n, dim=axis)

    def to_numpy(self, a):
        return a.detach().cpu().numpy().astype(np.float64)


BACKENDS = {"numpy": NumpyOps, "torch": TorchOps}


def get_ops(backend="numpy", device=None):
    """Resolve ``backend``/``device`` into an ops namespace.

    Parameters
    ----------
    backend : 'numpy' | 'torch'
        Array library. ``'numpy'`` computes in float64 on CPU (the reference).
    device : str | None
        Torch device (``'cpu'``, ``'cuda'``, ``'cuda:1'``); ``None`` is CPU. Only for ``backend='torch'``.

    Returns
    -------
    ops : NumpyOps | TorchOps
    """
    _check_option("backend", backend, BACKENDS)
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"device={device!r} needs backend='torch'; the numpy backend runs on 'cpu'.")
        return NumpyOps()
    return TorchOps(device)
