"""The per-jet convolutional VAE of the dijet search: Keras training on the sideband of a real Pythia sample,
the numpy export against Keras, deterministic scoring, the loss strategies and the model directory."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparkad.core.errors import SparkadError
from sparkad.model.jet_vae import STRATEGIES, JetVAEScorer, event_scores
from sparkad.model.networks import fold, forward
from sparkad.train.jet_vae import build, export



def table(hlf, name):
    return pa.concat_tables([pq.read_table(f) for f in sorted((hlf / name).glob("*.parquet"))])


def test_export_matches_keras():
    import keras

    keras.utils.set_random_seed(3)
    enc, dec = build(32, [4, 8], 16, 4, seed=3)
    x = np.random.default_rng(0).random((7, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(forward(fold(export(enc)), x), enc.predict(x, verbose=0), rtol=2e-4, atol=2e-5)
    z = np.random.default_rng(1).normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(forward(fold(export(dec)), z), dec.predict(z, verbose=0), rtol=2e-4, atol=2e-5)


def test_trains_on_the_background_sideband_and_writes_a_model(jet_model, dijet_hlf):
    path, doc = jet_model
    prov = doc["provenance"]
    assert prov["datasets"] == ["qcd"] and prov["deta_min"] == 1.4
    sideband = table(dijet_hlf, "qcd").to_pandas().query("deta > 1.4")
    assert prov["n_sideband"] == len(sideband) == prov["n_used"]
    assert prov["n_train"] + prov["n_val"] == prov["n_used"] and prov["n_train_jets"] == 2 * prov["n_train"]
    h = doc["history"]["per_epoch"]
    assert len(h) == 3 and h[-1]["train_loss"] < h[0]["train_loss"]
    assert doc["score_names"] == list(STRATEGIES)
    th = doc["thresholds"]["both"]["100000ppm"]  # 10 % of the validation events
    assert th["value"] is not None and th["passing"] == th["k"]


def test_scoring_is_deterministic_and_the_strategies_combine_the_jet_losses(jet_model, dijet_hlf):
    s = JetVAEScorer(jet_model[0])
    t = table(dijet_hlf, "g_ww")
    full = s.score_table(t)
    part = s.score_table(t.slice(3, 5))
    for k in (*STRATEGIES, "L1", "L2"):
        assert np.array_equal(full[k][3:8], part[k])  # the same bits whatever batch an event arrives in
    assert np.array_equal(full["both"], np.minimum(full["L1"], full["L2"]))
    assert np.array_equal(full["either"], np.maximum(full["L1"], full["L2"]))
    assert np.array_equal(full["sum"], full["L1"] + full["L2"])
    assert np.all(full["L1"] > 0)
    # the per-jet loss is the reconstruction error plus beta KL, recomputed from the networks by hand
    img = s.images(t.slice(0, 2), 1)
    stats = forward(s.nets["encoder"], img[..., None]).astype(np.float64)
    mu, logvar = stats[:, :4], stats[:, 4:]
    rec = forward(s.nets["decoder"], mu.astype(np.float32)).reshape(2, 32, 32)
    kl = -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=1)
    want = ((img.astype(np.float64) - rec) ** 2).sum(axis=(1, 2)) + s.beta * kl
    np.testing.assert_allclose(full["L1"][:2], want, rtol=1e-6)
    assert event_scores([1.0], [2.0])["both"][0] == 1.0


def test_a_tampered_model_is_refused(jet_model, tmp_path):
    path = jet_model[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    meta = json.loads((path / "model.json").read_text())
    meta["config"]["beta"] = 1.0
    (bad / "model.json").write_text(json.dumps(meta))
    (bad / "networks.npz").write_bytes((path / "networks.npz").read_bytes())
    with pytest.raises(SparkadError, match="content hash"):
        JetVAEScorer(bad)


def test_the_hlf_vector_scorer_points_to_the_ones_that_take_it(jet_model):
    from sparkad.model.directory import Scorer, open_scorer

    with pytest.raises(SparkadError, match="scores jet constituents, not a vector of HLF features"):
        Scorer(jet_model[0])
    assert isinstance(open_scorer(jet_model[0]), JetVAEScorer)


def test_cli_refuses_a_lepton_extraction(generated_hlf, tmp_path):
    r = subprocess.run([sys.executable, "-m", "sparkad.cli", "train", "--model", "jet_vae", "--hlf", str(generated_hlf),
                        "--out", str(tmp_path / "m")], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "not a dijet extraction (run `sparkad extract --analysis dijet`)" in r.stderr


def test_an_extraction_without_events_is_too_few_not_a_missing_column(dijet_hlf, tmp_path):
    """Datasets no event of which passed hold a placeholder file without constituents: said as such."""
    from sparkad.extract.fileset import load_fileset
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.train.jet_vae import train_jet_vae

    sel = tmp_path / "hard.yaml"
    sel.write_text("analysis: dijet\njets: {pt_min: 100000.0, eta_max: 2.4}\n")
    run_extraction(load_fileset(dijet_hlf.parent / "gen" / "fileset.yaml"),
                   ExtractOptions.from_conf(tmp_path / "hlf", analysis="dijet", selection=str(sel), progress=False),
                   log=lambda m: None)
    with pytest.raises(SparkadError, match="0 sideband events .* too few to train on"):
        train_jet_vae(tmp_path / "hlf", tmp_path / "m", progress=False, log=lambda m: None)
