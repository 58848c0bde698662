"""spark-submit entry point adding a scores folder's runs to the operations monitor.

    spark-submit --master local-cluster[2,1,1024] jobs/monitor.py --scores SCORES_OUT --out MON_DIR

The options are those of `sparkad monitor` (declared once, in sparkad/monitor/cli.py). Counts events
and anomalous events per (run, luminosityBlock) with Spark, then updates MON_DIR (runs.parquet,
alarms.json, metrics.prom, rate_vs_run.png; see sparkad/monitor/runs.py); prints the update as one JSON line.
"""
from __future__ import annotations

import json
import sys

import click

# the installed sparkad, as on the executors (never a checkout ahead of it on sys.path)
from sparkad.core.commands import run_command
from sparkad.core.errors import one_line_errors
from sparkad.monitor.cli import conflict_warnings, monitor_arguments, monitor_options


@click.command(help=__doc__.splitlines()[0])
@monitor_options
@click.option("--master", help="Spark master, only when not launched by spark-submit.")
@one_line_errors
def monitor_job(master, **options):
    from sparkad.core.runtime import setup_process
    setup_process()
    from sparkad.core.spark import get_session
    from sparkad.monitor.runs import monitor_scores

    args = monitor_arguments(**options)
    res = monitor_scores(**args, spark=get_session("sparkad-monitor", master))
    for line in conflict_warnings(res):
        print(line, file=sys.stderr)
    print(json.dumps({k: res[k] for k in ("score", "threshold", "runs_added", "runs_extended", "runs_replaced",
                                          "lumis_added", "runs_total", "flagged", "pulls")}))


def main(argv=None) -> int:
    return run_command(monitor_job, argv)


if __name__ == "__main__":
    sys.exit(main())
