"""Training: losses decrease, the numpy export equals the Keras networks, a model directory scores
identically in a fresh process, a resumed run equals an uninterrupted one, thresholds are exact."""
import json
import subprocess
import sys

import numpy as np
import pytest

from sparkad.core.errors import ConfigError, SparkadError
from sparkad.model.directory import Scorer, exact_thresholds
from sparkad.train.api import train_from_config


def _cfg(tmp_path, **training):
    import yaml
    p = tmp_path / "train.yaml"
    p.write_text(yaml.safe_dump({"cocktail": {"background": ["wjets", "dyjets"]},
                                 "training": {"threads": 1, "checkpoint_every": 7, **training}}))
    return p


def test_ae_trains_and_separates_ttbar(generated_hlf, tmp_path):
    out = tmp_path / "ae"
    doc = train_from_config("ae", generated_hlf, out, config_file=_cfg(tmp_path), epochs=6, batch_size=64, progress=False)
    hist = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(hist) == 6 and hist[-1]["val_loss"] < hist[0]["val_loss"] and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert doc["n_inputs"] == 43 and doc["kind"] == "ae" and doc["score_names"] == ["mse", "mahalanobis", "pca", "iforest"]
    assert doc["baseline_scores"] == ["mahalanobis", "pca", "iforest"]
    t = doc["thresholds"]["mse"]["1000ppm"]
    assert t["value"] is not None and t["passing"] == t["k"] >= 1
    assert doc["thresholds"]["mse"]["5.4ppm"]["value"] is None  # too few validation events: said, not invented
    assert set(doc["composition"]) == {"wjets", "dyjets"}
    for f in ("networks.npz", "validation_scores.json", "model.json"):
        assert (out / f).is_file()
    # tt̄ (not in the W+Z training cocktail) is anomalous for the AE
    import pandas as pd
    from sparkad.evaluate.metrics import auc
    df = pd.read_parquet(generated_hlf)
    s = Scorer(out)
    sm = s.score_frame(df[df.dataset.isin(["wjets", "dyjets"])])["mse"]
    tt = s.score_frame(df[df.dataset == "ttbar"])["mse"]
    assert auc(sm, tt) > 0.75


def test_scores_identical_in_a_fresh_process(generated_hlf, tmp_path):
    out = tmp_path / "m"
    train_from_config("ae", generated_hlf, out, config_file=_cfg(tmp_path), epochs=1, batch_size=128, progress=False)
    s = Scorer(out)
    x = np.random.default_rng(0).normal(size=(500, len(s.features))) * 20 + 40
    np.save(tmp_path / "x.npy", x)
    here = s.score(x)["mse"]
    code = ("import numpy as np, sys; from sparkad.model.directory import Scorer; "
            f"s = Scorer({str(out)!r}); np.save({str(tmp_path / 'y.npy')!r}, s.score(np.load({str(tmp_path / 'x.npy')!r}))['mse']); "
            "print('tensorflow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"  # scoring needs no TensorFlow
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), here)
    # a finished run can be extended: more epochs resume from its checkpoint
    logs = []
    doc = train_from_config("ae", generated_hlf, out, config_file=_cfg(tmp_path), epochs=2, batch_size=128,
                            progress=False, log=logs.append)
    assert any("resuming" in m for m in logs) and doc["history"]["epochs"] == 2
    assert doc["history"]["last"]["train_seconds"] >= doc["history"]["last"]["epoch_s"]


def test_alad_numpy_export_equals_keras_with_ema_weights():
    import tensorflow as tf

    from sparkad.train.models import make_model
    m = make_model("alad", 20, {}, seed=4)
    x = tf.constant(np.random.default_rng(1).normal(size=(64, 20)).astype("f4"))
    for _ in range(3):
        m.train_step(x, tf.ones(64), 64)
        m.after_step()
    got = m.scores_numpy(x.numpy())
    # Keras forward with the EMA weights in place
    for name in m._ema_nets:
        for v, e in zip(m._ema_sources(name), m.ema[name]):
            v.assign(e)
    rec = m.generator(m.encoder(x)).numpy()
    f_fake = m.dxx_hidden(np.concatenate([x.numpy(), rec], 1)).numpy()
    f_real = m.dxx_hidden(np.concatenate([x.numpy(), x.numpy()], 1)).numpy()
    logit = m.dxx_out(f_fake).numpy()[:, 0]
    np.testing.assert_allclose(got["l1"], np.abs(x.numpy() - rec).sum(1), rtol=1e-5)
    np.testing.assert_allclose(got["features"], np.abs(f_real - f_fake).sum(1), rtol=1e-5)
    np.testing.assert_allclose(got["logits"], np.logaddexp(0, -logit), rtol=1e-5)


def test_resumed_alad_run_equals_uninterrupted_run(generated_hlf, tmp_path):
    cfg = _cfg(tmp_path)
    full = tmp_path / "full"
    train_from_config("alad", generated_hlf, full, config_file=cfg, epochs=2, batch_size=100, progress=False)
    part = tmp_path / "part"
    r = train_from_config("alad", generated_hlf, part, config_file=cfg, epochs=2, batch_size=100, progress=False,
                          stop_after_steps=5)  # killed in the middle of epoch 1
    assert r["interrupted"] and not (part / "model.json").exists()
    with pytest.raises(SparkadError):
        Scorer(part)  # an interrupted run is not a model
    logs = []
    train_from_config("alad", generated_hlf, part, config_file=cfg, epochs=2, batch_size=100, progress=False,
                      log=logs.append)
    assert any("resuming" in m for m in logs)
    a, b = np.load(full / "networks.npz"), np.load(part / "networks.npz")
    assert sorted(a.files) == sorted(b.files)
    # the same run: equal up to float32 rounding (a freshly traced step can differ in the last ulp)
    for k in a.files:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert (full / "history.jsonl").read_text().count("\n") == (part / "history.jsonl").read_text().count("\n") == 2


def test_exact_thresholds_on_constructed_scores():
    s = np.random.default_rng(2).permutation(np.arange(1_000_000, dtype=np.float64))
    th = exact_thresholds(s)
    for ppm, k in ((1000, 1000), (100, 100), (10, 10), (5.4, 5)):
        t = th[f"{ppm:g}ppm"]
        assert t["k"] == k and t["value"] == 1_000_000 - 1 - k and (s > t["value"]).sum() == k
    ties = np.r_[np.zeros(998), 5.0, 5.0]
    t = exact_thresholds(ties, ppm=(1000.0,))["1000ppm"]
    assert t["k"] == 1 and t["value"] == 5.0 and t["passing"] == 0  # ties at the threshold lower the count
    assert exact_thresholds(np.arange(10.0))["1000ppm"]["value"] is None


def test_bad_inputs_for_training_and_scoring(tmp_path, generated_hlf):
    from sparkad.model.preprocessing import Preprocessor
    x = np.ones((10, 2))
    x[3, 1] = np.nan
    with pytest.raises(ConfigError, match="non-finite values in b"):
        Preprocessor.fit(x, ["a", "b"])
    with pytest.raises(SparkadError, match="no _report.json"):
        train_from_config("ae", tmp_path, tmp_path / "m", progress=False)
    with pytest.raises(SparkadError, match="not a complete sparkad model"):
        Scorer(tmp_path)
    r = subprocess.run(["sparkad", "train", "--model", "ae", "--hlf", str(generated_hlf), "--out", str(tmp_path / "x"),
                        "--config", str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert r.returncode == 1 and "nope.yaml: cannot read configuration" in r.stderr and "Traceback" not in r.stderr


def test_scorer_refuses_data_without_its_features(generated_hlf, tmp_path):
    import pandas as pd
    out = tmp_path / "m"
    train_from_config("ae", generated_hlf, out, config_file=_cfg(tmp_path), epochs=1, batch_size=128, progress=False)
    with pytest.raises(SparkadError, match="lacks feature.*n_ch"):
        Scorer(out).score_frame(pd.DataFrame({"HT": [1.0]}))


def test_cli_train(generated_hlf, tmp_path):
    r = subprocess.run(["sparkad", "train", "--model", "ae", "--hlf", str(generated_hlf), "--out", str(tmp_path / "m"),
                        "--epochs", "2", "--batch-size", "128", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "threshold mse" in r.stdout and (tmp_path / "m" / "model.json").is_file()


def test_cli_evaluate_table_plots_and_supervised_reference(generated_hlf, tmp_path):
    m = tmp_path / "m"
    train_from_config("ae", generated_hlf, m, config_file=_cfg(tmp_path), epochs=3, batch_size=128, progress=False)
    r = subprocess.run(["sparkad", "evaluate", "--model", str(m), "--hlf", str(generated_hlf), "--out", str(tmp_path / "ev"),
                        "--bdt"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "| ttbar | mse | model |" in r.stdout and "| ttbar | supervised_bdt | supervised |" in r.stdout
    for base in ("mahalanobis", "pca", "iforest"):  # the classic baselines, on the same events
        assert f"| ttbar | {base} | baseline |" in r.stdout
    assert "ttbar: best model score mse AUC" in r.stdout and "vs best baseline" in r.stdout
    doc = json.loads((tmp_path / "ev" / "performance.json").read_text())
    assert doc["sm_reference"] == "the model's held-out SM validation sample"
    row = doc["rows"][0]
    assert row["signal"] == "ttbar" and row["auc"] > 0.75
    assert doc["supervised_reference"]["ttbar"]["auc"] > row["auc"]  # the supervised reference bounds it from above
    assert row["fpr_0.001"]["tpr"] is not None and row["fpr_1e-05"]["tpr"] is None
    vs = doc["versus_baselines"]["ttbar"]
    aucs = {r["score"]: r["auc"] for r in doc["rows"] if r["signal"] == "ttbar"}
    assert vs["baseline_auc"] == max(aucs[b] for b in ("mahalanobis", "pca", "iforest"))
    assert vs["model_beats_baselines"] == (aucs["mse"] > vs["baseline_auc"])
    png = (tmp_path / "ev" / "roc_mse.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    r = subprocess.run(["sparkad", "evaluate", "--model", str(m), "--hlf", str(generated_hlf), "--out", str(tmp_path / "e2"),
                        "--signals", "nope"], capture_output=True, text=True)
    assert r.returncode == 1 and "no dataset nope" in r.stderr


def test_train_on_data_isolates_ttbar_like_seeds000(generated_hlf, tmp_path):
    """seeds/000 sec. 4: train on the (data-like) sample itself, then measure on labelled MC how the
    anomaly score isolates tt̄ from W and Z (Fig. 5)."""
    from sparkad.evaluate.report import run_evaluation
    out = tmp_path / "m"
    doc = train_from_config("ae", generated_hlf, out, config_file=_cfg(tmp_path), epochs=4, batch_size=128,
                            progress=False, train_on_data=True)
    assert doc["provenance"]["datasets"] == ["data"] and doc["provenance"]["cocktail"]["train_on_data"]
    with pytest.raises(SparkadError, match="--background"):
        run_evaluation(out, generated_hlf, tmp_path / "ev0", log=lambda m: None)
    res = run_evaluation(out, generated_hlf, tmp_path / "ev", signals=["ttbar"], background=["wjets", "dyjets"],
                         log=lambda m: None)
    row = res["rows"][0]
    assert row["signal"] == "ttbar" and row["auc"] > 0.7
    assert res["sm_reference"] == "all events of wjets, dyjets"


def test_train_on_every_data_event(generated_hlf):
    """seeds/000 sec. 4 trains on the full dataset: validation_fraction 0 with train_on_data keeps every
    data event for training and takes the thresholds on the same events."""
    from sparkad.train.cocktail import CocktailConfig, build_training_data, load_hlf
    df, report = load_hlf(generated_hlf)
    n_data = int((df.dataset == "data").sum())
    data = build_training_data(df, report, CocktailConfig.from_dict({"train_on_data": True, "validation_fraction": 0}))
    assert len(data.x_train) == len(data.x_val) == n_data
    # the same events (shuffled for training)
    key = lambda x: np.sort(x.view([("", x.dtype)] * x.shape[1]), axis=0)  # noqa: E731
    assert np.array_equal(key(np.ascontiguousarray(data.x_train)), key(np.ascontiguousarray(data.x_val)))
    half = build_training_data(df, report, CocktailConfig.from_dict({"train_on_data": True}))
    assert len(half.x_train) + len(half.x_val) == n_data


def test_cocktail_weights_mode_and_contamination(generated_hlf):
    from sparkad.train.cocktail import CocktailConfig, build_training_data, load_hlf
    df, report = load_hlf(generated_hlf)
    w = build_training_data(df, report, CocktailConfig(background=["wjets", "dyjets"], mode="weights"))
    assert w.w_train.mean() == pytest.approx(1.0, rel=1e-5) and len(set(np.round(w.w_train, 6))) == 2
    c = build_training_data(df, report, CocktailConfig(background=["wjets", "dyjets"],
                                                       contamination={"dataset": "ttbar", "fraction": 0.05}))
    plain = build_training_data(df, report, CocktailConfig(background=["wjets", "dyjets"]))
    k = c.composition["contamination"]["events"]
    assert len(c.x_train) == len(plain.x_train) + k
    assert k / len(c.x_train) == pytest.approx(0.05, abs=0.002)
    fr = {n: d["fraction"] for n, d in plain.composition.items()}
    assert fr["wjets"] > fr["dyjets"] > 0 and sum(fr.values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="not in the HLF folder"):
        build_training_data(df, report, CocktailConfig(background=["nope"]))
