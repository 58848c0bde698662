"""Scaling of distributed Pythia generation (`sparkad generate --executor local|spark|dask`) with workers.

    python benchmarks/generate_scaling.py [--events 400] [--files-per-worker 2] [--workers 1,2]
        [--executors local,spark,dask] [--process ttbar] [--repeat 1] [--workdir DIR]

For each executor and each worker count K: K x files-per-worker output files of --events Pythia events
each (one sample, one task per file, Pythia's initialisation in every file, as in production), timed
around `sparkad.generate.api.generate` once the executor is up and warm (the Spark session local[K] or
the Dask LocalCluster of K processes started, and every worker having generated a small file, so the
imports and the numba caches are out of the timings). Rate = events written / wall seconds (the fastest
of --repeat runs on the same engine). Efficiency of K workers = rate(K) / (K / K0 x rate(K0)), K0 the
smallest count; the goal (issue 15) is >= 0.85 at 2 workers here (and measured at 16 on a bigger machine:
--workers 1,16). One JSON line per measurement (with the 1-minute load average before and after), then
a summary line. On a machine shared with other jobs the efficiency measures the contention too: note
the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

GOAL = 0.85


def cfg(process: str, files: int, events: int, seed: int, name: str) -> dict:
    return {"name": name, "engine": "pythia", "sqrt_s": 8000, "seed": seed, "max_events_per_file": events,
            "chunk_size": 5000, "samples": {process: {"process": process, "events": files * events}}}


class Executor:
    """The executor's engine, started once per worker count and kept for the warm-up and the timed run."""

    def __init__(self, name: str, workers: int):
        self.name, self.workers = name, workers
        self.cluster = self.spark = None

    def __enter__(self):
        if self.name == "spark":
            from sparkad.core.spark import get_session

            self.spark = get_session("sparkad-generate-scaling", f"local[{self.workers}]",
                                     {"spark.ui.enabled": "false"})
        elif self.name == "dask":
            from distributed import LocalCluster

            self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=40)
        return self

    def __exit__(self, *exc):
        if self.spark is not None:
            self.spark.stop()
        if self.cluster is not None:
            self.cluster.close()

    def generate(self, config: dict, out: Path):
        from sparkad.generate.api import generate

        kw = {"workers": self.workers, "executor": self.name}
        if self.name == "spark":
            kw["master"] = f"local[{self.workers}]"  # the session above (getOrCreate)
        elif self.name == "dask":
            kw["scheduler"] = self.cluster.scheduler_address
        return generate(config, out_dir=out, progress=False, **kw)


def measure(executor: str, workers: int, a, work: Path) -> dict:
    files = workers * a.files_per_worker
    with Executor(executor, workers) as ex:
        # one small file per worker, in parallel: imports, numba caches, Python workers started
        ex.generate(cfg(a.process, workers, 20, a.seed + 1, "warmup"), work / f"warm_{executor}_{workers}")
        load0 = os.getloadavg()[0]
        times = []
        for r in range(a.repeat):
            t0 = time.perf_counter()
            ex.generate(cfg(a.process, files, a.events, a.seed, "scaling"), work / f"{executor}_{workers}_{r}")
            times.append(time.perf_counter() - t0)
        load1 = os.getloadavg()[0]
    n = files * a.events
    return {"what": "run", "executor": executor, "workers": workers, "files": files, "events": n,
            "seconds": [round(t, 3) for t in times], "events_per_s": round(n / min(times), 2),
            "load_avg_1min": [round(load0, 2), round(load1, 2)]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400, help="Pythia events per output file")
    ap.add_argument("--files-per-worker", type=int, default=2)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (the smallest is the reference)")
    ap.add_argument("--executors", default="local,spark,dask")
    ap.add_argument("--process", default="ttbar", help="Pythia process (wjets, dyjets, ttbar); no filter")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per measurement (the fastest counts)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--workdir", default=None, help="work folder (default: a temporary one)")
    a = ap.parse_args(argv)

    tmp = None if a.workdir else tempfile.TemporaryDirectory()
    work = Path(a.workdir or tmp.name)
    counts = sorted({int(k) for k in a.workers.split(",")})
    executors = [e.strip() for e in a.executors.split(",") if e.strip()]
    rates: dict = {}
    for ex in executors:
        for k in counts:
            row = measure(ex, k, a, work)
            rates.setdefault(ex, {})[k] = row["events_per_s"]
            print(json.dumps(row), flush=True)
    k0 = counts[0]
    eff = {ex: {str(k): round(r[k] / (k / k0 * r[k0]), 3) for k in counts if k != k0} for ex, r in rates.items()}
    print(json.dumps({"what": "summary", "process": a.process, "events_per_file": a.events,
                      "files_per_worker": a.files_per_worker, "cpus": os.cpu_count(),
                      "events_per_s": {ex: {str(k): v for k, v in r.items()} for ex, r in rates.items()},
                      "efficiency": eff, "goal_efficiency": GOAL,
                      "efficiency_to_goal": {ex: {k: round(v / GOAL, 3) for k, v in e.items()} for ex, e in eff.items()},
                      "load_avg_1_5_15min": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
