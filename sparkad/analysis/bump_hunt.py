"""Bump hunt on a binned mjj spectrum (seeds/004 sec. 3): the standard dijet function fitted to the
spectrum, and the local and global significance of the largest excess in a sliding window.

- `dijet_function(x, p)`: f(x) = p0 (1 − x)^p1 / x^(p2 + p3 ln x), x = mjj / √s (CMS/ATLAS dijet searches; the
  3-parameter form has p3 = 0). Expected counts per bin are the function integrated over the bin
  (Simpson's rule on each bin), so wide bins are fitted correctly.
- `fit_dijet`: a binned Poisson maximum-likelihood fit (scipy), started from a least-squares fit of log f;
  returns the parameters, the expected counts and the Poisson deviance / ndf as goodness of fit.
- `sliding_window`: for every window of 1..`max_width` adjacent bins, the one-sided Poisson p-value of the
  observed count given the fitted background, p = P(N ≥ n | b); the smallest is the local significance.
  The global one comes from `n_toys` pseudo-spectra drawn from the fitted background and refitted
  (BumpHunter's look-elsewhere correction): p_global = fraction of toys whose smallest local p-value is as
  small as the observed one.
Pure functions of arrays; the plots and the CLI come with the dijet search.
"""
from __future__ import annotations

import numpy as np

N_SIMPSON = 8  # sub-intervals per bin of the Simpson integration (even)


def dijet_function(x, p) -> np.ndarray:
    """f(x) = p0 (1 − x)^p1 / x^(p2 + p3 ln x); `p` of length 3 (p3 = 0) or 4."""
    x = np.asarray(x, np.float64)
    p0, p1, p2 = p[0], p[1], p[2]
    p3 = p[3] if len(p) > 3 else 0.0
    lx = np.log(x)
    return p0 * np.exp(p1 * np.log1p(-x) - (p2 + p3 * lx) * lx)


def expected_counts(edges, p, sqrt_s: float) -> np.ndarray:
    """∫ f over each bin of mjj (GeV), f per unit mjj: the bin integral by composite Simpson's rule."""
    edges = np.asarray(edges, np.float64)
    a, b = edges[:-1], edges[1:]
    u = np.linspace(0.0, 1.0, N_SIMPSON + 1)
    xs = (a[:, None] + (b - a)[:, None] * u[None, :]) / sqrt_s
    wts = np.ones(N_SIMPSON + 1)
    wts[1:-1:2], wts[2:-1:2] = 4.0, 2.0
    return (dijet_function(xs, p) * wts).sum(axis=1) * (b - a) / (3.0 * N_SIMPSON)


def _nll(p, edges, counts, sqrt_s, mask):
    with np.errstate(over="ignore", invalid="ignore"):  # the minimiser's wild trial points: refused below
        mu = expected_counts(edges, p, sqrt_s)[mask]
    if not np.all(np.isfinite(mu)) or np.any(mu <= 0):
        return 1e300
    return float(np.sum(mu - counts[mask] * np.log(mu)))


def fit_dijet(edges, counts, sqrt_s: float, n_params: int = 4, mask=None) -> dict:
    """Binned Poisson likelihood fit of the dijet function to `counts` in mjj bins `edges` (GeV); with `mask`
    (bins, bool) only the bins it marks enter the fit (e.g. the sidebands of a signal region), and
    `expected` still covers every bin (the interpolation into the masked ones)."""
    from scipy.optimize import minimize

    if n_params not in (3, 4):
        raise ValueError(f"n_params must be 3 or 4, got {n_params}")
    edges = np.asarray(edges, np.float64)
    counts = np.asarray(counts, np.float64)
    mask = np.ones(len(counts), bool) if mask is None else np.asarray(mask, bool)
    if edges[-1] >= sqrt_s or edges[0] <= 0:
        raise ValueError(f"mjj bins must lie inside (0, sqrt_s = {sqrt_s:g}) GeV")
    if counts[mask].sum() <= 0 or np.count_nonzero(counts[mask]) < n_params + 1:
        raise ValueError(f"the spectrum needs at least {n_params + 1} non-empty fitted bins for a {n_params}-parameter fit")
    # start: least squares of log(density) on the non-empty bins, linear in (log p0, p1, p2, p3)
    xc = 0.5 * (edges[:-1] + edges[1:]) / sqrt_s
    dens = counts / np.diff(edges)
    nz = (counts > 0) & mask
    cols = [np.ones(nz.sum()), np.log1p(-xc[nz]), -np.log(xc[nz])] + ([-np.log(xc[nz]) ** 2] if n_params == 4 else [])
    sol, *_ = np.linalg.lstsq(np.stack(cols, axis=1), np.log(dens[nz]), rcond=None)
    with np.errstate(over="ignore"):
        start = np.r_[np.exp(sol[0]), sol[1:]]
    if not np.all(np.isfinite(start)) or start[0] <= 0:
        raise ValueError("the dijet-function fit found no finite description of the spectrum")
    # p0 is fitted as a scale of its start: the others then move on comparable scales
    def nll_scaled(q):
        with np.errstate(over="ignore"):
            p0 = start[0] * np.exp(q[0])
        return _nll(np.r_[p0, q[1:]], edges, counts, sqrt_s, mask)

    best = None
    for method in ("Nelder-Mead", "Powell"):
        r = minimize(nll_scaled, np.r_[0.0, start[1:]], method=method,
                     options={"maxiter": 20000, "xatol": 1e-8, "fatol": 1e-9} if method == "Nelder-Mead" else
                     {"maxiter": 20000, "xtol": 1e-8, "ftol": 1e-10})
        if best is None or r.fun < best.fun:
            best = r
        if best.success:
            break
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.r_[start[0] * np.exp(best.x[0]), best.x[1:]]
        mu = expected_counts(edges, p, sqrt_s)
    if not np.all(np.isfinite(mu)) or best.fun >= 1e300:
        raise ValueError("the dijet-function fit found no finite description of the spectrum")
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = 2.0 * np.sum((mu - counts + np.where(counts > 0, counts * np.log(counts / mu), 0.0))[mask])
    ndf = int(np.count_nonzero((mu > 0) & mask)) - n_params
    return {"params": p.tolist(), "expected": mu, "deviance": float(dev), "ndf": ndf, "converged": bool(best.success)}


def _window_pvalues(counts, expected, max_width):
    from scipy.special import gammainc

    best = (1.0, 0, 1)
    n = len(counts)
    cs_n = np.r_[0.0, np.cumsum(counts)]
    cs_b = np.r_[0.0, np.cumsum(expected)]
    for w in range(1, max_width + 1):
        obs = cs_n[w:] - cs_n[:-w]
        bkg = cs_b[w:] - cs_b[:-w]
        # P(N >= n | b) = regularised lower incomplete gamma P(n, b), for n >= 1; an n <= b window is no excess
        p = np.where(obs > bkg, gammainc(np.maximum(obs, 1e-12), bkg), 1.0)
        k = int(np.argmin(p))
        if p[k] < best[0]:
            best = (float(p[k]), k, w)
    return best if n else (1.0, 0, 1)


def sliding_window(edges, counts, sqrt_s: float, max_width: int = 4, n_toys: int = 200, seed: int = 0,
                   n_params: int = 4, fit: dict | None = None) -> dict:
    """Local and global significance of the largest excess over the fitted dijet function."""
    from scipy.stats import norm

    edges = np.asarray(edges, np.float64)
    counts = np.asarray(counts, np.float64)
    fit = fit or fit_dijet(edges, counts, sqrt_s, n_params)
    p_local, k, w = _window_pvalues(counts, fit["expected"], max_width)
    rng = np.random.default_rng(seed)
    toys = []
    for _ in range(n_toys):
        c = rng.poisson(fit["expected"]).astype(np.float64)
        try:
            mu = fit_dijet(edges, c, sqrt_s, n_params)["expected"]
        except ValueError:
            continue
        toys.append(_window_pvalues(c, mu, max_width)[0])
    toys = np.asarray(toys)
    p_global = float((np.sum(toys <= p_local) + 1) / (len(toys) + 1)) if len(toys) else float("nan")
    return {"p_local": p_local, "z_local": float(norm.isf(p_local)) if p_local < 1 else 0.0,
            "window": [float(edges[k]), float(edges[k + w])], "n_observed": float(counts[k:k + w].sum()),
            "n_expected": float(fit["expected"][k:k + w].sum()), "p_global": p_global,
            "z_global": float(max(norm.isf(p_global), 0.0)) if np.isfinite(p_global) else float("nan"),
            "n_toys": int(len(toys)), "fit": {"params": fit["params"], "deviance": fit["deviance"], "ndf": fit["ndf"]}}


def region_excess(edges, counts, sqrt_s: float, region, n_params: int = 4) -> dict:
    """The excess in an mjj region over the dijet function fitted to the other bins (the sidebands): the
    bins whose centre lies in `region` = (lo, hi) are left out of the fit, their expected count is its
    interpolation; one-sided Poisson p-value of the observed count (statistical only)."""
    from scipy.special import gammainc
    from scipy.stats import norm

    edges = np.asarray(edges, np.float64)
    counts = np.asarray(counts, np.float64)
    centre = 0.5 * (edges[:-1] + edges[1:])
    inside = (centre >= region[0]) & (centre < region[1])
    if not inside.any():
        raise ValueError(f"no mjj bin centre lies in the region {region[0]:g}-{region[1]:g} GeV")
    fit = fit_dijet(edges, counts, sqrt_s, n_params, mask=~inside)
    n, b = float(counts[inside].sum()), float(fit["expected"][inside].sum())
    p = float(gammainc(max(n, 1e-12), b)) if n > b else 1.0
    return {"region": [float(edges[:-1][inside][0]), float(edges[1:][inside][-1])], "n_observed": n, "n_expected": b,
            "p_local": p, "z_local": float(norm.isf(p)) if p < 1 else 0.0, "expected": fit["expected"].tolist(),
            "fit": {"params": fit["params"], "deviance": fit["deviance"], "ndf": fit["ndf"]}}
