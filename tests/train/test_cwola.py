"""CWoLa hunting (issue 18): k-fold classifiers of signal region against sidebands trained on a real Pythia
black box (W' -> XY injected into QCD), checked against the black box's truth (which the pipeline never
reads), the batch scoring pass, the sideband-fit bump hunt and clear errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from sparkad.core.errors import ConfigError, SparkadError
from sparkad.model.cwola import CWoLaScorer, event_folds, mjj_regions


@pytest.fixture(scope="module")
def cwola_model(lhco_hlf, tmp_path_factory):
    from sparkad.train.cwola import train_cwola

    d = tmp_path_factory.mktemp("cwola")
    cfg = d / "small.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"folds": 3, "signal_region": [3300.0, 3700.0], "sideband_width": 300.0},
                                   "model": {"hidden": [32, 32]}, "training": {"epochs": 40, "patience": 8}}))
    doc = train_cwola(lhco_hlf, d / "model", config_file=cfg, progress=False, log=lambda m: None)
    return d / "model", doc


def blackbox(lhco_hlf):
    hlf = pd.read_parquet(lhco_hlf / "blackbox")
    truth = pd.concat([pd.read_parquet(p) for p in sorted((lhco_hlf.parent / "gen" / "truth").glob("blackbox_*.parquet"))])
    return hlf.merge(truth[["run", "luminosityBlock", "event", "is_signal"]], on=["run", "luminosityBlock", "event"],
                     validate="one_to_one")


def test_folds_and_regions_are_pure_functions_of_the_event():
    rng = np.random.default_rng(0)
    run, lumi, event = rng.integers(1, 400000, 20000), rng.integers(1, 2000, 20000), rng.integers(1, 2**40, 20000)
    f = event_folds(run, lumi, event, 5)
    assert np.array_equal(f[100:200], event_folds(run[100:200], lumi[100:200], event[100:200], 5))
    assert np.all(np.abs(np.bincount(f, minlength=5) / len(f) - 0.2) < 0.015)  # balanced
    assert not np.array_equal(f, event_folds(run, lumi, event + 1, 5))
    assert list(mjj_regions([3000, 3099, 3100, 3300, 3699, 3700, 3899, 3900, np.nan], (3300, 3700), 200)) == \
        [-1, -1, 0, 1, 1, 0, 0, -1, -1]


def test_trains_out_of_fold_and_learns_the_injected_signal(cwola_model, lhco_hlf):
    path, doc = cwola_model
    d = blackbox(lhco_hlf)
    region = mjj_regions(d.mjj.to_numpy(), (3300, 3700), 300)
    assert doc["kind"] == "cwola" and doc["provenance"]["datasets"] == ["blackbox"]
    assert doc["provenance"]["n_sr"] == int((region == 1).sum()) and doc["provenance"]["n_sb"] == int((region == 0).sum())
    folds = doc["history"]["folds"]
    assert sum(f["n_scored"] for f in folds) == doc["provenance"]["n_sr"] + doc["provenance"]["n_sb"]
    for f in folds:  # each network trained without the fold it scores (and without its validation fold)
        assert f["n_train"] + f["n_val"] + f["n_scored"] == doc["provenance"]["n_sr"] + doc["provenance"]["n_sb"]
    # the signal sits in the signal region: the classifier separates SR from SB, and ranks the truth signal high
    assert doc["sr_vs_sb_auc"] > 0.6
    s = CWoLaScorer(path)
    score = s.score_columns(d[s.features].to_numpy(), d.run, d.luminosityBlock, d.event)
    sr = region == 1
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(d.is_signal[sr], score[sr]) > 0.75


def test_the_scoring_pass_reproduces_the_out_of_fold_thresholds(cwola_model, lhco_hlf, tmp_path):
    """The stored thresholds come from the out-of-fold scores of the signal-region events; the Spark/Dask pass
    scores every event with its fold's network: exactly the stored number of SR events lies above each."""
    from sparkad.score.run import run_analysis

    path, doc = cwola_model
    rep = run_analysis(lhco_hlf, path, tmp_path / "s", engine="dask", workers=2, ppm=1e5, batch_rows=101)
    assert rep["model_kind"] == "cwola" and rep["scores"] == ["cwola"]
    got = pd.read_parquet(tmp_path / "s" / "scores" / "dataset=blackbox")
    d = pd.read_parquet(lhco_hlf / "blackbox").merge(got[["run", "luminosityBlock", "event", "cwola"]],
                                                      on=["run", "luminosityBlock", "event"])
    sr = mjj_regions(d.mjj.to_numpy(), (3300, 3700), 300) == 1
    s = CWoLaScorer(path)
    ref = s.score_columns(d[s.features].to_numpy(), d.run, d.luminosityBlock, d.event)
    np.testing.assert_array_equal(d.cwola.to_numpy(), ref.astype(np.float32))
    for key, th in doc["thresholds"]["cwola"].items():
        if th["value"] is not None:
            assert int((ref[sr] > th["value"]).sum()) == th["passing"] == th["k"]
    summary = json.loads((tmp_path / "s" / "products" / "summary.json").read_text())
    assert summary["datasets"]["blackbox"]["anomalous"] == int((ref > doc["thresholds"]["cwola"]["100000ppm"]["value"]).sum())


def test_hunt_enriches_the_signal_region(cwola_model, lhco_hlf, tmp_path):
    from sparkad.evaluate.weak import run_cwola_hunt

    res = run_cwola_hunt(cwola_model[0], lhco_hlf, tmp_path / "h", "blackbox", efficiencies=(0.3,), bins=20, n_toys=5,
                         log=lambda m: None)
    all_, cut = res["selections"]["all"], res["selections"]["0.3"]
    assert cut["n_selected_sr"] == int(np.floor(0.3 * res["n_signal_region"] + 1e-9))
    assert cut["n_selected_sr"] / cut["n_selected"] > all_["n_selected_sr"] / all_["n_selected"]
    assert (tmp_path / "h" / "mjj_spectra.png").stat().st_size > 0
    assert json.loads((tmp_path / "h" / "cwola_hunt.json").read_text())["signal_region"] == [3300.0, 3700.0]


def test_errors(lhco_hlf, generated_hlf, tmp_path):
    from sparkad.train.cwola import train_cwola

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "sparkad.cli", *args], capture_output=True, text=True)
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        return r.stderr

    assert "not a dijet extraction" in cli("train", "--model", "cwola", "--hlf", str(generated_hlf), "--out",
                                           str(tmp_path / "m"))
    assert "expected LO:HI" in cli("train", "--model", "cwola", "--hlf", str(lhco_hlf), "--out", str(tmp_path / "m"),
                                   "--signal-region", "3.3TeV")
    assert "--signal-region is a cwola / cathode option" in cli("train", "--model", "ae", "--hlf", str(lhco_hlf), "--out",
                                                      str(tmp_path / "m"), "--signal-region", "3300:3700")
    with pytest.raises(SparkadError, match="too few for 5-fold training"):
        train_cwola(lhco_hlf, tmp_path / "m", signal_region=(6000.0, 6100.0), progress=False, log=lambda m: None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {features: [mjj, mJ1]}\n")
    with pytest.raises(ConfigError, match="must not hold mjj"):
        train_cwola(lhco_hlf, tmp_path / "m", config_file=bad, progress=False, log=lambda m: None)


def test_sliding_window_scan_points_at_the_signal(lhco_hlf, tmp_path):
    """`--scan`: one model per window; the window holding the W' (3.3-3.7 TeV) separates its SR from its
    sidebands best, and its hunt sees the largest excess of all events over the sideband fit."""
    from sparkad.evaluate.weak import run_cwola_scan_hunt
    from sparkad.train.cwola import scan_windows

    assert scan_windows(2500, 3700, 400) == [(2500, 2900), (2900, 3300), (3300, 3700)]
    assert scan_windows(2900, 3700, 400, 200) == [(2900, 3300), (3100, 3500), (3300, 3700)]
    cfg = tmp_path / "small.yaml"
    cfg.write_text("data: {folds: 3, sideband_width: 300.0}\nmodel: {hidden: [32, 32]}\ntraining: {epochs: 40, patience: 8}\n")
    r = subprocess.run([sys.executable, "-m", "sparkad.cli", "train", "--model", "cwola", "--hlf", str(lhco_hlf), "--out",
                        str(tmp_path / "scan"), "--scan", "2500:3700:400", "--config", str(cfg), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    scan = json.loads((tmp_path / "scan" / "scan.json").read_text())
    auc = {tuple(w["signal_region"]): w["sr_vs_sb_auc"] for w in scan["windows"]}
    assert max(auc, key=auc.get) == (3300.0, 3700.0)
    doc = run_cwola_scan_hunt(tmp_path / "scan", lhco_hlf, tmp_path / "hunt", "blackbox", efficiency=0.3, bins=24,
                              log=lambda m: None)
    before = {tuple(w["signal_region"]): w["before"].get("z_local", -1) for w in doc["windows"]}
    assert max(before, key=before.get) == (3300.0, 3700.0)
    assert (tmp_path / "hunt" / "scan_hunt.json").is_file()
