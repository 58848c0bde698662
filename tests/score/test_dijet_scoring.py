"""The dijet jet VAE in the batch scoring pass (issue 17, "on Spark at scale"): jet images built in the
workers from the stored constituents, the strategies' scores equal to in-process scoring on Spark and on
Dask, the stored mjj-dependent threshold L_T(mjj) as the selection of the products, per-run rates and the
monitor, and clear one-line errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparkad.analysis.quantile_threshold import QuantileThreshold
from sparkad.core.errors import SparkadError
from sparkad.model.jet_vae import JetVAEScorer, mjj_score_name
from sparkad.score.run import run_analysis

KEYS = ["run", "luminosityBlock", "event"]


def table(hlf, name):
    return pa.concat_tables([pq.read_table(f) for f in sorted((hlf / name).glob("*.parquet"))])


def scores_of(out, name):
    df = pd.read_parquet(out / "scores" / f"dataset={name}")
    return df.sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def model_with_lt(jet_model, dijet_hlf, tmp_path_factory):
    """A copy of the jet VAE with L_T(mjj) of `both` at 10 % fitted on its QCD and stored."""
    from sparkad.evaluate.dijet import run_bump_hunt

    d = tmp_path_factory.mktemp("jetlt") / "model"
    shutil.copytree(jet_model[0], d)
    run_bump_hunt(d, dijet_hlf, d.parent / "bh", "data", strategy="both", efficiency=0.1, n_toys=5,
                  save_threshold=True, log=lambda m: None)
    return d


def test_spark_and_dask_score_the_jet_vae_as_in_process(spark, dijet_hlf, jet_model, tmp_path):
    model = jet_model[0]
    ref = JetVAEScorer(model)
    with pytest.raises(SparkadError, match="threshold at 10000ppm unavailable"):  # 1 %, seeds/004: too few here
        run_analysis(dijet_hlf, model, tmp_path / "x", engine="dask", scores="all")
    rs = run_analysis(dijet_hlf, model, tmp_path / "spark", engine="spark", spark=spark, scores="all", batch_rows=97,
                      target_rows=150, ppm=1e5)
    rd = run_analysis(dijet_hlf, model, tmp_path / "dask", engine="dask", workers=2, scores="all", ppm=1e5)
    assert rd["total_events"] == rs["total_events"] == sum(rs["events"].values())
    assert (rd["batch_rows"], rd["target_rows"]) == (4096, 10_000)  # the jet VAE's own sizes by default
    assert rs["model_kind"] == "jet_vae" and rs["scores"] == ["both", "j1", "j2", "sum", "either"]
    assert rs["fragments"] >= 3 and rs["batch_rows"] == 97  # batches of 97 events: a batch does not change a score
    for name in ("qcd", "g_ww", "data"):
        t = table(dijet_hlf, name).to_pandas().sort_values(KEYS).reset_index(drop=True)
        want = ref.score_table(pa.Table.from_pandas(t, preserve_index=False))
        a, b = scores_of(tmp_path / "spark", name), scores_of(tmp_path / "dask", name)
        pd.testing.assert_frame_equal(a, b)
        assert len(a) == len(t) and (a.event.to_numpy() == t.event.to_numpy()).all()
        for s in rs["scores"]:
            np.testing.assert_array_equal(a[s].to_numpy(), want[s].astype(np.float32))
    # the headline strategy `both` at the model's 10 % validation threshold
    assert rs["anomaly_threshold"]["score"] == "both"
    assert rs["anomaly_threshold"]["threshold"] == ref.thresholds["both"]["100000ppm"]["value"]
    summary = json.loads((tmp_path / "spark" / "products" / "summary.json").read_text())
    assert summary["pps"]["cuts"] == ["deta < 1.4"]  # the dijet defaults: the signal region
    assert (tmp_path / "spark" / "products" / "per_ls.parquet").is_file()


def test_the_stored_mjj_threshold_selects_in_the_pass(spark, dijet_hlf, model_with_lt, tmp_path):
    """`--mjj-efficiency`: the pass stores L − L_T(mjj) and selects it above 0; the products' mjj spectra of
    all and of selected events equal those recomputed here from the scorer and the stored curve."""
    name = mjj_score_name("both", 0.1)
    rep = run_analysis(dijet_hlf, model_with_lt, tmp_path / "s", engine="spark", spark=spark, mjj_efficiency=0.1)
    sel = rep["anomaly_threshold"]
    assert sel["score"] == name and sel["threshold"] == 0.0 and "L_T(mjj)" in sel["source"]
    assert rep["scores"] == ["both", name]
    ref = JetVAEScorer(model_with_lt)
    lt = QuantileThreshold.from_dict(ref.stored_threshold("both", 0.1))
    edges = np.linspace(0, 8000, 81)
    with np.load(tmp_path / "s" / "products" / "aggregates.npz") as z:
        for ds in ("qcd", "data"):
            t = table(dijet_hlf, ds)
            mjj = t.column("mjj").to_numpy().astype(np.float64)
            both = ref.score_table(t)["both"]
            chosen = both > lt(mjj)
            got = scores_of(tmp_path / "s", ds)
            order = np.lexsort([t.column(k).to_numpy() for k in reversed(KEYS)])
            np.testing.assert_allclose(got[name].to_numpy(), (both - lt(mjj))[order].astype(np.float32), rtol=1e-6)
            entries = z[f"hists/{ds}/mjj/entries"]  # [anomalous, bin with under/overflow]
            assert (entries[1][1:-1] == np.histogram(mjj[chosen], edges)[0]).all()
            assert (entries.sum(axis=0)[1:-1] == np.histogram(mjj, edges)[0]).all()
            assert 0 < chosen.sum() < len(chosen)
    # the monitor counts the same selection per run (threshold 0 of the stored score, from the score report)
    from sparkad.monitor.runs import monitor_scores

    mon = monitor_scores(tmp_path / "s", tmp_path / "mon")
    assert mon["score"] == name and mon["threshold"] == 0.0
    lumis = pd.read_parquet(tmp_path / "mon" / "lumis.parquet")
    t = table(dijet_hlf, "data")
    want = int((ref.score_table(t)["both"] > lt(t.column("mjj").to_numpy().astype(np.float64))).sum())
    assert int(lumis.selected.sum()) == want and int(lumis.events.sum()) == t.num_rows
    # and the HTML report reads a jet VAE's scores as any other model's
    r = subprocess.run([sys.executable, "-m", "sparkad.cli", "report", "--scores", str(tmp_path / "s"), "--monitor",
                        str(tmp_path / "mon")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "s" / "report.html").read_text()
    assert name in page and "jet_vae" in page


def test_clear_errors(dijet_hlf, jet_model, model_with_lt, generated_hlf, trained_ae, tmp_path):
    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "sparkad.cli", "score", "--engine", "dask", *args,
                            "--out", str(tmp_path / "o")], capture_output=True, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        return r.stderr

    err = cli("--model", str(jet_model[0]), "--hlf", str(generated_hlf))
    assert "not a dijet extraction (run `sparkad extract --analysis dijet`)" in err
    err = cli("--model", str(jet_model[0]), "--hlf", str(dijet_hlf), "--mjj-efficiency", "0.1")
    assert "no stored mjj thresholds" in err and "--save-threshold" in err
    err = cli("--model", str(model_with_lt), "--hlf", str(dijet_hlf), "--mjj-efficiency", "0.05")
    assert "no threshold both@0.05 (stored: both@0.1)" in err
    err = cli("--model", str(trained_ae), "--hlf", str(generated_hlf), "--mjj-efficiency", "0.1")
    assert "selects with a jet VAE's L_T(mjj)" in err
    with pytest.raises(SparkadError, match="without --threshold"):
        run_analysis(dijet_hlf, model_with_lt, tmp_path / "x", engine="dask", mjj_efficiency=0.1, threshold=1.0)
