"""Per-run distribution checks (analysis/run_shapes.py): counts against numpy, a jet-energy-scale-like
shift in a few runs found with the moved feature named, no alarm on homogeneous runs."""
import numpy as np

from sparkad.analysis.run_shapes import count_by_run, ks_binned, merge_run_counts, run_shape_check

EDGES = np.linspace(0, 2000, 41)


def test_counts_per_run_equal_numpy_and_merge():
    rng = np.random.default_rng(1)
    run = rng.integers(1, 6, 5000)
    x = rng.exponential(300, 5000)
    x[:10] = np.nan
    x[10:20] = 2000.0  # the upper edge: last bin
    got = count_by_run(run, x, EDGES)
    for r in range(1, 6):
        v = x[run == r]
        fin = v[~np.isnan(v)]
        ref = np.r_[(fin < 0).sum(), np.histogram(fin, EDGES)[0], (fin > 2000).sum(), np.isnan(v).sum()]
        np.testing.assert_array_equal(got[r], ref)
    halves = merge_run_counts(count_by_run(run[:2500], x[:2500], EDGES), count_by_run(run[2500:], x[2500:], EDGES))
    assert halves.keys() == got.keys() and all((halves[r] == got[r]).all() for r in got)


def _runs(seed, n_runs=40, events=3000, shifted=(), scale=1.10):
    rng = np.random.default_rng(seed)
    counts = {"HT": {}, "NJ": {}}
    for r in range(n_runs):
        ht = rng.exponential(250, events) + 100
        nj = rng.poisson(3, events).astype(float)
        if r in shifted:
            ht = ht * scale  # jet energy scale +10 %: every jet, so HT
        counts["HT"][r] = count_by_run(np.full(events, r), ht, EDGES)[r]
        counts["NJ"][r] = count_by_run(np.full(events, r), nj, np.arange(-0.5, 16))[r]
    return counts


def test_a_jes_shift_in_three_runs_is_found_and_named():
    res = run_shape_check(_runs(7, shifted=(5, 17, 31)), alpha=0.01)
    assert res["flagged_runs"] == [5, 17, 31]
    assert {t["feature"] for t in res["flagged"]} == {"HT"}
    moved = {m["run"]: m["feature"] for m in res["most_moved"]}
    assert all(moved[r] == "HT" for r in (5, 17, 31))
    assert res["tests"] == 80


def test_no_alarm_on_homogeneous_runs():
    for seed in (1, 2, 3, 4, 5):
        assert run_shape_check(_runs(seed), alpha=0.01)["flagged_runs"] == [], seed


def test_ks_binned_equals_the_unbinned_statistic_on_fine_bins():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 800), rng.normal(0.2, 1, 1500)
    edges = np.unique(np.r_[a, b]) + 1e-12  # one value per bin: the binned CDF is the empirical one
    h = np.histogram(a, np.r_[-np.inf, edges])[0]
    ref = np.histogram(b, np.r_[-np.inf, edges])[0]
    d, p, _ = ks_binned(h, ref)
    exact = ks_2samp(a, b, method="asymp")
    assert abs(d - exact.statistic) < 1e-12 and abs(p - exact.pvalue) < 0.02
