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
def _dense(x, w, b, init, out, has_bias, has_init):  # pragma: no cover - compiled
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
            two = j + 1 < m
            j1 = j + 1 if two else j
            for i in range(TILE):
                a0[i] = 0.0
                a1[i] = 0.0
            if has_init:
                for i in range(t):
                    a0[i] = init[i0 + i, j]
                    a1[i] = init[i0 + i, j1]
            # four terms per pass over the accumulators, added one after the other: the same order
            # as one term per pass, with a quarter of the accumulator loads and stores
            if two:
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
            else:  # an odd last column (or a single one: a discriminator's logit)
                for p in range(0, k4, 4):
                    u0, u1, u2, u3 = w[p, j], w[p + 1, j], w[p + 2, j], w[p + 3, j]
                    for i in range(TILE):
                        a0[i] = (((a0[i] + u0 * xt[p, i]) + u1 * xt[p + 1, i]) + u2 * xt[p + 2, i]) + u3 * xt[p + 3, i]
                for p in range(k4, k):
                    u0 = w[p, j]
                    for i in range(TILE):
                        a0[i] += u0 * xt[p, i]
            if has_bias:
                for i in range(t):
                    out[i0 + i, j] = a0[i] + b[j]
                if two:
                    for i in range(t):
                        out[i0 + i, j1] = a1[i] + b[j1]
            else:
                for i in range(t):
                    out[i0 + i, j] = a0[i]
                if two:
                    for i in range(t):
                        out[i0 + i, j1] = a1[i]


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, init: np.ndarray | None = None) -> np.ndarray:
    """``init + x @ w + b`` in the fixed order above, in x's dtype (float32 or float64).

    ``b=None``: no bias (the raw sums). ``init``: sums to continue (the output of an earlier call
    without bias): ``dense(x2, w2, b, init=dense(x1, w1))`` is bit for bit
    ``dense(concat([x1, x2], 1), concat([w1, w2]), b)``, so a product over inputs that two calls
    share is computed once."""
    dtype = np.float64 if np.asarray(x).dtype == np.float64 else np.float32
    x = np.ascontiguousarray(x, dtype)
    w = np.ascontiguousarray(w, dtype)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"dense: shapes {x.shape} and {w.shape} do not chain")
    n, m = x.shape[0], w.shape[1]
    bias = np.zeros(m, dtype) if b is None else np.ascontiguousarray(b, dtype)
    if bias.shape != (m,):
        raise ValueError(f"dense: bias of shape {bias.shape} for {m} outputs")
    start = np.zeros((0, 0), dtype) if init is None else np.ascontiguousarray(init, dtype)
    if init is not None and start.shape != (n, m):
        raise ValueError(f"dense: partial sums of shape {start.shape} for an output of shape {(n, m)}")
    out = np.empty((n, m), dtype)
    _dense(x, w, bias, start, out, b is not None, init is not None)
    return out
