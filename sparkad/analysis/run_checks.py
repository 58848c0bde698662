"""Run-period clustering check: is the anomaly rate (ASTF, the fraction of events above the anomaly
threshold) the same in every run, luminosity-section range and run period, and where does it change?

Pure functions on numpy / pandas. The input is a count table per (run, luminosityBlock) with the columns
``run, luminosityBlock, events, selected`` (unweighted data counts; selected = score > threshold), which
every engine can produce as a mergeable partial aggregate. The formulas are in docs/run_checks.md.

Statistics, per unit (run, LS range or period) with n events and k selected:

* rate k/n with a Clopper–Pearson interval;
* reference rate: the *leave-one-out* rate of the reference units (all tested units but the one under
  test, and without units flagged in the previous pass). A large faulty run included in its own
  reference would pull the reference towards itself and dilute its own pull; flagged units leaving the
  reference stop two faulty runs from hiding each other and stop clean runs from looking low;
* the null distribution of k is beta-binomial: the reference rate's own statistical uncertainty
  (Beta(K_ref + ½, N_ref − K_ref + ½), the Bayesian predictive of a binomial) plus, with
  ``method: beta-binomial``, a run-to-run over-dispersion ρ estimated from the reference units by
  trimmed moments with a floor at 0 (as CMS AutoDQM's beta-binomial pulls, but with the spread taken
  from the runs themselves, robust to a minority of faulty ones);
* local p-value from the exact tails, signed pull in Gaussian σ, a global p-value with the Šidák
  trials factor over the units tested, flag when the global p-value < alpha;
* a change-point segmentation of the rate along the run sequence (optimal partitioning with PELT
  pruning on the binomial −2 log L, a BIC-like penalty per change point).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from sparkad.analysis.intervals import clopper_pearson

from sparkad.core.config import as_number, check_keys, require_mapping
from sparkad.core.errors import ConfigError, SparkadError
from sparkad.core.jsonsafe import jsonable, records
from sparkad.analysis.lumi_counts import COUNT_COLUMNS, counts_frame, counts_table

METHODS = ("binomial", "beta-binomial")
ALTERNATIVES = ("two-sided", "greater", "less")

#: the code's defaults; conf/monitor.yaml holds the user-facing copy (same keys)
DEFAULTS = {
    "alpha": 0.01,               # family-wise false-alarm probability per check (Šidák over the units tested)
    "method": "binomial",        # binomial | beta-binomial (adds the run-to-run over-dispersion)
    "alternative": "two-sided",  # two-sided | greater (excess only) | less (deficit only)
    "interval_cl": 0.6827,       # Clopper–Pearson interval and expected band (1 σ)
    "min_events": 50,            # units with fewer events are listed but not tested (nor counted as trials)
    "ls_block_size": 20,         # LS ranges: blocks of this many luminosity sections within a run
    "exclude_flagged": True,     # flagged units leave the reference, iterated until the flags are stable
    "max_iterations": 10,
    "outlier_screen": 5.0,       # first pass: units whose binomial pull is > this many robust σ (MAD) off
                                 # the median start outside the reference (null: no screen)
    "changepoint_penalty": "bic",  # per change point, in −2 log L units: bic = 2 ln(events), or a number
    "changepoint_scale": 1.0,    # multiplies the penalty
    "changepoint_min_runs": 1,   # shortest segment, in runs
    "periods": [],               # [{name, first_run, last_run}, ...] e.g. eras; empty: no period table
}


def settings(conf: dict | None = None) -> dict:
    """DEFAULTS updated with ``conf`` (validated; unknown keys and bad values are a ConfigError)."""
    conf = dict(require_mapping(conf or {}, "run check settings"))
    check_keys(conf, DEFAULTS, "run check settings")
    s = {**DEFAULTS, **conf}
    s["alpha"] = as_number(s["alpha"], "alpha", positive=True)
    if not s["alpha"] < 1:
        raise ConfigError(f"alpha: must be in (0, 1), got {s['alpha']}")
    if s["method"] not in METHODS:
        raise ConfigError(f"method: expected one of {', '.join(METHODS)}, got {s['method']!r}")
    if s["alternative"] not in ALTERNATIVES:
        raise ConfigError(f"alternative: expected one of {', '.join(ALTERNATIVES)}, got {s['alternative']!r}")
    s["interval_cl"] = as_number(s["interval_cl"], "interval_cl", positive=True)
    if not s["interval_cl"] < 1:
        raise ConfigError(f"interval_cl: must be in (0, 1), got {s['interval_cl']}")
    s["min_events"] = int(as_number(s["min_events"], "min_events"))
    if s["min_events"] < 0:
        raise ConfigError(f"min_events: must be >= 0, got {s['min_events']}")
    s["ls_block_size"] = int(as_number(s["ls_block_size"], "ls_block_size", positive=True))
    s["max_iterations"] = int(as_number(s["max_iterations"], "max_iterations", positive=True))
    if not isinstance(s["exclude_flagged"], bool):  # a quoted "no" would be true
        raise ConfigError(f"exclude_flagged: expected true or false, got {s['exclude_flagged']!r}")
    s["outlier_screen"] = as_number(s["outlier_screen"], "outlier_screen", positive=True, allow_none=True)
    if s["changepoint_penalty"] != "bic":
        s["changepoint_penalty"] = as_number(s["changepoint_penalty"], "changepoint_penalty")
    s["changepoint_scale"] = as_number(s["changepoint_scale"], "changepoint_scale", positive=True)
    s["changepoint_min_runs"] = int(as_number(s["changepoint_min_runs"], "changepoint_min_runs", positive=True))
    periods = s["periods"] or []
    if not isinstance(periods, list):
        raise ConfigError(f"periods: expected a list of {{name, first_run, last_run}}, got {periods!r}")
    out = []
    for i, p in enumerate(periods):
        require_mapping(p, f"periods[{i}]")
        check_keys(p, ("name", "first_run", "last_run"), f"periods[{i}]")
        if "name" not in p or "first_run" not in p or "last_run" not in p:
            raise ConfigError(f"periods[{i}]: needs name, first_run and last_run")
        lo = int(as_number(p["first_run"], f"periods[{i}].first_run"))
        hi = int(as_number(p["last_run"], f"periods[{i}].last_run"))
        if hi < lo:
            raise ConfigError(f"periods[{i}] ({p['name']}): last_run {hi} < first_run {lo}")
        out.append({"name": str(p["name"]), "first_run": lo, "last_run": hi})
    s["periods"] = out
    return s


# ---------------------------------------------------------------------------------------------- counts

def check_counts(per_ls: pd.DataFrame) -> pd.DataFrame:
    """The count table with int64 columns, one row per (run, LS) (duplicates summed), sorted."""
    missing = [c for c in COUNT_COLUMNS if c not in per_ls.columns]
    if missing:
        raise SparkadError(f"per-LS count table lacks column(s) {', '.join(missing)} (needs {', '.join(COUNT_COLUMNS)})")
    df = per_ls[list(COUNT_COLUMNS)].astype("int64")
    if (df.events < 0).any() or (df.selected < 0).any() or (df.selected > df.events).any():
        raise SparkadError("per-LS count table: counts must satisfy 0 <= selected <= events")
    return counts_frame(counts_table(df))


def per_run(per_ls: pd.DataFrame) -> pd.DataFrame:
    """run, lumi_sections, first_ls, last_ls, events, selected — one row per run, by run number."""
    df = check_counts(per_ls)
    g = df.groupby("run", sort=True)
    return pd.DataFrame({"lumi_sections": g.size(), "first_ls": g.luminosityBlock.min(),
                         "last_ls": g.luminosityBlock.max(), "events": g.events.sum(),
                         "selected": g.selected.sum()}).reset_index().astype("int64")


def per_ls_range(per_ls: pd.DataFrame, block_size: int) -> pd.DataFrame:
    """Fixed blocks of ``block_size`` LS within a run (LS 1..N, N+1..2N, ...): run, block, first_ls,
    last_ls (the LS actually present), lumi_sections, events, selected."""
    df = check_counts(per_ls)
    df = df.assign(block=(df.luminosityBlock - 1) // int(block_size))
    g = df.groupby(["run", "block"], sort=True)
    return pd.DataFrame({"first_ls": g.luminosityBlock.min(), "last_ls": g.luminosityBlock.max(),
                         "lumi_sections": g.size(), "events": g.events.sum(),
                         "selected": g.selected.sum()}).reset_index().astype("int64")


def per_period(per_ls: pd.DataFrame, periods: list[dict]) -> pd.DataFrame:
    """One row per named run range (first_run..last_run inclusive, in the order given); runs outside
    every period are not in the table (``runs_outside`` in the check's summary says how many)."""
    runs = per_run(per_ls)
    rows = []
    for p in periods:
        r = runs[(runs.run >= p["first_run"]) & (runs.run <= p["last_run"])]
        rows.append({"period": p["name"], "first_run": p["first_run"], "last_run": p["last_run"],
                     "runs": len(r), "events": int(r.events.sum()), "selected": int(r.selected.sum())})
    return pd.DataFrame(rows, columns=["period", "first_run", "last_run", "runs", "events", "selected"])


# -------------------------------------------------------------------------------------------- statistics

def overdispersion(n, k, *, chi2_scale: float = 1.0) -> float:
    """Intra-class correlation ρ of a beta-binomial, method of moments, floored at 0.

    With p̄ = Σk/Σn and S = Σ n_i (k_i/n_i − p̄)², E[S] = p̄(1−p̄) [(m−1) + ρ (N − Σn_i²/N − (m−1))]
    for any n_i (no large-count approximation). ``chi2_scale``: E[S] of the sample relative to the
    untruncated one (a trimmed sample's correction)."""
    n, k = np.asarray(n, np.float64), np.asarray(k, np.float64)
    keep = n > 0
    n, k = n[keep], k[keep]
    m, N = len(n), n.sum()
    if m < 3:
        return 0.0
    p = k.sum() / N
    if p <= 0 or p >= 1:
        return 0.0
    S = float(np.sum(n * (k / n - p) ** 2)) / chi2_scale
    denom = N - np.sum(n * n) / N - (m - 1)
    if denom <= 0:
        return 0.0
    return float(min(max((S / (p * (1 - p)) - (m - 1)) / denom, 0.0), 0.999))


def robust_overdispersion(n, k, cut: float = 3.5, max_iterations: int = 20) -> float:
    """ρ by trimmed moments: units more than ``cut`` σ (normal approximation, with the current ρ) off
    the rate of the others are left out and ρ re-estimated, until stable; the moments of the trimmed
    sample are corrected for the trimming (E[z² | |z| < c] = 1 − 2cφ(c)/(2Φ(c) − 1)). A minority of
    faulty units would otherwise inflate ρ until their own pulls, and everyone's, vanish."""
    from scipy import special, stats  # noqa: F401  (imported when used: the CLI starts fast)
    n, k = np.asarray(n, np.float64), np.asarray(k, np.float64)
    ok = n > 0
    n, k = n[ok], k[ok]
    if len(n) < 3:
        return 0.0
    trunc = 1.0 - 2 * cut * stats.norm.pdf(cut) / (2 * stats.norm.cdf(cut) - 1)
    # start from a scale-free core: |z| within ``cut`` robust σ (MAD) of the median binomial pull
    p = k.sum() / n.sum()
    z = (k - n * p) / np.sqrt(np.maximum(n * p * (1 - p), 1e-300))
    mad = 1.4826 * np.median(np.abs(z - np.median(z)))
    keep = np.abs(z - np.median(z)) <= cut * mad if mad > 0 else np.ones(len(n), bool)
    if keep.sum() < 3:
        keep = np.ones(len(n), bool)
    rho = overdispersion(n[keep], k[keep], chi2_scale=trunc)
    for _ in range(max_iterations):
        p = k[keep].sum() / n[keep].sum()
        var = n * p * (1 - p) * (1 + (n - 1) * rho)
        new_keep = np.abs(k - n * p) <= cut * np.sqrt(np.maximum(var, 1e-300))
        if new_keep.sum() < max(3, (len(n) + 1) // 2):
            break
        new_rho = overdispersion(n[new_keep], k[new_keep], chi2_scale=trunc)
        if np.array_equal(new_keep, keep) and abs(new_rho - rho) <= 1e-12:
            break
        keep, rho = new_keep, new_rho
    return rho


def _beta_params(n_ref, k_ref, rho):
    """Beta(a, b) of a unit's rate under the null: centred on the reference rate (Jeffreys-regularised,
    so that a reference without selected events still gives a proper distribution), with variance =
    the reference's own statistical variance + ρ p(1−p)."""
    n_ref, k_ref = np.asarray(n_ref, np.float64), np.asarray(k_ref, np.float64)
    p = (k_ref + 0.5) / (n_ref + 1.0)
    return (p, *_beta_from(p, n_ref, rho))


def _beta_from(p, n_ref, rho):
    rho_eff = np.minimum(rho + 1.0 / (np.asarray(n_ref, np.float64) + 1.0), 0.999)
    s = 1.0 / rho_eff - 1.0
    return p * s, (1.0 - p) * s


def _chunks(m: int, width: int):
    """Row slices keeping units × window arrays near 2 M cells."""
    step = max(1, 2_000_000 // (width + 1))
    return [slice(i, i + step) for i in range(0, m, step)]


def _log_tails(k, n, a, b):
    """log P(X >= k) and log P(X <= k) for X ~ BetaBinomial(n, a, b), per unit.

    The tail away from the bulk is summed exactly in log space over a window of 12 σ + 100 values of
    the pmf (no 1 − cdf cancellation, so pulls stay exact far in the tail); the tail holding the bulk
    (≥ ~½) is its complement."""
    from scipy import special, stats  # noqa: F401  (imported when used: the CLI starts fast)
    k, n, a, b = (np.asarray(x, np.float64) for x in (k, n, a, b))
    mean = n * a / (a + b)
    var = n * a * b * (a + b + n) / ((a + b) ** 2 * (a + b + 1))
    width = int(np.ceil(12 * np.sqrt(var.max(initial=0.0)) + 100))
    steps = np.arange(width + 1, dtype=np.float64)
    high = k >= mean
    far = np.full(len(k), -np.inf)  # log of the tail away from the bulk
    for sl in _chunks(len(k), width):
        kk, nn, aa, bb, hh = k[sl, None], n[sl, None], a[sl, None], b[sl, None], high[sl, None]
        j = np.where(hh, kk + steps, kk - steps)
        ok = (j >= 0) & (j <= nn)
        lp = np.where(ok, stats.betabinom.logpmf(np.clip(j, 0, nn), nn, aa, bb), -np.inf)
        far[sl] = special.logsumexp(lp, axis=1)
    far = np.minimum(far, 0.0)
    at_k = stats.betabinom.logpmf(k, n, a, b)
    near = np.log1p(-np.clip(np.exp(far) - np.exp(at_k), 0.0, 1.0 - 1e-16))  # 1 − P(beyond k) incl. k
    up = np.where(high, far, near)
    down = np.where(high, near, far)
    return np.minimum(up, 0.0), np.minimum(down, 0.0)


def _z_from_log_p(log_p):
    """Gaussian σ of a one-sided tail probability given as its log (exact down to p ~ 1e-300 and below)."""
    from scipy import special, stats  # noqa: F401  (imported when used: the CLI starts fast)
    return np.maximum(-special.ndtri_exp(np.minimum(log_p, 0.0)), 0.0)


def homogeneity_test(n, k, *, alpha=0.01, method="binomial", alternative="two-sided", min_events=1,
               exclude_flagged=True, max_iterations=10, outlier_screen=5.0) -> dict:
    """Homogeneity test of units (arrays of events n and selected k) against their reference.

    Returns arrays: tested, in_reference, expected (reference rate), pull, p_value (local), p_global
    (Šidák: 1 − (1 − p)^m over the m units tested), flagged; and the scalars rho, reference_rate,
    units_tested, iterations."""
    n = np.asarray(n, np.int64)
    k = np.asarray(k, np.int64)
    m_all = len(n)
    tested = n >= max(int(min_events), 1)
    m = int(tested.sum())
    out = {"tested": tested, "in_reference": tested.copy(), "expected": np.full(m_all, np.nan),
           "pull": np.full(m_all, np.nan), "p_value": np.full(m_all, np.nan), "p_global": np.full(m_all, np.nan),
           "flagged": np.zeros(m_all, bool), "rho": 0.0, "reference_rate": math.nan, "units_tested": m,
           "iterations": 0}
    if m < 2:  # a homogeneity test needs a reference besides the unit itself
        out["tested"] = np.zeros(m_all, bool)
        out["units_tested"] = 0
        return out

    def one_pass(good):
        K, N = k[good].sum(), n[good].sum()
        k_ref = np.where(good, K - k, K)  # leave-one-out for units of the reference
        n_ref = np.where(good, N - n, N)
        rho = robust_overdispersion(n[good], k[good]) if method == "beta-binomial" else 0.0
        idx = np.flatnonzero(tested & (n_ref > 0))
        p, a, b = _beta_params(n_ref[idx], k_ref[idx], rho)
        log_up, log_down = _log_tails(k[idx], n[idx], a, b)
        mean = n[idx] * p
        sign = np.sign(k[idx] - mean)
        pull = np.where(sign > 0, _z_from_log_p(log_up), np.where(sign < 0, -_z_from_log_p(log_down), 0.0)) + 0.0
        if alternative == "greater":
            log_p = log_up
        elif alternative == "less":
            log_p = log_down
        else:
            log_p = np.minimum(np.log(2.0) + np.minimum(log_up, log_down), 0.0)
        p_loc = np.exp(log_p)
        # Šidák, stable for tiny p: 1 − exp(m log(1 − p))
        p_glob = -np.expm1(m * np.log1p(-np.minimum(p_loc, 1.0 - 1e-16)))
        p_glob = np.where(p_loc >= 1.0, 1.0, p_glob)
        res = {k_: np.full(m_all, np.nan) for k_ in ("expected", "pull", "p_value", "p_global")}
        res["expected"][idx], res["pull"][idx], res["p_value"][idx], res["p_global"][idx] = p, pull, p_loc, p_glob
        res["flagged"] = np.zeros(m_all, bool)
        res["flagged"][idx] = p_glob < alpha
        res["rho"], res["reference_rate"] = rho, float(K / N) if N else math.nan
        return res

    good = tested.copy()
    if outlier_screen:
        # first pass only: gross outliers (robust z on binomial pulls) do not define the reference
        z = binomial_pulls(n, k, tested)
        zt = z[tested & np.isfinite(z)]
        med = np.median(zt)
        mad = 1.4826 * np.median(np.abs(zt - med))
        if mad > 0:
            screened = tested & (np.abs(z - med) > outlier_screen * mad)
            if (tested & ~screened).sum() >= max(2, (m + 1) // 2):
                good = tested & ~screened
    res = one_pass(good)
    it = 1
    while exclude_flagged and it < max_iterations:
        new_good = tested & ~res["flagged"]
        if np.array_equal(new_good, good) or new_good.sum() < max(2, (m + 1) // 2):
            break  # stable, or the flagged units would be the majority: no reference is left to trust
        good = new_good
        res = one_pass(good)
        it += 1
    out.update(res)
    out["in_reference"] = good
    out["iterations"] = it
    return out


def binomial_pulls(n, k, tested) -> np.ndarray:
    """Signed binomial pulls of every tested unit against the leave-one-out rate of all tested units
    (the scale-free first look the outlier screen uses)."""
    n, k = np.asarray(n, np.int64), np.asarray(k, np.int64)
    K, N = k[tested].sum(), n[tested].sum()
    idx = np.flatnonzero(tested & (N - n > 0))
    p, a, b = _beta_params(N - n[idx], K - k[idx], 0.0)
    log_up, log_down = _log_tails(k[idx], n[idx], a, b)
    sign = np.sign(k[idx] - n[idx] * p)
    z = np.full(len(n), np.nan)
    z[idx] = np.where(sign > 0, _z_from_log_p(log_up), np.where(sign < 0, -_z_from_log_p(log_down), 0.0))
    return z


def expected_band(n, rate: float, rho: float, n_ref: float, cl: float):
    """Central ``cl`` range of a unit's rate under the null, for units of n events: quantiles of the
    same predictive distribution the test uses, divided by n (for the plot band and the table)."""
    from scipy import special, stats  # noqa: F401  (imported when used: the CLI starts fast)
    n = np.asarray(n, np.float64)
    lo = np.full(len(n), np.nan)
    hi = np.full(len(n), np.nan)
    ok = np.flatnonzero(n > 0)
    if not ok.size or rate is None or not np.isfinite(rate) or n_ref <= 0:
        return lo, hi
    a, b = _beta_from(float(rate), float(n_ref), float(rho))
    nn = n[ok]
    mean = nn * a / (a + b)
    sd = np.sqrt(nn * a * b * (a + b + nn) / ((a + b) ** 2 * (a + b + 1)))
    width = int(np.ceil(20 * sd.max() + 20))
    steps = np.arange(width + 1, dtype=np.float64)
    qs = np.array([(1 - cl) / 2, 1 - (1 - cl) / 2])
    for sl in _chunks(len(ok), width):
        start = np.maximum(np.floor(mean[sl] - 10 * sd[sl]) - 5, 0)[:, None]
        j = start + steps
        m_ = nn[sl, None]
        pmf = np.where(j <= m_, stats.betabinom.pmf(np.minimum(j, m_), m_, a, b), 0.0)
        c = np.cumsum(pmf, axis=1)
        c /= c[:, -1:]
        idx = np.stack([(c < q).sum(axis=1) for q in qs], axis=1)  # first value with cdf >= q
        vals = np.take_along_axis(j, np.minimum(idx, width), axis=1) / m_
        lo[ok[sl]], hi[ok[sl]] = vals[:, 0], vals[:, 1]
    return lo, hi


# ---------------------------------------------------------------------------------------- change points

def _seg_cost(cn, ck, s, t):
    """−2 log L of units s..t−1 at their common MLE rate (vectorised over s)."""
    from scipy import special, stats  # noqa: F401  (imported when used: the CLI starts fast)
    N = cn[t] - cn[s]
    K = ck[t] - ck[s]
    with np.errstate(invalid="ignore", divide="ignore"):
        ll = special.xlogy(K, K / N) + special.xlogy(N - K, (N - K) / N)
    return -2.0 * np.where(N > 0, ll, 0.0)


def changepoints(n, k, penalty: float, min_size: int = 1, dispersion: float = 1.0) -> list[int]:
    """Optimal partition of the sequence (n_i, k_i) into segments of constant rate: minimises
    Σ −2 log L(segment) / dispersion + penalty × (number of change points), exactly (optimal
    partitioning with PELT pruning). Returns the start indices of the segments (0 first)."""
    n, k = np.asarray(n, np.float64), np.asarray(k, np.float64)
    m = len(n)
    if m == 0:
        return []
    min_size = max(1, int(min_size))
    cn, ck = np.r_[0.0, np.cumsum(n)], np.r_[0.0, np.cumsum(k)]
    F = np.full(m + 1, np.inf)
    F[0] = -penalty
    prev = np.zeros(m + 1, np.int64)
    R = np.array([0], np.int64)
    for t in range(min_size, m + 1):
        c = F[R] + _seg_cost(cn, ck, R, t) / dispersion
        j = int(np.argmin(c))
        F[t], prev[t] = c[j] + penalty, R[j]
        R = R[c <= F[t]]  # PELT: a start that cannot beat F[t] now never will
        nxt = t + 1 - min_size
        if nxt >= min_size and np.isfinite(F[nxt]):
            R = np.r_[R, nxt]
    starts, t = [], m
    while t > 0:
        t = int(prev[t])
        starts.append(t)
    return sorted(starts)


# ------------------------------------------------------------------------------------------- top level

def _add_stats(units: pd.DataFrame, s: dict) -> tuple[pd.DataFrame, dict]:
    n, k = units.events.to_numpy(), units.selected.to_numpy()
    res = homogeneity_test(n, k, alpha=s["alpha"], method=s["method"], alternative=s["alternative"],
                     min_events=s["min_events"], exclude_flagged=s["exclude_flagged"],
                     max_iterations=s["max_iterations"], outlier_screen=s["outlier_screen"])
    lo, hi = clopper_pearson(k, n, s["interval_cl"])
    ref = res["in_reference"]
    n_ref = float(n[ref].sum())
    b_lo, b_hi = expected_band(n, res["reference_rate"], res["rho"], n_ref, s["interval_cl"])
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    units = units.assign(rate=rate, rate_lo=lo, rate_hi=hi, expected=res["expected"], band_lo=b_lo,
                         band_hi=b_hi, pull=res["pull"], p_value=res["p_value"], p_global=res["p_global"],
                         tested=res["tested"], in_reference=res["in_reference"], flagged=res["flagged"])
    summary = {"units": len(units), "units_tested": res["units_tested"], "reference_rate": res["reference_rate"],
               "reference_events": int(n_ref), "reference_selected": int(k[ref].sum()), "rho": res["rho"],
               "iterations": res["iterations"], "flagged": int(res["flagged"].sum())}
    return units, summary


def segment_table(runs: pd.DataFrame, s: dict, rho: float = 0.0) -> pd.DataFrame:
    """Change-point segments of the per-run rate (runs ordered by number, runs without events left out)."""
    r = runs[runs.events > 0].sort_values("run").reset_index(drop=True)
    cols = ["segment", "first_run", "last_run", "runs", "events", "selected", "rate", "rate_lo", "rate_hi"]
    if r.empty:
        return pd.DataFrame(columns=cols)
    n, k = r.events.to_numpy(), r.selected.to_numpy()
    pen = s["changepoint_penalty"]
    pen = 2.0 * math.log(max(float(n.sum()), 2.0)) if pen == "bic" else float(pen)
    pen *= s["changepoint_scale"]
    # over-dispersed counts: quasi-likelihood (−2 log L divided by the mean dispersion factor)
    disp = float(np.average(1.0 + (n - 1) * rho, weights=n)) if rho > 0 else 1.0
    starts = changepoints(n, k, pen, s["changepoint_min_runs"], disp) + [len(r)]
    rows = []
    for i, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
        ev, sel = int(n[a:b].sum()), int(k[a:b].sum())
        lo, hi = clopper_pearson(sel, ev, s["interval_cl"])
        rows.append({"segment": i, "first_run": int(r.run.iloc[a]), "last_run": int(r.run.iloc[b - 1]),
                     "runs": b - a, "events": ev, "selected": sel, "rate": sel / ev,
                     "rate_lo": float(lo), "rate_hi": float(hi)})
    return pd.DataFrame(rows, columns=cols)


def run_period_check(per_ls: pd.DataFrame, conf: dict | None = None) -> dict:
    """The whole check on a per-(run, LS) count table; a JSON-able dict.

    Keys: settings, summary (global rate and interval, events, the per-table summaries), runs, ranges,
    periods (records), segments, change_points (first runs of the segments after the first), flagged
    (runs, LS ranges and periods with their pull, local and global p-values, rate and expected rate)."""
    s = settings(conf)
    counts = check_counts(per_ls)
    runs, run_sum = _add_stats(per_run(counts), s)
    ranges, range_sum = _add_stats(per_ls_range(counts, s["ls_block_size"]), s)
    periods_df = per_period(counts, s["periods"]) if s["periods"] else None
    period_sum = None
    if periods_df is not None:
        periods_df, period_sum = _add_stats(periods_df, s)
    seg = segment_table(runs, s, run_sum["rho"])
    runs = runs.assign(segment=np.searchsorted(seg.first_run.to_numpy(), runs.run.to_numpy(), side="right") - 1
                       if len(seg) else -1)
    N, K = int(counts.events.sum()), int(counts.selected.sum())
    glo, ghi = clopper_pearson(K, N, s["interval_cl"])
    in_period = np.zeros(len(runs), bool)
    for p in s["periods"]:
        in_period |= (runs.run >= p["first_run"]).to_numpy() & (runs.run <= p["last_run"]).to_numpy()
    flagged = []
    fields = ["events", "selected", "rate", "expected", "pull", "p_value", "p_global"]
    for _, r in runs[runs.flagged].iterrows():
        flagged.append({"unit": "run", "run": int(r.run), "first_ls": int(r.first_ls), "last_ls": int(r.last_ls),
                        **{f: r[f] for f in fields}})
    for _, r in ranges[ranges.flagged].iterrows():
        flagged.append({"unit": "ls_range", "run": int(r.run), "first_ls": int(r.first_ls),
                        "last_ls": int(r.last_ls), **{f: r[f] for f in fields}})
    if periods_df is not None:
        for _, r in periods_df[periods_df.flagged].iterrows():
            flagged.append({"unit": "period", "period": r.period, "first_run": int(r.first_run),
                            "last_run": int(r.last_run), **{f: r[f] for f in fields}})
    summary = {"events": N, "selected": K, "rate": K / N if N else None,
               "rate_lo": None if N == 0 else float(glo), "rate_hi": None if N == 0 else float(ghi),
               "runs": run_sum, "ranges": range_sum, "periods": period_sum,
               "runs_outside_periods": int((~in_period).sum()) if s["periods"] else None,
               "segments": len(seg)}
    return {"settings": s, "summary": jsonable(summary), "runs": records(runs), "ranges": records(ranges),
            "periods": records(periods_df) if periods_df is not None else [],
            "segments": records(seg), "change_points": [int(x) for x in seg.first_run.iloc[1:]],
            "flagged": records(pd.DataFrame(flagged)) if flagged else []}


# ------------------------------------------------------------------------------------------------- plot

def plot_rate_vs_run(check: dict, path: str | Path, *, title: str | None = None, max_labels: int = 40) -> Path:
    """ASTF vs run (runs in number order, one slot each): rates with their intervals, the expected
    rate with its 1σ and 2σ bands for each run's size, flagged runs in red, change-point segments and
    run periods. Writes a PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    path = Path(path)
    runs = pd.DataFrame(check["runs"])
    s = check["settings"]
    summ = check["summary"]["runs"]
    with plt.style.context(hep.style.CMS):
        fig, ax = plt.subplots(figsize=(max(8.0, min(16.0, 0.25 * len(runs) + 6)), 5.5))
        if runs.empty:
            ax.text(0.5, 0.5, "no runs", ha="center", transform=ax.transAxes)
        else:
            x = np.arange(len(runs))
            rate = runs.rate.astype(float).to_numpy()
            lo = runs.rate_lo.astype(float).to_numpy()
            hi = runs.rate_hi.astype(float).to_numpy()
            ref = summ.get("reference_rate")
            n = runs.events.to_numpy()
            if ref is not None:
                n_ref = summ["reference_events"]
                for cl, color in ((0.9545, "#ffdf7f"), (0.6827, "#85d1fb")):
                    blo, bhi = expected_band(n, ref, summ["rho"], n_ref, cl)
                    ax.fill_between(np.r_[x - 0.5, x[-1] + 0.5], np.r_[blo, blo[-1]], np.r_[bhi, bhi[-1]],
                                    step="post", color=color, lw=0, label=f"expected, {cl:.0%}")
                ax.axhline(ref, color="k", lw=1, ls="--", label=f"reference rate {ref:.2e}")
            flag = runs.flagged.astype(bool).to_numpy()
            yerr = np.vstack([np.nan_to_num(rate - lo), np.nan_to_num(hi - rate)])
            ax.errorbar(x[~flag], rate[~flag], yerr=yerr[:, ~flag], fmt="o", color="k", ms=4, label="run")
            if flag.any():
                ax.errorbar(x[flag], rate[flag], yerr=yerr[:, flag], fmt="s", color="crimson", ms=6,
                            label=f"flagged (p_global < {s['alpha']:g})")
            pos = {r: i for i, r in enumerate(runs.run)}
            for j, sg in enumerate(check.get("segments", [])):
                a, b = pos.get(sg["first_run"]), pos.get(sg["last_run"])
                if a is not None and b is not None:
                    ax.hlines(sg["rate"], a - 0.45, b + 0.45, color="tab:green", lw=2,
                              label="change-point segments" if j == 0 else None)
            for p in s.get("periods", []):
                inside = np.flatnonzero((runs.run >= p["first_run"]).to_numpy() & (runs.run <= p["last_run"]).to_numpy())
                if inside.size:
                    ax.axvline(inside[0] - 0.5, color="grey", lw=1, ls=":")
                    ax.text(inside[0] - 0.4, 0.97, p["name"], transform=ax.get_xaxis_transform(), fontsize=10,
                            va="top", color="grey")
            step = max(1, int(np.ceil(len(runs) / max_labels)))
            ax.set_xticks(x[::step])
            ax.set_xticklabels([str(r) for r in runs.run.to_numpy()[::step]], rotation=90, fontsize=9)
            ax.set_xlim(-0.7, len(runs) - 0.3)
            top = np.nanmax(np.r_[hi, rate]) if np.isfinite(np.r_[hi, rate]).any() else 1.0
            ax.set_ylim(0, top * 1.35 if top > 0 else 1.0)
            ax.minorticks_off()
        ax.set_xlabel("run", fontsize=16)
        ax.set_ylabel("anomalous fraction (ASTF)", fontsize=16)
        ax.legend(fontsize=10, ncol=3, loc="upper right")
        ax.set_title(title or f"{s['method']}, alpha {s['alpha']:g}", fontsize=12, loc="left")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=72)
        plt.close(fig)
    return path
