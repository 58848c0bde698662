"""Scoring benchmark (issue 5): end-to-end Spark rate per core — read Parquet → pre-process → score →
aggregates (histograms, ASTF inputs, yields, per-run counts) → write scores — against the bare
in-process rate of the same pre-processing + scoring on the same events in one Python process.

    python benchmarks/score.py --model MODEL_DIR [--events 4000000|1e6,1e7,1e8] [--cores 2] [--workdir DIR]
                               [--dask] [--rdd] [--select-fraction F] [--scores l1|all|...] [--keep]

Builds an HLF folder of --events rows (feature rows drawn around the model's medians; throughput does
not depend on the values; 20 runs × 100 lumi sections of data). Prints JSON lines, then a summary with
the ratio spark/bare, the Python workers' peak RSS, and the extrapolated wall time for 1e9 events.
With several sizes each is written, scored with all products and removed in turn, and the summary's
``growth`` compares the smallest and the largest: time per event of the passes, fixed costs (planning,
merge, products), merge cost per fragment, worker and driver peak memory.

The limit in the same run: this core's sustained single-precision GEMM rate (a large square product,
one thread), the dense-layer FLOPs per event of the scores computed (``--scores``, as `sparkad score`;
counted by tracing the scorer's dense products), and the bare rate as a fraction of that limit.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def map_spark_rdd(spark, fn, frags, job):
    """The pass's task driver before Spark Connect support (sc.parallelize + a broadcast job): the
    reference that ``--rdd`` times against today's ``mapInArrow`` path."""
    sc = spark.sparkContext
    bjob = sc.broadcast(job)
    try:
        return sc.parallelize(frags, max(1, len(frags))).map(lambda f: fn(f, bjob.value)).collect()
    finally:
        bjob.unpersist()


def make_hlf(scorer, n: int, out: Path, files: int | None = None) -> Path:
    from sparkad.core.parquet_io import hlf_table, write_atomic
    from sparkad.core.atomic import write_json_atomic

    rng = np.random.default_rng(5)
    pre = scorer.pre
    files = files or max(16, n // 2_000_000)  # files of at most ~2M events: bounded memory here
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


def reset_peak_rss() -> None:
    """Linux: restart this process's peak-RSS record (VmHWM), so each size reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """This process's peak RSS since ``reset_peak_rss`` (VmHWM), else since it started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def gemm_limit(n: int = 2048, seconds: float = 2.0) -> float:
    """Sustained float32 GEMM rate of one thread (FLOP/s): an n × n by n × n product repeated for
    ``seconds``, the best of three such runs."""
    from sparkad.score.batches import single_threaded_numpy
    single_threaded_numpy()
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, n)).astype(np.float32), rng.normal(size=(n, n)).astype(np.float32)
    a @ b
    best = 0.0
    for _ in range(3):
        k, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds / 3:
            a @ b
            k += 1
        best = max(best, 2.0 * n ** 3 * k / (time.perf_counter() - t))
    return best


def dense_flops_per_event(scorer, events: int = 1000) -> float:
    """Multiply-add FLOPs (2 k m per event and dense layer) of the scores the scorer computes, counted
    by tracing every product of the fixed-order kernel (tree walks of the isolation forest not counted)."""
    import sparkad.model.baselines as baselines
    import sparkad.model.networks as networks
    import sparkad.model.scores as scores
    from sparkad.model import dense as dense_mod

    total = [0]
    orig = dense_mod.dense

    def counting(x, w, b=None, init=None):
        total[0] += 2 * np.asarray(x).shape[0] * np.asarray(w).shape[0] * np.asarray(w).shape[1]
        return orig(x, w, b, init)

    mods = (networks, scores, baselines, dense_mod)
    saved = [getattr(m, "dense") for m in mods]
    try:
        for m in mods:
            m.dense = counting
        scorer._score_block(np.zeros((events, scorer.pre.n_inputs), np.float32))
    finally:
        for m, f in zip(mods, saved):
            m.dense = f
    return total[0] / events


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--events", default="4000000",
                    help="events, or a comma-separated list of sizes (1e6,1e7,1e8) run one after the other: the "
                         "growth of time and memory with the size")
    ap.add_argument("--keep", action="store_true", help="keep the HLF and scored folders of every size")
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--target-rows", type=int, default=500_000, help="events per task")
    ap.add_argument("--dask", action="store_true", help="also time the Dask engine")
    ap.add_argument("--rdd", action="store_true",
                    help="also time the pass driven through the RDD API (parallelize + broadcast), the path before "
                         "Spark Connect support, against today's DataFrame path (mapInArrow) on the same session")
    ap.add_argument("--select-fraction", type=float, default=None,
                    help="select this fraction of the events (default: the model's stored 1000 ppm threshold, "
                         "which a model trained on < 1000 validation events does not have)")
    ap.add_argument("--scores", default=None, help="scores to compute, as `sparkad score --scores` (default: its default)")
    args = ap.parse_args()
    from sparkad.score.run import kept_scores, run_analysis
    from sparkad.model.directory import Scorer
    from sparkad.core.spark import get_session

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sparkad-score-bench-"))
    full = Scorer(args.model)
    keep = kept_scores(full, args.scores, full.all_score_names[0])
    scorer = Scorer(args.model, scores=keep)
    limit = gemm_limit()
    flops = dense_flops_per_event(scorer)
    print(json.dumps({"what": "limit", "gemm_float32_gflops_one_thread": round(limit / 1e9, 1),
                      "scores": scorer.score_names, "dense_flops_per_event": round(flops),
                      "limit_events_per_s_per_core": round(limit / flops) if flops else None,
                      "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}))
    sizes = [int(float(v)) for v in str(args.events).split(",")]
    hlf = make_hlf(scorer, sizes[0], work / f"hlf_{sizes[0]}")
    bare, bare_read, n_bare = bare_rate(scorer, hlf)
    print(json.dumps({"what": "bare_in_process", "events": n_bare, "events_per_s_per_core": round(bare),
                      "with_parquet_read_events_per_s_per_core": round(bare_read),
                      "fraction_of_gemm_limit": round(bare * flops / limit, 3) if flops else None}))

    spark = get_session("sparkad-score-bench", f"local[{args.cores}]", {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"})
    kw = dict(target_rows=args.target_rows, scores=scorer.score_names)
    if args.select_fraction:
        kw["fraction"] = args.select_fraction
    else:
        kw["ppm"] = 1000
    warm = hlf if sizes[0] <= 1_000_000 else make_hlf(scorer, 1_000_000, work / "hlf_warm")
    run_analysis(warm, args.model, work / "warm", engine="spark", spark=spark, **kw)  # JVM and Python workers up
    shutil.rmtree(work / "warm", ignore_errors=True)
    if warm != hlf:
        shutil.rmtree(warm, ignore_errors=True)
    scaling = []
    for i, size in enumerate(sizes):
        if i:
            t = time.perf_counter()
            hlf = make_hlf(scorer, size, work / f"hlf_{size}")
            print(json.dumps({"what": "hlf_written", "events": size, "s": round(time.perf_counter() - t, 1)}), flush=True)
        reset_peak_rss()  # the driver's own peak during this run, not the data generation's
        t = time.perf_counter()
        rep = run_analysis(hlf, args.model, work / f"spark_{size}", engine="spark", spark=spark, **kw)
        wall = time.perf_counter() - t
        n = rep["total_events"]
        tm = rep["timings"]
        pass_rate = n / tm["score_pass_s"] / args.cores
        per_event_s = tm["score_pass_s"] + tm.get("aggregate_pass_s", 0.0)  # the passes that scale with events
        row = {"what": "spark", "cores": args.cores, "events": n, "fragments": rep["fragments"], "wall_s": round(wall, 2),
               "score_pass_events_per_s_per_core": round(pass_rate),
               "end_to_end_events_per_s_per_core": round(n / wall / args.cores), "timings": tm,
               "fixed_s": round(wall - per_event_s, 2), "worker_peak_rss_mb": rep["worker_peak_rss_mb"],
               "driver_peak_rss_mb": peak_rss_mb(),  # the Python driver (the JVM is apart)
               # fixed costs (planning, merge, products, plots) once, plus 1e9 events at the rate of the passes
               "extrapolated_1e9_events_s": round(wall - per_event_s + 1e9 * per_event_s / n)}
        print(json.dumps(row), flush=True)
        scaling.append(row)
        if args.rdd and i == len(sizes) - 1:
            import sparkad.score.engines as engines
            path = engines._map_spark
            engines._map_spark = map_spark_rdd
            try:
                rrep = run_analysis(hlf, args.model, work / "rdd", engine="spark", spark=spark, **kw)
            finally:
                engines._map_spark = path
            r_rate = n / rrep["timings"]["score_pass_s"] / args.cores
            print(json.dumps({"what": "spark_rdd_path", "cores": args.cores, "score_pass_events_per_s_per_core": round(r_rate),
                              "dataframe_path_events_per_s_per_core": round(pass_rate),
                              "ratio_dataframe_to_rdd": round(pass_rate / r_rate, 3), "ratio_rdd_to_bare": round(r_rate / bare, 3)}))
            shutil.rmtree(work / "rdd", ignore_errors=True)
        if args.dask and i == len(sizes) - 1:
            t = time.perf_counter()
            drep = run_analysis(hlf, args.model, work / "dask", engine="dask", workers=args.cores, **kw)
            d_rate = n / drep["timings"]["score_pass_s"] / args.cores
            print(json.dumps({"what": "dask", "cores": args.cores, "score_pass_events_per_s_per_core": round(d_rate),
                              "end_to_end_s": round(time.perf_counter() - t, 2)}))
        if not args.keep:
            for d in (hlf, work / f"spark_{size}", work / "dask"):
                shutil.rmtree(d, ignore_errors=True)
    spark.stop()
    last = scaling[-1]
    pass_rate, e2e_rate = last["score_pass_events_per_s_per_core"], last["end_to_end_events_per_s_per_core"]
    summary = {"what": "summary", "model": scorer.kind, "scores": scorer.score_names, "cores": args.cores,
               "events": last["events"],
               "gemm_float32_gflops_one_thread": round(limit / 1e9, 1), "dense_flops_per_event": round(flops),
               "bare_fraction_of_gemm_limit": round(bare * flops / limit, 3) if flops else None,
               "goal_bare_fraction_of_gemm_limit": 0.5,
               "bare_events_per_s_per_core": round(bare),
               "spark_events_per_s_per_core": pass_rate,
               "ratio_spark_to_bare": round(pass_rate / bare, 3),
               "ratio_spark_end_to_end_to_bare": round(e2e_rate / bare, 3),
               "python_worker_peak_rss_mb": last["worker_peak_rss_mb"],
               "driver_peak_rss_mb": last["driver_peak_rss_mb"],
               "extrapolated_1e9_events_s": last["extrapolated_1e9_events_s"],
               "goal_1e9_events_s": 600,
               "goal_ratio": 0.5}
    if len(scaling) > 1:  # growth from the smallest to the largest size: linear time, flat memory
        a, b = scaling[0], scaling[-1]
        summary["growth"] = {
            "events": [a["events"], b["events"]],
            "pass_s_per_event_ratio": round(((b["timings"]["score_pass_s"] + b["timings"].get("aggregate_pass_s", 0))
                                             / b["events"]) / ((a["timings"]["score_pass_s"]
                                                               + a["timings"].get("aggregate_pass_s", 0)) / a["events"]), 3),
            "fixed_s": [a["fixed_s"], b["fixed_s"]],
            "merge_s_per_fragment": [round(r["timings"].get("merge_s", 0) / max(r["fragments"], 1), 5) for r in (a, b)],
            "worker_peak_rss_mb": [a["worker_peak_rss_mb"], b["worker_peak_rss_mb"]],
            "driver_peak_rss_mb": [a["driver_peak_rss_mb"], b["driver_peak_rss_mb"]]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
