"""ASTF tables, intervals, significance, PPS cuts and yields against values worked out independently."""
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from scipy.stats import binomtest, norm

from sparkad.analysis.intervals import binomial_interval
from sparkad.analysis.astf import ASTF_COLUMNS, BinCounts, Cut, CutError, astf_table, astf_tables, binning_edges, cuts_mask, parse_cuts, plot_astf, plot_astf_grid, plot_pps_yields, pps_closure, pps_yields_table, write_astf
from sparkad.core.config import conf_file
from sparkad.core.errors import ConfigError

EDGES = [0.0, 100.0, 200.0, 300.0, np.inf]


def exact_ci(k, n, cl=0.6827):
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=cl, method="exact")
    return ci.low, ci.high


def test_unweighted_clopper_pearson_matches_scipy():
    n_all, n_sel = [1000, 200, 40, 7], [3, 10, 40, 0]
    df = astf_table("HT", EDGES, BinCounts.unweighted(n_all, n_sel), None)
    assert list(df.columns) == list(ASTF_COLUMNS) and len(df) == 4
    for (_, r), n, k in zip(df.iterrows(), n_all, n_sel):
        lo, hi = exact_ci(k, n)
        assert r["data_astf"] == pytest.approx(k / n)
        assert r["data_lo"] == pytest.approx(lo, rel=1e-7, abs=1e-12)
        assert r["data_hi"] == pytest.approx(hi, rel=1e-7, abs=1e-12)
    assert df["data_lo"][2] < 1 and df["data_hi"][2] == 1.0  # astf = 1: one-sided
    assert df["data_lo"][3] == 0.0 and df["data_hi"][3] > 0  # astf = 0: one-sided
    assert df["bin_hi"].iloc[-1] == np.inf and df["mc_astf"].isna().all()
    assert df["masked"].tolist() == [False, False, False, True] and "data n<10" in df["mask_reason"][3]


def test_other_confidence_level_and_agresti_coull():
    lo, hi = binomial_interval(12, 80, cl=0.95)
    assert (lo, hi) == pytest.approx(exact_ci(12, 80, 0.95), rel=1e-7)
    z = norm.ppf(0.975)
    nt = 80 + z * z
    pt = (12 + z * z / 2) / nt
    lo, hi = binomial_interval(12, 80, method="agresti-coull", cl=0.95)
    assert lo == pytest.approx(pt - z * math.sqrt(pt * (1 - pt) / nt)) and hi == pytest.approx(pt + z * math.sqrt(pt * (1 - pt) / nt))
    with pytest.raises(ValueError, match="unknown interval method"):
        binomial_interval(1, 2, method="wald")


def test_equal_weights_equal_unweighted():
    n_all, n_sel = np.array([500, 120, 30, 15]), np.array([5, 12, 0, 15])
    w = 0.37
    weighted = BinCounts(n_all, n_sel, w * n_all, w * w * n_all, w * n_sel, w * w * n_sel)
    for method in ("clopper-pearson", "agresti-coull"):
        a = astf_table("MJ", EDGES, None, weighted, method=method)
        b = astf_table("MJ", EDGES, None, BinCounts.unweighted(n_all, n_sel), method=method)
        for c in ("mc_astf", "mc_lo", "mc_hi", "mc_n_eff"):
            np.testing.assert_allclose(a[c], b[c], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a["mc_n_eff"], n_all)
    np.testing.assert_allclose(a["mc_sumw_all"], w * n_all)


def test_weighted_astf_and_effective_entries_by_hand():
    # one bin: selected events weights [2, 2], unselected [1, 1, 1, 1, 4]
    ws, wu = np.array([2.0, 2.0]), np.array([1.0, 1.0, 1.0, 1.0, 4.0])
    c = BinCounts.from_values(np.full(7, 50.0), [0, 100], np.r_[np.ones(2, bool), np.zeros(5, bool)], np.r_[ws, wu])
    assert c.n_all.tolist() == [7] and c.n_sel.tolist() == [2]
    assert c.sumw_all[0] == 12 and c.sumw2_all[0] == 28 and c.sumw_sel[0] == 4 and c.sumw2_sel[0] == 8
    r = astf_table("x", [0, 100], None, c, min_entries=1).iloc[0]
    assert r["mc_astf"] == pytest.approx(4 / 12)
    assert r["mc_n_eff"] == pytest.approx(144 / 28)  # (Σw)²/Σw²
    # interval: binomial with n_int matching V = (W_u² Σw²_s + W_s² Σw²_u)/W⁴ = (64·8 + 16·20)/12⁴
    v = (8 ** 2 * 8 + 4 ** 2 * 20) / 12 ** 4
    n_int = (1 / 3) * (2 / 3) / v
    lo, hi = binomial_interval(n_int / 3, n_int)
    assert (r["mc_lo"], r["mc_hi"]) == pytest.approx((lo[()], hi[()]))
    # large weighted sample: the interval is ±sqrt(V)
    rng = np.random.default_rng(3)
    w = rng.choice([0.5, 3.0], 200_000)
    sel = rng.random(200_000) < np.where(w > 1, 0.02, 0.1)  # selection correlated with the weight
    c = BinCounts.from_values(np.zeros(len(w)), [-1, 1], sel, w)
    r = astf_table("x", [-1, 1], None, c).iloc[0]
    Ws, W = w[sel].sum(), w.sum()
    V = ((W - Ws) ** 2 * (w[sel] ** 2).sum() + Ws ** 2 * (w[~sel] ** 2).sum()) / W ** 4
    assert (r["mc_hi"] - r["mc_lo"]) / 2 == pytest.approx(math.sqrt(V), rel=0.01)


def test_masking_ratio_and_significance_sign():
    data = BinCounts.unweighted([1000, 1000, 5, 0, 1000], [10, 40, 1, 0, 10])
    mc = BinCounts.unweighted([1000, 1000, 1000, 1000, 1000], [10, 10, 10, 10, 0])
    df = astf_table("NJ", [-0.5, 0.5, 1.5, 2.5, 3.5, 4.5], data, mc)
    assert df["masked"].tolist() == [False, False, True, True, True]
    assert df["mask_reason"][2] == "data n<10" and df["mask_reason"][3] == "data empty"
    assert df["mask_reason"][4] == "mc selected weight 0" and np.isnan(df["ratio"][4])
    assert df["ratio"][0] == pytest.approx(1.0) and df["significance"][0] == 0.0
    assert df["ratio"][1] == pytest.approx(4.0) and df["significance"][1] > 3  # data excess: positive
    flipped = astf_table("NJ", [-0.5, 0.5, 1.5, 2.5, 3.5, 4.5], mc, data)
    assert flipped["significance"][1] < -3
    # hand computation for bin 1 from scipy's exact intervals: errors on the facing sides
    d_lo, _ = exact_ci(40, 1000)
    _, m_hi = exact_ci(10, 1000)
    one_sigma = norm.ppf(0.5 + 0.6827 / 2)  # the half-widths at cl = 0.6827 are 1.00004 σ
    z = one_sigma * (0.04 - 0.01) / math.sqrt((0.04 - d_lo) ** 2 + (m_hi - 0.01) ** 2)
    assert df["significance"][1] == pytest.approx(z, rel=1e-6)
    # ratio error: symmetric half-widths propagated
    d_lo, d_hi = exact_ci(40, 1000)
    m_lo, m_hi = exact_ci(10, 1000)
    sd, sm = (d_hi - d_lo) / 2 / one_sigma, (m_hi - m_lo) / 2 / one_sigma
    assert df["ratio_err"][1] == pytest.approx(math.sqrt((sd / 0.01) ** 2 + (0.04 * sm / 0.01 ** 2) ** 2), rel=1e-6)


def test_low_effective_entries_masks_weighted_mc():
    # 20 entries but one weight dominates: n_eff = (19 + 10)² / (19 + 100) ≈ 7.07 < 10
    w = np.r_[np.ones(19), 10.0]
    c = BinCounts.from_values(np.zeros(20), [-1, 1], np.r_[np.ones(5, bool), np.zeros(15, bool)], w)
    r = astf_table("x", [-1, 1], BinCounts.unweighted([50], [5]), c).iloc[0]
    assert r["mc_n_eff"] == pytest.approx(29 ** 2 / 119) and r["masked"] and "mc n_eff<10" in r["mask_reason"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="negative"):
        astf_table("x", [0, 1], None, BinCounts([3], [1], [1.0], [1.0], [-0.5], [0.25]))
    with pytest.raises(ValueError, match="n_sel exceeds n_all"):
        astf_table("x", [0, 1], BinCounts.unweighted([1], [2]), None)
    with pytest.raises(ValueError, match="2 bins, the edges define 1"):
        astf_table("x", [0, 1], BinCounts.unweighted([1, 1], [0, 0]), None)
    with pytest.raises(ValueError, match="strictly increasing"):
        astf_table("x", [1, 0], BinCounts.unweighted([1], [0]), None)


def _example_tables():
    rng = np.random.default_rng(7)
    inputs = {}
    for f, edges, lo, hi in (("HT", [0, 200, 400, 600, 800, 1000, np.inf], 0, 1400), ("MJ", list(range(0, 3001, 300)), 0, 3000),
                             ("NJ", np.arange(-0.5, 12), 0, 12), ("NB", np.arange(-0.5, 6), 0, 6)):
        x_mc = rng.uniform(lo, hi, 40_000)
        w = rng.choice([0.2, 1.3], len(x_mc))
        s_mc = rng.random(len(x_mc)) < 1e-3 * (1 + 20 * x_mc / hi)
        x_d = rng.uniform(lo, hi, 20_000)
        s_d = rng.random(len(x_d)) < 1e-3 * (1 + 80 * (x_d / hi) ** 2)
        if f in ("NJ", "NB"):
            x_mc, x_d = np.floor(x_mc), np.floor(x_d)
        inputs[f] = (edges, BinCounts.from_values(x_d, edges, s_d), BinCounts.from_values(x_mc, edges, s_mc, w))
    return astf_tables(inputs)


def test_tables_writers_and_plots(tmp_path):
    df = _example_tables()
    assert df["feature"].unique().tolist() == ["HT", "MJ", "NJ", "NB"] and list(df.columns) == list(ASTF_COLUMNS)
    paths = write_astf(df, tmp_path)
    back = pd.read_csv(paths["csv"])
    assert len(back) == len(df) and list(back.columns) == list(ASTF_COLUMNS)
    np.testing.assert_allclose(back["mc_astf"], df["mc_astf"])
    table = pq.read_table(paths["parquet"])
    assert b"sparkad" in table.schema.metadata and b"clopper-pearson" in table.schema.metadata[b"sparkad"]
    pd.testing.assert_frame_equal(table.to_pandas(), df, check_like=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    one = plot_astf(df, "HT", tmp_path / "astf_HT.png", lumi_text="4.4 fb$^{-1}$ (8 TeV)")
    grid = plot_astf_grid(df, ["HT", "MJ", "NJ", "NB"], tmp_path / "astf_grid.png", lumi_text="4.4 fb$^{-1}$ (8 TeV)")
    for p in (one, grid):
        b = p.read_bytes()
        assert b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) > 10_000
    masked = astf_table("NJ", [-0.5, 0.5, 1.5, 2.5, 3.5, 4.5], BinCounts.unweighted([1000, 1000, 5, 0, 1000], [10, 40, 1, 0, 10]),
                        BinCounts.unweighted([1000] * 5, [10, 10, 10, 10, 0]))
    assert masked["masked"].sum() == 3
    b = plot_astf(masked, "NJ", tmp_path / "masked.png").read_bytes()  # grey bins, no ratio there
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) > 10_000
    with pytest.raises(ValueError, match="not in the ASTF table"):
        plot_astf(df, "MET", tmp_path / "x.png")


def test_parse_cuts_and_mask():
    cuts = parse_cuts(["NJ >= 6", "NB>=2", " MET < 1e3 ", "lep_charge != -1", "n_mu == 0", "HT > .5"])
    assert cuts[0] == Cut("NJ", ">=", 6.0) and cuts[2] == Cut("MET", "<", 1000.0) and cuts[3].value == -1
    assert str(cuts[0]) == "NJ >= 6" and parse_cuts("NB > 1") == [Cut("NB", ">", 1.0)] and parse_cuts(None) == []
    for bad in ["NJ => 6", "NJ >= six", "__import__('os') > 1", "NJ >= 6 and NB >= 2", "6 <= NJ", "NJ >= nan",
                "NJ >= inf", "NJ", ""]:
        with pytest.raises(CutError, match="bad cut") as e:
            parse_cuts(["NB >= 2", bad])
        assert repr(bad) in str(e.value)
    assert issubclass(CutError, ValueError)
    cols = {"NJ": np.array([6, 5, 7, 8, np.nan]), "NB": np.array([2, 3, 1, 2, 2])}
    assert cuts_mask(["NJ >= 6", "NB >= 2"], cols).tolist() == [True, False, False, True, False]
    assert cuts_mask(["NJ != 5"], cols).tolist() == [True, False, True, True, False]  # NaN fails every cut
    assert cuts_mask([], cols).all()
    with pytest.raises(CutError, match="no column 'MET'"):
        cuts_mask(["MET > 10"], cols)


YIELDS = {
    "singlemu_B": {"label": "data", "is_data": True, "n": 60, "sumw": 60.0, "sumw2": 60.0},
    "singlemu_C": {"label": "data", "is_data": True, "n": 40, "sumw": 40.0, "sumw2": 40.0},
    "wjets": {"label": "W+jets", "is_data": False, "n": 30, "sumw": 12.0, "sumw2": 9.0},
    "dy": {"label": "Z+jets", "is_data": False, "n": 10, "sumw": 4.0, "sumw2": 7.0},
    "ttbar": {"label": "ttbar", "is_data": False, "n": 500, "sumw": 84.0, "sumw2": 20.0},
}


def test_pps_yields_table_and_closure(tmp_path):
    t = pps_yields_table(YIELDS)
    assert t["row"].tolist() == ["data", "ttbar", "W+jets", "Z+jets", "MC total", "data/MC"]
    assert t["kind"].tolist() == ["data", "mc", "mc", "mc", "mc_total", "ratio"]
    row = t.set_index("row")
    assert row.loc["data", "yield"] == 100 and row.loc["data", "error"] == pytest.approx(10.0) and row.loc["data", "n"] == 100
    assert row.loc["MC total", "yield"] == pytest.approx(100.0) and row.loc["MC total", "error"] == pytest.approx(6.0)
    assert row.loc["MC total", "n"] == 540 and row.loc["ttbar", "fraction"] == pytest.approx(0.84)
    assert row.loc["data/MC", "yield"] == pytest.approx(1.0)
    assert row.loc["data/MC", "error"] == pytest.approx(math.sqrt(0.1 ** 2 + 0.06 ** 2))
    c = pps_closure(YIELDS, "ttbar").set_index("comparison")
    assert c.loc["data vs background", "expected"] == pytest.approx(16.0)
    assert c.loc["data vs background", "pull"] == pytest.approx((100 - 16) / math.sqrt(100 + 16))
    assert c.loc["data vs background + ttbar", "pull"] == pytest.approx(0.0)
    assert c.loc["data vs background + ttbar", "expected_err"] == pytest.approx(6.0)
    with pytest.raises(ValueError, match="no MC process named top"):
        pps_closure(YIELDS, "top")
    with pytest.raises(ValueError, match="missing sumw2"):
        pps_yields_table({"x": {"label": "x", "is_data": True, "n": 1, "sumw": 1.0}})
    b = plot_pps_yields(t, tmp_path / "pps.png", lumi_text="4.4 fb$^{-1}$ (8 TeV)").read_bytes()
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) > 5_000


def test_analysis_conf_bins_every_feature():
    conf = yaml.safe_load(conf_file("analysis.yaml").read_text())
    assert set(conf) == {"astf", "postselection", "histograms", "run_shapes", "dijet"}
    features = yaml.safe_load(conf_file("features.yaml").read_text())
    wanted = set(features["alad24"]) | set(features["vae21"]) | set(features["cms2012"])
    assert wanted <= set(conf["histograms"]) and set(features["dijet"]) <= set(conf["histograms"])
    # the dijet analysis's own defaults name dijet features only
    dj = conf["dijet"]
    assert set(dj) <= {"astf", "postselection", "run_shapes"}
    assert set(dj["astf"]["features_for_grid"]) | set(dj["run_shapes"]["features"]) <= set(features["dijet"])
    assert {c.feature for c in parse_cuts(dj["postselection"]["cuts"])} <= set(features["dijet"])
    for f, spec in conf["histograms"].items():
        e = binning_edges(spec, f"histograms.{f}")
        assert len(e) >= 3 and np.all(np.diff(e) > 0)
    assert set(conf["astf"]["features_for_grid"]) <= set(conf["histograms"])
    assert {c.feature for c in parse_cuts(conf["postselection"]["cuts"])} <= wanted
    assert binning_edges({"edges": [0, 1, 5]}).tolist() == [0, 1, 5]
    with pytest.raises(ConfigError, match="bins, lo, hi"):
        binning_edges({"bins": 3, "lo": 0})
