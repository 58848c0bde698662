"""Analysis products of the scoring pass: Spark and Dask aggregates equal an in-memory reference;
exact thresholds (ties, the 1e-5 tail, weights); products on disk consistent with the scores."""
import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from sparkad.analysis.aggregates import H_N_ALL, H_N_SEL, H_W_ALL, H_W_SEL, merge, read_aggregates
from sparkad.analysis.products import read_hists_json
from sparkad.score.run import run_analysis
from sparkad.analysis.astf import BinCounts
from sparkad.core.errors import SparkadError
from sparkad.model.directory import Scorer
from sparkad.score.engines import cut_top, exact_threshold

KEYS = ["dataset", "run", "luminosityBlock", "event"]


@pytest.fixture(scope="module")
def hlf_scored(generated_hlf, trained_ae):
    hlf = pd.read_parquet(generated_hlf)
    hlf["dataset"] = hlf["dataset"].astype(str)
    hlf["mse"] = Scorer(trained_ae).score_frame(hlf)["mse"].astype(np.float32)
    return hlf


@pytest.fixture(scope="module")
def both_engines(spark, generated_hlf, trained_ae, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    kw = dict(fraction=0.02, select_on="data", background=["wjets", "dyjets"], batch_rows=997, target_rows=3000)
    rs = run_analysis(generated_hlf, trained_ae, out / "spark", engine="spark", spark=spark, **kw)
    rd = run_analysis(generated_hlf, trained_ae, out / "dask", engine="dask", workers=2, **kw)
    return out, rs, rd


def _agg(path):
    part, edges, _ = read_aggregates(path / "products" / "aggregates.npz")
    return {"partial": part, "edges": edges}


def test_engines_give_identical_aggregates_equal_to_reference(both_engines, hlf_scored):
    out, rs, rd = both_engines
    a, b = _agg(out / "spark"), _agg(out / "dask")
    assert rs["anomaly_threshold"]["threshold"] == rd["anomaly_threshold"]["threshold"]
    assert a["partial"].hists.keys() == b["partial"].hists.keys()
    for k in a["partial"].hists:  # bit-identical: partials merged in fragment order on both engines
        np.testing.assert_array_equal(a["partial"].hists[k].rows(), b["partial"].hists[k].rows())
    for ds in a["partial"].per_ls:
        np.testing.assert_array_equal(a["partial"].per_ls[ds], b["partial"].per_ls[ds])
    # an independent in-memory reference (numpy histograms of the whole table)
    edges, part = a["edges"], a["partial"]
    t = rs["anomaly_threshold"]["threshold"]
    for ds in ("data", "ttbar"):
        d = hlf_scored[hlf_scored.dataset == ds]
        sel = d.mse.to_numpy() > t
        for f in ("HT", "NJ", "lep_pt", "MET"):
            ref = BinCounts.from_values(d[f].to_numpy(), edges[f], sel, d.weight.to_numpy(), flow=False)
            rows = part.hists[(ds, f)].rows()[:, 1:-2]  # in-range bins
            np.testing.assert_array_equal(rows[H_N_ALL], ref.n_all)
            np.testing.assert_array_equal(rows[H_N_SEL], ref.n_sel)
            np.testing.assert_allclose(rows[H_W_ALL], ref.sumw_all, rtol=1e-12)
            np.testing.assert_allclose(rows[H_W_SEL], ref.sumw_sel, rtol=1e-12)
        tot = part.totals[ds]
        assert tot["all"][0] == len(d) and tot["selected"][0] == sel.sum()
        pps = (d.NJ >= 6) & (d.NB >= 2)
        assert tot["pps"][0] == pps.sum() and tot["pps_anomalous"][0] == (pps & sel).sum()
    data = hlf_scored[hlf_scored.dataset == "data"]
    per_ls = pd.read_parquet(out / "spark" / "products" / "per_ls.parquet")
    ref = data.assign(sel=data.mse > t).groupby(["run", "luminosityBlock"]).agg(events=("sel", "size"), selected=("sel", "sum"))
    got = per_ls.set_index(["run", "luminosityBlock"])
    np.testing.assert_array_equal(got.events.to_numpy(), ref.events.to_numpy())
    np.testing.assert_array_equal(got.selected.to_numpy(), ref.selected.to_numpy())


def test_fraction_threshold_is_exact_on_the_data(both_engines, hlf_scored):
    out, rs, _ = both_engines
    data = hlf_scored[hlf_scored.dataset == "data"].mse.to_numpy()
    k = int(np.floor(0.02 * len(data)))
    t = rs["anomaly_threshold"]["threshold"]
    assert t == np.sort(data)[::-1][k]  # the (k+1)-th largest score
    assert (data > t).sum() == rs["anomaly_threshold"]["selected_events"] == rs["summary"]["datasets"]["data"]["anomalous"]
    scores = pd.read_parquet(out / "spark" / "scores")
    assert ((scores.label == "data") & (scores.mse > t)).sum() == (data > t).sum()


def test_products_on_disk(both_engines):
    import uproot
    out, rs, _ = both_engines
    p = out / "spark" / "products"
    for f in ("astf.csv", "astf.parquet", "histograms.root", "histograms.json", "aggregates.npz", "pps_yields.csv", "summary.json",
              "plots/astf_grid.png", "plots/scores.png", "plots/data_before_after.png", "plots/anomalous_by_process.png"):
        assert (p / f).is_file() and (p / f).stat().st_size > 0, f
    astf = pd.read_csv(p / "astf.csv")
    summ = json.loads((p / "summary.json").read_text())
    nj = astf[astf.feature == "NJ"]
    assert nj.data_n_sel.sum() == summ["datasets"]["data"]["anomalous"]  # flows folded in: all events counted
    with uproot.open(p / "histograms.root") as f:
        h = f["data/NJ_anomalous"].to_hist()
        assert h.sum(flow=True).value == summ["datasets"]["data"]["anomalous"]
    hists = read_hists_json(p / "histograms.json")
    with uproot.open(p / "histograms.root") as f:  # the portable JSON and the ROOT file hold the same counts
        np.testing.assert_array_equal(f["data/NJ_anomalous"].to_hist().values(flow=True),
                                      hists[("data", "NJ", "anomalous")].values(flow=True))
    assert not list(p.rglob("*.pkl"))  # no pickle among the outputs
    assert hists[("background", "HT", "all")].sum(flow=True).value == pytest.approx(
        summ["datasets"]["wjets"]["sumw"] + summ["datasets"]["dyjets"]["sumw"])
    rep = json.loads((out / "spark" / "_score_report.json").read_text())
    assert rep["complete"] and rep["roles"]["ttbar"] == "other" and rep["roles"]["data"] == "data"
    assert not list((out / "spark").glob(".products-*")) and not list((out / "spark").glob(".scores-*"))


def test_exact_threshold_constructed():
    rng = np.random.default_rng(3)
    s = rng.normal(size=1_000_000).astype(np.float32)
    w = np.ones(len(s))
    r = exact_threshold(s, w, 1e-5, len(s))  # the 1e-5 tail: exactly 10 events above
    assert r["selected_events"] == 10 and (s > r["threshold"]).sum() == 10
    # ties at the boundary: never more than the fraction, and the largest such selection
    t = np.array([5, 4, 3, 3, 3, 2, 1, 0, 0, 0], np.float32)
    r = exact_threshold(t, np.ones(10), 0.3, 10)
    assert r["threshold"] == 3 and (t > 3).sum() == 2
    r = exact_threshold(t, np.ones(10), 0.5, 10)
    assert r["threshold"] == 2 and (t > 2).sum() == 5
    # weights: a heavy event counts for its weight
    r = exact_threshold(np.array([9.0, 8, 7, 6]), np.array([1.0, 5, 1, 1]), 0.2, 8)
    assert r["threshold"] == 8 and r["selected_weight"] == 1.0
    # partition-wise candidates merged = the exact global answer
    parts = np.array_split(np.arange(len(s)), 7)
    cands = [cut_top(s[i], w[i], 1e-5 * len(s)) for i in parts]
    m = exact_threshold(np.concatenate([c[0] for c in cands]), np.concatenate([c[1] for c in cands]), 1e-5, len(s))
    assert m["threshold"] == np.sort(s)[::-1][10]
    with pytest.raises(SparkadError, match="keeps the whole"):  # total weight larger than the sample's
        exact_threshold(s[:10], w[:10], 0.5, 100)


def test_merge_is_associative(both_engines):
    out, _, _ = both_engines
    part = _agg(out / "spark")["partial"]
    assert merge(None, part) is part
    twice = merge(part, part)
    for k, v in part.hists.items():
        np.testing.assert_array_equal(twice.hists[k].rows(), 2 * v.rows())


def test_bad_selection_inputs_give_one_line(generated_hlf, trained_ae, tmp_path):
    with pytest.raises(SparkadError, match="no score 'l9'"):
        run_analysis(generated_hlf, trained_ae, tmp_path / "o", engine="dask", score="l9")
    with pytest.raises(SparkadError, match="no stored threshold at 7ppm"):
        run_analysis(generated_hlf, trained_ae, tmp_path / "o", engine="dask", ppm=7)
    with pytest.raises(SparkadError, match="not in the HLF folder"):
        run_analysis(generated_hlf, trained_ae, tmp_path / "o", engine="dask", background=["nope"])
    with pytest.raises(SparkadError, match="--threshold must be a finite number"):
        run_analysis(generated_hlf, trained_ae, tmp_path / "o", engine="dask", threshold=float("nan"))
    with pytest.raises(SparkadError, match="--batch-rows must be a positive integer"):
        run_analysis(generated_hlf, trained_ae, tmp_path / "o", engine="dask", batch_rows=0)
    # ASTF settings are used after the scoring pass: checked before it
    for text, msg in (("astf: {cl: 2}\n", "astf.cl is a confidence level"),
                      ("astf: {metod: x}\n", "astf: unknown key"),
                      ("astf: {features_for_grid: [FOO]}\n", "FOO not HLF feature")):
        (tmp_path / "a.yaml").write_text(text)
        with pytest.raises(SparkadError, match=msg):
            run_analysis(generated_hlf, trained_ae, tmp_path / "o", engine="dask", analysis_config=tmp_path / "a.yaml")
        assert not (tmp_path / "o" / "scores").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("postselection: {cuts: ['NJ >= six']}\n")
    r = subprocess.run(["sparkad", "score", "--hlf", str(generated_hlf), "--model", str(trained_ae), "--out",
                        str(tmp_path / "o"), "--engine", "dask", "--analysis-config", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "bad cut" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "_score_report.json").exists()


def test_fraction_threshold_on_weighted_mc(generated_hlf, trained_ae, hlf_scored, tmp_path):
    rep = run_analysis(generated_hlf, trained_ae, tmp_path / "o", engine="dask", fraction=0.01, select_on="mc",
                       background=["wjets", "dyjets"], products=False)
    bkg = hlf_scored[hlf_scored.dataset.isin(["wjets", "dyjets"])].sort_values("mse", ascending=False)
    t, total = rep["anomaly_threshold"]["threshold"], bkg.weight.sum()
    above = bkg.weight[bkg.mse > t].sum()
    assert above <= 0.01 * total < above + bkg.weight[bkg.mse == t].sum()  # the largest selection within 1 %
    assert rep["anomaly_threshold"]["selected_weight"] == pytest.approx(above)
    assert not (tmp_path / "o" / "products").exists()


def test_every_score_is_compared_at_its_own_threshold(both_engines, generated_hlf, trained_ae):
    """products/summary.json score_comparison: per score (the model's and the classic baselines') and
    dataset, the events above that score's 1000 ppm threshold, recomputed here from the Scorer."""
    out, _, _ = both_engines
    comp = json.loads((out / "spark" / "products" / "summary.json").read_text())["score_comparison"]
    sc = Scorer(trained_ae)
    assert list(comp) == sc.score_names and sc.baseline_scores == ["mahalanobis", "pca", "iforest"]
    assert {n: v["kind"] for n, v in comp.items()} == {"mse": "model", "mahalanobis": "baseline", "pca": "baseline",
                                                       "iforest": "baseline"}
    hlf = pd.read_parquet(generated_hlf)
    hlf["dataset"] = hlf["dataset"].astype(str)
    scores = sc.score_frame(hlf)
    for name, v in comp.items():
        thr = sc.threshold(name, 1000)
        assert v["threshold"] == thr
        for ds, d in v["datasets"].items():
            m = (hlf.dataset == ds).to_numpy()
            assert d["events"] == int((scores[name][m] > thr).sum()), (name, ds)


def test_run_distributions_are_counted_per_run_and_checked(both_engines, hlf_scored):
    """The pass keeps each data run's histogram of the run_shapes features and of the anomaly score;
    the counts equal a groupby of the same events, and run_shapes.json holds the check of every run."""
    from sparkad.analysis.run_shapes import count_by_run

    out, rs, _ = both_engines
    part, edges = _agg(out / "spark")["partial"], _agg(out / "spark")["edges"]
    data = hlf_scored[hlf_scored.dataset == "data"]
    assert ("data", "HT") in part.run_counts and ("data", "mse") in part.run_counts
    ref = count_by_run(data.run.to_numpy(), data.HT.to_numpy(), edges["HT"])
    got = part.run_counts[("data", "HT")]
    assert got.keys() == ref.keys() and all((got[r] == ref[r]).all() for r in ref)
    assert sum(c.sum() for c in got.values()) == len(data)
    shapes = json.loads((out / "spark" / "products" / "run_shapes.json").read_text())
    n_runs = sum(1 for c in got.values() if c[:-1].sum() >= 100)
    assert shapes["tests"] >= n_runs and {m["run"] for m in shapes["most_moved"]} <= set(got)
    summary = json.loads((out / "spark" / "products" / "summary.json").read_text())
    assert summary["run_shapes"]["tests"] == shapes["tests"]


def test_scores_computes_only_what_is_asked(generated_hlf, trained_alad, tmp_path):
    """--scores: the default keeps the headline score, the selection score and the baselines; a list
    adds the selection score; 'all' keeps every score. The stored scores are the bits of the full
    model's, and the selection (hence every product) does not depend on what else was computed."""
    full = Scorer(trained_alad)
    assert full.score_names == ["l1", "l2", "features", "logits", "mahalanobis", "pca", "iforest"]
    kw = dict(engine="dask", workers=2, fraction=0.02, target_rows=4000)
    reps = {name: run_analysis(generated_hlf, trained_alad, tmp_path / name, scores=given, score="logits", **kw)
            for name, given in (("default", None), ("l2", "l2"), ("all", "all"))}
    assert reps["default"]["scores"] == ["l1", "logits", "mahalanobis", "pca", "iforest"]
    assert reps["l2"]["scores"] == ["l2", "logits"]
    assert reps["all"]["scores"] == full.score_names == reps["all"]["model_scores"]
    cols = {n: pd.read_parquet(tmp_path / n / "scores").sort_values(KEYS[1:]).reset_index(drop=True) for n in reps}
    for n, rep in reps.items():
        assert [c for c in cols[n].columns if c in full.score_names] == rep["scores"]
        for s in rep["scores"]:
            np.testing.assert_array_equal(cols[n][s].to_numpy(), cols["all"][s].to_numpy())
        assert rep["anomaly_threshold"]["threshold"] == reps["all"]["anomaly_threshold"]["threshold"]
        summary = json.loads((tmp_path / n / "products" / "summary.json").read_text())
        assert {d: v["anomalous"] for d, v in summary["datasets"].items()} == \
            {d: v["anomalous"] for d, v in json.loads((tmp_path / "all" / "products" / "summary.json")
                                                      .read_text())["datasets"].items()}
        assert list(summary["score_comparison"]) == rep["scores"]
    with pytest.raises(SparkadError, match=r"--scores: model .* has no score\(s\) l9"):
        run_analysis(generated_hlf, trained_alad, tmp_path / "bad", scores="l1,l9", **kw)
    r = subprocess.run(["sparkad", "score", "--hlf", str(generated_hlf), "--model", str(trained_alad), "--out",
                        str(tmp_path / "bad"), "--engine", "dask", "--scores", "nope"], capture_output=True, text=True)
    assert r.returncode == 1 and "has no score(s) nope" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("engine", ["dask", "spark"])
def test_select_fraction_runs_the_networks_once(engine, request, generated_hlf, trained_ae, tmp_path):
    """--select-fraction: one pass through the networks (its tails give the exact threshold), then an
    aggregation pass over the kept float64 scores; the products are the bits of a run given that
    threshold, and nothing of the kept scores is left behind."""
    kw = dict(engine=engine, batch_rows=997, target_rows=3000, background=["wjets", "dyjets"])
    if engine == "spark":
        kw["spark"] = request.getfixturevalue("spark")
    else:
        kw["workers"] = 2
    rep = run_analysis(generated_hlf, trained_ae, tmp_path / "fraction", fraction=0.02, **kw)
    t = rep["anomaly_threshold"]["threshold"]
    assert set(rep["timings"]) == {"plan_s", "score_pass_s", "aggregate_pass_s", "merge_s", "products_s"}
    given = run_analysis(generated_hlf, trained_ae, tmp_path / "given", threshold=t, **kw)
    assert "aggregate_pass_s" not in given["timings"]
    a, b = _agg(tmp_path / "fraction")["partial"], _agg(tmp_path / "given")["partial"]
    assert a.hists.keys() == b.hists.keys() and a.score_hists.keys() == b.score_hists.keys()
    for k in a.hists:
        np.testing.assert_array_equal(a.hists[k].rows(), b.hists[k].rows())
    for k in a.score_hists:
        np.testing.assert_array_equal(a.score_hists[k].rows(), b.score_hists[k].rows())
    for ds in a.totals:
        assert {k: list(v) for k, v in a.totals[ds].items()} == {k: list(v) for k, v in b.totals[ds].items()}
    for ds in a.per_ls:
        np.testing.assert_array_equal(a.per_ls[ds], b.per_ls[ds])
    assert a.run_counts.keys() == b.run_counts.keys()
    for k, runs in a.run_counts.items():
        assert runs.keys() == b.run_counts[k].keys()
        for run, counts in runs.items():
            np.testing.assert_array_equal(counts, b.run_counts[k][run])
    for name in ("astf.csv", "pps_yields.csv"):
        assert (tmp_path / "fraction" / "products" / name).read_bytes() == \
            (tmp_path / "given" / "products" / name).read_bytes()
    # the selection holds the fraction of the data the threshold was chosen for
    data = pd.read_parquet(tmp_path / "fraction" / "scores" / "dataset=data")
    assert rep["anomaly_threshold"]["selected_events"] == int((Scorer(trained_ae).score_frame(
        pd.read_parquet(generated_hlf / "data"))["mse"] > t).sum()) <= 0.02 * len(data)
    assert sorted(p.name for p in (tmp_path / "fraction").iterdir()) == \
        ["_score_report.json", "products", "scores"]


@pytest.mark.parametrize("collect_max", [1, 5, 1_000_000])
def test_distributed_selection_equals_the_exact_threshold(collect_max, monkeypatch):
    """select_threshold (radix selection over fragments: digit histograms, then one bin's events)
    gives exact_threshold's threshold and selection on the whole sample: ties, negative scores, NaN,
    unit and real weights, one to five fragments, down to the last digit when bins are tiny."""
    import sparkad.score.engines as engines
    monkeypatch.setattr(engines, "COLLECT_MAX", collect_max)
    rng = np.random.default_rng(collect_max)
    x = np.concatenate([rng.normal(0, 1e3, 5000), [0.0, -0.0, np.inf, -np.inf, 1e-300, -1e-300, 5e-324]])
    keys = engines.order_keys(x)
    order = np.argsort(x, kind="stable")
    assert all(int(a) <= int(b) for a, b in zip(keys[order][:-1], keys[order][1:]))  # the same order
    for trial in range(40):
        n = int(rng.integers(10, 4000))
        s = np.round(rng.lognormal(0, 2, n), int(rng.integers(0, 6))) * (-1 if trial % 3 == 0 else 1)
        s[rng.random(n) < 0.01] = np.nan
        w = np.ones(n) if trial % 2 else rng.uniform(0.1, 3, n)
        parts = np.array_split(np.arange(n), int(rng.integers(1, 6)))
        frac = float(rng.uniform(0.001, 0.5))
        ok = ~np.isnan(s)
        first = [engines.digit_histogram(s[p], w[p], 0, 0) for p in parts]

        def next_round(depth, prefix, collect):
            fn = engines.bin_members if collect else engines.digit_histogram
            return [fn(s[p], w[p], depth, prefix) for p in parts]

        got = engines.select_threshold(first, next_round, frac, w.sum())
        ref = exact_threshold(s[ok], w[ok], frac, w.sum())
        assert got["threshold"] == ref["threshold"] and got["selected_events"] == ref["selected_events"], trial
        assert got["selected_weight"] == pytest.approx(ref["selected_weight"], rel=1e-12)
        if collect_max == 1:
            assert got["selection_rounds"] >= 2
    with pytest.raises(SparkadError, match="keeps the whole reference sample"):
        engines.select_threshold([engines.digit_histogram(np.ones(3), np.ones(3), 0, 0)], None, 0.5, 10.0)
