"""`sparkad evaluate` on a jet_vae model and `sparkad bumphunt`: the loss strategies beside the references,
the mjj-dependent threshold and the bump hunt, on a real (small) Pythia dijet sample."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sparkad.evaluate.dijet import read_dataset, region, run_bump_hunt, run_dijet_evaluation
from sparkad.evaluate.metrics import auc
from sparkad.model.jet_vae import STRATEGIES, JetVAEScorer


def sparkad(*args):
    return subprocess.run([sys.executable, "-m", "sparkad.cli", *map(str, args)], capture_output=True, text=True)


def test_evaluation_rows_are_the_strategies_and_references_on_the_signal_region(jet_model, dijet_hlf, tmp_path):
    res = run_dijet_evaluation(jet_model[0], dijet_hlf, tmp_path, log=lambda m: None)
    assert res["background"] == ["qcd"] and res["signals"] == ["g_ww"]
    names = [r["score"] for r in res["rows"]]
    assert names == [*STRATEGIES, "tau21", "mahalanobis", "pca", "iforest"]
    # recomputed independently: the signal-region events, scored, and their AUC
    s = JetVAEScorer(jet_model[0])
    b = s.score_table(region(read_dataset(dijet_hlf, "qcd"), True))["both"]
    g = s.score_table(region(read_dataset(dijet_hlf, "g_ww"), True))["both"]
    row = next(r for r in res["rows"] if r["score"] == "both")
    assert row["auc"] == pytest.approx(auc(b, g)) and row["n_background"] == len(b)
    # tau21 of W jets is lower than of QCD jets: the physics reference must see the signal
    assert next(r for r in res["rows"] if r["score"] == "tau21")["auc"] > 0.75
    assert (tmp_path / "roc_g_ww.png").stat().st_size > 5000
    assert json.loads((tmp_path / "dijet_evaluation.json").read_text())["best"]["g_ww"]["best_reference"]


def test_bump_hunt_keeps_the_background_efficiency_flat(jet_model, dijet_hlf, tmp_path):
    res = run_bump_hunt(jet_model[0], dijet_hlf, tmp_path, "data", efficiency=0.2, n_toys=20, bins=12,
                        log=lambda m: None)
    flat = res["background_flatness"]
    assert flat["mean"] == pytest.approx(0.2, abs=0.06) and flat["p_value"] > 1e-3
    assert res["n_selected"] == pytest.approx(0.2 * res["n_signal_region"], rel=0.5)
    for name in ("all", "selected"):
        r = res[name]
        assert sum(r["counts"]) > 0 and ("z_local" in r or "error" in r)
    assert sum(res["all"]["counts"]) >= sum(res["selected"]["counts"])
    for f in ("mjj_spectra.png", "efficiency_vs_mjj.png", "quantile_threshold.png", "bump_hunt.json"):
        assert (tmp_path / f).stat().st_size > 1000


def test_cli(jet_model, dijet_hlf, tmp_path):
    r = sparkad("evaluate", "--model", jet_model[0], "--hlf", dijet_hlf, "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr
    assert "g_ww: best strategy" in r.stdout and "| g_ww | both | model |" in r.stdout
    r = sparkad("bumphunt", "--model", jet_model[0], "--hlf", dijet_hlf, "--dataset", "data", "--out", tmp_path / "bh",
                "--efficiency", "0.2", "--toys", "10", "--bins", "10")
    assert r.returncode == 0, r.stderr
    assert "selected by both > L_T(mjj) at q = 0.2" in r.stdout
    r = sparkad("bumphunt", "--model", jet_model[0], "--hlf", dijet_hlf, "--dataset", "nope", "--out", tmp_path / "x")
    assert r.returncode == 1 and "no dataset 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_the_threshold_is_stored_with_the_model_and_applied_again(jet_model, dijet_hlf, tmp_path):
    import shutil

    from sparkad.core.errors import SparkadError

    model = tmp_path / "model"
    shutil.copytree(jet_model[0], model)
    with pytest.raises(SparkadError, match="no stored mjj thresholds"):
        run_bump_hunt(model, dijet_hlf, tmp_path / "a", "data", efficiency=0.2, use_stored=True, n_toys=0)
    first = run_bump_hunt(model, dijet_hlf, tmp_path / "b", "data", efficiency=0.2, n_toys=0, bins=10,
                          save_threshold=True, log=lambda m: None)
    stored = json.loads((model / "mjj_thresholds.json").read_text())
    assert stored["model_hash"] == JetVAEScorer(model).meta["content_hash"]
    assert stored["thresholds"]["both@0.2"]["fit_on"] == "background"
    again = run_bump_hunt(model, dijet_hlf, tmp_path / "c", "data", efficiency=0.2, n_toys=0, bins=10,
                          use_stored=True, log=lambda m: None)
    assert again["threshold"] == first["threshold"] and again["n_selected"] == first["n_selected"]
    with pytest.raises(SparkadError, match="no threshold both@0.05"):
        run_bump_hunt(model, dijet_hlf, tmp_path / "d", "data", efficiency=0.05, use_stored=True, n_toys=0)
    stored["model_hash"] = "another"
    (model / "mjj_thresholds.json").write_text(json.dumps(stored))
    with pytest.raises(SparkadError, match="fitted for model another, not for this one"):
        run_bump_hunt(model, dijet_hlf, tmp_path / "e", "data", efficiency=0.2, use_stored=True, n_toys=0)
