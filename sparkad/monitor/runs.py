"""Operations monitoring: a per-run table of anomaly rates that grows as new runs are scored.

MON_DIR/
  lumis.parquet     the state: events and anomalous events per (run, luminosityBlock), with the source
                    and the time each LS was added — the only input of everything else
  runs.parquet      per run: lumi_sections, events, anomalous, rate (+ interval), expected, pull, p-values,
                    flagged, segment, source, first_seen_utc, updated_utc, flagged_since_utc
  anomaly_threshold.json  score, threshold and model hash of the counts: one per folder (another
                    one is refused by `sparkad monitor`, its rates would not compare)
  check.json        the full run-period check (runs, LS ranges, periods, change-point segments, settings)
  alarms.json       the flagged runs (and LS ranges) with pull, p-values, rate and expected rate
  metrics.prom      current figures in the Prometheus text exposition format (node-exporter textfile)
  rate_vs_run.png   rate vs run with the expected band, flagged runs marked

Counting rules: a (run, LS) already in the state is never counted twice, so re-running an input is
idempotent (every file keeps its content: the times are those of the state's last change). New LS of
a known run are added (a run may arrive in parts). An LS that arrives again with *different* counts is
a conflict: by default the stored counts are kept and the conflict is reported (returned, and printed
by the CLI); with ``replace=True`` the input is taken as a reprocessing of its runs and every stored LS
of those runs is replaced by the input's. Every statistic is recomputed over the whole state after each
update. Files are written atomically (temporary file, then rename) under a lock on MON_DIR/.lock.
"""
from __future__ import annotations

import fcntl
import json
import math
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sparkad.analysis import run_checks
from sparkad.core import storage
from sparkad.core.config import as_number, check_keys, given, load_conf, load_yaml, merge_config, require_mapping
from sparkad.core.errors import SparkadError
from sparkad.core.atomic import atomic_path, write_json_atomic, write_text_atomic
from sparkad.core.jsonsafe import records
from sparkad.analysis.lumi_counts import COUNT_COLUMNS, count_per_ls, counts_frame, merge_counts

MONITOR_DEFAULTS = {"prometheus_runs": 50, "plot": True, "min_expected_per_run": 10.0, "max_fraction": 0.05}
LUMI_COLUMNS = ["run", "luminosityBlock", "events", "selected", "source", "first_seen_utc", "added_utc"]


# ----------------------------------------------------------------------------------------- configuration

def load_monitor_conf(config_file=None, **overrides) -> dict:
    """{"check": run-check settings, "monitor": monitor settings}: code defaults ← conf/monitor.yaml ←
    ``config_file`` ← non-None ``overrides`` (run-check keys, e.g. alpha=0.001, method="beta-binomial")."""
    conf = require_mapping(load_conf("monitor") or {}, "conf/monitor.yaml")
    if config_file:
        user = require_mapping(load_yaml(config_file) or {}, str(config_file))
        check_keys(user, ("check", "monitor"), str(config_file))
        for sec in ("check", "monitor"):
            require_mapping(user.get(sec) or {}, f"{config_file}: {sec}")
        conf = merge_config(conf, {sec: user.get(sec) or {} for sec in ("check", "monitor")})
    check_keys(conf, ("check", "monitor"), "monitor configuration")
    check = merge_config(conf.get("check") or {}, given(overrides))
    return normalise_conf({"check": check, "monitor": conf.get("monitor") or {}})


def normalise_conf(conf: dict | None) -> dict:
    """Validated {"check", "monitor"} sections; ``None`` loads conf/monitor.yaml."""
    if conf is None:
        return load_monitor_conf()
    conf = require_mapping(conf, "monitor configuration")
    check_keys(conf, ("check", "monitor"), "monitor configuration")
    mon = dict(require_mapping(conf.get("monitor") or {}, "monitor"))
    check_keys(mon, MONITOR_DEFAULTS, "monitor")
    mon = {**MONITOR_DEFAULTS, **mon}
    mon["prometheus_runs"] = int(as_number(mon["prometheus_runs"], "monitor.prometheus_runs"))
    if mon["prometheus_runs"] < 0:
        raise SparkadError(f"monitor.prometheus_runs: must be >= 0, got {mon['prometheus_runs']}")
    if not isinstance(mon["plot"], bool):
        raise SparkadError(f"monitor.plot: expected true or false, got {mon['plot']!r}")
    mon["min_expected_per_run"] = as_number(mon["min_expected_per_run"], "monitor.min_expected_per_run")
    mon["max_fraction"] = as_number(mon["max_fraction"], "monitor.max_fraction", positive=True)
    if mon["min_expected_per_run"] < 0 or not mon["max_fraction"] < 1:
        raise SparkadError("monitor: min_expected_per_run must be >= 0 and max_fraction in (0, 1)")
    return {"check": run_checks.settings(conf.get("check") or {}), "monitor": mon}


# ------------------------------------------------------------------------------------- score → counts

def read_score_report(scores_dir) -> dict:
    """SCORES_OUT/_score_report.json, refused unless it marks a complete scoring run (a local folder or
    an s3:// prefix)."""
    scores_dir = storage.location(scores_dir)
    path = storage.join(scores_dir, "_score_report.json")
    if not storage.is_file(path):
        raise SparkadError(f"{scores_dir}: no _score_report.json — not a scores folder, or its scoring did not complete")
    try:
        report = json.loads(storage.read_bytes(path))
    except (OSError, ValueError) as e:
        raise SparkadError(f"{path}: unreadable score report ({e})") from None
    if not isinstance(report, dict) or report.get("complete") is not True:
        raise SparkadError(f"{scores_dir}: _score_report.json does not mark a complete scoring run")
    if not storage.is_dir(storage.join(scores_dir, "scores")):
        raise SparkadError(f"{scores_dir}: no scores/ folder beside _score_report.json")
    return report


def resolve_anomaly_threshold(report: dict, scores_dir, score: str | None = None, threshold: float | None = None,
                              ppm: float | None = None) -> tuple[str, float, str]:
    """(score, threshold, how it was chosen): --threshold, else --ppm from the model's thresholds,
    else the score report's ``anomaly_threshold``, else the model's 1000 ppm threshold."""
    if threshold is not None and ppm is not None:
        raise SparkadError("give either a threshold or a background fraction (ppm), not both")
    names = list(report.get("scores") or [])
    sel = report.get("anomaly_threshold") if isinstance(report.get("anomaly_threshold"), dict) else None
    if score is None:
        score = sel["score"] if (sel and threshold is None and ppm is None and sel.get("score")) else \
            (names[0] if names else None)
    if score is None:
        raise SparkadError(f"{scores_dir}: _score_report.json lists no scores")
    if names and score not in names:
        raise SparkadError(f"{scores_dir}: no score {score!r} (scores: {', '.join(names)})")
    if threshold is not None:
        if not math.isfinite(float(threshold)):  # `score > nan` is never true: every run would look clean
            raise SparkadError(f"--threshold must be a finite number, got {threshold}")
        return score, float(threshold), "given"
    if ppm is None and sel and sel.get("score") == score and sel.get("threshold") is not None:
        return score, float(sel["threshold"]), "score report"
    ppm = 1000.0 if ppm is None else float(ppm)
    key = f"{ppm:g}ppm"
    entry = ((report.get("thresholds") or {}).get(score) or {}).get(key)
    value = entry.get("value") if isinstance(entry, dict) else None
    if value is None:
        have = sorted((report.get("thresholds") or {}).get(score) or {})
        raise SparkadError(f"{scores_dir}: the model has no {key} threshold for score {score!r}"
                           f"{' (has ' + ', '.join(have) + ')' if have else ''}; give --threshold")
    return score, float(value), f"model {key}"


def _score_files(scores_dir, datasets) -> list[tuple[str, Path | str]]:
    root = storage.join(scores_dir, "scores")
    out = []
    if storage.is_remote(root):  # s3://.../scores/dataset=<name>/<part>.parquet objects
        for uri in storage.list_tree(root):
            parts = uri[len(root) + 1:].split("/")
            if len(parts) == 2 and parts[0].startswith("dataset=") and parts[1].endswith(".parquet") \
                    and not parts[1].startswith((".", "_")):
                name = parts[0].split("=", 1)[1]
                if datasets is None or name in datasets:
                    out.append((name, uri))
    for d in ([] if storage.is_remote(root) else sorted(root.glob("dataset=*"))):
        name = d.name.split("=", 1)[1]
        if datasets is not None and name not in datasets:
            continue
        out += [(name, f) for f in sorted(d.glob("*.parquet")) if not f.name.startswith((".", "_"))]
    if datasets is not None:
        missing = sorted(set(datasets) - {n for n, _ in out})
        if missing:
            raise SparkadError(f"{scores_dir}: no scores for dataset(s) {', '.join(missing)}")
    return out


def per_ls_counts_from_scores(scores_dir, score: str, threshold: float, datasets=None) -> pd.DataFrame:
    """Per-(run, luminosityBlock) events and anomalous events (score > threshold) of the data in a
    scores folder, read with pyarrow (only run, luminosityBlock, label and the score). Default: rows
    with label == "data"; with ``datasets``: every row of those datasets."""
    scores_dir = storage.location(scores_dir)
    read_score_report(scores_dir)
    parts = [count_score_file(f, score, threshold, datasets) for _, f in _score_files(scores_dir, _set(datasets))]
    return _counts_result(scores_dir, parts, datasets)


def _set(datasets):
    return None if datasets is None else set(datasets)


def _counts_result(scores_dir, parts, datasets) -> pd.DataFrame:
    """The merged count tables of ``count_score_file`` results as a DataFrame (NaN scores in its attrs)."""
    df = counts_frame(merge_counts(*[t for t, _ in parts]))
    df.attrs["nan_scores"] = sum(n for _, n in parts)
    if df.empty:
        what = f"dataset(s) {', '.join(sorted(datasets))}" if datasets is not None else 'rows with label "data"'
        raise SparkadError(f"{scores_dir}: no {what} in the scores (give --dataset for data with another label)")
    return df


def count_score_file(f, score: str, threshold: float, datasets=None) -> tuple[np.ndarray, int]:
    """(count table, NaN scores) of one scores file: a mergeable partial (``merge_counts``)."""
    parts, nan_scores = [], 0
    for run, lumi, s in _file_scores(f, score, datasets):
        nan_scores += int(np.isnan(s).sum())
        parts.append(count_per_ls(run, lumi, s > threshold))  # strictly above; NaN never is
    return merge_counts(*parts), nan_scores


def _data_scores(scores_dir, score: str, datasets=None):
    """(run, luminosityBlock, score as float64) per batch of the data rows of a scores folder (pyarrow;
    a local folder or an s3:// prefix)."""
    scores_dir = storage.location(scores_dir)
    read_score_report(scores_dir)
    for _, f in _score_files(scores_dir, _set(datasets)):
        yield from _file_scores(f, score, datasets)


def _file_scores(f, score: str, datasets=None):
    """(run, luminosityBlock, score as float64) per batch of the data rows of one scores file."""
    cols = ["run", "luminosityBlock", score] + ([] if datasets is not None else ["label"])
    try:
        have = pq.read_schema(f).names
    except (OSError, pa.ArrowException) as e:
        raise SparkadError(f"{f}: unreadable Parquet ({e})") from None
    missing = [c for c in cols if c not in have]
    if missing:
        raise SparkadError(f"{f}: lacks column(s) {', '.join(missing)}")
    try:
        pf = pq.ParquetFile(f)
    except (OSError, pa.ArrowException) as e:
        raise SparkadError(f"{f}: unreadable Parquet ({e})") from None
    for b in pf.iter_batches(batch_size=1_000_000, columns=cols):
        keep = None
        if datasets is None:
            is_data = pc.fill_null(pc.equal(b.column(cols.index("label")), "data"), False)
            keep = is_data.to_numpy(zero_copy_only=False).astype(bool)
        run = b.column(0).to_numpy(zero_copy_only=False)
        lumi = b.column(1).to_numpy(zero_copy_only=False)
        s = b.column(2).to_numpy(zero_copy_only=False).astype(np.float64)
        if keep is not None:
            run, lumi, s = run[keep], lumi[keep], s[keep]
        yield run, lumi, s


def operating_fraction(run_events, min_expected: float, max_fraction: float, floor: float = 1e-3) -> float:
    """The anomalous fraction of the data at which the median run expects ``min_expected`` anomalous
    events — a run's excess or deficit is testable only with a few events expected — kept within
    [``floor``, ``max_fraction``] (the tail, not the bulk)."""
    median = float(np.median(np.asarray(run_events, np.float64))) if len(run_events) else 0.0
    if median <= 0:
        return max_fraction
    return float(min(max_fraction, max(floor, min_expected / median)))


def data_threshold(scores_dir, score: str, fraction: float, datasets=None) -> float:
    """The exact threshold t with ⌊fraction · N⌋ of the N data events (NaN scores not counted) above
    it: the (k+1)-th largest score."""
    values = [s[~np.isnan(s)] for _, _, s in _data_scores(scores_dir, score, datasets)]
    s = np.concatenate(values) if values else np.zeros(0)
    k = int(np.floor(fraction * len(s) + 1e-9))
    if not 0 < k < len(s):
        raise SparkadError(f"{scores_dir}: {len(s)} data events cannot set a threshold at fraction {fraction:g}")
    return float(np.partition(s, len(s) - 1 - k)[len(s) - 1 - k])


def _count_task(f, job):
    score, threshold, datasets = job
    return count_score_file(f, score, threshold, datasets)


def per_ls_counts_with_spark(spark, scores_dir, score: str, threshold: float, datasets=None) -> pd.DataFrame:
    """The same counts computed by Spark (groupBy run, luminosityBlock), collected to pandas."""
    from pyspark.sql import functions as F

    if storage.is_remote(storage.location(scores_dir)):
        # Spark's own Parquet reader would need hadoop-aws (s3a://): the tasks read the objects with pyarrow
        # instead, one task per scores file, and their count tables merge here (the same numbers)
        from sparkad.core.spark import map_tasks

        scores_dir = storage.location(scores_dir)
        read_score_report(scores_dir)
        files = [f for _, f in _score_files(scores_dir, _set(datasets))]
        if datasets is not None:
            have = {name for name, _ in _score_files(scores_dir, _set(datasets))}
            if set(datasets) - have:
                raise SparkadError(f"{scores_dir}: no scores for dataset(s) {', '.join(sorted(set(datasets) - have))}")
        parts = map_tasks(spark, _count_task, files, (score, float(threshold), datasets))
        return _counts_result(scores_dir, parts, datasets)
    scores_dir = Path(scores_dir)
    read_score_report(scores_dir)
    df = spark.read.parquet(str(scores_dir / "scores"))
    if score not in df.columns:
        raise SparkadError(f"{scores_dir}: the scores lack column {score!r}")
    if datasets is not None:
        have = {r["dataset"] for r in df.select("dataset").distinct().collect()}
        missing = sorted(set(datasets) - have)
        if missing:
            raise SparkadError(f"{scores_dir}: no scores for dataset(s) {', '.join(missing)}")
        df = df.filter(F.col("dataset").isin(list(datasets)))
    else:
        df = df.filter(F.col("label") == "data")
    agg = (df.groupBy("run", "luminosityBlock")
             .agg(F.count(F.lit(1)).alias("events"),
                  F.sum((F.col(score) > F.lit(float(threshold))).cast("long")).alias("selected"),
                  F.sum(F.isnan(F.col(score)).cast("long")).alias("nan_scores")))
    pdf = agg.toPandas()
    nan_scores = int(pdf.nan_scores.sum()) if len(pdf) else 0
    pdf = pdf.drop(columns="nan_scores").astype("int64").sort_values(["run", "luminosityBlock"]).reset_index(drop=True)
    pdf.attrs["nan_scores"] = nan_scores
    if pdf.empty:
        raise SparkadError(f"{scores_dir}: no data rows in the scores (give --dataset for data with another label)")
    return pdf


# ------------------------------------------------------------------------------------------ the state

def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def _locked(mon_dir: Path):
    mon_dir.mkdir(parents=True, exist_ok=True)
    with open(mon_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp, compression="zstd")


def read_lumis(mon_dir) -> pd.DataFrame:
    path = Path(mon_dir) / "lumis.parquet"
    if not path.exists():
        return pd.DataFrame({"run": pd.Series(dtype="int64"), "luminosityBlock": pd.Series(dtype="int64"),
                             "events": pd.Series(dtype="int64"), "selected": pd.Series(dtype="int64"),
                             "source": pd.Series(dtype="object"), "first_seen_utc": pd.Series(dtype="object"),
                             "added_utc": pd.Series(dtype="object")})
    try:
        return pd.read_parquet(path)
    except (OSError, pa.ArrowException) as e:
        raise SparkadError(f"{path}: unreadable monitor state ({e})") from None


def read_runs(mon_dir) -> pd.DataFrame:
    """The per-run table (empty before the first update)."""
    path = Path(mon_dir) / "runs.parquet"
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def _merge(old: pd.DataFrame, new: pd.DataFrame, source: str, now: str, replace: bool) -> tuple[pd.DataFrame, dict]:
    new = new.assign(source=source, first_seen_utc=now, added_utc=now)
    key = ["run", "luminosityBlock"]
    info = {"runs_added": [], "runs_extended": [], "runs_replaced": [], "lumis_added": 0, "conflicts": []}
    if replace:
        rerun = sorted(set(new.run) & set(old.run))
        kept = old[~old.run.isin(rerun)]
        # a reprocessing that reproduces the stored counts exactly changes nothing (idempotent)
        for r in rerun:
            o = old[old.run == r].sort_values(key)[key + ["events", "selected"]].reset_index(drop=True)
            n = new[new.run == r].sort_values(key)[key + ["events", "selected"]].reset_index(drop=True)
            if o.equals(n):
                new = new[new.run != r].copy()
                kept = pd.concat([kept, old[old.run == r]])
            else:
                info["runs_replaced"].append(int(r))
                # a reprocessed run keeps the time it was first seen
                new.loc[new.run == r, "first_seen_utc"] = old.loc[old.run == r, "first_seen_utc"].min()
        merged = pd.concat([kept, new], ignore_index=True)
        info["runs_added"] = sorted(int(r) for r in set(new.run) - set(old.run))
        info["lumis_added"] = int(len(new))
    else:
        j = new.merge(old[key + ["events", "selected"]], on=key, how="left", suffixes=("", "_old"), indicator=True)
        fresh = (j["_merge"] == "left_only").to_numpy()
        same = ~fresh & (j.events.to_numpy() == j.events_old.to_numpy()) & (j.selected.to_numpy() == j.selected_old.to_numpy())
        conflict = ~fresh & ~same
        if conflict.any():
            c = j[conflict]
            info["conflicts"] = [{"run": int(r), "lumi_sections": int(len(g)),
                                  "events_stored": int(g.events_old.sum()), "events_new": int(g.events.sum()),
                                  "anomalous_stored": int(g.selected_old.sum()), "anomalous_new": int(g.selected.sum())}
                                 for r, g in c.groupby("run")]
        add = new[fresh]
        info["runs_added"] = sorted(int(r) for r in set(add.run) - set(old.run))
        info["runs_extended"] = sorted(int(r) for r in set(add.run) & set(old.run))
        info["lumis_added"] = int(len(add))
        merged = pd.concat([old, add], ignore_index=True)
    merged = merged[LUMI_COLUMNS].sort_values(key).reset_index(drop=True)
    merged[["run", "luminosityBlock", "events", "selected"]] = merged[["run", "luminosityBlock", "events", "selected"]].astype("int64")
    return merged, info


def _run_table(lumis: pd.DataFrame, check: dict, previous: pd.DataFrame, now: str) -> pd.DataFrame:
    runs = pd.DataFrame(check["runs"]).rename(columns={"selected": "anomalous"})
    g = lumis.groupby("run")
    meta = pd.DataFrame({"source": g.source.agg(lambda s: ",".join(sorted(set(s)))),
                         "first_seen_utc": g.first_seen_utc.min(), "updated_utc": g.added_utc.max()}).reset_index()
    runs = runs.merge(meta, on="run", how="left")
    prev = {}
    if len(previous) and "flagged_since_utc" in previous:
        prev = {int(r): (bool(f), s) for r, f, s in zip(previous.run, previous.flagged, previous.flagged_since_utc)}
    since = []
    for r, f in zip(runs.run, runs.flagged):
        was, t = prev.get(int(r), (False, None))
        since.append((t if was and t else now) if f else None)
    runs["flagged_since_utc"] = pd.Series(since, dtype="object")
    cols = ["run", "lumi_sections", "first_ls", "last_ls", "events", "anomalous", "rate", "rate_lo", "rate_hi",
            "expected", "band_lo", "band_hi", "pull", "p_value", "p_global", "tested", "in_reference", "flagged",
            "segment", "source", "first_seen_utc", "updated_utc", "flagged_since_utc"]
    runs = runs[cols]
    for c in ("rate", "rate_lo", "rate_hi", "expected", "band_lo", "band_hi", "pull", "p_value", "p_global"):
        runs[c] = runs[c].astype("float64")
    for c in ("tested", "in_reference", "flagged"):
        runs[c] = runs[c].astype(bool)
    return runs.sort_values("run").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- outputs

def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "NaN"
    if isinstance(v, float) and math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


def prometheus_text(runs: pd.DataFrame, check: dict, last_change_utc: str | None, max_runs: int = 50) -> str:
    """Prometheus text exposition format (0.0.4): totals, the latest run, the flagged runs and per-run
    series for the latest ``max_runs`` runs plus every flagged run (bounded cardinality)."""
    summ = check["summary"]
    ts = (datetime.strptime(last_change_utc, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
          if last_change_utc else float("nan"))
    flagged = runs[runs.flagged] if len(runs) else runs
    lines = []

    def metric(name, kind, help_, samples):
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
            lines.append(f"{name}{lab} {_fmt(value)}")

    metric("sparkad_runs_total", "gauge", "Runs in the monitor table.", [({}, len(runs))])
    metric("sparkad_lumi_sections_total", "gauge", "Luminosity sections in the monitor table.",
           [({}, int(runs.lumi_sections.sum()) if len(runs) else 0)])
    metric("sparkad_events_total", "gauge", "Data events counted over all runs.", [({}, summ["events"])])
    metric("sparkad_anomalous_events_total", "gauge", "Events above the anomaly threshold over all runs.",
           [({}, summ["selected"])])
    metric("sparkad_anomaly_rate", "gauge", "Anomalous fraction over all runs.", [({}, summ["rate"])])
    metric("sparkad_reference_anomaly_rate", "gauge", "Reference anomalous fraction (runs not flagged).",
           [({}, summ["runs"]["reference_rate"])])
    metric("sparkad_overdispersion", "gauge", "Beta-binomial run-to-run over-dispersion rho (0 for binomial).",
           [({}, summ["runs"]["rho"])])
    metric("sparkad_flagged_runs", "gauge", "Runs flagged by the homogeneity test.", [({}, len(flagged))])
    metric("sparkad_flagged_ls_ranges", "gauge", "Luminosity-section ranges flagged by the homogeneity test.",
           [({}, summ["ranges"]["flagged"])])
    metric("sparkad_segments", "gauge", "Change-point segments of the rate along the runs.", [({}, summ["segments"])])
    metric("sparkad_last_run", "gauge", "Highest run number in the table.",
           [({}, int(runs.run.max()) if len(runs) else float("nan"))])
    metric("sparkad_last_update_timestamp_seconds", "gauge", "Unix time of the table's last change.", [({}, ts)])
    if len(runs):
        show = runs[runs.run.isin(set(runs.run.nlargest(max_runs)) | set(flagged.run))]
        per = [("sparkad_run_events", "Data events of the run.", "events"),
               ("sparkad_run_anomalous_events", "Events of the run above the anomaly threshold.", "anomalous"),
               ("sparkad_run_anomaly_rate", "Anomalous fraction of the run.", "rate"),
               ("sparkad_run_expected_rate", "Expected anomalous fraction of the run (its reference).", "expected"),
               ("sparkad_run_pull", "Signed pull of the run's anomalous fraction, in Gaussian sigma.", "pull"),
               ("sparkad_run_p_global", "Trials-corrected p-value of the run.", "p_global"),
               ("sparkad_run_flagged", "1 if the run is flagged.", "flagged")]
        for name, help_, col in per:
            metric(name, "gauge", help_, [({"run": str(int(r))}, v) for r, v in zip(show.run, show[col])])
    return "\n".join(lines) + "\n"


def _alarms(runs: pd.DataFrame, check: dict, last_change_utc) -> dict:
    s = check["settings"]
    cols = ["run", "lumi_sections", "events", "anomalous", "rate", "rate_lo", "rate_hi", "expected", "pull",
            "p_value", "p_global", "source", "first_seen_utc", "flagged_since_utc"]
    flagged = runs[runs.flagged][cols] if len(runs) else pd.DataFrame(columns=cols)
    return {"updated_utc": last_change_utc, "alpha": s["alpha"], "method": s["method"],
            "alternative": s["alternative"], "runs_total": int(len(runs)), "runs_tested": check["summary"]["runs"]["units_tested"],
            "flagged_runs": records(flagged),
            "flagged_ls_ranges": [f for f in check["flagged"] if f["unit"] == "ls_range"],
            "flagged_periods": [f for f in check["flagged"] if f["unit"] == "period"]}


# ------------------------------------------------------------------------------------------- top level

def update_monitor(mon_dir, per_ls: pd.DataFrame, source: str, conf: dict | None = None, *,
                   replace: bool = False, now: str | None = None) -> dict:
    """Add a per-(run, LS) count table to the monitor folder and rewrite every product.

    ``conf``: {"check": ..., "monitor": ...} (None: conf/monitor.yaml). ``replace``: the input is a
    reprocessing of its runs (see the module docstring). Returns what changed: runs_added,
    runs_extended, runs_replaced, lumis_added, conflicts, runs_total, flagged (run numbers), files."""
    mon_dir = Path(mon_dir)
    conf = normalise_conf(conf)
    new = run_checks.check_counts(per_ls)
    now = now or _now()
    with _locked(mon_dir):
        old = read_lumis(mon_dir)
        previous = read_runs(mon_dir)
        lumis, info = _merge(old, new, str(source), now, replace)
        check = run_checks.run_period_check(lumis[list(COUNT_COLUMNS)], conf["check"])
        runs = _run_table(lumis, check, previous, now) if len(lumis) else pd.DataFrame()
        last_change = str(lumis.added_utc.max()) if len(lumis) else None
        changed = info["lumis_added"] > 0 or info["runs_replaced"]
        if changed or not (mon_dir / "lumis.parquet").exists():
            _write_parquet(lumis, mon_dir / "lumis.parquet")
        _write_parquet(runs, mon_dir / "runs.parquet")
        check_doc = {**check, "updated_utc": last_change}
        write_json_atomic(check_doc, mon_dir / "check.json")
        write_json_atomic(_alarms(runs, check, last_change), mon_dir / "alarms.json")
        write_text_atomic(prometheus_text(runs, check, last_change, conf["monitor"]["prometheus_runs"]),
                    mon_dir / "metrics.prom")
        files = ["lumis.parquet", "runs.parquet", "check.json", "alarms.json", "metrics.prom"]
        if conf["monitor"]["plot"] and len(runs):
            with atomic_path(mon_dir / "rate_vs_run.png") as tmp:
                run_checks.plot_rate_vs_run(check, tmp, title=f"anomaly rate per run ({check['settings']['method']}, "
                                                                f"alpha {check['settings']['alpha']:g})")
            files.append("rate_vs_run.png")
    return {**info, "runs_total": int(len(runs)), "lumi_sections_total": int(len(lumis)),
            "flagged": [int(r) for r in runs.run[runs.flagged]] if len(runs) else [],
            "flagged_ls_ranges": int(check["summary"]["ranges"]["flagged"]),
            "pulls": {int(r): float(p) for r, p in zip(runs.run[runs.flagged], runs.pull[runs.flagged])} if len(runs) else {},
            "files": [str(mon_dir / f) for f in files]}


def monitor_scores(scores_dir, mon_dir, *, score: str | None = None, threshold: float | None = None,
                   ppm: float | None = None, datasets=None, conf: dict | None = None, replace: bool = False,
                   source: str | None = None, spark=None) -> dict:
    """The `sparkad monitor` / jobs/monitor.py pipeline: read the score report, choose score and threshold,
    count per (run, LS) (pyarrow, or Spark when ``spark`` is given), update the monitor folder.

    ``scores_dir`` and ``mon_dir`` may be s3:// prefixes: the monitor folder (small: the per-LS state and
    the products) is then copied to a local temporary folder, updated there and its files uploaded
    (single PUTs; the state, lumis.parquet, is the only input of everything else, so an update killed
    while uploading is completed by re-running it). There is no lock on an object store: run one update
    at a time per monitor prefix."""
    kw = dict(score=score, threshold=threshold, ppm=ppm, datasets=datasets, conf=conf, replace=replace, source=source,
              spark=spark)
    mon = storage.location(mon_dir)
    if not storage.is_remote(mon):
        return _monitor_scores(scores_dir, mon_dir, mon_dir, **kw)
    storage.check_bucket(mon)
    read_score_report(scores_dir)  # before the monitor folder is copied
    with storage.local_output(mon, fetch=True, prefix="sparkad-monitor-") as local:
        res = _monitor_scores(scores_dir, local, mon, **kw)
    return {**res, "files": [storage.join(mon, Path(f).name) for f in res["files"]]}


def _monitor_scores(scores_dir, mon_dir, mon_name, *, score, threshold, ppm, datasets, conf, replace, source,
                    spark) -> dict:
    scores_dir = storage.location(scores_dir)
    report = read_score_report(scores_dir)
    conf = normalise_conf(conf)
    sel_path = Path(mon_dir) / "anomaly_threshold.json"
    held = json.loads(sel_path.read_text()) if sel_path.exists() else None
    if held is not None and threshold is None and ppm is None and score in (None, held.get("score")):
        score, thr, how = held["score"], float(held["threshold"]), "monitor folder"  # its runs were counted so
    else:
        score, thr, how = resolve_anomaly_threshold(report, scores_dir, score, threshold, ppm)

    def count(t):
        if spark is not None:
            return per_ls_counts_with_spark(spark, scores_dir, score, t, datasets)
        return per_ls_counts_from_scores(scores_dir, score, t, datasets)

    per_ls = count(thr)
    if threshold is None and ppm is None and how != "monitor folder":  # not the user's choice: make it testable
        mon = conf["monitor"]
        run_events = per_ls.groupby("run").events.sum()
        expected = float(np.median(run_events)) * float(per_ls.selected.sum()) / max(int(per_ls.events.sum()), 1)
        if expected < mon["min_expected_per_run"]:
            fraction = operating_fraction(run_events, mon["min_expected_per_run"], mon["max_fraction"])
            thr = data_threshold(scores_dir, score, fraction, datasets)
            how = (f"operating point: {fraction:.3g} of the data, so that the median run "
                   f"({int(np.median(run_events))} events) expects {fraction * np.median(run_events):.3g} anomalous "
                   f"(at the {how} threshold it expected {expected:.2g})")
            per_ls = count(thr)
    counted_with = {"score": score, "threshold": thr, "model_hash": report.get("model_hash")}
    if held is not None:
        if {k: held.get(k) for k in counted_with} != counted_with:
            raise SparkadError(f"{mon_name}: holds runs counted with {held.get('score')} > {held.get('threshold'):.6g} "
                               f"(model {held.get('model_hash')}); this input uses {score} > {thr:.6g} (model "
                               f"{counted_with['model_hash']}): rates would not compare — use another monitor folder")
    src = source or f"{storage.resolved_text(scores_dir)}#{report.get('model_hash') or 'model?'}:{score}>{thr:.9g}"
    res = update_monitor(mon_dir, per_ls, src, conf, replace=replace)
    if not sel_path.exists():
        write_json_atomic(counted_with, sel_path)
    return {**res, "score": score, "threshold": thr, "threshold_from": how, "input_runs": int(per_ls.run.nunique()),
            "input_events": int(per_ls.events.sum()), "nan_scores": int(per_ls.attrs.get("nan_scores", 0))}
