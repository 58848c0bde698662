"""The mjj-dependent threshold (quantile regression) and the bump hunt on toy spectra with known truth."""
from __future__ import annotations

import numpy as np
import pytest

from sparkad.analysis.bump_hunt import dijet_function, expected_counts, fit_dijet, sliding_window
from sparkad.analysis.quantile_threshold import QuantileThreshold, efficiency_flatness, fit_quantile_threshold

SQRT_S = 13000.0
EDGES = np.linspace(1500.0, 5000.0, 36)
TRUE_P = [2e-3, 10.0, 5.0, 0.1]


def toy_background(n, rng):
    """mjj from a falling spectrum; a score whose scale grows with mjj (a sculpting fixed cut)."""
    mjj = 1500.0 + rng.exponential(500.0, n)
    score = rng.exponential(1.0 + mjj / 1500.0)
    return mjj, score


def test_quantile_threshold_recovers_the_true_quantile_and_keeps_the_efficiency_flat():
    rng = np.random.default_rng(1)
    mjj, score = toy_background(40_000, rng)
    q = 0.05
    lt = fit_quantile_threshold(mjj, score, q, degree=2, max_events=8000)
    grid = np.linspace(1600, 2800, 20)  # where the toy has thousands of events per 100 GeV
    truth = -(1.0 + grid / 1500.0) * np.log(q)  # exponential: P(score > L) = q at L = -scale ln q
    np.testing.assert_allclose(lt(grid), truth, rtol=0.08)
    edges = np.linspace(1500, 4000, 11)
    flat = efficiency_flatness(mjj, lt.selects(mjj, score), edges)
    assert flat["mean"] == pytest.approx(q, abs=0.006) and flat["p_value"] > 1e-3
    # the same fraction with one fixed cut sculpts the spectrum: its efficiency rises with mjj
    fixed = score > np.quantile(score, 1 - q)
    sculpted = efficiency_flatness(mjj, fixed, edges)
    assert sculpted["p_value"] < 1e-10 and sculpted["efficiency"][-1] > 3 * sculpted["efficiency"][0]
    # stored and read back unchanged
    assert QuantileThreshold.from_dict(lt.to_dict())(grid) == pytest.approx(lt(grid))
    assert lt(1e5) == pytest.approx(lt(lt.hi))  # held at the edge of the fitted range


def test_quantile_threshold_refuses_bad_requests():
    rng = np.random.default_rng(0)
    mjj, score = toy_background(100, rng)
    with pytest.raises(ValueError, match="efficiency"):
        fit_quantile_threshold(mjj, score, 1.5)
    with pytest.raises(ValueError, match="too few"):
        fit_quantile_threshold(mjj[:5], score[:5], 0.1)


def test_weighted_efficiency_uses_the_weights():
    mjj = np.array([1600.0, 1600.0, 2600.0, 2600.0])
    sel = np.array([True, False, True, False])
    f = efficiency_flatness(mjj, sel, [1500, 2000, 3000], weights=[3.0, 1.0, 1.0, 1.0])
    assert f["efficiency"] == pytest.approx([0.75, 0.5]) and f["mean"] == pytest.approx(4 / 6)


def test_dijet_fit_recovers_a_background_only_spectrum():
    rng = np.random.default_rng(5)
    mu = expected_counts(EDGES, TRUE_P, SQRT_S)
    counts = rng.poisson(mu)
    fit = fit_dijet(EDGES, counts, SQRT_S)
    assert fit["converged"] and fit["deviance"] / fit["ndf"] < 2.0
    assert np.all(np.abs(fit["expected"] - mu) <= (0.05 + 3 / np.sqrt(mu)) * mu)  # within the statistical error
    # the function and its bin integral agree with a fine midpoint sum
    x = np.linspace(EDGES[3], EDGES[4], 4001)
    assert expected_counts(EDGES[3:5], TRUE_P, SQRT_S)[0] == pytest.approx(
        np.trapezoid(dijet_function(x / SQRT_S, TRUE_P), x), rel=1e-6)


def test_bump_hunt_finds_an_injected_resonance_and_not_a_fluctuation():
    rng = np.random.default_rng(7)
    mu = expected_counts(EDGES, TRUE_P, SQRT_S)
    background = rng.poisson(mu).astype(float)
    quiet = sliding_window(EDGES, background, SQRT_S, n_toys=60, seed=1)
    assert quiet["z_global"] < 2.5
    signal = np.histogram(rng.normal(3000.0, 120.0, 500), EDGES)[0]
    loud = sliding_window(EDGES, background + signal, SQRT_S, n_toys=60, seed=1)
    assert loud["window"][0] <= 3000.0 <= loud["window"][1]
    assert loud["z_local"] > 5 and loud["z_local"] > quiet["z_local"] + 3
    assert loud["p_global"] == pytest.approx(1 / 61)  # no toy as extreme: bounded by the number of toys
    with pytest.raises(ValueError, match="inside"):
        fit_dijet(np.array([1000.0, 14000.0]), np.array([5]), SQRT_S)


def test_sideband_fit_interpolates_into_the_signal_region():
    """region_excess: the fit sees only the bins outside the region; an injected resonance there stands out
    against the interpolation, a background-only spectrum does not."""
    from sparkad.analysis.bump_hunt import region_excess

    rng = np.random.default_rng(11)
    mu = expected_counts(EDGES, TRUE_P, SQRT_S)
    background = rng.poisson(mu).astype(float)
    region = (2800.0, 3200.0)
    quiet = region_excess(EDGES, background, SQRT_S, region)
    inside = (0.5 * (EDGES[:-1] + EDGES[1:]) >= region[0]) & (0.5 * (EDGES[:-1] + EDGES[1:]) < region[1])
    assert quiet["n_observed"] == background[inside].sum() and quiet["z_local"] < 3
    assert quiet["n_expected"] == pytest.approx(mu[inside].sum(), abs=3 * np.sqrt(mu[inside].sum()))  # within its error
    signal = np.histogram(rng.normal(3000.0, 80.0, 400), EDGES)[0]
    loud = region_excess(EDGES, background + signal, SQRT_S, region)
    # the signal bins are outside the fit: the interpolation is the background-only one's, the excess the signal
    assert loud["n_expected"] == pytest.approx(quiet["n_expected"], rel=0.05)
    assert loud["n_observed"] - loud["n_expected"] == pytest.approx(signal[inside].sum(), abs=5 * np.sqrt(mu[inside].sum()))
    assert loud["z_local"] > 5
    with pytest.raises(ValueError, match="no mjj bin centre"):
        region_excess(EDGES, background, SQRT_S, (9000.0, 9100.0))
