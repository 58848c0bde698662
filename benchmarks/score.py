"""Scoring benchmark: Spark scoring rate per core versus the bare in-process rate of the same numpy
scorer on the same events (the limit), and the Dask rate.

    python benchmarks/score.py --model MODEL_DIR [--events 2000000] [--cores 2] [--workdir DIR]

Builds an HLF folder of --events rows by drawing feature
rows from a Gaussian around the model's medians (throughput does not depend on the values), then scores
it with Spark local[cores] (mapInArrow) and Dask. Prints JSON lines and a summary with the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def make_hlf(scorer, n: int, out: Path, files: int = 8) -> Path:
    from sparkad.parquet_io import hlf_table, write_atomic, write_json_atomic

    rng = np.random.default_rng(5)
    pre = scorer.pre
    per = n // files
    for i in range(files):
        feats = {}
        for f in scorer.features:
            if f in pre.discrete:
                cats = np.asarray(pre.discrete[f], np.float32)
                feats[f] = rng.choice(cats, per).astype(np.float32)
            else:
                feats[f] = (pre.median[f] + pre.scale[f] * rng.normal(size=per)).astype(np.float32)
        ids = {"run": np.ones(per, np.int64), "luminosityBlock": np.ones(per, np.int64),
               "event": np.arange(i * per, (i + 1) * per, dtype=np.int64)}
        write_atomic(hlf_table("bench", "bench", ids, np.ones(per), feats, {}), out / "bench" / f"part-{i}.parquet")
    write_json_atomic({"datasets": {"bench": {"is_data": True}}, "features": scorer.features}, out / "_report.json")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from sparkad.modeldir import Scorer
    from sparkad.score_batches import single_threaded_numpy
    from sparkad.scoring_jobs import score_with_dask, score_with_spark
    from sparkad.spark import get_session

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sparkad-score-bench-"))
    scorer = Scorer(args.model)
    hlf = make_hlf(scorer, args.events, work / "hlf")

    single_threaded_numpy()
    import pyarrow.parquet as pq
    table = pq.read_table(hlf / "bench" / "part-0.parquet")
    x = np.column_stack([table.column(f).to_numpy() for f in scorer.features]).astype(np.float64)
    scorer.score(x[:5000])
    t = time.perf_counter()
    scorer.score(x)
    bare = len(x) / (time.perf_counter() - t)
    print(json.dumps({"what": "bare_in_process", "events": len(x), "events_per_s_per_core": round(bare)}))

    spark = get_session("sparkad-score-bench", f"local[{args.cores}]", {"spark.ui.enabled": "false"})
    score_with_spark(hlf, args.model, work / "warm", spark=spark)  # JVM and Python workers up
    t = time.perf_counter()
    rep = score_with_spark(hlf, args.model, work / "spark", spark=spark)
    spark_rate = rep["total_events"] / (time.perf_counter() - t)
    spark.stop()
    print(json.dumps({"what": "spark", "cores": args.cores, "events": rep["total_events"],
                      "events_per_s_per_core": round(spark_rate / args.cores)}))
    t = time.perf_counter()
    rep = score_with_dask(hlf, args.model, work / "dask", workers=args.cores)
    dask_rate = rep["total_events"] / (time.perf_counter() - t)
    print(json.dumps({"what": "dask", "cores": args.cores, "events": rep["total_events"],
                      "events_per_s_per_core": round(dask_rate / args.cores)}))
    print(json.dumps({"what": "summary", "model": scorer.kind, "cores": args.cores,
                      "bare_events_per_s_per_core": round(bare),
                      "spark_events_per_s_per_core": round(spark_rate / args.cores),
                      "ratio_spark_to_bare": round(spark_rate / args.cores / bare, 3),
                      "ratio_dask_to_bare": round(dask_rate / args.cores / bare, 3)}))


if __name__ == "__main__":
    main()
