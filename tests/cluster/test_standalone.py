"""The spark-submit jobs on a real Spark standalone cluster (a master and two 1-core workers started by
tests/cluster/conftest.py): jobs/score.py, jobs/train.py (the barrier stage over both workers) and
jobs/monitor.py give the same outputs as on local[2]; one worker SIGKILLed in the middle of the scoring
pass costs a retry, not an event."""
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from spark_standalone import free_port, get_json

KEYS = ["dataset", "run", "luminosityBlock", "event"]
# written afresh by every run: times, cores, engine, paths of this run's output
VOLATILE = {"elapsed_s", "timings", "cores", "engine", "worker_peak_rss_mb", "created", "out"}


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _strip(doc):
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def digests(out: Path) -> dict:
    """sha256 of every scores file and of every product that a re-run must reproduce: the bytes of
    the Parquet, CSV and JSON files (times and run-specific fields left out of the JSON), the arrays of
    aggregates.npz (a zip whose entries carry their write time). Plots and histograms.root are left
    out: they hold the time they were written."""
    d = {}
    for p in sorted((out / "scores").rglob("*")):
        if p.is_file():
            d[str(p.relative_to(out))] = _sha(p.read_bytes())
    prod = out / "products"
    for p in sorted(prod.glob("*")):
        rel = str(p.relative_to(out))
        if p.suffix in (".csv", ".parquet"):
            d[rel] = _sha(p.read_bytes())
        elif p.suffix == ".json":
            d[rel] = _sha(json.dumps(_strip(json.loads(p.read_text())), sort_keys=True).encode())
        elif p.suffix == ".npz":
            with np.load(p) as z:
                d[rel] = _sha(b"".join(k.encode() + z[k].tobytes() for k in sorted(z.files)))
    rep = json.loads((out / "_score_report.json").read_text())
    d["_score_report.json"] = _sha(json.dumps(_strip({k: v for k, v in rep.items() if k != "model"}),
                                              sort_keys=True).encode())
    return d


def _summary(r) -> dict:
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])


@pytest.fixture(scope="module")
def many_fragments_hlf(generated_hlf, tmp_path_factory):
    """The generated HLF written ``K`` times over (event numbers shifted, so that every event is unique)
    in row groups of 1000 events: ~51 k events in ~55 fragments at --target-rows 1, so that a scoring
    pass has enough tasks to kill a worker in the middle of it."""
    k_copies = 4
    out = tmp_path_factory.mktemp("bighlf") / "hlf"
    rep = json.loads((generated_hlf / "_report.json").read_text())
    for name, ds in rep["datasets"].items():
        (out / name).mkdir(parents=True)
        table = pq.read_table(generated_hlf / name)  # the "sparkad" schema metadata travels with it
        for k in range(k_copies):
            ev = pa.compute.add(table.column("event"), pa.scalar(k * 10_000_000, table.schema.field("event").type))
            t = table.set_column(table.schema.get_field_index("event"), "event", ev)
            pq.write_table(t, out / name / f"copy{k:03d}.parquet", row_group_size=1000)
        for key in ("events_in", "selected", "written", "cut"):
            ds[key] = ds[key] * k_copies
        ds["sumw_written"] = ds["sumw_written"] * k_copies
    (out / "_report.json").write_text(json.dumps(rep))
    return out


@pytest.fixture(scope="module")
def local_score(standalone_cluster, many_fragments_hlf, trained_ae, tmp_path_factory):
    """The uninterrupted reference: jobs/score.py on local[2]."""
    out = tmp_path_factory.mktemp("local") / "scored"
    t = time.time()
    summary = _summary(standalone_cluster.submit("score", _score_args(many_fragments_hlf, trained_ae, out),
                                                 master="local[2]"))
    return out, summary, time.time() - t


def _score_args(hlf, model, out):
    return ["--hlf", hlf, "--model", model, "--out", out, "--target-rows", "1", "--batch-rows", "1000"]


def _events_in_out(hlf: Path, out: Path):
    """(events in the HLF, events in the scores, distinct event keys in the scores)."""
    n_in = sum(pq.ParquetFile(f).metadata.num_rows for f in hlf.glob("*/*.parquet"))
    df = pd.read_parquet(out / "scores", columns=KEYS[1:] + ["dataset"])
    return n_in, len(df), len(df.drop_duplicates())


def test_score_job_on_standalone_equals_local(standalone_cluster, many_fragments_hlf, trained_ae, local_score,
                                              tmp_path):
    ref, ref_summary, _ = local_score
    out = tmp_path / "scored"
    summary = _summary(standalone_cluster.submit("score", _score_args(many_fragments_hlf, trained_ae, out)))
    assert summary["total_events"] == ref_summary["total_events"] > 40_000
    assert summary["anomaly_threshold"] == ref_summary["anomaly_threshold"]
    assert json.loads((out / "_score_report.json").read_text())["cores"] == 2  # the two workers' executors
    mine, theirs = digests(out), digests(ref)
    assert sorted(mine) == sorted(theirs) and len(mine) > 40
    assert mine == theirs
    n_in, n_out, distinct = _events_in_out(many_fragments_hlf, out)
    assert n_in == n_out == distinct == summary["total_events"]


def test_monitor_job_on_standalone_equals_local(standalone_cluster, local_score, tmp_path):
    ref, _, _ = local_score
    outs = {}
    for master in (standalone_cluster.url, "local[2]"):
        outs[master] = tmp_path / master.replace("/", "_").replace(":", "_").replace("[", "_").replace("]", "")
        s = _summary(standalone_cluster.submit("monitor", ["--scores", ref, "--out", outs[master]], master=master))
        assert s["runs_added"]
    a, b = (outs[m] for m in (standalone_cluster.url, "local[2]"))

    def table(d, name):  # less the times of the update (`*_utc`)
        df = pd.read_parquet(d / name)
        return df.drop(columns=[c for c in df.columns if c.endswith("_utc")])

    def stamped(doc):
        if isinstance(doc, dict):
            return {k: stamped(v) for k, v in doc.items() if not k.endswith("_utc")}
        return [stamped(v) for v in doc] if isinstance(doc, list) else doc

    for name in ("runs.parquet", "lumis.parquet"):
        pd.testing.assert_frame_equal(table(a, name), table(b, name))
    assert len(table(a, "runs.parquet")) > 0
    for name in ("alarms.json", "check.json", "anomaly_threshold.json"):
        assert stamped(json.loads((a / name).read_text())) == stamped(json.loads((b / name).read_text())), name
    prom = [[ln for ln in (d / "metrics.prom").read_text().splitlines() if "timestamp_seconds" not in ln] for d in (a, b)]
    assert prom[0] == prom[1] and len(prom[0]) > 10


def test_train_barrier_stage_over_both_workers(standalone_cluster, generated_hlf, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("cocktail: {background: [wjets, dyjets]}\ntraining: {threads: 1}\n")
    args = ["--model", "ae", "--hlf", generated_hlf, "--workers", "2", "--epochs", "2", "--batch-size", "64",
            "--config", cfg]
    before = {p.name for i in range(2) for p in (standalone_cluster.base / f"worker{i}").glob("app-*")}
    cl = _summary(standalone_cluster.submit("train", [*args, "--out", tmp_path / "cluster"]))
    # the two barrier tasks ran in executors of both workers (one task slot each)
    apps = [{p.name for p in (standalone_cluster.base / f"worker{i}").glob("app-*")} - before for i in range(2)]
    assert len(apps[0]) == len(apps[1]) == 1 and apps[0] == apps[1]
    loc = _summary(standalone_cluster.submit("train", [*args, "--out", tmp_path / "local"], master="local[2]"))
    for s in (cl, loc):
        assert s["workers"] == 2 and s["identical_weights"] and s["replicas"] == 2
        assert sorted(s["shards"]) == [[0, 2], [1, 2]]
    assert cl["weights_sha256"] == loc["weights_sha256"]  # the same weights, bit for bit
    a, b = (json.loads((tmp_path / d / "model.json").read_text()) for d in ("cluster", "local"))
    assert a["thresholds"] == b["thresholds"] and a["history"]["epochs"] == b["history"]["epochs"] == 2


def _score_stage(ui: str):
    """(application id, the active stage with the most tasks) from the driver's REST API, or None."""
    try:
        [app] = get_json(f"{ui}/api/v1/applications", timeout=2)
        stages = get_json(f"{ui}/api/v1/applications/{app['id']}/stages?status=active", timeout=2)
    except (OSError, ValueError):
        return None
    stages = [s for s in stages if s["numTasks"] >= 40]
    return (app["id"], stages[0]) if stages else None


@pytest.mark.parametrize("attempt", range(int(os.environ.get("SPARKAD_FAULT_RUNS", "1"))))
def test_worker_killed_mid_pass(standalone_cluster, many_fragments_hlf, trained_ae, local_score, tmp_path, attempt):
    """SIGKILL one worker (its JVM, its executor JVM and their Python workers) as soon as the scoring
    stage has finished a task and while that worker's executor runs one: Spark retries its tasks on the
    other worker, and the outputs are those of the uninterrupted local run, event for event.
    SPARKAD_FAULT_RUNS=3 runs it three times on one cluster (a check for flakiness)."""
    ref, ref_summary, _ = local_score
    cluster = standalone_cluster
    out, events = tmp_path / "scored", tmp_path / "events"
    events.mkdir()
    port = free_port()
    t0 = time.time()
    proc = cluster.submit("score", _score_args(many_fragments_hlf, trained_ae, out), wait=False,
                          conf={"spark.ui.port": port, "spark.eventLog.enabled": "true",
                                "spark.eventLog.dir": events.as_uri(), "spark.eventLog.rolling.enabled": "false",
                                "spark.eventLog.compress": "false"})
    ui, killed, progress = f"http://127.0.0.1:{port}", None, None
    try:
        deadline = time.time() + 300
        while killed is None and proc.poll() is None and time.time() < deadline:
            found = _score_stage(ui)
            if found and found[1]["numCompleteTasks"] >= 1:
                app, stage = found
                tasks = get_json(f"{ui}/api/v1/applications/{app}/stages/{stage['stageId']}/{stage['attemptId']}"
                                 f"/taskList?length=1000", timeout=2)
                running = [t["executorId"] for t in tasks if t["status"] == "RUNNING"]
                for ex in running:  # which worker launched that executor: its work folder says
                    victim = next((i for i in range(2) if (cluster.base / f"worker{i}" / app / ex).is_dir()), None)
                    if victim is not None:
                        cluster.kill_worker(victim)
                        killed = victim
                        progress = (stage["numCompleteTasks"], stage["numTasks"], time.time() - t0)
                        break
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        if killed is not None:
            cluster.start_worker(killed)  # for whatever runs next on this cluster
    elapsed = time.time() - t0
    assert killed is not None, f"the scoring stage was never seen running:\n{stderr[-3000:]}"
    assert proc.returncode == 0, stderr[-4000:]
    summary = json.loads([ln for ln in stdout.splitlines() if ln.startswith("{")][-1])
    # Spark's own record of the run: the killed executor was removed and its running task(s) failed and were retried
    log = [json.loads(ln) for f in events.rglob("*") if f.is_file() for ln in f.read_text().splitlines()]
    lost = [e for e in log if e["Event"] == "SparkListenerTaskEnd" and e["Task End Reason"]["Reason"] != "Success"]
    removed = [e for e in log if e["Event"] == "SparkListenerExecutorRemoved"]
    assert lost and all(e["Task End Reason"]["Reason"] == "ExecutorLostFailure" for e in lost)
    assert len(removed) >= 1
    # events in = events out, none twice; every output byte as in the uninterrupted run
    n_in, n_out, distinct = _events_in_out(many_fragments_hlf, out)
    assert n_in == n_out == distinct == summary["total_events"] == ref_summary["total_events"]
    assert digests(out) == digests(ref)
    print("fault-test:", json.dumps({"killed_worker": killed, "stage_progress_at_kill": progress, "failed_tasks": len(lost),
                      "events_in": n_in, "events_out": n_out, "elapsed_s": round(elapsed, 1)}))
    shutil.rmtree(events, ignore_errors=True)
