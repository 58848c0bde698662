"""spark-submit entry point: score HLF Parquet with a model directory and build the analysis products.

    spark-submit --master local-cluster[2,1,1024] jobs/score.py --hlf HLF --model MODEL_DIR --out OUT \\
        [--select-fraction 0.001 --select-on data] [--background wjets,dyjets]

The options are those of `sparkad score` (declared once, in sparkad/cli.py), with Spark as the engine
and the master from spark-submit. Writes OUT/scores/dataset=<name>/*.parquet, OUT/products/ and
OUT/_score_report.json (last); prints a one-line JSON summary.
"""
from __future__ import annotations

import json
import sys

import click

# the installed sparkad, as on the executors (never a checkout ahead of it on sys.path)
from sparkad.cli import score_arguments, score_options
from sparkad.core.commands import run_command
from sparkad.core.errors import one_line_errors


@click.command(help=__doc__.splitlines()[0])
@score_options
@click.option("--master", help="Spark master, only when not launched by spark-submit.")
@one_line_errors
def score_job(master, **options):
    from sparkad.core.runtime import setup_process
    setup_process()
    from sparkad.score.run import run_analysis

    report = run_analysis(engine="spark", master=master, **score_arguments(**options),
                          log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: report.get(k) for k in ("engine", "model_hash", "events", "total_events", "anomaly_threshold",
                                                 "elapsed_s")}))


def main(argv=None) -> int:
    return run_command(score_job, argv)


if __name__ == "__main__":
    sys.exit(main())
