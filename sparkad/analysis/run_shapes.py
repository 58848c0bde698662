"""Runs compared as distributions, not only as tail rates: each run's histogram of a feature (or of the
anomaly score) against the same histogram of all the other runs, as DQM tools compare a run with
its reference.

A fault that moves the bulk of a distribution — a jet-energy-scale shift moves HT and MJ — changes no
anomaly rate in the far tail, but shows as a shape difference. The pass counts, per data run and
feature, the events in every bin (``count_by_run``: mergeable partial results); ``run_shape_check``
tests each run with a two-sample Kolmogorov–Smirnov statistic on the binned cumulative distributions
(under- and overflow included, NaN left out; binning makes the test conservative) and controls the
false alarms over all (run, feature) tests with the Šidák correction, as the rate check does.
"""
from __future__ import annotations

import math

import numpy as np


def bin_codes(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: 0 underflow, 1..n, n+1 overflow, n+2 NaN (the hist axis of the pass)."""
    from sparkad.analysis.aggregates import feature_axis

    x = np.asarray(x, np.float64)
    n = len(edges) - 1
    idx = np.asarray(feature_axis(edges).index(x), np.int64) + 1
    idx[x == edges[-1]] = n  # the upper edge belongs to the last bin, as in the pass's histograms
    idx[np.isnan(x)] = n + 2
    return idx


def run_index(run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct runs, each event's position among them): computed once per batch, shared by
    every feature's ``count_by_run``."""
    runs, inv = np.unique(np.asarray(run, np.int64), return_inverse=True)
    return runs, inv.ravel()


def count_by_run(run: np.ndarray, x: np.ndarray, edges: np.ndarray, index=None) -> dict[int, np.ndarray]:
    """{run: int64 counts per bin (n + 3: underflow, bins, overflow, NaN)} of one batch; ``index``:
    ``run_index(run)`` when the caller already has it."""
    if len(run) == 0:
        return {}
    size = len(edges) + 2
    runs, inv = run_index(run) if index is None else index
    counts = np.bincount(inv * size + bin_codes(x, edges), minlength=len(runs) * size)
    return {int(r): c for r, c in zip(runs, counts.reshape(len(runs), size).astype(np.int64))}


def merge_run_counts(a: dict, b: dict) -> dict:
    """The sum of two ``count_by_run`` results (new dict; inputs untouched)."""
    out = dict(a)
    for r, c in b.items():
        out[r] = out[r] + c if r in out else c
    return out


def ks_binned(h: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """(D, p, n_eff): the largest distance between the two binned cumulative distributions, its
    asymptotic two-sample p-value (Kolmogorov distribution at √n_eff · D, n_eff = n·m / (n + m))."""
    from scipy.stats import kstwobign

    h, ref = np.asarray(h, np.float64), np.asarray(ref, np.float64)
    n, m = h.sum(), ref.sum()
    if n <= 0 or m <= 0:
        return float("nan"), float("nan"), 0.0
    d = float(np.max(np.abs(np.cumsum(h) / n - np.cumsum(ref) / m)))
    n_eff = n * m / (n + m)
    return d, float(kstwobign.sf(math.sqrt(n_eff) * d)), float(n_eff)


def run_shape_check(counts: dict[str, dict[int, np.ndarray]], *, alpha: float = 0.01, min_events: int = 100) -> dict:
    """Every run with at least ``min_events`` events against the other runs, per feature.

    ``counts``: {feature: {run: counts per bin (n + 3, the last one NaN)}}. Returns the tests (run,
    feature, events, D, p, p_global), the flagged ones (p_global < alpha, Šidák over all tests),
    and per run the feature that moved most (smallest p)."""
    tests = []
    for feature, per_run in counts.items():
        total = sum(per_run.values()) if per_run else None
        for run, c in sorted(per_run.items()):
            h = np.asarray(c[:-1], np.float64)  # NaN column out
            if h.sum() < min_events:
                continue
            d, p, n_eff = ks_binned(h, np.asarray(total[:-1], np.float64) - h)
            if math.isnan(p):
                continue
            tests.append({"run": int(run), "feature": feature, "events": int(h.sum()), "ks_d": d, "p": p,
                          "n_eff": n_eff})
    n_tests = len(tests)
    for t in tests:  # Šidák: P(at least one of n_tests independent tests this extreme)
        t["p_global"] = float(-math.expm1(n_tests * math.log1p(-min(t["p"], 1.0 - 1e-16)))) if t["p"] < 1 else 1.0
        t["flagged"] = bool(t["p_global"] < alpha)
    flagged = sorted((t for t in tests if t["flagged"]), key=lambda t: t["p"])
    worst = {}
    for t in tests:
        if t["run"] not in worst or t["p"] < worst[t["run"]]["p"]:
            worst[t["run"]] = t
    return {"settings": {"alpha": alpha, "min_events": min_events, "test": "binned two-sample KS, Šidák over all tests"},
            "tests": n_tests, "flagged": flagged,
            "flagged_runs": sorted({t["run"] for t in flagged}),
            "most_moved": [{"run": r, "feature": t["feature"], "ks_d": t["ks_d"], "p": t["p"], "p_global": t["p_global"]}
                           for r, t in sorted(worst.items())]}
