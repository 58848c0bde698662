"""CATHODE-style density estimation (issue 18): the conditional MAF against a known density, and the whole
method on the small Pythia black box (its truth read only here), scored by the batch pass."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparkad.model.cwola import CWoLaScorer, mjj_regions
from sparkad.train.flows import made_masks


def test_made_masks_are_autoregressive():
    masks, out = made_masks(4, [16, 16], np.random.default_rng(0))
    reach = (masks[0] @ masks[1] @ out) > 0  # input i reaches output d through some path
    for i in range(4):
        for d in range(4):
            assert not (reach[i, d] and i >= d)  # output d never sees input d or a later one
    assert reach[0, 3]  # the last output sees the first input


def test_conditional_flow_learns_a_known_density():
    """x1 ~ N(2c, 1), x2 ~ N(x1/2, 0.5²) given c: the flow's NLL approaches the true entropy, and its samples
    at a new c have the true conditional means and spreads."""
    from sparkad.train.flows import fit_flow

    rng = np.random.default_rng(1)
    c = rng.uniform(-1, 1, 6000)
    x1 = 2 * c + rng.standard_normal(6000)
    x2 = 0.5 * x1 + 0.5 * rng.standard_normal(6000)
    x = np.stack([x1, x2], axis=1)
    flow, hist = fit_flow(x, c, hidden=(32, 32), blocks=3, epochs=60, patience=10, seed=2)
    true_nll = np.log(2 * np.pi) + 0.5 + np.log(0.5) + 0.5  # Σ ½log(2πσ²) + ½ per dimension
    assert hist["best_val_nll"] < true_nll + 0.1
    s = flow.sample(np.full(4000, 0.5), seed=3)
    assert abs(s[:, 0].mean() - 1.0) < 0.1 and abs(s[:, 0].std() - 1.0) < 0.1
    assert abs(np.corrcoef(s[:, 0], s[:, 1])[0, 1] - 0.5 / np.sqrt(0.5)) < 0.1  # cov/σσ = 0.5/(1·√0.5)


@pytest.fixture(scope="module")
def cathode_model(lhco_hlf, tmp_path_factory):
    import yaml

    from sparkad.train.cathode import train_cathode

    d = tmp_path_factory.mktemp("cathode")
    cfg = d / "small.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"folds": 3, "sideband_width": 800.0},
                                   "flow": {"hidden": [32, 32], "blocks": 3, "epochs": 60},
                                   "model": {"hidden": [32, 32]}, "training": {"epochs": 40, "patience": 8}}))
    return d / "model", train_cathode(lhco_hlf, d / "model", config_file=cfg, progress=False, log=lambda m: None)


def test_cathode_finds_the_injected_signal_and_scores_in_the_pass(cathode_model, lhco_hlf, tmp_path):
    from sklearn.metrics import roc_auc_score

    from sparkad.score.run import run_analysis

    path, doc = cathode_model
    assert doc["kind"] == "cathode" and doc["score_names"] == ["cathode"]
    assert doc["data_vs_samples_auc"] > 0.6 and doc["provenance"]["n_samples"] > 3 * doc["provenance"]["n_sr"]
    hlf = pd.read_parquet(lhco_hlf / "blackbox")
    truth = pd.concat([pd.read_parquet(p) for p in sorted((lhco_hlf.parent / "gen" / "truth").glob("blackbox_*.parquet"))])
    d = hlf.merge(truth, on=["run", "luminosityBlock", "event"])
    s = CWoLaScorer(path)
    score = s.score_columns(d[s.features].to_numpy(), d.run, d.luminosityBlock, d.event)
    sr = mjj_regions(d.mjj.to_numpy(), (3300, 3700), 800) == 1
    assert roc_auc_score(d.is_signal[sr], score[sr]) > 0.75
    for th in doc["thresholds"]["cathode"].values():  # out-of-fold thresholds, reproduced event by event
        if th["value"] is not None:
            assert int((score[sr] > th["value"]).sum()) == th["passing"]
    rep = run_analysis(lhco_hlf, path, tmp_path / "s", engine="dask", workers=2, ppm=1e5)
    assert rep["scores"] == ["cathode"] and rep["model_kind"] == "cathode"
    got = pd.read_parquet(tmp_path / "s" / "scores" / "dataset=blackbox").merge(
        d[["run", "luminosityBlock", "event"]].assign(ref=score.astype(np.float32)), on=["run", "luminosityBlock", "event"])
    np.testing.assert_array_equal(got.cathode.to_numpy(), got.ref.to_numpy())
