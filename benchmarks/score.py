"""Scoring benchmark (issue 5): end-to-end Spark rate per core — read Parquet → pre-process → score →
aggregates (histograms, ASTF inputs, yields, per-run counts) → write scores — against the bare
in-process rate of the same pre-processing + scoring on the same events in one Python process.

    python benchmarks/score.py --model MODEL_DIR [--events 4000000] [--cores 2] [--workdir DIR] [--dask]
                               [--select-fraction F]

Builds an HLF folder of --events rows (feature rows drawn around the model's medians; throughput does
not depend on the values; 20 runs × 100 lumi sections of data). Prints JSON lines, then a summary with
the ratio spark/bare, the Python workers' peak RSS, and the extrapolated wall time for 1e9 events.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def make_hlf(scorer, n: int, out: Path, files: int = 16) -> Path:
    from sparkad.core.parquet_io import hlf_table, write_atomic
    from sparkad.core.atomic import write_json_atomic

    rng = np.random.default_rng(5)
    pre = scorer.pre
    per = n // files
    for i in range(files):
        feats = {}
        for f in scorer.features:
            if f in pre.discrete:
                feats[f] = rng.choice(np.asarray(pre.discrete[f], np.float32), per).astype(np.float32)
            else:
                feats[f] = (pre.median[f] + pre.scale[f] * rng.normal(size=per)).astype(np.float32)
        ev = np.arange(i * per, (i + 1) * per, dtype=np.int64)
        ids = {"run": 194000 + ev * 20 // n, "luminosityBlock": 1 + (ev * 2000 // n) % 100, "event": ev}
        write_atomic(hlf_table("bench", "data", ids, np.ones(per), feats, {}), out / "bench" / f"part-{i:03d}.parquet")
    write_json_atomic({"complete": True, "features": scorer.features, "feature_set": "bench",
                       "datasets": {"bench": {"is_data": True, "label": "data", "written": per * files,
                                              "sumw_written": float(per * files)}}}, out / "_report.json")
    return out


def bare_rate(scorer, hlf: Path) -> tuple[float, float, int]:
    """Pre-processing + scoring in this process, one thread: on arrays in memory, and including the
    Parquet read."""
    import pyarrow.parquet as pq

    from sparkad.score.batches import single_threaded_numpy
    single_threaded_numpy()
    files = sorted((hlf / "bench").glob("*.parquet"))[:4]
    t = time.perf_counter()
    tables = [pq.read_table(f, columns=scorer.features) for f in files]
    t_read = time.perf_counter() - t
    xs = [np.column_stack([tb.column(f).to_numpy() for f in scorer.features]).astype(np.float64) for tb in tables]
    scorer.score(xs[0][:5000])
    t = time.perf_counter()
    for x in xs:
        scorer.score(x)
    t_score = time.perf_counter() - t
    n = sum(len(x) for x in xs)
    return n / t_score, n / (t_score + t_read), n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--events", type=int, default=4_000_000)
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--target-rows", type=int, default=500_000, help="events per task")
    ap.add_argument("--dask", action="store_true", help="also time the Dask engine")
    ap.add_argument("--select-fraction", type=float, default=None,
                    help="select this fraction of the events (default: the model's stored 1000 ppm threshold, "
                         "which a model trained on < 1000 validation events does not have)")
    args = ap.parse_args()
    from sparkad.score.run import run_analysis
    from sparkad.model.directory import Scorer
    from sparkad.core.spark import get_session

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sparkad-score-bench-"))
    scorer = Scorer(args.model)
    hlf = make_hlf(scorer, args.events, work / "hlf")
    bare, bare_read, n_bare = bare_rate(scorer, hlf)
    print(json.dumps({"what": "bare_in_process", "events": n_bare, "events_per_s_per_core": round(bare),
                      "with_parquet_read_events_per_s_per_core": round(bare_read)}))

    spark = get_session("sparkad-score-bench", f"local[{args.cores}]", {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"})
    kw = dict(target_rows=args.target_rows)
    if args.select_fraction:
        kw["fraction"] = args.select_fraction
    else:
        kw["ppm"] = 1000
    run_analysis(hlf, args.model, work / "warm", engine="spark", spark=spark, **kw)  # JVM and Python workers up
    t = time.perf_counter()
    rep = run_analysis(hlf, args.model, work / "spark", engine="spark", spark=spark, **kw)
    wall = time.perf_counter() - t
    spark.stop()
    n = rep["total_events"]
    pass_rate = n / rep["timings"]["score_pass_s"] / args.cores
    e2e_rate = n / wall / args.cores
    print(json.dumps({"what": "spark", "cores": args.cores, "events": n, "fragments": rep["fragments"],
                      "score_pass_events_per_s_per_core": round(pass_rate),
                      "end_to_end_events_per_s_per_core": round(e2e_rate), "timings": rep["timings"],
                      "worker_peak_rss_mb": rep["worker_peak_rss_mb"]}))
    summary = {"what": "summary", "model": scorer.kind, "cores": args.cores, "events": n,
               "bare_events_per_s_per_core": round(bare),
               "spark_events_per_s_per_core": round(pass_rate),
               "ratio_spark_to_bare": round(pass_rate / bare, 3),
               "ratio_spark_end_to_end_to_bare": round(e2e_rate / bare, 3),
               "python_worker_peak_rss_mb": rep["worker_peak_rss_mb"],
               "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               # fixed costs (planning, products, plots) once, plus 1e9 events at the pass rate
               "extrapolated_1e9_events_s": round(wall - rep["timings"]["score_pass_s"] + 1e9 / (pass_rate * args.cores)),
               "goal_ratio": 0.5}
    if args.dask:
        t = time.perf_counter()
        rep = run_analysis(hlf, args.model, work / "dask", engine="dask", workers=args.cores, **kw)
        d_rate = n / rep["timings"]["score_pass_s"] / args.cores
        print(json.dumps({"what": "dask", "cores": args.cores, "score_pass_events_per_s_per_core": round(d_rate),
                          "end_to_end_s": round(time.perf_counter() - t, 2)}))
        summary["ratio_dask_to_bare"] = round(d_rate / bare, 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
