"""Distributed training through Spark: a barrier stage of 2 TensorFlow workers
(MultiWorkerMirroredStrategy) launched by spark-submit; the same job without Spark for 1 worker."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path):
    p = tmp_path / "train.yaml"
    p.write_text("cocktail: {background: [wjets, dyjets]}\ntraining: {threads: 1}\n")
    return p


def _require_java():
    from sparkad.core.errors import SparkadError
    from sparkad.core.spark import check_java
    try:
        check_java()
    except SparkadError as e:
        pytest.skip(f"Spark needs Java: {e}")


def test_spark_submit_two_workers_identical_weights(generated_hlf, tmp_path):
    _require_java()
    out = tmp_path / "model"
    r = subprocess.run(["spark-submit", "--master", "local[2]", str(ROOT / "jobs" / "train.py"), "--model", "ae",
                        "--hlf", str(generated_hlf), "--out", str(out), "--workers", "2", "--epochs", "2",
                        "--batch-size", "64", "--config", str(_config(tmp_path))],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    assert summary["workers"] == 2 and summary["identical_weights"] and summary["replicas"] == 2
    assert sorted(summary["shards"]) == [[0, 2], [1, 2]]  # each worker read its own disjoint half
    model = json.loads((out / "model.json").read_text())
    assert model["config"]["workers"] == 2 and model["config"]["global_batch"] == 128
    assert model["history"]["epochs"] == 2
    assert not (out / "_workers").exists()
    # thresholds from the validation shares of both workers: about as many events as a local run's
    n_val = model["thresholds"]["mse"]["1000ppm"]["n"]
    assert n_val > 0.4 * sum(summary["n_train_per_worker"])
    from sparkad.train.distributed import weights_hash
    assert weights_hash(out) == summary["weights_sha256"][0]


def test_same_job_without_spark_for_one_worker(generated_hlf, tmp_path):
    out = tmp_path / "m1"
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "train.py"), "--model", "ae", "--hlf", str(generated_hlf),
                        "--out", str(out), "--workers", "1", "--epochs", "1", "--batch-size", "128",
                        "--config", str(_config(tmp_path))], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["ok"] and (out / "model.json").is_file()


def test_missing_java_gives_one_clear_line(generated_hlf, tmp_path):
    env = dict(os.environ, JAVA_HOME=str(tmp_path / "no-jdk"))
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "train.py"), "--model", "ae", "--hlf", str(generated_hlf),
                        "--out", str(tmp_path / "m"), "--workers", "2", "--master", "local[2]"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "no Java runtime found" in r.stderr
    assert "JAVA_HOME" in r.stderr and "Traceback" not in r.stderr
