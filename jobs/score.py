"""spark-submit entry point: score HLF Parquet with a model directory and build the analysis products.

    spark-submit --master local-cluster[2,1,1024] jobs/score.py --hlf HLF --model MODEL_DIR --out OUT \\
        [--select-fraction 0.001 --select-on data] [--background wjets,dyjets]

Writes OUT/scores/dataset=<name>/*.parquet, OUT/products/ and OUT/_score_report.json (last); prints a
one-line JSON summary.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hlf", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--master", default=None, help="only when not launched by spark-submit")
    ap.add_argument("--score", default=None)
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--ppm", type=float, default=None)
    ap.add_argument("--select-fraction", type=float, default=None)
    ap.add_argument("--select-on", choices=["data", "mc"], default="data")
    ap.add_argument("--background", default=None)
    ap.add_argument("--analysis-config", default=None)
    ap.add_argument("--no-products", action="store_true")
    ap.add_argument("--batch-rows", type=int, default=200_000)
    ap.add_argument("--target-rows", type=int, default=2_000_000, help="events per task")
    args = ap.parse_args(argv)
    # the installed sparkad, as on the executors (never a checkout ahead of it on sys.path)
    from sparkad.core.runtime import setup_process
    setup_process()
    from sparkad.score.run import run_analysis
    from sparkad.core.errors import SparkadError

    try:
        report = run_analysis(args.hlf, args.model, args.out, engine="spark", master=args.master, score=args.score,
                              threshold=args.threshold, ppm=args.ppm, fraction=args.select_fraction,
                              select_on=args.select_on,
                              background=args.background.split(",") if args.background else None,
                              analysis_config=args.analysis_config, products=not args.no_products,
                              batch_rows=args.batch_rows, target_rows=args.target_rows,
                              log=lambda m: print(m, file=sys.stderr))
    except SparkadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: report.get(k) for k in ("engine", "model_hash", "events", "total_events", "selection",
                                                 "elapsed_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
