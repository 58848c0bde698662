"""An anomaly-score threshold that depends on mjj (seeds/004 sec. 3.3, Fig. 8): L_T(mjj) is the (1 − q)
quantile of the background's score at each mjj, fitted by a quantile regression, so that a fraction q of the
background passes `score > L_T(mjj)` at every mass and the selection does not sculpt a bump.

The regression is a polynomial in t = (mjj − lo) / (hi − lo), fitted by minimising the pinball loss exactly
(a linear programme: scikit-learn's `QuantileRegressor` with the HiGHS solver, no penalty) on at most
`max_events` events (a seeded subsample: the LP grows with the events). Outside the fitted mjj range the
threshold is held at its value at the range's edge (a polynomial extrapolates badly). The check is
`efficiency_flatness`: the weighted background efficiency per mjj bin against its mean, a χ² with its p-value.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class QuantileThreshold:
    """L_T(mjj) = Σ_k coef[k] t^k, t = (clip(mjj, lo, hi) − lo) / (hi − lo); `efficiency` = q, the
    background fraction above it."""

    efficiency: float
    lo: float
    hi: float
    coef: tuple
    n_fit: int = 0

    def __call__(self, mjj) -> np.ndarray:
        t = (np.clip(np.asarray(mjj, np.float64), self.lo, self.hi) - self.lo) / (self.hi - self.lo)
        return np.polynomial.polynomial.polyval(t, np.asarray(self.coef, np.float64))

    def selects(self, mjj, score) -> np.ndarray:
        return np.asarray(score, np.float64) > self(mjj)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["coef"] = [float(c) for c in self.coef]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantileThreshold":
        return cls(float(d["efficiency"]), float(d["lo"]), float(d["hi"]), tuple(float(c) for c in d["coef"]),
                   int(d.get("n_fit", 0)))


def fit_quantile_threshold(mjj, score, efficiency: float, degree: int = 2, weights=None,
                           max_events: int = 20_000, seed: int = 0) -> QuantileThreshold:
    """Fit L_T(mjj) so that a fraction `efficiency` of the (weighted) events has score above it."""
    from sklearn.linear_model import QuantileRegressor

    if not 0 < efficiency < 1:
        raise ValueError(f"efficiency must be in (0, 1), got {efficiency}")
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    mjj, score = np.asarray(mjj, np.float64), np.asarray(score, np.float64)
    w = np.ones_like(mjj) if weights is None else np.asarray(weights, np.float64)
    ok = np.isfinite(mjj) & np.isfinite(score) & np.isfinite(w) & (w > 0)
    mjj, score, w = mjj[ok], score[ok], w[ok]
    if len(mjj) < 10 * (degree + 1):
        raise ValueError(f"{len(mjj)} events are too few for a degree-{degree} quantile regression")
    if len(mjj) > max_events:  # a subsample drawn with the weights: the LP then weighs every event alike
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(mjj), max_events, replace=False, p=w / w.sum())
        mjj, score, w = mjj[pick], score[pick], np.ones(max_events)
    lo, hi = float(mjj.min()), float(mjj.max())
    if hi <= lo:
        raise ValueError("mjj takes a single value: no mjj dependence to fit")
    t = (mjj - lo) / (hi - lo)
    x = np.stack([t ** k for k in range(1, degree + 1)], axis=1) if degree else np.zeros((len(t), 0))
    if degree == 0:
        return QuantileThreshold(float(efficiency), lo, hi, (float(_weighted_quantile(score, w, 1 - efficiency)),),
                                 len(mjj))
    reg = QuantileRegressor(quantile=1.0 - efficiency, alpha=0.0, solver="highs").fit(x, score, sample_weight=w)
    return QuantileThreshold(float(efficiency), lo, hi, (float(reg.intercept_), *map(float, reg.coef_)), len(mjj))


def _weighted_quantile(x, w, q):
    order = np.argsort(x, kind="stable")
    c = np.cumsum(w[order])
    return x[order][min(np.searchsorted(c, q * c[-1]), len(x) - 1)]


def efficiency_flatness(mjj, selected, edges, weights=None) -> dict:
    """Background efficiency of a selection per mjj bin, its binomial error (weighted: Σw²-based), and the
    χ² of its agreement with the overall efficiency (ndf = bins with events − 1) with the p-value: the cut
    sculpts no bump when the efficiency is flat within its errors."""
    from scipy.stats import chi2 as chi2_dist

    mjj = np.asarray(mjj, np.float64)
    sel = np.asarray(selected, bool)
    w = np.ones_like(mjj) if weights is None else np.asarray(weights, np.float64)
    idx = np.digitize(mjj, edges) - 1
    nb = len(edges) - 1
    inside = (idx >= 0) & (idx < nb)
    tot = np.bincount(idx[inside], w[inside], nb)
    tot2 = np.bincount(idx[inside], w[inside] ** 2, nb)
    passed = np.bincount(idx[inside], (w * sel)[inside], nb)
    mean = passed.sum() / tot.sum() if tot.sum() > 0 else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = passed / tot
        # the variance of a weighted efficiency with the expected efficiency: p(1-p) Σw² / (Σw)²
        err = np.sqrt(mean * (1 - mean) * tot2) / tot
    use = tot > 0
    chi2 = float(np.sum(((eff[use] - mean) / err[use]) ** 2)) if use.any() else np.nan
    ndf = int(use.sum()) - 1
    return {"edges": list(map(float, edges)), "efficiency": eff.tolist(), "error": err.tolist(), "mean": float(mean),
            "chi2": chi2, "ndf": ndf, "p_value": float(chi2_dist.sf(chi2, ndf)) if ndf > 0 else float("nan")}
