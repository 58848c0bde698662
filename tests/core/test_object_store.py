"""HLF folders on an object store (s3://), against a real S3 server: moto in server mode on 127.0.0.1,
credentials and endpoint passed the standard way (AWS_* environment variables). The rows written to
S3 equal the local extraction's; a prefix without its marker is refused in one line; a re-run after a
kill (staging objects left behind, marker gone, a dataset half copied) publishes the same rows; the
secret never appears in any written object."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

SECRET = "sparkad-test-secret-Zq9"
KEY_ID = "sparkadtestkeyid"
BUCKET = "sparkad-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 (a free port) with one bucket; the AWS_* variables point at it
    for this process and the commands it starts (and the model cache, SPARKAD_MODEL_CACHE, at a temporary
    folder). Yields a function giving ``s3://BUCKET/<key>``."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is a test dependency (pip install -e .[test])")
    boto3 = pytest.importorskip("boto3")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "SPARKAD_MODEL_CACHE": str(tmp_path_factory.mktemp("model-cache"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield lambda key: f"s3://{BUCKET}/{key}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _objects(prefix: str) -> dict[str, bytes]:
    import boto3
    c = boto3.client("s3")
    keys = [o["Key"] for page in c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {k: c.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def _rows(uri_or_path) -> pd.DataFrame:
    from sparkad.core import storage
    files = storage.list_files(storage.location(str(uri_or_path)), ".parquet")
    df = pd.concat([pq.read_table(str(f)).to_pandas() for f in files], ignore_index=True)
    for c in ("dataset", "label"):
        df[c] = df[c].astype(str)
    return df.sort_values(["run", "luminosityBlock", "event"]).reset_index(drop=True)


def sparkad(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "sparkad.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def local_and_s3(s3, cms2012_file, tmp_path_factory):
    """The same file extracted by `sparkad extract` into a local folder and into s3://BUCKET/hlf."""
    local = tmp_path_factory.mktemp("local") / "hlf"
    for out in (local, s3("hlf")):
        r = sparkad("extract", cms2012_file, "--out", out, "--dataset", "ds", "--quiet")
        assert r.returncode == 0, r.stderr
    return local, s3("hlf")


def test_extract_to_s3_writes_the_local_rows_and_marker(local_and_s3):
    local, uri = local_and_s3
    objs = _objects("hlf/")
    assert "hlf/_report.json" in objs and "hlf/_cutflow.json" in objs
    assert not any(k.startswith("hlf/_staging") for k in objs), "staging objects left behind"
    pd.testing.assert_frame_equal(_rows(f"{uri}/ds"), _rows(local / "ds"))
    rep_s3, rep_local = json.loads(objs["hlf/_report.json"]), json.loads((local / "_report.json").read_text())
    assert rep_s3["complete"] and rep_s3["totals"] == rep_local["totals"]
    assert rep_s3["parquet_files"] == rep_local["parquet_files"]
    assert json.loads(objs["hlf/_cutflow.json"]) == json.loads((local / "_cutflow.json").read_text())


def test_training_and_scoring_inputs_read_from_s3(local_and_s3):
    from sparkad.score.engines import hlf_report
    from sparkad.train.cocktail import load_hlf

    local, uri = local_and_s3
    df_s3, rep_s3 = load_hlf(uri)
    df_local, _ = load_hlf(local)
    key = ["run", "luminosityBlock", "event"]
    pd.testing.assert_frame_equal(df_s3.sort_values(key).reset_index(drop=True),
                                  df_local.sort_values(key).reset_index(drop=True))
    assert hlf_report(uri)["totals"] == rep_s3["totals"]
    # the scoring planner: the same fragments, naming s3:// objects
    from sparkad.score.engines import plan_fragments

    class AnyColumns:
        def check_columns(self, names, where):
            pass
    frags = plan_fragments(uri, rep_s3["datasets"], AnyColumns())
    frags_local = plan_fragments(local, rep_s3["datasets"], AnyColumns())
    assert [f.rows for f in frags] == [f.rows for f in frags_local]
    assert all(p.startswith(f"{uri}/ds/") for f in frags for p, _ in f.parts)


def test_credentials_never_written(local_and_s3):
    objs = _objects("")
    assert objs
    for key, data in objs.items():
        assert SECRET.encode() not in data and KEY_ID.encode() not in data, key


def test_credentials_in_the_uri_are_refused(s3, cms2012_file):
    r = sparkad("extract", cms2012_file, "--out", f"s3://{KEY_ID}:{SECRET}@{BUCKET}/creds", "--quiet")
    assert r.returncode != 0
    assert "credentials in the URI" in r.stderr and SECRET not in r.stderr + r.stdout
    assert not _objects("creds/")


def test_prefix_without_marker_is_refused_in_one_line(s3, local_and_s3, tmp_path):
    import boto3
    c = boto3.client("s3")
    for key, data in _objects("hlf/").items():  # a copy of the extraction, less its marker
        if not key.endswith("_report.json"):
            c.put_object(Bucket=BUCKET, Key="nomarker/" + key[len("hlf/"):], Body=data)
    r = sparkad("train", "--model", "ae", "--hlf", s3("nomarker"), "--out", tmp_path / "model", "--quiet")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no _report.json" in lines[0] and s3("nomarker") in lines[0], r.stderr
    from sparkad.core.errors import SparkadError
    from sparkad.score.engines import hlf_report
    with pytest.raises(SparkadError, match="no _report.json"):
        hlf_report(s3("nomarker"))


def test_rerun_after_a_kill_publishes_the_same_rows(s3, local_and_s3, cms2012_file):
    """A run killed while publishing: staging objects left, the marker deleted, one dataset object
    gone and a stray one in its place. Readers refuse it; the re-run gives the same rows and objects."""
    import boto3
    c = boto3.client("s3")
    local, _ = local_and_s3
    r = sparkad("extract", cms2012_file, "--out", s3("rerun"), "--dataset", "ds", "--quiet")
    assert r.returncode == 0, r.stderr
    before = {k: v for k, v in _objects("rerun/").items() if not k.endswith(".json")}
    c.delete_object(Bucket=BUCKET, Key="rerun/_report.json")
    c.delete_object(Bucket=BUCKET, Key=sorted(k for k in before if k.startswith("rerun/ds/"))[0])
    c.put_object(Bucket=BUCKET, Key="rerun/ds/stray-half-copied.parquet", Body=b"PAR1 not a whole file")
    c.put_object(Bucket=BUCKET, Key="rerun/_staging/ds/leftover.parquet", Body=b"PAR1 partial")
    from sparkad.core.errors import SparkadError
    from sparkad.train.cocktail import load_hlf
    with pytest.raises(SparkadError, match="did not complete"):
        load_hlf(s3("rerun"))
    r = sparkad("extract", cms2012_file, "--out", s3("rerun"), "--dataset", "ds", "--quiet")
    assert r.returncode == 0, r.stderr
    after = _objects("rerun/")
    assert {k: v for k, v in after.items() if not k.endswith(".json")} == before
    assert "rerun/_report.json" in after
    pd.testing.assert_frame_equal(_rows(s3("rerun/ds")), _rows(local / "ds"))


@pytest.fixture(scope="module")
def generated_on_s3(s3, generated_hlf):
    """The generated HLF folder (tests/conftest.py) copied object by object to s3://BUCKET/gen."""
    import boto3
    c = boto3.client("s3")
    for f in generated_hlf.rglob("*"):
        if f.is_file():
            c.put_object(Bucket=BUCKET, Key=f"gen/{f.relative_to(generated_hlf).as_posix()}", Body=f.read_bytes())
    return s3("gen")


def test_train_and_score_read_the_hlf_from_s3(generated_on_s3, generated_hlf, trained_ae, tmp_path):
    """`sparkad train --hlf s3://...` trains; Dask scoring tasks read the s3:// objects in their own
    processes (credentials from the inherited environment) and give the scores of the local folder."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text("cocktail: {background: [wjets, dyjets]}\ntraining: {threads: 1}\n")
    r = sparkad("train", "--model", "ae", "--hlf", generated_on_s3, "--out", tmp_path / "model", "--config", cfg,
                "--epochs", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    meta = (tmp_path / "model").rglob("*.json")
    assert any(generated_on_s3 in p.read_text() for p in meta)  # provenance names the URI

    from sparkad.score.engines import score_with_dask
    rs = score_with_dask(generated_on_s3, trained_ae, tmp_path / "s3", workers=1, batch_rows=5000)
    rl = score_with_dask(generated_hlf, trained_ae, tmp_path / "local", workers=1, batch_rows=5000)
    assert rs["total_events"] == rl["total_events"] > 0 and rs["hlf"] == generated_on_s3

    def scores(out):
        df = pd.read_parquet(out / "scores")
        df["dataset"] = df["dataset"].astype(str)
        return df.sort_values(["dataset", "run", "luminosityBlock", "event"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(scores(tmp_path / "s3"), scores(tmp_path / "local"))


def test_score_out_to_s3_scores_and_products(s3, generated_on_s3, generated_hlf, trained_ae, tmp_path):
    """`sparkad score --out s3://...` (Dask): the scores and products of a local run, staging prefix gone,
    _score_report.json written last; a re-run over a killed run's leftovers gives the same objects."""
    import boto3
    from sparkad.score.run import run_analysis
    common = dict(engine="dask", workers=1, batch_rows=5000)
    run_analysis(generated_hlf, trained_ae, tmp_path / "local", **common)
    r = sparkad("score", "--hlf", generated_on_s3, "--model", trained_ae, "--out", s3("scored"), "--engine", "dask",
                "--workers", "1", "--batch-rows", "5000")
    assert r.returncode == 0, r.stderr
    objs = _objects("scored/")
    assert "scored/_score_report.json" in objs and not any(k.startswith("scored/_staging") for k in objs)
    local = tmp_path / "local"
    local_files = {f.relative_to(local).as_posix() for f in local.rglob("*") if f.is_file()}
    assert {k[len("scored/"):] for k in objs if not k.endswith("/")} == local_files
    pd.testing.assert_frame_equal(pd.read_parquet(s3("scored/scores")).sort_values(["run", "event"]).reset_index(drop=True),
                                  pd.read_parquet(local / "scores").sort_values(["run", "event"]).reset_index(drop=True))
    for rel in local_files:
        if rel.startswith("products/") and rel.endswith((".json", ".csv")):
            assert objs[f"scored/{rel}"] == (local / rel).read_bytes(), rel
    rep = json.loads(objs["scored/_score_report.json"])
    assert rep["complete"] and rep["hlf"] == generated_on_s3 and rep["total_events"] > 0

    # a killed re-run: marker gone, a staged part and a stray product left behind
    c = boto3.client("s3")
    c.delete_object(Bucket=BUCKET, Key="scored/_score_report.json")
    c.put_object(Bucket=BUCKET, Key="scored/_staging/scores/dataset=wjets/part-00000.parquet", Body=b"PAR1 partial")
    c.put_object(Bucket=BUCKET, Key="scored/products/stray.json", Body=b"{}")
    r = sparkad("score", "--hlf", generated_on_s3, "--model", trained_ae, "--out", s3("scored"), "--engine", "dask",
                "--workers", "1", "--batch-rows", "5000")
    assert r.returncode == 0, r.stderr
    again = _objects("scored/")
    assert set(again) == set(objs)
    assert all(again[k] == objs[k] for k in objs if k.endswith(".parquet"))
    for k in (SECRET, KEY_ID):
        assert not any(k.encode() in v for v in again.values())

    # `sparkad report --scores s3://...`: the page is written next to the scores, as an object
    r = sparkad("report", "--scores", s3("scored"))
    assert r.returncode == 0, r.stderr
    page = _objects("scored/report.html")["scored/report.html"].decode()
    assert "data:image/png;base64," in page and generated_on_s3 in page and SECRET not in page


def test_score_out_to_s3_with_select_fraction(s3, generated_on_s3, generated_hlf, trained_ae, tmp_path):
    """--select-fraction with --out s3://: the kept float64 scores of the one-pass threshold live under
    the staging prefix and are gone after the run; products as a local run's."""
    from sparkad.score.run import run_analysis
    run_analysis(generated_hlf, trained_ae, tmp_path / "local", engine="dask", workers=1, batch_rows=5000,
                 fraction=0.02)
    r = sparkad("score", "--hlf", generated_on_s3, "--model", trained_ae, "--out", s3("scoredf"), "--engine", "dask",
                "--workers", "1", "--batch-rows", "5000", "--select-fraction", "0.02")
    assert r.returncode == 0, r.stderr
    objs = _objects("scoredf/")
    assert "scoredf/_score_report.json" in objs and not any(k.startswith("scoredf/_staging") for k in objs)
    rep = json.loads(objs["scoredf/_score_report.json"])
    local = json.loads((tmp_path / "local" / "_score_report.json").read_text())
    assert rep["anomaly_threshold"]["threshold"] == local["anomaly_threshold"]["threshold"]
    assert "aggregate_pass_s" in rep["timings"]
    for rel in ("products/astf.csv", "products/pps_yields.csv"):
        assert objs[f"scoredf/{rel}"] == (tmp_path / "local" / rel).read_bytes(), rel
    assert json.loads(objs["scoredf/products/summary.json"])["datasets"] == \
        json.loads((tmp_path / "local" / "products" / "summary.json").read_text())["datasets"]


@pytest.mark.parametrize("args", [
    ("train", "--model", "ae", "--hlf", "HLF", "--out", "gs://b/model"),
    ("score", "--hlf", "HLF", "--model", "hdfs://b/model", "--out", "OUT"),
    ("monitor", "--scores", "OUT", "--out", "abfs://b/monitor"),
    ("extract", "X.root", "--out", "gs://b/hlf"),
])
def test_unsupported_object_store_uses_are_refused_in_one_line(args, tmp_path):
    """Schemes other than s3:// are refused in one line, not made a local folder named `gs:`."""
    args = [str(tmp_path / "x.root") if a == "X.root" else str(tmp_path / "hlf") if a == "HLF"
            else str(tmp_path / "out") if a == "OUT" else a.replace("OUT", str(tmp_path)) for a in args]
    (tmp_path / "x.root").write_bytes(b"")
    r = sparkad(*args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and ("must be a local folder" in lines[0]
                                                      or "unsupported storage scheme" in lines[0]), r.stderr
    for name in ("s3:", "gs:", "hdfs:", "abfs:"):
        assert not (tmp_path / name).exists() and not list(tmp_path.glob(f"*/{name}"))
        assert not (tmp_path.parent / name).exists()


def test_missing_bucket_and_refused_server_are_one_line(s3, cms2012_file, tmp_path):
    """Checked before any event is processed: a bucket that does not exist, and no server listening."""
    import socket
    r = sparkad("extract", cms2012_file, "--out", "s3://no-such-bucket/hlf", "--quiet")
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "bucket no-such-bucket does not exist" in lines[0], r.stderr
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    r = subprocess.run([sys.executable, "-m", "sparkad.cli", "extract", str(cms2012_file), "--out", s3("hlf-down"),
                        "--quiet"], capture_output=True, text=True, timeout=300, env=env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "cannot reach the object store" in lines[0], r.stderr
    assert SECRET not in r.stderr


def test_spark_submit_scores_from_and_to_s3(s3, generated_on_s3, generated_hlf, trained_ae, ae_on_s3):
    """jobs/score.py under spark-submit on a local-cluster (executors in their own JVMs and Python workers,
    credentials from the inherited environment): --hlf, --model and --out at s3:// URIs (the model copied
    once on the driver, shipped to the executors as for a local one), the in-memory scores."""
    from threadpoolctl import threadpool_limits

    from sparkad.core.errors import SparkadError
    from sparkad.core.spark import check_java
    from sparkad.model.directory import Scorer
    try:
        check_java()
    except SparkadError as e:
        pytest.skip(str(e))
    from pathlib import Path
    job = Path(__file__).resolve().parents[2] / "jobs" / "score.py"
    r = subprocess.run(["spark-submit", "--master", "local-cluster[2,1,1024]", "--conf", "spark.ui.enabled=false",
                        str(job), "--hlf", generated_on_s3, "--model", ae_on_s3, "--out", s3("spark-scored"),
                        "--batch-rows", "5000"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    objs = _objects("spark-scored/")
    assert "spark-scored/_score_report.json" in objs and not any("_staging" in k for k in objs)
    keys = ["dataset", "run", "luminosityBlock", "event"]
    hlf = pd.read_parquet(generated_hlf)
    hlf["dataset"] = hlf["dataset"].astype(str)
    hlf = hlf.sort_values(keys).reset_index(drop=True)
    with threadpool_limits(4, user_api="blas"):
        ref = Scorer(trained_ae).score_frame(hlf)["mse"]
    got = pd.read_parquet(s3("spark-scored/scores"))
    got["dataset"] = got["dataset"].astype(str)
    got = got.sort_values(keys).reset_index(drop=True)
    assert len(got) == len(hlf)
    import numpy as np
    np.testing.assert_array_equal(got.mse.to_numpy(), np.asarray(ref))
    assert not any(SECRET.encode() in v for v in objs.values())
    assert json.loads(objs["spark-scored/_score_report.json"])["model"] == ae_on_s3

    # jobs/monitor.py on the same cluster: the executors count the s3:// score objects (pyarrow, one task per
    # file; Spark's reader would need hadoop-aws), the monitor folder is an s3:// prefix: the pyarrow counts
    from sparkad.monitor.runs import per_ls_counts_from_scores
    mon_job = job.parent / "monitor.py"
    r = subprocess.run(["spark-submit", "--master", "local-cluster[2,1,1024]", "--conf", "spark.ui.enabled=false",
                        str(mon_job), "--scores", s3("spark-scored"), "--out", s3("spark-mon")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    want = per_ls_counts_from_scores(s3("spark-scored"), summary["score"], summary["threshold"])
    count = ["run", "luminosityBlock", "events", "selected"]
    got = pd.read_parquet(s3("spark-mon/lumis.parquet"))[count].sort_values(count[:2]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want[count].reset_index(drop=True), check_dtype=False)
    assert len(got) > 10 and summary["runs_added"]
    _no_secret("spark-mon/")


# ------------------------------------------------------------------ model directories, evaluate, monitor

def _put_tree(local, key: str, last: str | None = None) -> None:
    """A local folder copied object by object under s3://BUCKET/<key>/ (``last``: the file put last)."""
    import boto3
    c = boto3.client("s3")
    files = sorted((f for f in local.rglob("*") if f.is_file()), key=lambda f: f.name == last)
    for f in files:
        c.put_object(Bucket=BUCKET, Key=f"{key}/{f.relative_to(local).as_posix()}", Body=f.read_bytes())


@pytest.fixture(scope="module")
def ae_on_s3(s3, trained_ae):
    """The trained AE's model directory copied to s3://BUCKET/models/ae (model.json last, as published)."""
    _put_tree(trained_ae, "models/ae", last="model.json")
    return s3("models/ae")


def _no_secret(prefix: str) -> None:
    objs = _objects(prefix)
    assert objs
    for key, data in objs.items():
        assert SECRET.encode() not in data and KEY_ID.encode() not in data, key


def test_model_evaluate_and_monitor_on_s3_match_the_local_ones(s3, generated_hlf, trained_ae, ae_on_s3, tmp_path):
    """`--model s3://...` scores (Dask tasks get the model from the driver's cached copy) bit-identically to
    the local directory; `evaluate --out s3://` and `monitor --scores/--out s3://` write the local files;
    `report --monitor s3://` includes the monitor; no object holds the secret."""
    import numpy as np

    from sparkad.evaluate.report import run_evaluation
    from sparkad.model.store import cache_root, local_model_dir
    from sparkad.monitor.runs import monitor_scores
    from sparkad.score.run import run_analysis

    from sparkad.core import storage
    from sparkad.model.directory import Scorer

    rs = run_analysis(generated_hlf, ae_on_s3, s3("m-scored"), engine="dask", workers=1, batch_rows=5000)
    model_hash = json.loads((trained_ae / "model.json").read_text())["content_hash"]
    assert rs["model"] == ae_on_s3 and rs["model_hash"] == model_hash and rs["total_events"] > 0
    keys = ["dataset", "run", "luminosityBlock", "event"]
    hlf = pd.read_parquet(generated_hlf)
    hlf["dataset"] = hlf["dataset"].astype(str)
    hlf = hlf.sort_values(keys).reset_index(drop=True)
    got = pd.read_parquet(s3("m-scored/scores"))
    got["dataset"] = got["dataset"].astype(str)
    got = got.sort_values(keys).reset_index(drop=True)
    ref = Scorer(trained_ae, scores=rs["scores"]).score_frame(hlf)  # the local directory's scores, in memory
    assert len(got) == len(hlf) and rs["scores"]
    for name in rs["scores"]:  # the same bits (stored as float32)
        np.testing.assert_array_equal(got[name].to_numpy(), np.asarray(ref[name], np.float32), err_msg=name)
    cached = cache_root() / model_hash
    assert (cached / "networks.npz").read_bytes() == (trained_ae / "networks.npz").read_bytes()
    before = (cached / "networks.npz").stat().st_mtime_ns
    assert local_model_dir(ae_on_s3) == cached and (cached / "networks.npz").stat().st_mtime_ns == before  # read once
    storage.download_tree(s3("m-scored"), tmp_path / "scored")  # the same scores, as a local folder

    ev_l = run_evaluation(trained_ae, generated_hlf, tmp_path / "eval", log=lambda m: None)
    ev_s = run_evaluation(ae_on_s3, generated_hlf, s3("m-eval"), log=lambda m: None)
    objs = _objects("m-eval/")
    assert {k[len("m-eval/"):] for k in objs} == {f.name for f in (tmp_path / "eval").iterdir()}
    for name in ("performance.csv", "performance.md"):
        assert objs[f"m-eval/{name}"] == (tmp_path / "eval" / name).read_bytes(), name
    perf = json.loads(objs["m-eval/performance.json"])
    assert perf["model"] == ae_on_s3 and ev_s["rows"] == ev_l["rows"]
    assert {k: v for k, v in perf.items() if k != "model"} == \
        {k: v for k, v in json.loads((tmp_path / "eval" / "performance.json").read_text()).items() if k != "model"}

    ml = monitor_scores(tmp_path / "scored", tmp_path / "mon")
    ms = monitor_scores(s3("m-scored"), s3("m-mon"))  # the scores read from s3 too
    assert ms["runs_total"] == ml["runs_total"] > 0 and ms["threshold"] == ml["threshold"]
    assert ms["files"] == [s3(f"m-mon/{os.path.basename(f)}") for f in ml["files"]]
    mon = _objects("m-mon/")
    assert {k[len("m-mon/"):] for k in mon} == {f.name for f in (tmp_path / "mon").iterdir() if not f.name.startswith(".")}
    count = ["run", "luminosityBlock", "events", "selected"]
    pd.testing.assert_frame_equal(pd.read_parquet(s3("m-mon/lumis.parquet"))[count],
                                  pd.read_parquet(tmp_path / "mon" / "lumis.parquet")[count])
    again = monitor_scores(s3("m-scored"), s3("m-mon"))  # the state came back from s3: nothing counted twice
    assert again["lumis_added"] == 0 and not again["runs_added"] and _objects("m-mon/") == mon

    r = sparkad("report", "--scores", s3("m-scored"), "--monitor", s3("m-mon"))
    assert r.returncode == 0, r.stderr
    page = _objects("m-scored/report.html")["m-scored/report.html"].decode()
    assert f"{ml['runs_total']} runs in the monitoring table" in page and model_hash in page
    for prefix in ("m-scored/", "m-eval/", "m-mon/"):
        _no_secret(prefix)


def test_train_out_to_s3_marker_last_resume_and_rerun(s3, generated_hlf, tmp_path):
    """`train --out s3://...`: a run stopped mid-way publishes nothing (no marker) and resumes from its local
    work folder to the weights of an uninterrupted run; a publication killed half-way (marker and an object
    gone) is refused, and re-running the command publishes the same objects, bit for bit."""
    import boto3
    import numpy as np

    from sparkad.core.errors import SparkadError
    from sparkad.model.store import local_model_dir, work_root
    from sparkad.train.api import train_from_config

    cfg = tmp_path / "train.yaml"
    cfg.write_text("cocktail: {background: [wjets, dyjets]}\ntraining: {threads: 1}\n")
    kw = dict(config_file=cfg, epochs=2, batch_size=500, progress=False, log=lambda m: None)
    train_from_config("ae", generated_hlf, tmp_path / "local", **kw)
    uri = s3("models/trained")
    r = train_from_config("ae", generated_hlf, uri, stop_after_steps=5, **kw)  # as if killed after 5 steps
    assert r["interrupted"] and not _objects("models/trained/")
    logs = []
    train_from_config("ae", generated_hlf, uri, **{**kw, "log": logs.append})
    assert any("resuming" in m for m in logs)
    objs = _objects("models/trained/")
    assert {k[len("models/trained/"):] for k in objs} == \
        {"model.json", "networks.npz", "validation_scores.json", "history.jsonl", "checkpoint/state.npz"}
    assert not any(work_root().iterdir())  # the work folder is gone once published
    import io
    a, b = np.load(tmp_path / "local" / "networks.npz"), np.load(io.BytesIO(objs["models/trained/networks.npz"]))
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:  # the same run (a resumed run equals an uninterrupted one up to float32 rounding)
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)

    c = boto3.client("s3")  # killed while publishing: the marker and the networks gone, the rest there
    for key in ("model.json", "networks.npz"):
        c.delete_object(Bucket=BUCKET, Key=f"models/trained/{key}")
    with pytest.raises(SparkadError, match="not a complete sparkad model directory"):
        local_model_dir(uri)
    train_from_config("ae", generated_hlf, uri, **kw)  # resumes from the published checkpoint: nothing to train
    assert _objects("models/trained/") == objs
    _no_secret("models/trained/")


def test_model_prefix_errors_are_one_line(s3, ae_on_s3, generated_hlf, tmp_path):
    """A model prefix whose model.json was deleted, a prefix with nothing, a missing bucket: one line naming
    the URI, before any scoring."""
    import boto3
    objs = _objects("models/ae/")
    c = boto3.client("s3")
    for key, data in objs.items():  # the model, less its marker
        if not key.endswith("/model.json"):
            c.put_object(Bucket=BUCKET, Key="models/nomarker/" + key[len("models/ae/"):], Body=data)
    for model, what in ((s3("models/nomarker"), "not a complete sparkad model directory (no model.json"),
                        (s3("models/nothing"), "not a complete sparkad model directory (no model.json"),
                        ("s3://no-such-bucket/models/ae", "bucket no-such-bucket does not exist")):
        r = sparkad("score", "--hlf", generated_hlf, "--model", model, "--out", tmp_path / "out", "--engine", "dask")
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and what in lines[0] and model in lines[0], r.stderr
    r = sparkad("evaluate", "--model", s3("models/nomarker"), "--hlf", generated_hlf, "--out", s3("x-eval"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and s3("models/nomarker") in lines[0], r.stderr
    assert not (tmp_path / "out").exists() and not _objects("x-eval/")


def test_distributed_training_to_s3(s3, generated_on_s3, generated_hlf, tmp_path):
    """spark-submit jobs/train.py --workers 2 with --hlf and --out at s3:// URIs: the chief trains into its
    node's work folder and publishes the model directory (model.json last), the other worker's folder stays
    on its node and is removed; the weights are those of the same run on local folders, bit for bit."""
    from sparkad.core.errors import SparkadError
    from sparkad.core.spark import check_java
    try:
        check_java()
    except SparkadError as e:
        pytest.skip(str(e))
    from pathlib import Path
    job = Path(__file__).resolve().parents[2] / "jobs" / "train.py"
    cfg = tmp_path / "train.yaml"
    cfg.write_text("cocktail: {background: [wjets, dyjets]}\ntraining: {threads: 1}\n")

    def submit(hlf, out):
        r = subprocess.run(["spark-submit", "--master", "local[2]", "--conf", "spark.ui.enabled=false", str(job),
                            "--model", "ae", "--hlf", str(hlf), "--out", str(out), "--workers", "2", "--epochs", "2",
                            "--batch-size", "64", "--config", str(cfg)], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])

    remote = submit(generated_on_s3, s3("dist-ae"))
    local = submit(generated_hlf, tmp_path / "local")
    for s in (remote, local):
        assert s["workers"] == 2 and s["identical_weights"] and sorted(s["shards"]) == [[0, 2], [1, 2]]
    assert remote["weights_sha256"] == local["weights_sha256"]
    objs = _objects("dist-ae/")
    assert "dist-ae/model.json" in objs and "dist-ae/networks.npz" in objs
    assert not any("_workers" in k for k in objs)
    assert objs["dist-ae/networks.npz"] == (tmp_path / "local" / "networks.npz").read_bytes()
    _no_secret("dist-ae/")
