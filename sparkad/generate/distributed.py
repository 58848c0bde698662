"""The generator's per-file jobs on a local process pool, Spark or Dask (`sparkad generate --executor`).

One task per output file: a task gets the validated config (a plain dict) and its job (sample, file
index, event range, path), runs `run_job` and writes the file itself into the output folder, which must
therefore be a path every worker sees (a shared filesystem on a cluster). Only the small per-file result
(events, sum of weights, Pythia's cross-section parts) returns to the driver, which writes the fileset
YAML last. Every file draws from its own seeds (api.py), so the files are identical whatever the
executor and the number of workers.

A failed task is reported as one line naming its file (`PATH: generation failed (Error: reason)`), not
as the engine's traceback.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from pathlib import Path

from sparkad.core.errors import SparkadError, task_error

EXECUTORS = ("local", "spark", "dask")


def run_task(cfg: dict, job: dict) -> dict:
    """`run_job` on a worker, with any failure as a one-line SparkadError that names the file."""
    from sparkad.generate.api import run_job

    try:
        return run_job(cfg, job)
    except Exception as e:  # noqa: BLE001 - every failure becomes the file's one-line error
        text = str(e).strip().splitlines()
        raise SparkadError(f"{job['path']}: generation failed ({type(e).__name__}: "
                           f"{text[0][:300] if text else ''})") from None


def _pool_task(args):
    return run_task(*args)


def _connect_task(job, cfg):
    """One file of the plan, run by a Spark Connect session's task (``map_tasks``)."""
    return run_task(cfg, job)


class JobRunner:
    """Runs lists of per-file jobs on one executor; the Spark session or Dask cluster is started on the
    first non-trivial list and kept for the next ones (the Pythia engine's two phases)."""

    def __init__(self, executor: str = "local", workers: int = 1, master: str | None = None,
                 scheduler: str | None = None):
        if executor not in EXECUTORS:
            raise SparkadError(f"unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
        if master and executor != "spark":
            raise SparkadError(f"a Spark master ({master}) needs executor 'spark', not {executor!r}")
        if scheduler and executor != "dask":
            raise SparkadError(f"a Dask scheduler ({scheduler}) needs executor 'dask', not {executor!r}")
        self.executor, self.workers, self.master, self.scheduler = executor, int(workers), master, scheduler
        self._spark = self._client = self._cluster = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def run(self, cfg: dict, jobs: list[dict], bar=None) -> list[dict]:
        """The jobs' results (in completion order); `bar` (tqdm) advances by each file's events."""
        if not jobs:
            return []
        if self.executor == "spark":
            return self._run_spark(cfg, jobs, bar)
        if self.executor == "dask":
            return self._run_dask(cfg, jobs, bar)
        return self._run_local(cfg, jobs, bar)

    # ---------------------------------------------------------------- local

    def _run_local(self, cfg, jobs, bar):
        from sparkad.generate.api import run_job

        if self.workers == 1 or len(jobs) == 1:
            return [run_job(cfg, job, progress=bar.update if bar else None) for job in jobs]
        out = []
        with multiprocessing.get_context("fork").Pool(min(self.workers, len(jobs))) as pool:
            for r in pool.imap_unordered(_pool_task, [(cfg, j) for j in jobs]):
                out.append(r)
                if bar:
                    bar.update(r["n"])
        return out

    # ---------------------------------------------------------------- Spark

    def _session(self):
        if self._spark is None:
            from sparkad.core.spark import get_session

            # an active session (the caller's) is used as it is; under spark-submit (which starts the JVM
            # and sets the gateway port) the master is spark-submit's unless one is given
            master = self.master or (None if "PYSPARK_GATEWAY_PORT" in os.environ else f"local[{self.workers}]")
            self._spark = get_session("sparkad-generate", master)
        return self._spark

    def _run_spark(self, cfg, jobs, bar):
        from sparkad.core.spark import is_connect, map_tasks

        spark = self._session()
        if is_connect(spark):  # no SparkContext (accumulators, job groups): the DataFrame path, progress per run
            try:
                results = map_tasks(spark, _connect_task, jobs, cfg)
            except SparkadError:
                raise
            except Exception as e:  # noqa: BLE001 - a failed task: one line
                raise SparkadError(_one_line(e, jobs)) from None
            if bar:
                bar.update(sum(r["n"] for r in results))
            return results
        sc = spark.sparkContext
        done = sc.accumulator(0)  # events of the completed files: the driver sees it grow task by task

        def task(job):
            r = run_task(cfg, job)
            done.add(r["n"])
            return r

        rdd = sc.parallelize(jobs, len(jobs)).map(task)  # one task per file
        box: dict = {}

        def collect():
            try:
                box["results"] = rdd.collect()
            except BaseException as e:  # noqa: BLE001 - re-raised on the driver's thread below
                box["error"] = e

        group = f"sparkad-generate-{uuid.uuid4().hex[:8]}"
        t = threading.Thread(target=lambda: (sc.setJobGroup(group, "sparkad generate"), collect()), daemon=True)
        t.start()
        shown = 0
        try:
            while t.is_alive():
                t.join(0.5)
                if bar:
                    v = done.value
                    bar.update(v - shown)
                    shown = v
        except KeyboardInterrupt:
            sc.cancelJobGroup(group)
            raise
        if "error" in box:
            raise SparkadError(_one_line(box["error"], jobs)) from None
        if bar:
            bar.update(sum(r["n"] for r in box["results"]) - shown)
        return box["results"]

    # ---------------------------------------------------------------- Dask

    def _dask_client(self):
        if self._client is None:
            from distributed import Client, LocalCluster

            try:
                if not self.scheduler:
                    self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                 dashboard_address=None, silence_logs=40)
                self._client = Client(self.scheduler or self._cluster)
            except (OSError, TimeoutError) as e:
                where = f"Dask scheduler {self.scheduler}" if self.scheduler else "local Dask cluster"
                raise SparkadError(f"{where}: cannot connect ({task_error(e)})") from None
        return self._client

    def _run_dask(self, cfg, jobs, bar):
        from distributed import as_completed

        client = self._dask_client()
        [fcfg] = client.scatter([cfg], broadcast=True)
        tag = uuid.uuid4().hex[:8]
        futs = [client.submit(run_task, fcfg, j, key=f"generate-{Path(j['path']).stem}-{tag}", pure=False)
                for j in jobs]
        out = []
        try:
            for f in as_completed(futs):
                try:
                    r = f.result()
                except Exception as e:  # noqa: BLE001
                    raise SparkadError(_one_line(e, jobs)) from None
                out.append(r)
                if bar:
                    bar.update(r["n"])
        finally:
            client.cancel([f for f in futs if not f.done()])
        return out


def _one_line(exc: BaseException, jobs) -> str:
    msg = task_error(exc)
    if any(msg.startswith(j["path"]) for j in jobs):
        return msg
    return f"{Path(jobs[0]['path']).parent}: a generation task failed ({msg})"
