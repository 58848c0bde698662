"""spark-submit entry point for scoring HLF Parquet with a model directory.

    spark-submit --master local-cluster[2,1,1024] jobs/score.py --hlf HLF --model MODEL_DIR --out OUT

Writes OUT/scores/dataset=<name>/*.parquet and OUT/_score_report.json; prints the report as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hlf", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--master", default=None, help="only when not launched by spark-submit")
    ap.add_argument("--batch-rows", type=int, default=200_000)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sparkad.errors import SparkadError
    from sparkad.scoring_jobs import score_with_spark

    try:
        report = score_with_spark(args.hlf, args.model, args.out, master=args.master, batch_rows=args.batch_rows)
    except SparkadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: report[k] for k in ("engine", "model_hash", "events", "total_events", "elapsed_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
