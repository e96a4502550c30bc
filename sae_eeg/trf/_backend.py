"""Array backends of the TRF engine: one code path over NumPy and torch.

A backend is resolved once per call into an ops object (``xp``); the math is written
once against it (array methods common to NumPy and torch plus the functions below).
No module-level state: the backend is a parameter, never a global.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.fft
import scipy.linalg
from scipy.linalg import blas, lapack

from . import _blas
from ._check import _check_option

try:  # torch is optional for the engine: the numpy path is the reference
    import torch
except ImportError:  # pragma: no cover - torch is a dependency of sae-eeg
    torch = None


class NumpyOps:
    """Operations on NumPy arrays (float64, CPU)."""

    name = "numpy"

    def __init__(self):
        self.dtype = np.float64
        self.device = "cpu"

    def asarray(self, a):
        """Return ``a`` as a contiguous float array of this backend."""
        return np.ascontiguousarray(a, dtype=self.dtype)

    def zeros(self, shape):
        """Zeros of ``shape`` in the backend dtype."""
        return np.zeros(shape, dtype=self.dtype)

    def index(self, a):
        """Integer index array for fancy indexing."""
        return np.asarray(a, dtype=np.int64)

    def concat(self, arrays, axis=0):
        """Concatenate along ``axis``."""
        return np.concatenate(arrays, axis=axis)

    def stack(self, arrays, axis=0):
        """Stack along a new ``axis``."""
        return np.stack(arrays, axis=axis)

    def windows(self, a, n, size, step):
        """Read-only view ``(n, size, F)`` of rows ``k * step .. k * step + size - 1`` of C-contiguous ``a`` (T, F)."""
        s0, s1 = a.strides
        return np.lib.stride_tricks.as_strided(a, (n, size, a.shape[1]), (step * s0, s0, s1), writeable=False)

    def flip(self, a, axis):
        """Reverse the order along ``axis``."""
        return np.flip(a, axis)

    def einsum(self, subscripts, *operands):
        """Einstein summation (no temporaries of the operands' product)."""
        return np.einsum(subscripts, *operands)

    def eigh(self, a):
        """Eigenvalues (ascending) and eigenvectors of symmetric matrices (batched)."""
        return np.linalg.eigh(a)

    def cho_solve_shifts(self, a, shifts, b):
        """Solve ``(a + s I) x = b`` for every shift ``s``: shape (S, ..., P, C).

        ``a`` is symmetric positive definite (Cholesky); a batch of matrices is solved by LU.
        """
        idx = np.arange(a.shape[-1])
        m = np.empty_like(a)                                   # one work matrix for all shifts
        out = []
        for shift in shifts:
            np.copyto(m, a)
            m[..., idx, idx] += shift
            if m.ndim > 2:
                out.append(np.linalg.solve(m, b))
                continue
            # m is symmetric: its transpose is the same matrix in Fortran order, which LAPACK
            # factorises in place (a C-ordered matrix would be copied first)
            factor = scipy.linalg.cho_factor(m.T, overwrite_a=True, check_finite=False)
            out.append(scipy.linalg.cho_solve(factor, b, check_finite=False))
        return np.stack(out)

    def eye(self, n, m=None):
        """Identity matrix (n, m)."""
        return np.eye(n, m)

    def tril(self, a, k=0):
        """Lower triangle (below diagonal ``k``) of the last two axes."""
        return np.tril(a, k)

    def triu(self, a, k=0):
        """Upper triangle (above diagonal ``k``) of the last two axes."""
        return np.triu(a, k)

    def cholesky(self, a):
        """Lower Cholesky factors of symmetric positive definite matrices (batched)."""
        return np.linalg.cholesky(a)

    def solve_triangular(self, a, b, lower, transpose=False):
        """Solve ``a x = b`` (or ``a^T x = b``) for triangular ``a``, batched over a leading axis of ``a``."""
        def solve(ak, bk):      # x^T = b^T op(a)^{-1} by BLAS on the transposes: no layout copies
            return blas.dtrsm(1.0, ak.T, bk.T, side=1, lower=int(not lower), trans_a=int(transpose)).T

        if a.ndim == 2:
            return solve(a, b)
        b = np.broadcast_to(b, a.shape[:1] + b.shape[-2:])
        return np.stack([solve(ak, bk) for ak, bk in zip(a, b)])

    def subtract_product(self, c, a, b):
        """``c -= a @ b`` in place, without a temporary of ``c``'s size."""
        if c.ndim == 2 and c.flags.c_contiguous:     # BLAS on the transposes: c^T is Fortran-ordered
            out = blas.dgemm(-1.0, b.T, a.T, beta=1.0, c=c.T, overwrite_c=1)
            if np.shares_memory(out, c):
                return c
        c -= a @ b
        return c

    def geqrt(self, a):
        """LAPACK QR of a panel ``a`` (m, b) in compact WY form: ``(V, T, R)`` with
        ``Q = I - V T V^T`` (r = min(m, b) reflectors; ``V`` (m, r) unit lower trapezoidal)."""
        r = min(a.shape)
        qr, t, _ = lapack.dgeqrt(r, a)
        V = np.tril(qr[:, :r], -1)
        V[np.diag_indices(r)] = 1.0
        return V, t, np.triu(qr[:r])

    def reduction_work(self, a, overwrite=False):
        """Symmetric ``a`` in Fortran order for :meth:`two_sided_update` to overwrite: a copy,
        or with ``overwrite`` ``a``'s own memory (``a.T`` equals ``a``: a C-ordered ``a`` is not copied)."""
        return np.asfortranarray(a.T) if overwrite else np.array(a, order="F")

    def two_sided_update(self, a, v, t):
        """``Q^T a Q`` for ``Q = I - v t v^T`` and symmetric ``a``, in place (``a``: a block of a
        :meth:`reduction_work` array). Only lower triangles are read and written.

        BLAS ``symm`` and ``syr2k`` (half the flops of full products) on the block where it lies.
        """
        x = _blas.symm_lower(a, v @ t)
        z = x - 0.5 * (v @ (t.T @ (v.T @ x)))             # then Q^T a Q = a - v z^T - z v^T
        return _blas.syr2k_lower(a, v, z, -1.0)

    def sqrt(self, a):
        """Element-wise square root."""
        return np.sqrt(a)

    def rfft(self, a, axis):
        """Real FFT along ``axis``."""
        return scipy.fft.rfft(a, axis=axis)

    def to_numpy(self, a):
        """Return a NumPy float64 array on CPU."""
        return np.asarray(a, dtype=np.float64)


class TorchOps:
    """Operations on torch tensors (float64 on CPU, float32 on GPU by default)."""

    name = "torch"

    def __init__(self, device=None):
        if torch is None:  # pragma: no cover
            raise ValueError("backend='torch' needs torch: pip install torch")
        device = torch.device("cpu" if device is None else device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} was asked for but CUDA is not available; "
                             "use device='cpu' or None.")
        self.device = device
        self.dtype = torch.float64 if device.type == "cpu" else torch.float32
        if device.type != "cpu":
            warnings.warn(
                "The torch TRF backend computes in float32 on GPU (results differ from the "
                "float64 numpy reference at ~1e-5). Use backend='numpy' for float64; silence "
                "with warnings.filterwarnings('ignore', 'The torch TRF backend').",
                UserWarning, stacklevel=3,
            )

    def asarray(self, a):
        if isinstance(a, torch.Tensor):
            return a.to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.ascontiguousarray(a), dtype=self.dtype, device=self.device)

    def zeros(self, shape):
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def index(self, a):
        return torch.as_tensor(np.asarray(a, dtype=np.int64), device=self.device)

    def concat(self, arrays, axis=0):
        return torch.cat(list(arrays), dim=axis)

    def stack(self, arrays, axis=0):
        return torch.stack(list(arrays), dim=axis)

    def windows(self, a, n, size, step):
        return a.as_strided((n, size, a.shape[1]), (step * a.shape[1], a.shape[1], 1))

    def flip(self, a, axis):
        return torch.flip(a, (axis,))

    def einsum(self, subscripts, *operands):
        return torch.einsum(subscripts, *operands)

    def eigh(self, a):
        return torch.linalg.eigh(a)

    def cho_solve_shifts(self, a, shifts, b):
        out = []
        for shift in shifts:
            m = a.clone()
            m.diagonal(dim1=-2, dim2=-1).add_(shift)
            out.append(torch.cholesky_solve(b, torch.linalg.cholesky(m)))
        return torch.stack(out)

    def eye(self, n, m=None):
        return torch.eye(n, n if m is None else m, dtype=self.dtype, device=self.device)

    def tril(self, a, k=0):
        return torch.tril(a, k)

    def triu(self, a, k=0):
        return torch.triu(a, k)

    def cholesky(self, a):
        return torch.linalg.cholesky(a)

    def solve_triangular(self, a, b, lower, transpose=False):
        if transpose:
            return torch.linalg.solve_triangular(a.mT, b, upper=lower)
        return torch.linalg.solve_triangular(a, b, upper=not lower)

    def geqrt(self, a):
        from .tridiagonal import compact_wy            # (T from the reflectors' tau; no geqrt in torch)

        return compact_wy(*torch.geqrf(a), self)

    def subtract_product(self, c, a, b):
        return c.sub_(a @ b)

    def reduction_work(self, a, overwrite=False):
        return a                                           # two_sided_update returns new tensors

    def two_sided_update(self, a, v, t):
        x = a @ (v @ t)
        z = x - 0.5 * (v @ (t.mT @ (v.mT @ x)))
        return a - v @ z.mT - z @ v.mT

    def sqrt(self, a):
        return torch.sqrt(a)

    def rfft(self, a, axis):
        return torch.fft.rfft(a, dim=axis)

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
        Torch device (``'cpu'``, ``'cuda'``, ``'cuda:1'``); ``None`` is CPU. Only
        for ``backend='torch'``.

    Returns
    -------
    ops : NumpyOps | TorchOps
        The namespace every engine function computes with.
    """
    _check_option("backend", backend, BACKENDS)
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"device={device!r} needs backend='torch'; the numpy backend runs on 'cpu'.")
        return NumpyOps()
    return TorchOps(device)
