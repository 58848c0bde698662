"""Per-batch histograms of the scoring pass (analysis.aggregates.fill_feature), checked against
numpy.histogram of the same events; partials merged with + equal one fill of everything."""
import numpy as np
import pytest

from sparkad.analysis.aggregates import H_N_ALL, H_N_SEL, H_W2_ALL, H_W_ALL, H_W_SEL, fill_feature

EDGES = np.array([0.0, 1.0, 2.5, 4.0, 10.0])


def _events(seed, n=4000):
    rng = np.random.default_rng(seed)
    x = rng.normal(4, 4, n)
    x[:40] = EDGES[rng.integers(0, len(EDGES), 40)]  # values on the edges, the top edge included
    x[40:60] = np.nan
    return x, rng.random(n) * 2, rng.random(n) < 0.2


def _truth(x, w, sel):
    """rows H_* by numpy: in-range bins with numpy's closed last bin, flows and NaN counted by hand."""
    def row(mask, weights):
        v = x[mask]
        wt = weights[mask]
        fin = ~np.isnan(v)
        inside = np.histogram(v[fin], EDGES, weights=wt[fin])[0]
        under = wt[fin & (v < EDGES[0])].sum()
        over = wt[fin & (v > EDGES[-1])].sum()
        return np.r_[under, inside, over, wt[~fin].sum()]
    one = np.ones_like(w)
    return {H_N_ALL: row(np.ones_like(sel), one), H_N_SEL: row(sel, one), H_W_ALL: row(np.ones_like(sel), w),
            H_W2_ALL: row(np.ones_like(sel), w * w), H_W_SEL: row(sel, w)}


@pytest.mark.parametrize("weighted", [True, False])
def test_rows_equal_numpy_histogram(weighted):
    x, w, sel = _events(1)
    w = w if weighted else np.ones_like(w)
    rows = fill_feature(x, EDGES, w if weighted else None, sel).rows()
    for i, ref in _truth(x, w, sel).items():
        np.testing.assert_allclose(rows[i], ref, rtol=1e-12, atol=0, err_msg=f"row {i}")


def test_batches_merged_with_plus_equal_one_fill():
    x, w, sel = _events(2)
    whole = fill_feature(x, EDGES, w, sel)
    parts = [fill_feature(x[i:i + 900], EDGES, w[i:i + 900], sel[i:i + 900]) for i in range(0, len(x), 900)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged + p
    np.testing.assert_allclose(merged.rows(), whole.rows(), rtol=1e-12)
    np.testing.assert_array_equal(merged.entry_view(), whole.entry_view())
    # a unit-weight batch of a weighted sample keeps its entries
    mixed = fill_feature(x[:100], EDGES, None, sel[:100]) + fill_feature(x[100:], EDGES, w[100:], sel[100:])
    np.testing.assert_array_equal(mixed.rows()[H_N_ALL], fill_feature(x, EDGES, None, sel).rows()[H_N_ALL])


def test_uniform_binning_equals_numpy_histogram_off_the_edges():
    """Uniform edges use hist's Regular axis (arithmetic): away from the inner edges by more than a
    few ulp, which continuous values and integers on half-integer edges are, it agrees with numpy."""
    rng = np.random.default_rng(4)
    edges = np.linspace(-3, 3, 51)
    x = np.r_[rng.normal(size=5000), 3.0, -3.0, 7.0, -7.0]  # both outer edges and both flows
    w, sel = rng.random(len(x)), rng.random(len(x)) < 0.3
    rows = fill_feature(x, edges, w, sel).rows()
    np.testing.assert_allclose(rows[H_W_ALL, 1:-2], np.histogram(x, edges, weights=w)[0], rtol=1e-9)
    np.testing.assert_allclose(rows[H_W_SEL, 1:-2], np.histogram(x[sel], edges, weights=w[sel])[0], rtol=1e-9)
    assert rows[H_N_ALL, 0] == (x < -3).sum() and rows[H_N_ALL, -2] == (x > 3).sum()  # 3.0: in the last bin
    nj = rng.integers(0, 12, 3000).astype(float)
    ints = fill_feature(nj, np.arange(-0.5, 12), None, nj > 5).rows()
    np.testing.assert_array_equal(ints[H_N_ALL, 1:-2], np.bincount(nj.astype(int), minlength=12))
