"""float64 log, exp, log1p and expm1 that are the same bits whatever SIMD level the CPU has: the C
library's functions, one value at a time. numpy's float64 ``np.log``, ``np.exp`` (and its SVML-based
``np.log1p``, ``np.expm1``) dispatch to AVX-512 implementations on CPUs that have it, and those round
differently from the C library that numpy calls elsewhere (on an AVX-512 Xeon: 580 of 10⁶ logs and
~5 % of exps differ in the last bit), so a score through them would depend on the CPU
(docs/numerics.md). numba compiles ``math.log`` / ``math.exp`` to calls of the
C library (no vector math library is linked: numba.config.USING_SVML is False without Intel's SVML).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np


def _elementwise(fn):
    """A compiled loop applying ``fn`` (a ``math`` function: a call of the C library) to each value."""
    @nb.njit(cache=True, nogil=True)
    def kernel(x, out):  # pragma: no cover - compiled
        for i in range(x.size):
            out[i] = fn(x[i])
    return kernel


_log, _exp, _log1p, _expm1 = (_elementwise(f) for f in (math.log, math.exp, math.log1p, math.expm1))


def _apply(kernel, x):
    a = np.asarray(x, np.float64)
    flat = np.ascontiguousarray(a).reshape(-1)
    out = np.empty_like(flat)
    kernel(flat, out)
    return out.reshape(a.shape) if a.ndim else out[0]


def log(x) -> np.ndarray:
    """Natural logarithm in float64 (−inf at 0, NaN below, as np.log, without its warnings)."""
    return _apply(_log, x)


def exp(x) -> np.ndarray:
    """Exponential in float64 (0 and inf at the ends of the range, as np.exp)."""
    return _apply(_exp, x)


def log1p(x) -> np.ndarray:
    """log(1 + x) in float64."""
    return _apply(_log1p, x)


def expm1(x) -> np.ndarray:
    """exp(x) − 1 in float64."""
    return _apply(_expm1, x)
