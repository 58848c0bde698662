"""Binomial intervals, defined once: Clopper–Pearson (the ASTF, the run-period check, the monitor)
and Agresti–Coull (the evaluation's TPR and FPR, and the ASTF on request)."""
from __future__ import annotations

import numpy as np

METHODS = ("clopper-pearson", "agresti-coull")


def z_of_cl(cl: float) -> float:
    """Number of Gaussian standard deviations of a central interval at confidence cl (1 at 0.6827)."""
    from scipy.stats import norm  # imported when used: the CLI starts fast

    return float(norm.ppf(0.5 + cl / 2))


def agresti_coull(k, n, cl: float = 0.6827):
    """Agresti–Coull interval (lo, hi) for a binomial fraction k/n."""
    z = z_of_cl(cl)
    n_t = np.asarray(n, np.float64) + z * z
    p_t = (np.asarray(k, np.float64) + z * z / 2) / n_t
    half = z * np.sqrt(p_t * (1 - p_t) / n_t)
    return np.clip(p_t - half, 0, 1), np.clip(p_t + half, 0, 1)


def clopper_pearson(k, n, cl: float = 0.6827):
    """Exact central interval (lo, hi) for k of n, vectorised; NaN where n == 0.

    k and n may be non-integer (effective counts of weighted samples): the same beta-quantile
    formula, continuous in k and n. k = 0 (k = n) gives lo = 0 (hi = 1)."""
    return binomial_interval(k, n, method="clopper-pearson", cl=cl)


def binomial_interval(k, n, *, method: str = "clopper-pearson", cl: float = 0.6827):
    """Central interval of a binomial fraction k/n at confidence cl by ``method`` (one of METHODS);
    counts within 1e-9 of an integer (Σw/w of equal weights) are taken as that integer."""
    from scipy.stats import beta  # imported when used: the CLI starts fast

    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r} (choose {' or '.join(METHODS)})")
    if not 0 < cl < 1:
        raise ValueError(f"confidence level must lie in (0, 1), got {cl}")
    k, n = np.broadcast_arrays(np.asarray(k, np.float64), np.asarray(n, np.float64))
    k, n = k.copy(), n.copy()
    near = np.abs(k - np.round(k)) < 1e-9 * np.maximum(1.0, n)
    k[near] = np.round(k[near])
    near = np.abs(n - np.round(n)) < 1e-9 * np.maximum(1.0, n)
    n[near] = np.round(n[near])
    k = np.minimum(k, n)
    ok = n > 0
    lo = np.full(k.shape, np.nan)
    hi = np.full(k.shape, np.nan)
    if method == "clopper-pearson":
        a = (1 - cl) / 2
        kk, nn = k[ok], n[ok]
        with np.errstate(all="ignore"):
            lo[ok] = np.where(kk > 0, beta.ppf(a, np.maximum(kk, 1e-300), nn - kk + 1), 0.0)
            hi[ok] = np.where(kk < nn, beta.ppf(1 - a, kk + 1, np.maximum(nn - kk, 1e-300)), 1.0)
    else:
        lo[ok], hi[ok] = agresti_coull(k[ok], n[ok], cl)
    return lo, hi
