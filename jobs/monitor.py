"""spark-submit entry point adding a scores folder's runs to the operations monitor.

    spark-submit --master local-cluster[2,1,1024] jobs/monitor.py --scores SCORES_OUT --out MON_DIR

Counts events and anomalous events per (run, luminosityBlock) with Spark, then updates MON_DIR (runs.parquet,
alarms.json, metrics.prom, rate_vs_run.png; see sparkad/monitor/runs.py); prints the update as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scores", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--score", default=None)
    sel = ap.add_mutually_exclusive_group()
    sel.add_argument("--threshold", type=float, default=None)
    sel.add_argument("--ppm", type=float, default=None)
    ap.add_argument("--alpha", type=float, default=None)
    ap.add_argument("--method", choices=["binomial", "beta-binomial"], default=None)
    ap.add_argument("--dataset", action="append", default=None, help="data dataset(s); default: label == 'data'")
    ap.add_argument("--config", default=None)
    ap.add_argument("--replace", action="store_true")
    ap.add_argument("--source", default=None)
    ap.add_argument("--master", default=None, help="only when not launched by spark-submit")
    args = ap.parse_args(argv)
    # the installed sparkad, as on the executors (never a checkout ahead of it on sys.path)
    from sparkad.core.runtime import setup_process
    setup_process()
    from sparkad.core.errors import SparkadError
    from sparkad.monitor.runs import load_monitor_conf, monitor_scores
    from sparkad.core.spark import get_session

    try:
        conf = load_monitor_conf(args.config, alpha=args.alpha, method=args.method)
        spark = get_session("sparkad-monitor", args.master)
        res = monitor_scores(args.scores, args.out, score=args.score, threshold=args.threshold, ppm=args.ppm,
                             datasets=args.dataset, conf=conf, replace=args.replace, source=args.source, spark=spark)
    except SparkadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for c in res["conflicts"]:
        print(f"warning: run {c['run']}: {c['lumi_sections']} LS already counted with other numbers: kept the "
              f"stored counts (use --replace for a reprocessing)", file=sys.stderr)
    print(json.dumps({k: res[k] for k in ("score", "threshold", "runs_added", "runs_extended", "runs_replaced",
                                          "lumis_added", "runs_total", "flagged", "pulls")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
