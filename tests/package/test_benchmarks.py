"""The benchmark scripts run end to end at a tiny size and print their JSON summary (they are not run
anywhere else in CI; figures at this size mean nothing, so only the structure is checked)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script, *args, timeout=600):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, check=False,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert lines and lines[-1].get("what") == "summary", p.stdout[-2000:]
    return {d.get("what"): d for d in lines}


def test_generate_benchmark_pairs_generation_with_extraction(tmp_path):
    out = _run("generate.py", "--events", "3000", "--repeat", "2", "--workers", "2", "--gen-chunk", "1000",
               "--workdir", str(tmp_path))
    s = out["summary"]
    assert s["generate_events_per_s_per_core"] > 0 and s["extract_events_per_s_per_core"] > 0
    assert len(s["ratio_per_pair"]) == 2 and s["ratio_median_of_pairs"] > 0
    assert s["parallel_workers"] == 2 and s["parallel_events_per_s"] > 0
    st = out["generate_stages"]
    assert set(st["steady_min"]) == {"truth_s", "detector_s", "assemble_s", "root_write_s", "compression_only_s"}
    # compression is timed inside the writer's calls: a part of the writer's time, never more
    assert 0 < st["compression_only_s"] < st["root_write_s"] and st["uncompressed_bytes_per_event"] > 100
    assert out["extraction"]["events"] == 3000


def test_extract_benchmark_reports_ratio_to_bare_read(tmp_path):
    out = _run("extract.py", "--events", "3000", "--no-memory", "--repeat", "1", "--workdir", str(tmp_path))
    s = out["summary"]
    assert any(k.startswith("ratio") for k in s), s
    assert all(v > 0 for k, v in s.items() if k.startswith("ratio") and isinstance(v, (int, float))), s


def test_train_and_score_benchmarks(tmp_path):
    out = _run("train.py", "--events", "20000", "--epochs", "1", "--models", "ae", "--batch-size", "64",
               "--workdir", str(tmp_path / "train"))
    t = out["summary"]
    assert t["model"] == "ae" and t["events_per_s"] > 0
    model = tmp_path / "train" / "model_ae"
    # the training step's FLOPs, recounted from the exported weights: forward F = sum 2 k m, the weights'
    # gradients F again, the inputs' gradients F less the first layer's (the data need none)
    import numpy as np
    with np.load(model / "networks.npz") as z:
        dense = [z[k].shape for k in z.files if not k.startswith("baselines/") and z[k].ndim == 2]
    n_in = json.loads((model / "model.json").read_text())["n_inputs"]  # after pre-processing (one-hot columns)
    first = [k * m for k, m in dense if k == n_in]
    f = sum(2 * k * m for k, m in dense)
    assert len(first) == 1 and t["train_step_flops_per_event"] == 3 * f - 2 * first[0]
    assert out["limit"]["gemm_float32_gflops_one_thread"] > 0 and 0 < t["fraction_of_gemm_limit"] < 1
    out = _run("score.py", "--model", str(model), "--events", "20000", "--cores", "1", "--target-rows", "5000",
               "--select-fraction", "0.01", "--workdir", str(tmp_path / "score"))
    s = out["summary"]
    assert s["events"] == 20000 and s["ratio_spark_to_bare"] > 0 and s["python_worker_peak_rss_mb"] > 0
    # the limit in the same run: the AE's mse alone is its encoder and decoder products, 2 k m per dense layer
    meta = json.loads((model / "model.json").read_text())
    assert s["scores"] == ["mse", "mahalanobis", "pca", "iforest"]  # `sparkad score`'s default
    out = _run("score.py", "--model", str(model), "--events", "1e4,2e4", "--cores", "1", "--target-rows", "10000",
               "--select-fraction", "0.01", "--scores", "mse", "--workdir", str(tmp_path / "score_mse"))
    s = out["summary"]
    g = s["growth"]  # two sizes, each scored with all products, then removed
    assert g["events"] == [10000, 20000] and g["pass_s_per_event_ratio"] > 0 and len(g["worker_peak_rss_mb"]) == 2
    assert not any((tmp_path / "score_mse").glob("hlf_*")) and not any((tmp_path / "score_mse").glob("spark_*"))
    with np.load(model / "networks.npz") as z:
        shapes = [z[k].shape for k in z.files if not k.startswith("baselines/") and z[k].ndim == 2]
    assert s["scores"] == ["mse"] and meta["kind"] == "ae"
    assert s["dense_flops_per_event"] == sum(2 * k * m for k, m in shapes) > 0
    assert s["gemm_float32_gflops_one_thread"] > 0 and 0 < s["bare_fraction_of_gemm_limit"] < 1


def test_pythia_benchmark_pairs_engine_with_bare_pythia(tmp_path):
    out = _run("pythia.py", "--events", "20", "--processes", "dyjets", "--workdir", str(tmp_path))
    row = out["pythia"]  # the last measurement: with the lepton filter
    assert row["process"] == "dyjets" and row["lepton_pt_min"] == 20.0
    assert row["engine"]["events_tried"] >= row["engine"]["events_written"] == 20
    assert row["bare"]["events"] == row["engine"]["events_tried"] and row["ratio_engine_to_bare"] > 0
    assert set(out["summary"]["ratio_engine_to_bare"]) == {"dyjets@0", "dyjets@20"}


def test_generate_scaling_benchmark_on_every_executor(tmp_path):
    out = _run("generate_scaling.py", "--events", "3", "--files-per-worker", "1", "--workers", "1,2",
               "--executors", "local,spark,dask", "--workdir", str(tmp_path))
    s = out["summary"]
    assert set(s["events_per_s"]) == {"local", "spark", "dask"}
    assert all(set(r) == {"1", "2"} and min(r.values()) > 0 for r in s["events_per_s"].values())
    assert all(set(e) == {"2"} and e["2"] > 0 for e in s["efficiency"].values()) and s["goal_efficiency"] == 0.85
    assert out["run"]["files"] == 2 and out["run"]["events"] == 6  # the last run: dask, 2 workers


def _lines(script, *args, timeout=900):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    return [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]


def test_physics_benchmark_purity_recomputed_from_the_model(tmp_path):
    """Top re-discovery on the fast engine at a small size: the printed purities are those of the saved
    models scored again here on the data-like sample (its `truth` column), for the model's scores and
    the three baselines."""
    import math

    import numpy as np
    import pyarrow.parquet as pq

    from sparkad.model.directory import Scorer

    lines = _lines("physics.py", "--engine", "parametric", "--scale", "0.5", "--epochs", "1", "--models", "alad,ae",
                   "--workdir", str(tmp_path))
    sample = next(x for x in lines if x["what"] == "sample")
    n = sample["events"]
    assert sum(sample["composition"].values()) == n > 1000
    assert sample["ttbar_share"] == sample["composition"]["ttbar"] / n
    # drawn in proportion to the expected yields (each count rounded)
    exp = sample["expected_yield_4.4fb"]
    for k, c in sample["composition"].items():
        assert abs(c - n * exp[k] / sum(exp.values())) <= 1
    rows = [x for x in lines if x["what"] == "purity"]
    table = pq.read_table(tmp_path / "hlf_data_xsec" / "data" / "data_0000.parquet").to_pandas()
    truth = (table.truth == "ttbar").to_numpy()
    for kind, headline in (("alad", "l1"), ("ae", "mse")):
        scorer = Scorer(tmp_path / f"model_{kind}_xsec")
        assert scorer.score_names[0] == headline
        assert set(scorer.baseline_scores) == {"mahalanobis", "pca", "iforest"}
        scores = scorer.score(table[scorer.features].to_numpy(np.float64))
        for r in (r for r in rows if r["model"] == kind):
            s = scores[r["score"]]
            k = math.ceil(r["fraction"] * n)
            top = np.argsort(-s, kind="stable")[:k]
            assert (r["k"], r["signal"]) == (k, int(truth[top].sum())), r
            assert r["purity"] == r["signal"] / k and r["lo"] <= r["purity"] <= r["hi"]
            assert r["ceiling"] == min(1.0, truth.sum() / k)
        assert {r["score"] for r in rows if r["model"] == kind} == set(scorer.score_names)
    verdicts = {x["model"]: x for x in lines if x["what"] == "verdict"}
    assert set(verdicts) == {"alad", "ae"} and verdicts["alad"]["headline"] == "l1"
    assert lines[-1]["what"] == "summary" and set(lines[-1]["goal_met"]) == {"alad", "ae"}


def test_physics_benchmark_pythia_sample(tmp_path):
    """The Pythia sample of the benchmark (real generation, ~2500 events): jet-biased W, DY and tt̄ with
    the lepton filter, selected by top_rediscovery and resampled at the cross sections."""
    lines = _lines("physics.py", "--engine", "pythia", "--scale", "0.01", "--models", "", "--workdir", str(tmp_path))
    sample = lines[0]
    assert sample["what"] == "sample" and sample["engine"] == "pythia"
    assert set(sample["selected_mc"]) == {"wjets", "dyjets", "ttbar"} and all(sample["selected_mc"].values())
    # Pythia's own tries: the filter passes fewer events than were generated
    assert all(sample["generated"][k] > 0 for k in sample["selected_mc"])
    # tt̄ passes the top re-discovery selection far more often than W or DY
    acc = {k: sample["selected_mc"][k] / sample["generated"][k] for k in sample["selected_mc"]}
    assert acc["ttbar"] > 3 * max(acc["wjets"], acc["dyjets"])
    assert 0 < sample["composition"]["ttbar"] <= sample["selected_mc"]["ttbar"]
    assert lines[-1]["what"] == "summary" and lines[-1]["goal_met"] == {}


def test_overlay_benchmark_ks_recomputed_from_the_parquet(tmp_path):
    """Parametric vs Pythia overlay at a tiny size (60 Pythia events per process, real generation): a row per
    process x alad24 feature, the far-off list consistent with the rows, the figures written, and the KS
    distances those of the extracted Parquet files computed again here."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq
    from scipy.stats import ks_2samp

    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "overlay.py"), "--events", "60", "--param-factor", "5",
                        "--workdir", str(tmp_path), "--dpi", "30"], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    s = lines[-1]
    assert s["what"] == "summary" and set(s["far_off"]) == {"wjets", "dyjets", "ttbar"}
    rows = [x for x in lines if x["what"] == "overlay"]
    assert len(rows) == 3 * 25 and len({r["feature"] for r in rows}) == 25
    samples = {x["engine"]: x for x in lines if x["what"] == "sample"}
    assert samples["parametric"]["events_per_process"] == 300 and samples["pythia"]["events_per_process"] == 60
    for proc, far in s["far_off"].items():
        want = [r for r in rows if r["process"] == proc and r["ks"] > s["threshold"] and r["ks_p"] < s["alpha"]]
        assert sorted(f for f, _ in far) == sorted(r["feature"] for r in want)
        assert [k for _, k in far] == sorted((k for _, k in far), reverse=True)
    assert all(0 <= r["ks"] <= 1 and 0 <= r["ks_p"] <= 1 for r in rows)
    assert all("chi2_p" in r for r in rows if r["feature"] in ("NJ", "NB", "n_mu", "n_ele"))
    for f in s["plots"]:
        assert Path(f).stat().st_size > 10_000

    def column(engine, proc, feature):
        files = sorted((tmp_path / engine / "hlf" / proc).glob("*.parquet"))
        return pd.concat([pq.read_table(f, columns=[feature]).to_pandas() for f in files])[feature].to_numpy(np.float64)

    for proc, feature in (("wjets", "MT"), ("ttbar", "HT"), ("dyjets", "lep_iso_gamma"), ("ttbar", "NJ")):
        r = next(r for r in rows if r["process"] == proc and r["feature"] == feature)
        a, b = column("parametric", proc, feature), column("pythia", proc, feature)
        assert (r["n_parametric"], r["n_pythia"]) == (len(a), len(b)) and len(b) > 10
        ks = ks_2samp(a, b)
        assert r["ks"] == float(ks.statistic) and r["ks_p"] == float(ks.pvalue)
        assert np.isclose(r["mean_pythia"], b.mean()) and np.isclose(r["mean_parametric"], a.mean())


def test_weak_supervision_benchmark(tmp_path):
    """benchmarks/weak.py end to end at a tiny size: real Pythia QCD and W' -> XY, every method trained and
    its SIC printed; the supervised classifier (labels known) must separate the W' from QCD."""
    lines = _lines("weak.py", "--qcd-data", "1200", "--qcd-mc", "1200", "--signal", "500", "--epochs", "3",
                   "--folds", "3", "--injections", "0.5", "--workdir", str(tmp_path))
    sic = {d["method"]: d for d in lines if d.get("what") == "sic"}
    assert set(sic) == {"supervised", "idealised", "cwola", "cathode", "anode", "mahalanobis", "pca", "iforest"}
    assert all(d["sic_max"] > 0 and 0 <= d["test_auc"] <= 1 for d in sic.values())
    assert sic["supervised"]["test_auc"] > 0.7 and sic["cathode"]["n_sb"] > 0
    assert lines[0]["what"] == "timing" and lines[0]["events"] == 2900
