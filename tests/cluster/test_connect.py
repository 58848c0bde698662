"""Spark Connect (`sc://`): a real Connect server (pyspark's SparkConnectServer on local[2], started by
the fixture) drives the scoring pass, the distributed training's barrier stage, the monitor job and the
scoring UDF through the client API that has no SparkContext and no RDDs; every output equals the
classic session's."""
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from spark_standalone import free_port
from test_standalone import digests

ROOT = Path(__file__).resolve().parents[2]


def _job(job: str, args, master: str, timeout: float = 600):
    """``python jobs/<job>.py --master MASTER ARGS``: a Connect client needs no spark-submit (nor a JVM)."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "SPARK_REMOTE"}
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--master", master, *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])


@pytest.fixture(scope="module")
def classic_score(generated_hlf, trained_ae, tmp_path_factory):
    out = tmp_path_factory.mktemp("classic") / "scored"
    return out, _job("score", ["--hlf", generated_hlf, "--model", trained_ae, "--out", out, "--target-rows", "2000"],
                     "local[2]")


def test_score_job_through_connect_equals_classic(connect_server, generated_hlf, trained_ae, classic_score, tmp_path):
    ref, ref_summary = classic_score
    out = tmp_path / "scored"
    summary = _job("score", ["--hlf", generated_hlf, "--model", trained_ae, "--out", out, "--target-rows", "2000"],
                   connect_server.url)
    assert summary["total_events"] == ref_summary["total_events"] > 10_000
    assert summary["anomaly_threshold"] == ref_summary["anomaly_threshold"]
    rep = json.loads((out / "_score_report.json").read_text())
    assert rep["fragments"] >= 4 and rep["cores"] == 2  # several tasks; the server's local[2] slots
    mine, theirs = digests(out), digests(ref)
    assert len(mine) > 10 and mine == theirs


def test_monitor_job_through_connect_equals_classic(connect_server, classic_score, tmp_path):
    import pandas as pd
    ref, _ = classic_score
    a, b = tmp_path / "connect", tmp_path / "classic"
    assert _job("monitor", ["--scores", ref, "--out", a], connect_server.url)["runs_added"]
    assert _job("monitor", ["--scores", ref, "--out", b], "local[2]")["runs_added"]
    for name in ("runs.parquet", "lumis.parquet"):
        x, y = (pd.read_parquet(d / name) for d in (a, b))
        stamp = [c for c in x.columns if c.endswith("_utc")]
        pd.testing.assert_frame_equal(x.drop(columns=stamp), y.drop(columns=stamp))
        assert len(x) > 0


def test_train_barrier_stage_through_connect(connect_server, generated_hlf, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("cocktail: {background: [wjets, dyjets]}\ntraining: {threads: 1}\n")
    args = ["--model", "ae", "--hlf", generated_hlf, "--workers", "2", "--epochs", "2", "--batch-size", "64",
            "--config", cfg]
    con = _job("train", [*args, "--out", tmp_path / "connect"], connect_server.url)
    loc = _job("train", [*args, "--out", tmp_path / "classic"], "local[2]")
    for s in (con, loc):
        assert s["workers"] == 2 and s["identical_weights"] and s["replicas"] == 2
        assert sorted(s["shards"]) == [[0, 2], [1, 2]]
    assert con["weights_sha256"] == loc["weights_sha256"]  # one barrier stage, the same weights bit for bit
    a, b = (json.loads((tmp_path / d / "model.json").read_text()) for d in ("connect", "classic"))
    assert a["thresholds"] == b["thresholds"]


def test_udf_through_connect(connect_server, generated_hlf, trained_ae, tmp_path):
    """The scoring UDF in a user's own Connect query equals the Scorer in this process."""
    script = tmp_path / "udf.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        from sparkad.core.spark import get_session
        from sparkad.score.engines import sparkad_score_udf
        spark = get_session("udf-test", {connect_server.url!r})
        udf = sparkad_score_udf({str(trained_ae)!r}, "mse")
        df = spark.read.parquet({str(generated_hlf / "ttbar")!r})
        rows = df.select("run", "luminosityBlock", "event", udf(*udf.features).alias("s")).toPandas()
        rows.attrs.clear()  # Connect leaves its plan metrics there (not JSON)
        rows.to_parquet({str(tmp_path / "udf.parquet")!r})
        print(json.dumps({{"rows": len(rows)}}))
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    import pandas as pd
    from sparkad.model.directory import Scorer
    got = pd.read_parquet(tmp_path / "udf.parquet").sort_values(["run", "luminosityBlock", "event"])
    hlf = pd.read_parquet(generated_hlf / "ttbar").sort_values(["run", "luminosityBlock", "event"])
    s = Scorer(trained_ae, scores=["mse"])
    want = s.score(hlf[s.features].to_numpy(np.float64))["mse"].astype(np.float32)
    assert len(got) == len(hlf) > 100
    np.testing.assert_array_equal(got["s"].to_numpy(np.float32), want)


def test_refused_connect_server_is_one_line(generated_hlf, trained_ae, tmp_path):
    url = f"sc://127.0.0.1:{free_port()}"
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "sparkad.cli", "score", "--hlf", str(generated_hlf), "--model",
                        str(trained_ae), "--out", str(tmp_path / "o"), "--master", url],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and time.time() - t < 60
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and url in err[0] and "no Spark Connect server answers" in err[0], r.stderr[-2000:]
    assert not (tmp_path / "o" / "_score_report.json").exists()


def test_generate_through_connect_gives_the_same_files(connect_server, tmp_path):
    """`sparkad generate --executor spark --master sc://...`: one task per file through the DataFrame path,
    the same branch arrays and fileset as the same command in one local process."""
    sys.path.insert(0, str(ROOT / "tests" / "generate"))
    from test_generate_distributed import assert_same, parametric_cfg, read
    import yaml
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(parametric_cfg()))

    def gen(out, *extra):
        r = subprocess.run([sys.executable, "-m", "sparkad.cli", "generate", "--preset", str(cfg), "--out",
                            str(tmp_path / out), "--quiet", *extra], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return read(tmp_path / out / "fileset.yaml")

    con = gen("con", "--executor", "spark", "--master", connect_server.url)
    assert len(con[1]["datasets"]["ttbar"]["files"]) == 2
    assert_same(gen("local"), con)
