"""The dense-layer product of the exported networks, with one fixed order of operations.

A BLAS ``x @ w`` is not a function of its operands alone: OpenBLAS and MKL pick their kernel and
their split of the sum by matrix size, by thread count and by the CPU's SIMD level (FMA or not,
AVX2 or AVX-512), and each choice rounds differently in the last bits. Scores thresholded at a few
ppm must not move with any of these, so scoring multiplies here instead:

    out[i, j] = (((x[i, 0]·w[0, j] + x[i, 1]·w[1, j]) + …) + x[i, k-1]·w[k-1, j]) + b[j]

summed in that order, each product and each sum rounded once in IEEE arithmetic (numba emits no
fused multiply-add without ``fastmath``), so the result is the same bits on any x86-64 or ARM CPU,
at any thread count and for any batch an event arrives in. The loops vectorise across events (a
tile of TILE events transposed into a small buffer, two output columns per pass over it,
a quarter of the accumulator traffic by adding four terms per pass).
"""
from __future__ import annotations

import numba as nb
import numpy as np

#: events per tile: the tile's inputs (k × TILE) and two accumulators stay in the L1 cache
TILE = 64


@nb.njit(cache=True, nogil=True)
def _dense(x, w, b, out):  # pragma: no cover - compiled
    n, k = x.shape
    m = w.shape[1]
    xt = np.zeros((k, TILE), x.dtype)
    a0 = np.zeros(TILE, x.dtype)
    a1 = np.zeros(TILE, x.dtype)
    k4 = k - k % 4
    for i0 in range(0, n, TILE):
        t = min(TILE, n - i0)
        for i in range(t):
            for p in range(k):
                xt[p, i] = x[i0 + i, p]
        for j in range(0, m, 2):
            j1 = j + 1 if j + 1 < m else j  # an odd last column is computed twice
            for i in range(TILE):
                a0[i] = 0.0
                a1[i] = 0.0
            # four terms per pass over the accumulators, added one after the other (the same order as
            # one term per pass, a quarter of the accumulator loads and stores)
            for p in range(0, k4, 4):
                u0, u1, u2, u3 = w[p, j], w[p + 1, j], w[p + 2, j], w[p + 3, j]
                v0, v1, v2, v3 = w[p, j1], w[p + 1, j1], w[p + 2, j1], w[p + 3, j1]
                for i in range(TILE):
                    x0, x1, x2, x3 = xt[p, i], xt[p + 1, i], xt[p + 2, i], xt[p + 3, i]
                    a0[i] = (((a0[i] + u0 * x0) + u1 * x1) + u2 * x2) + u3 * x3
                    a1[i] = (((a1[i] + v0 * x0) + v1 * x1) + v2 * x2) + v3 * x3
            for p in range(k4, k):
                u0, v0 = w[p, j], w[p, j1]
                for i in range(TILE):
                    a0[i] += u0 * xt[p, i]
                    a1[i] += v0 * xt[p, i]
            for i in range(t):
                out[i0 + i, j] = a0[i] + b[j]
            if j1 != j:
                for i in range(t):
                    out[i0 + i, j1] = a1[i] + b[j1]


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``x @ w + b`` in the fixed order above, in x's dtype (float32 or float64); ``b=None``: no bias."""
    dtype = np.float64 if np.asarray(x).dtype == np.float64 else np.float32
    x = np.ascontiguousarray(x, dtype)
    w = np.ascontiguousarray(w, dtype)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"dense: shapes {x.shape} and {w.shape} do not chain")
    b = np.zeros(w.shape[1], dtype) if b is None else np.ascontiguousarray(b, dtype)
    if b.shape != (w.shape[1],):
        raise ValueError(f"dense: bias of shape {b.shape} for {w.shape[1]} outputs")
    out = np.empty((x.shape[0], w.shape[1]), dtype)
    _dense(x, w, b, out)
    return out
