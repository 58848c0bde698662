"""Faults survived (issue 16), with real processes and real SIGKILLs, no mocks:

- the scoring driver killed in mid-pass: `spark-submit --master local[2] jobs/score.py` SIGKILLed (its whole
  process group: the spark-submit JVM, the Python driver and the Python workers) once fragments' scores
  files are in the staging folder: nothing is marked complete and readers refuse the folder in one line;
  the same command run again publishes what an uninterrupted run publishes, byte for byte;
- a Dask worker killed during `sparkad extract --scheduler`: a real `dask scheduler` and two `dask worker
  --nthreads 1` processes on 127.0.0.1; one worker (its nanny and its worker process) SIGKILLed while it
  writes a chunk, or else after a few chunks: the extraction completes with the rows of a local one;
- `sparkad train` killed after a checkpoint: no model marked complete (scoring refuses it in one line); the
  same command resumes from the checkpoint and ends with the weights of an uninterrupted run, bit for bit;
- one TensorFlow worker of the barrier stage of jobs/train.py killed: the job fails in bounded time with a
  line naming the worker, and no model is marked complete.

The measured outcomes are printed on a `fault-test:` line (pytest -s) and documented in docs/cluster.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from spark_standalone import free_port, spark_home
from test_standalone import _events_in_out, digests

ROOT = Path(__file__).resolve().parents[2]
# by path, not by the scripts beside sys.executable: an environment may take pyspark, dask or sparkad from
# another prefix (a venv over system site-packages has no bin/spark-submit of its own)
SPARK_SUBMIT = Path(spark_home()) / "bin" / "spark-submit"
SPARKAD = [sys.executable, "-m", "sparkad.cli"]
DASK_SCHEDULER = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
DASK_WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]
ID = ["dataset", "run", "luminosityBlock", "event"]


# ---------------------------------------------------------------------------------------------- processes

def _start(cmd, logs: Path, name: str, env=None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so that it and every child can be killed at once), its
    output in ``logs/<name>.out`` / ``.err`` (files: a pipe nobody reads could block it)."""
    with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
        p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, env=env, start_new_session=True)
    p.out_path, p.err_path = logs / f"{name}.out", logs / f"{name}.err"
    return p


def _stderr(p) -> str:
    return p.err_path.read_text(errors="replace")


def _group_pids(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(d))
    return pids


def _kill_group(p: subprocess.Popen, sig=signal.SIGKILL, timeout: float = 60) -> None:
    """Signal the whole process group of ``p`` and wait until none of its processes is left."""
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(30)
    _poll(lambda: not _group_pids(p.pid), timeout, f"the processes of group {p.pid} to exit")


def _poll(cond, timeout: float, what: str, proc=None, interval: float = 0.05):
    """``cond()``'s first true value, polled every ``interval`` s; fails after ``timeout`` s, or at once
    when ``proc`` ends first."""
    t_end = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"waiting for {what}: the process ended first (rc {proc.returncode}):\n"
                                 f"{_stderr(proc)[-3000:]}")
        if time.time() > t_end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _one_line_error(returncode: int, stderr: str, *needles) -> str:
    """A refusal: non-zero exit, one line on stderr naming what is wrong, no traceback."""
    err = stderr.strip()
    assert returncode not in (0, None), "expected a failure"
    assert err and len(err.splitlines()) == 1 and "Traceback" not in err, err[-3000:]
    for n in needles:
        assert n in err, err
    return err


def _json_line(text: str) -> dict:
    return json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])


def _spark_env() -> dict:
    return dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")


def _require_java():
    from sparkad.core.errors import SparkadError
    from sparkad.core.spark import check_java
    try:
        check_java()
    except SparkadError as e:
        pytest.skip(f"Spark needs Java: {e}")


def _report(what: str, **measured) -> None:
    print(f"fault-test: {what}", json.dumps(measured))


# ------------------------------------------------------------------------- 1. the scoring driver killed

@pytest.fixture(scope="module")
def fragmented_hlf(generated_hlf, tmp_path_factory):
    """The generated HLF (same events, same report) rewritten in row groups of 400 events: ~33 fragments at
    --target-rows 1, so that the pass has tasks left when the driver is killed."""
    out = tmp_path_factory.mktemp("fraghlf") / "hlf"
    for src in sorted(generated_hlf.iterdir()):
        if src.is_dir():
            (out / src.name).mkdir(parents=True)
            for f in sorted(src.glob("*.parquet")):
                pq.write_table(pq.read_table(f), out / src.name / f.name, row_group_size=400)
    for f in ("_report.json", "_cutflow.json"):
        shutil.copy(generated_hlf / f, out / f)
    return out


def _score_cmd(hlf, model, out) -> list:
    return [SPARK_SUBMIT, "--master", "local[2]", "--conf", "spark.ui.enabled=false",
            "--conf", "spark.ui.showConsoleProgress=false", ROOT / "jobs" / "score.py", "--hlf", hlf,
            "--model", model, "--out", out, "--target-rows", "1", "--batch-rows", "400"]


def test_score_driver_killed_mid_pass(spark, fragmented_hlf, trained_ae, tmp_path):
    """SIGKILL the whole spark-submit process group as soon as the pass has written a fragment's scores
    file (and before it has written them all): no marker, readers refuse the folder in one line; the same
    command again publishes the uninterrupted run's scores and products, event for event."""
    from sparkad.score.run import run_analysis

    ref = tmp_path / "ref"  # the uninterrupted run (in this process, on the session's local[2])
    ref_doc = run_analysis(fragmented_hlf, trained_ae, ref, engine="spark", spark=spark, target_rows=1, batch_rows=400)
    n_frags = ref_doc["fragments"]
    assert n_frags >= 20

    out = tmp_path / "scored"
    cmd = _score_cmd(fragmented_hlf, trained_ae, out)
    t0 = time.time()
    proc = _start(cmd, tmp_path, "killed", env=_spark_env())

    def staged():  # the fragments' scores files the pass has written so far (attempts' temporaries not counted)
        return [f for d in out.glob(".scores-*") for f in d.rglob("part-*.parquet")]

    try:
        _poll(lambda: len(staged()) >= 1, 300, "the first fragment's scores file in the staging folder", proc, 0.02)
    finally:
        _kill_group(proc)
    t_kill, done_at_kill = time.time() - t0, len(staged())
    assert proc.returncode == -signal.SIGKILL
    assert done_at_kill < n_frags, "the pass had finished before the kill: not a mid-pass kill"

    # nothing looks complete: no marker, nothing published, and the readers say so in one line
    assert not (out / "_score_report.json").exists() and not (out / "scores").exists()
    r = subprocess.run([*SPARKAD, "report", "--scores", out], capture_output=True, text=True, timeout=120)
    refusal = _one_line_error(r.returncode, r.stderr, str(out), "_score_report.json")

    t1 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=_spark_env(), timeout=600)
    rerun_s = time.time() - t1
    assert r.returncode == 0, r.stderr[-4000:]
    summary = _json_line(r.stdout)
    n_in, n_out, distinct = _events_in_out(fragmented_hlf, out)
    assert n_in == n_out == distinct == summary["total_events"] == ref_doc["total_events"]
    mine, theirs = digests(out), digests(ref)
    assert sorted(mine) == sorted(theirs) and len(mine) > n_frags
    assert mine == theirs
    # what a reader sees is what the uninterrupted run left (the killed run's hidden staging folder aside)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in ref.iterdir() if not p.name.startswith("."))
    stale = sorted(p.name for p in out.iterdir() if p.name.startswith((".scores-", ".side-")))
    _report("score driver killed", fragments=n_frags, done_at_kill=done_at_kill, kill_after_s=round(t_kill, 1),
            refusal=refusal, rerun_s=round(rerun_s, 1), events_in=n_in, events_out=n_out, distinct=distinct,
            files_compared=len(mine), stale_staging_left=stale)
    # the killed run's staging folder (hidden, outside scores/: no reader sees it) goes with the re-run
    assert not stale, f"the re-run left the killed run's staging folder {stale} in {out}"


# ----------------------------------------------------------------------- 2. a Dask worker killed in extraction

class DaskCluster:
    """A `dask scheduler` and ``n`` `dask worker --nthreads 1` processes on 127.0.0.1, each in its own
    process group (a worker's nanny and its worker process are killed together)."""

    def __init__(self, base: Path, n: int = 2):
        self.base, self.n = Path(base), n
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.scheduler = None
        self.workers: list = [None] * n
        self.pids: list = [[] for _ in range(n)]

    def start(self, timeout: float = 120) -> "DaskCluster":
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = _start([*DASK_SCHEDULER, "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
                                self.base, "scheduler")
        for i in range(self.n):
            self.start_worker(i)
        self.wait_workers(self.n, timeout)
        return self

    def start_worker(self, i: int) -> None:
        self.workers[i] = _start([*DASK_WORKER, self.address, "--nthreads", "1", "--nworkers", "1",
                                  "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}",
                                  "--local-directory", self.base / f"w{i}"], self.base, f"worker{i}-{time.time():.0f}")

    def wait_workers(self, n: int, timeout: float) -> None:
        from distributed import Client
        with Client(self.address, timeout=timeout) as c:
            c.wait_for_workers(n, timeout=timeout)
        # the processes of each worker's group (nanny, worker), for `writer`
        self.pids = [_group_pids(w.pid) if w is not None else [] for w in self.workers]

    def writer(self) -> tuple[int, str] | None:
        """(worker, path) of a chunk's temporary file that one of a worker's processes holds open (in
        mid-write), or None."""
        for i, pids in enumerate(self.pids):
            for pid in pids:
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    except OSError:
                        continue
                    if "/_staging/" in target and target.endswith(".tmp.parquet"):
                        return i, target
        return None

    def kill_worker(self, i: int) -> None:
        _kill_group(self.workers[i])
        self.workers[i], self.pids[i] = None, []

    def stop(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p is not None and p.poll() is None:
                _kill_group(p, signal.SIGTERM, timeout=15)


@pytest.fixture(scope="module")
def chunked_input(tmp_path_factory):
    """Generated ROOT files whose baskets hold 500 events (60 clusters, so 60 chunks at --chunksize 500) and
    their local extraction (the iterative executor, in this process): the reference."""
    from sparkad.extract.fileset import load_fileset
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.generate.api import generate

    d = tmp_path_factory.mktemp("chunked")
    fileset = generate("default", n_events=30000, out_dir=d / "gen", seed=5, progress=False, chunk_size=500)
    run_extraction(load_fileset(fileset), ExtractOptions.from_conf(d / "local", feature_set="alad24", chunksize=500,
                                                                   progress=False), log=lambda m: None)
    return fileset, d / "local"


def _hlf_rows(hlf: Path) -> pd.DataFrame:
    """Every row of an HLF folder, read file by file as sparkad lists them (`*.parquet`, hidden files
    included: a temporary file left behind would show), sorted by event."""
    frames = [pd.read_parquet(f) for d in sorted(p for p in hlf.iterdir() if p.is_dir()) for f in sorted(d.glob("*.parquet"))]
    df = pd.concat(frames, ignore_index=True)
    for c in ("dataset", "label"):
        df[c] = df[c].astype(str)
    return df.sort_values(ID).reset_index(drop=True)


def _same_extraction(out: Path, ref: Path) -> int:
    """``out`` holds exactly the files and rows of ``ref``: no event missing, none twice, the same features."""
    rep, ref_rep = (json.loads((d / "_report.json").read_text()) for d in (out, ref))
    assert rep["complete"] and rep["totals"] == ref_rep["totals"] and rep["chunks"] == ref_rep["chunks"]
    # the per-dataset counts; the sums of weights to the last bits only: Dask adds the chunks' sums in its own order
    sumw = {n: d.pop("sumw_written") for n, d in rep["datasets"].items()}
    assert sumw == pytest.approx({n: d.pop("sumw_written") for n, d in ref_rep["datasets"].items()}, rel=1e-12)
    assert rep["datasets"] == ref_rep["datasets"]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.parent != out)
    assert files == sorted(rep["parquet_files"]) == sorted(ref_rep["parquet_files"])
    rows, ref_rows = _hlf_rows(out), _hlf_rows(ref)
    assert not rows.duplicated(ID).any()
    assert len(rows) == rep["totals"]["written"]
    pd.testing.assert_frame_equal(rows, ref_rows)
    return len(rows)


def _extract_cmd(fileset, out, scheduler) -> list:
    return [*SPARKAD, "extract", "--fileset", fileset, "--out", out, "--features", "alad24", "--executor", "dask",
            "--scheduler", scheduler, "--chunksize", "500", "-q"]


def test_dask_worker_killed_during_extraction(chunked_input, tmp_path):
    """SIGKILL one of two Dask workers in the middle of `sparkad extract --scheduler`, while it writes a
    chunk's file if caught doing so within 1 s: the scheduler redoes its chunks on the other worker and the
    extraction completes with exactly the local extraction's files and rows; the killed attempt's temporary
    file is removed, not published. (Were it to fail instead, it must say so in one line and leave nothing
    marked complete, and the same command must then complete identically: checked on that branch.)"""
    fileset, ref = chunked_input
    n_chunks = json.loads((ref / "_report.json").read_text())["chunks"]
    assert n_chunks >= 50
    (tmp_path / "dask").mkdir()
    cluster = DaskCluster(tmp_path / "dask")
    out = tmp_path / "hlf"
    try:
        cluster.start()
        t0 = time.time()
        proc = _start(_extract_cmd(fileset, out, cluster.address), tmp_path, "extract")

        def chunks():  # chunk files the workers have finished (temporaries are hidden: not counted)
            return [f for f in (out / "_staging").glob("*/*.parquet") if not f.name.startswith(".")]

        victim = temporary = None
        try:
            # both workers busy (six chunks written), then the first worker caught in mid-write
            _poll(lambda: len(chunks()) >= 6, 300, "six chunk files in the staging folder", proc, 0.01)
            t_hunt = time.time()
            while proc.poll() is None and victim is None:
                found = cluster.writer()
                if found is not None:
                    victim, temporary = found
                elif time.time() - t_hunt > 1:
                    victim = 0
            assert victim is not None, f"the extraction ended before a worker was killed:\n{_stderr(proc)[-2000:]}"
            done_at_kill, t_kill = len(chunks()), time.time() - t0
            cluster.kill_worker(victim)
            left_by_kill = temporary is not None and Path(temporary).exists()  # killed before its rename
            proc.wait(600)
        finally:
            if proc.poll() is None:
                _kill_group(proc)
        elapsed = time.time() - t0
        assert done_at_kill < n_chunks
        err = _stderr(proc)
        removed = next((int(ln.split()[1]) for ln in err.splitlines() if ln.startswith("removed ")), 0)
        if proc.returncode == 0:
            outcome = "completed"
            rows = _same_extraction(out, ref)
        else:  # a clear failure, nothing marked complete, and the same command completes identically
            outcome = "failed: " + _one_line_error(proc.returncode, err)
            assert not (out / "_report.json").exists()
            cluster.start_worker(victim)
            cluster.wait_workers(2, 120)
            r = subprocess.run(_extract_cmd(fileset, out, cluster.address), capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, r.stderr[-3000:]
            rows = _same_extraction(out, ref)
        if left_by_kill:  # the killed attempt's temporary was in the staging folder: removed, not published
            assert outcome != "completed" or removed >= 1, err[-3000:]
        _report("dask worker killed", outcome=outcome, chunks=n_chunks, done_at_kill=done_at_kill,
                killed_in_mid_write=temporary is not None, temporary_left_by_kill=left_by_kill,
                temporaries_removed=removed, kill_after_s=round(t_kill, 1), elapsed_s=round(elapsed, 1), rows=rows)
    finally:
        cluster.stop()


# ----------------------------------------------------------------------------------- 3. training killed

def _train_cmd(hlf, out, cfg) -> list:
    return [*SPARKAD, "train", "--model", "ae", "--hlf", hlf, "--out", out, "--config", cfg, "--epochs", "10",
            "--batch-size", "16", "-q"]


def _weights_sha(model_dir: Path) -> str:
    """sha256 over the arrays of networks.npz (names and bytes: the zip's entries carry their write time)."""
    h = hashlib.sha256()
    with np.load(model_dir / "networks.npz") as z:
        for k in sorted(z.files):
            h.update(k.encode() + np.ascontiguousarray(z[k]).tobytes())
    return h.hexdigest()


def _checkpoint_counters(model_dir: Path) -> dict | None:
    p = model_dir / "checkpoint" / "state.npz"
    try:
        with np.load(p) as z:
            return json.loads(str(z["counters"]))
    except (OSError, ValueError, KeyError, EOFError):
        return None


def test_training_killed_after_a_checkpoint_resumes(generated_hlf, tmp_path):
    """SIGKILL `sparkad train` once it has checkpointed inside its second epoch: the model directory is not
    complete and `sparkad score` refuses it in one line; the same command resumes from the checkpoint and
    ends with the weights and thresholds of an uninterrupted run, bit for bit, and a history of every
    epoch once."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text("cocktail: {background: [wjets, dyjets]}\ntraining: {threads: 1, checkpoint_every: 10}\n")
    model = tmp_path / "model"
    cmd = _train_cmd(generated_hlf, model, cfg)
    t0 = time.time()
    proc = _start(cmd, tmp_path, "train-killed")
    try:
        # a checkpoint inside the second epoch (every 10 steps): the re-run resumes in mid-epoch
        seen = _poll(lambda: (c := _checkpoint_counters(model)) and c["epoch"] >= 1 and c["step_in_epoch"] > 0 and c,
                     300, "a checkpoint inside the second epoch", proc, 0.02)
    finally:
        _kill_group(proc)
    t_kill = time.time() - t0
    assert proc.returncode == -signal.SIGKILL
    at_kill = _checkpoint_counters(model)
    assert at_kill["epoch"] < 10, "the run had finished its epochs before the kill"
    assert not (model / "model.json").exists()
    r = subprocess.run([*SPARKAD, "score", "--hlf", generated_hlf, "--model", model, "--out", tmp_path / "s",
                        "--engine", "dask"], capture_output=True, text=True, timeout=300)
    refusal = _one_line_error(r.returncode, r.stderr, str(model), "model.json")
    assert not (tmp_path / "s" / "_score_report.json").exists()

    t1 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    resumed_s = time.time() - t1
    assert r.returncode == 0, r.stderr[-3000:]
    line = next((ln for ln in r.stderr.splitlines() if ln.startswith("resuming from")), None)
    assert line == (f"resuming from {model / 'checkpoint' / 'state.npz'} at epoch {at_kill['epoch']}, "
                    f"step {at_kill['global_step']}"), r.stderr[-3000:]
    doc = json.loads((model / "model.json").read_text())
    history = [json.loads(ln) for ln in (model / "history.jsonl").read_text().splitlines()]
    assert doc["history"]["epochs"] == 10 and [h["epoch"] for h in history] == list(range(1, 11))

    ref = tmp_path / "uninterrupted"
    t2 = time.time()
    r = subprocess.run(_train_cmd(generated_hlf, ref, cfg), capture_output=True, text=True, timeout=600)
    uninterrupted_s = time.time() - t2
    assert r.returncode == 0, r.stderr[-3000:]
    ref_doc = json.loads((ref / "model.json").read_text())
    assert _weights_sha(model) == _weights_sha(ref)
    assert doc["thresholds"] == ref_doc["thresholds"]
    assert [h["global_step"] for h in history] == \
        [json.loads(ln)["global_step"] for ln in (ref / "history.jsonl").read_text().splitlines()]
    _report("training killed", seen_at_kill={k: seen[k] for k in ("epoch", "global_step")},
            resumed_at={k: at_kill[k] for k in ("epoch", "step_in_epoch", "global_step")},
            kill_after_s=round(t_kill, 1), refusal=refusal, resumed_run_s=round(resumed_s, 1),
            uninterrupted_run_s=round(uninterrupted_s, 1), weights_identical=True)


# ---------------------------------------------------------------- 4. one worker of distributed training killed

def _tf_workers(out: Path) -> dict[int, int]:
    """index → pid of the `python -m sparkad.train.distributed` processes training into ``out`` (their
    TF_CONFIG names the index)."""
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if b"sparkad.train.distributed" not in argv or str(out).encode() not in argv:
                continue
            with open(f"/proc/{d}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            found[int(json.loads(env[b"TF_CONFIG"])["task"]["index"])] = int(d)
        except (OSError, KeyError, ValueError):
            continue
    return found


def test_distributed_training_worker_killed_fails_clearly(generated_hlf, tmp_path):
    """`spark-submit jobs/train.py --workers 2` on local[2]: once both TensorFlow workers have checkpointed,
    SIGKILL worker 1's process. The other worker's collective ops are aborted (TensorFlow's peer health
    check): the job must end, not hang, with a non-zero exit and an error line per worker, no training
    process left behind and no model marked complete."""
    _require_java()
    cfg = tmp_path / "train.yaml"
    cfg.write_text("cocktail: {background: [wjets, dyjets]}\ntraining: {threads: 1, checkpoint_every: 10}\n")
    out = tmp_path / "model"
    cmd = [SPARK_SUBMIT, "--master", "local[2]", "--conf", "spark.ui.enabled=false", ROOT / "jobs" / "train.py",
           "--model", "ae", "--hlf", generated_hlf, "--out", out, "--workers", "2", "--epochs", "30",
           "--batch-size", "16", "--config", cfg]
    t0 = time.time()
    proc = _start(cmd, tmp_path, "train-distributed", env=_spark_env())
    try:
        _poll(lambda: (out / "checkpoint" / "state.npz").exists()
              and (out / "_workers" / "1" / "checkpoint" / "state.npz").exists(), 400,
              "both TensorFlow workers' first checkpoint", proc, 0.05)
        workers = _tf_workers(out)
        assert sorted(workers) == [0, 1], workers
        t_kill = time.time()
        os.kill(workers[1], signal.SIGKILL)
        try:
            proc.wait(240)  # TensorFlow checks its peers' health every 30 s at most: far less than this
        except subprocess.TimeoutExpired:
            pytest.fail(f"the job still runs {time.time() - t_kill:.0f} s after a TensorFlow worker was killed (hung)")
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    ended_after_s = time.time() - t_kill
    # spark-submit's PythonRunner merges the Python driver's stderr into its stdout
    err = proc.out_path.read_text(errors="replace") + _stderr(proc)
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert proc.returncode == 1, err[-3000:]
    assert [ln.split(":")[0:2] for ln in lines] == [["error", " worker 0"], ["error", " worker 1"]], lines
    assert "Traceback" not in "\n".join(lines)
    assert not (out / "model.json").exists()
    _poll(lambda: not _tf_workers(out), 30, "the surviving TensorFlow worker to exit")
    _report("distributed training worker killed", kill_after_s=round(t_kill - t0, 1),
            job_ended_after_kill_s=round(ended_after_s, 1), returncode=proc.returncode, error_lines=lines)
    # each line says what happened: worker 1 killed, worker 0 lost its peer
    assert lines[1].startswith("error: worker 1: killed by SIGKILL"), lines
    assert lines[0].startswith("error: worker 0: lost a peer worker"), lines

    # the documented recovery: the same command again resumes both workers from their checkpoints (taken at the
    # same step: the checkpoint follows a collective step) and ends with one complete model; its weights are
    # those of an uninterrupted run
    t = time.time()
    again = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=_spark_env(), timeout=900)
    rerun_s = time.time() - t
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    summary = json.loads([ln for ln in again.stdout.splitlines() if ln.startswith("{")][-1])
    assert summary["identical_weights"] and (out / "model.json").exists() and not (out / "_workers").exists()
    history = [json.loads(ln)["epoch"] for ln in (out / "history.jsonl").read_text().splitlines()]
    assert history == list(range(1, len(history) + 1)) and len(history) > 2, history  # each epoch once
    fresh = tmp_path / "fresh"
    whole = subprocess.run([str(c) for c in cmd[:cmd.index("--out") + 1]] + [str(fresh)] + [str(c) for c in cmd[cmd.index("--out") + 2:]],
                           capture_output=True, text=True, env=_spark_env(), timeout=900)
    assert whole.returncode == 0, (whole.stdout + whole.stderr)[-3000:]
    uninterrupted = json.loads([ln for ln in whole.stdout.splitlines() if ln.startswith("{")][-1])
    _report("distributed training re-run", rerun_s=round(rerun_s, 1), weights=summary["weights_sha256"],
            uninterrupted=uninterrupted["weights_sha256"])
    assert summary["weights_sha256"] == uninterrupted["weights_sha256"]
