"""Scoring: Spark, Dask, the Spark UDF and in-process scoring give identical scores; outputs are
partitioned by dataset and complete; bad input gets one clear line."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from threadpoolctl import threadpool_limits

from sparkad.core.errors import SparkadError
from sparkad.model.directory import Scorer
from sparkad.score.engines import score_with_dask, score_with_spark, sparkad_score_udf

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["dataset", "run", "luminosityBlock", "event"]


def _read(out):
    df = pd.read_parquet(Path(out) / "scores")
    df["dataset"] = df["dataset"].astype(str)
    return df.sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(generated_hlf, trained_ae):
    hlf = pd.read_parquet(generated_hlf)
    hlf["dataset"] = hlf["dataset"].astype(str)
    hlf = hlf.sort_values(KEYS).reset_index(drop=True)
    # scored here at 4 BLAS threads; the Spark and Dask workers and the UDF run at one (issue 13)
    with threadpool_limits(4, user_api="blas"):
        return hlf, Scorer(trained_ae).score_frame(hlf)["mse"]


def test_spark_and_dask_equal_in_memory_reference(spark, generated_hlf, trained_ae, reference, tmp_path):
    hlf, ref = reference
    rs = score_with_spark(generated_hlf, trained_ae, tmp_path / "spark", spark=spark, batch_rows=1000)
    rd = score_with_dask(generated_hlf, trained_ae, tmp_path / "dask", workers=2, batch_rows=777)
    a, b = _read(tmp_path / "spark"), _read(tmp_path / "dask")
    assert len(a) == len(b) == len(hlf) == rs["total_events"] == rd["total_events"]
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(a.mse.to_numpy(), ref)  # bit-identical, whatever the batch sizes
    pd.testing.assert_frame_equal(a[KEYS[1:] + ["weight", "label"]], hlf[KEYS[1:] + ["weight", "label"]].astype(a[KEYS[1:] + ["weight", "label"]].dtypes))
    assert sorted(p.name for p in (tmp_path / "spark" / "scores").iterdir() if p.is_dir()) == \
        sorted(f"dataset={d}" for d in hlf.dataset.unique())
    rep = json.loads((tmp_path / "spark" / "_score_report.json").read_text())
    assert rep["complete"] and rep["model_hash"] == Scorer(trained_ae).content_hash
    assert not list((tmp_path / "spark").glob(".scores-*"))  # no staging left behind


def test_udf_equals_batch_job(spark, generated_hlf, trained_ae, reference):
    hlf, ref = reference
    udf = sparkad_score_udf(str(trained_ae), "mse", batch_size=500)
    df = spark.read.parquet(str(generated_hlf / "ttbar"))
    got = df.withColumn("mse", udf(*udf.features)).select("event", "mse").toPandas().set_index("event").mse
    want = pd.Series(ref[(hlf.dataset == "ttbar").to_numpy()], index=hlf.event[hlf.dataset == "ttbar"].to_numpy())
    np.testing.assert_array_equal(got.loc[want.index].to_numpy(), want.to_numpy())
    struct = sparkad_score_udf(str(trained_ae))
    row = df.limit(3).withColumn("s", struct(*struct.features)).select("s.mse").toPandas()
    assert row.mse.notna().all()
    with pytest.raises(SparkadError, match=r"has no score\(s\) 'l9'"):
        sparkad_score_udf(str(trained_ae), "l9")


def test_model_that_does_not_match_the_data(spark, generated_hlf, trained_ae, tmp_path):
    # HLF with a different feature set than the model's
    from sparkad.extract.fileset import load_fileset
    from sparkad.extract.run import ExtractOptions, run_extraction
    other = tmp_path / "hlf_cms2012"
    run_extraction(load_fileset(next(generated_hlf.parent.glob("gen/fileset.yaml"))),
                   ExtractOptions.from_conf(other, feature_set="cms2012", progress=False), log=lambda m: None)
    with pytest.raises(SparkadError, match="lacks feature"):
        score_with_spark(other, trained_ae, tmp_path / "o", spark=spark)
    with pytest.raises(SparkadError, match="lacks feature"):
        score_with_dask(other, trained_ae, tmp_path / "o2")
    r = subprocess.run(["sparkad", "score", "--hlf", str(tmp_path), "--model", str(trained_ae), "--out", str(tmp_path / "x"),
                        "--engine", "dask"], check=False, capture_output=True, text=True)
    assert r.returncode == 1 and "no _report.json" in r.stderr and "Traceback" not in r.stderr


def test_spark_submit_on_local_cluster(generated_hlf, trained_ae, reference, tmp_path):
    from sparkad.core.errors import SparkadError as E
    from sparkad.core.spark import check_java
    try:
        check_java()
    except E as e:
        pytest.skip(str(e))
    hlf, ref = reference
    r = subprocess.run(["spark-submit", "--master", "local-cluster[2,1,1024]", "--conf", "spark.ui.enabled=false",
                        str(ROOT / "jobs" / "score.py"), "--hlf", str(generated_hlf), "--model", str(trained_ae),
                        "--out", str(tmp_path / "o"), "--batch-rows", "5000"], check=False, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["total_events"] == len(hlf)
    assert summary["anomaly_threshold"]["source"].startswith("model: 1000ppm")
    prod = json.loads((tmp_path / "o" / "products" / "summary.json").read_text())
    assert sum(d["events"] for d in prod["datasets"].values()) == len(hlf)
    np.testing.assert_array_equal(_read(tmp_path / "o").mse.to_numpy(), ref)


def test_corrupt_model_directories_are_refused(trained_ae, tmp_path):
    """A model directory whose files are not what was trained: one line, before any task runs."""
    import shutil

    def copy(name):
        d = tmp_path / name
        shutil.copytree(trained_ae, d)
        return d

    d = copy("truncated")
    blob = (d / "networks.npz").read_bytes()
    (d / "networks.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SparkadError, match="do not match their content hash"):
        Scorer(d)
    d = copy("edited")
    meta = json.loads((d / "model.json").read_text())
    meta["features"] = meta["features"][::-1]  # same names, another order: plausible but wrong scores
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(SparkadError, match="do not match their content hash"):
        Scorer(d)
    d = copy("reshaped")  # no stored hash (hand-made): the networks are probed with one event
    meta.pop("content_hash")
    meta["features"] = meta["features"][::-1]
    (d / "model.json").write_text(json.dumps(meta))
    with np.load(d / "networks.npz") as z:
        arrays = {k: z[k] for k in z.files}
    first = min(k for k in arrays if not k.startswith("baselines/"))
    arrays[first] = arrays[first][:-1]
    np.savez(d / "networks.npz", **arrays)
    with pytest.raises(SparkadError, match="unreadable model files"):
        Scorer(d)
    with np.load(trained_ae / "networks.npz") as z:  # a baseline's tree cut short: refused, never walked
        arrays = {k: z[k] for k in z.files}
    arrays["baselines/iforest_child"] = arrays["baselines/iforest_child"][:-3]
    np.savez(d / "networks.npz", **arrays)
    with pytest.raises(SparkadError, match="unreadable model files.*inconsistent shapes"):
        Scorer(d)


def test_bad_hlf_rows_on_spark(spark, generated_hlf, trained_ae, tmp_path):
    """NaN features are scored NaN and counted; a file without an id column is refused before the
    pass; a corrupt data page fails its task with one line naming the folder, not a Spark traceback."""
    import shutil

    import pyarrow.parquet as pq

    hlf = tmp_path / "hlf"
    shutil.copytree(generated_hlf, hlf)
    path = min((hlf / "ttbar").glob("*.parquet"))
    t = pq.read_table(path)
    feat = Scorer(trained_ae).features[0]
    col = t.column(feat).to_numpy().copy()
    col[:3] = np.nan
    pq.write_table(t.set_column(t.schema.get_field_index(feat), feat, pa.array(col)), path)
    logs = []
    rep = score_with_spark(hlf, trained_ae, tmp_path / "o", spark=spark, log=logs.append)
    assert rep["nan_scores"]["ttbar"] == 3 and rep["nan_scores"]["wjets"] == 0
    assert any("3 event(s) have non-finite features" in m for m in logs)

    pq.write_table(t.drop_columns(["luminosityBlock"]), path)
    with pytest.raises(SparkadError, match="lacks column.*luminosityBlock"):
        score_with_spark(hlf, trained_ae, tmp_path / "o2", spark=spark)

    pq.write_table(t, path, compression="zstd")
    data = bytearray(path.read_bytes())
    meta_len = int.from_bytes(data[-8:-4], "little")
    data[4:len(data) - 8 - meta_len] = bytes(len(data) - 12 - meta_len)  # pages zeroed, footer intact
    path.write_bytes(bytes(data))
    with pytest.raises(SparkadError, match=r"a scoring task failed \("):
        score_with_spark(hlf, trained_ae, tmp_path / "o3", spark=spark)
    assert not (tmp_path / "o3" / "_score_report.json").exists()


def test_evaluation_refuses_non_finite_features(generated_hlf, trained_ae, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from sparkad.evaluate.report import run_evaluation

    hlf = tmp_path / "hlf"
    shutil.copytree(generated_hlf, hlf)
    path = min((hlf / "ttbar").glob("*.parquet"))
    t = pq.read_table(path)
    col = t.column("HT").to_numpy().copy()
    col[:5] = np.nan
    pq.write_table(t.set_column(t.schema.get_field_index("HT"), "HT", pa.array(col)), path)
    with pytest.raises(SparkadError, match="ttbar: 5 event\\(s\\) with non-finite feature\\(s\\) HT"):
        run_evaluation(trained_ae, hlf, tmp_path / "ev", signals=["ttbar"], background=["wjets", "dyjets"],
                       log=lambda m: None)


def test_leftovers_of_unfinished_task_attempts_are_not_published(tmp_path):
    """A task killed in mid-write (its executor lost) leaves its temporary file in the staging folder; the
    retry writes the fragment's file. Only the fragments' files are published; a missing one is an error."""
    from sparkad.score.engines import Fragment, drop_attempt_leftovers, part_path
    frags = [Fragment(0, "a", (), 0), Fragment(1, "b", (), 0)]
    for f in frags:
        part_path(tmp_path, f).parent.mkdir(parents=True, exist_ok=True)
        part_path(tmp_path, f).write_bytes(b"x")
    (tmp_path / "dataset=a" / ".part-00000.0123abcd.tmp.parquet").write_bytes(b"half")
    assert drop_attempt_leftovers(tmp_path, frags) == 1
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == \
        ["dataset=a/part-00000.parquet", "dataset=b/part-00001.parquet"]
    part_path(tmp_path, frags[1]).unlink()
    with pytest.raises(SparkadError, match="1 fragment file"):
        drop_attempt_leftovers(tmp_path, frags)
