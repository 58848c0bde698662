"""`sparkad monitor`: add a scored folder's runs to the operations monitor (registered in sparkad/cli.py)."""
from __future__ import annotations

import click

from sparkad.core.commands import option_group
from sparkad.core.errors import one_line_errors
from sparkad.analysis.run_checks import METHODS


#: the options `sparkad monitor` and jobs/monitor.py share
monitor_options = option_group(
    click.option("--scores", "scores_dir", required=True, type=click.Path(file_okay=False),
                 help="Scores folder of `sparkad score` (SCORES/scores/dataset=*/, SCORES/_score_report.json)."),
    click.option("--out", "mon_dir", required=True, type=click.Path(file_okay=False),
                 help="Monitor folder (created; runs.parquet, alarms.json, metrics.prom, rate_vs_run.png)."),
    click.option("--score", default=None, help="Score column (default: the score report's anomaly threshold, else its first score)."),
    click.option("--threshold", type=float, default=None, help="Anomalous: score > THRESHOLD."),
    click.option("--ppm", type=float, default=None,
                 help="Use the model's threshold at this background fraction (default 1000 ppm)."),
    click.option("--alpha", type=float, default=None, help="Family-wise false-alarm probability (conf/monitor.yaml: 0.01)."),
    click.option("--method", type=click.Choice(METHODS), default=None, help="Null distribution of the per-run counts."),
    click.option("--dataset", "datasets", multiple=True, help="Data dataset(s) to count (default: rows labelled data)."),
    click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML with check:/monitor: overrides."),
    click.option("--replace", is_flag=True, help="The input reprocesses its runs: their stored counts are replaced."),
    click.option("--source", default=None, help="Label of this input in the table (default: folder, model, score, threshold)."),
)


def monitor_arguments(scores_dir, mon_dir, score, threshold, ppm, alpha, method, datasets, config_file, replace,
                      source) -> dict:
    """The ``monitor_options`` values as the arguments of ``sparkad.monitor.runs.monitor_scores``."""
    from sparkad.monitor.runs import load_monitor_conf

    if threshold is not None and ppm is not None:
        raise click.UsageError("give either --threshold or --ppm")
    return dict(scores_dir=scores_dir, mon_dir=mon_dir, score=score, threshold=threshold, ppm=ppm,
                datasets=list(datasets) or None, conf=load_monitor_conf(config_file, alpha=alpha, method=method),
                replace=replace, source=source)


def conflict_warnings(res: dict) -> list[str]:
    """The warnings of a monitor update: runs already counted with other numbers, NaN scores."""
    out = [f"warning: run {c['run']}: {c['lumi_sections']} LS already counted with other numbers "
           f"({c['anomalous_stored']}/{c['events_stored']} stored, {c['anomalous_new']}/{c['events_new']} now): "
           f"kept the stored counts (use --replace for a reprocessing)" for c in res["conflicts"]]
    if res["nan_scores"]:
        out.append(f"warning: {res['nan_scores']} events have a NaN score (counted as not anomalous)")
    return out


@click.command("monitor")
@monitor_options
@one_line_errors
def monitor(**options):
    """Count anomalous events per run and LS in SCORES, add new runs to the monitor folder OUT (a run
    already there is not counted twice) and re-test every run's anomaly rate."""
    from sparkad.monitor.runs import monitor_scores

    args = monitor_arguments(**options)
    mon_dir = args["mon_dir"]
    res = monitor_scores(**args)
    for line in conflict_warnings(res):
        click.echo(line, err=True)
    flagged = ", ".join(f"{r} (pull {res['pulls'][r]:+.1f})" for r in res["flagged"]) or "none"
    click.echo(f"{res['score']} > {res['threshold']:.6g} ({res['threshold_from']}): {len(res['runs_added'])} runs added"
               f"{', ' + str(len(res['runs_extended'])) + ' extended' if res['runs_extended'] else ''}"
               f"{', ' + str(len(res['runs_replaced'])) + ' replaced' if res['runs_replaced'] else ''}, "
               f"{res['runs_total']} runs in {mon_dir}; flagged runs: {flagged}")
