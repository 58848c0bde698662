"""Operations monitoring (sparkad/monitor/runs.py, `sparkad monitor`, jobs/monitor.py): incremental and
idempotent updates, the products' consistency with the table, counting from a scores folder, errors."""
import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sparkad.monitor import runs as mon
from sparkad.core.errors import ConfigError, SparkadError
from sparkad.monitor.cli import monitor as monitor_cmd

FAULTY = (300010, 300031)
TIME_COLS = ["source", "first_seen_utc", "updated_utc", "flagged_since_utc"]


def per_ls(seed=1, n_runs=40, faulty=FAULTY, rate=0.01):
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n_runs):
        run = 300000 + i
        nls = int(rng.integers(15, 40))
        n = rng.integers(80, 160, nls)
        parts.append(pd.DataFrame({"run": run, "luminosityBlock": np.arange(1, nls + 1), "events": n,
                                   "selected": rng.binomial(n, rate * (4 if run in faulty else 1))}))
    return pd.concat(parts, ignore_index=True)


def snapshot(d: Path) -> dict:
    return {"runs": pd.read_parquet(d / "runs.parquet"), "lumis": pd.read_parquet(d / "lumis.parquet"),
            **{f: (d / f).read_text() for f in ("alarms.json", "metrics.prom", "check.json")}}


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? (\S+)$")


def parse_prometheus(text: str) -> dict:
    """A strict reader of the text exposition format (0.0.4): HELP and TYPE before a metric's samples,
    TYPE once per metric, valid names, label syntax and float values; {(name, labels): value}."""
    assert text.endswith("\n")
    types, helps, out = {}, set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert re.fullmatch(NAME, name) and name not in helps, line
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name not in types and kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"bad sample line {line!r}"
            name, labels, value = m.groups()
            assert name in types and name in helps, f"{name}: sample before its HELP/TYPE"
            labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or "")))
            assert (name, labels) not in out, f"duplicate series {name}{labels}"
            out[(name, labels)] = float(value)
    return out


def test_incremental_update_equals_one_update(tmp_path):
    df = per_ls()
    # the first half ends in the middle of run 300020: the rest of that run arrives with the second half
    cut = df.index[(df.run == 300020) & (df.luminosityBlock == 10)][0]
    a, b = tmp_path / "a", tmp_path / "b"
    r1 = mon.update_monitor(a, df.iloc[:cut], "first", None, now="2026-01-01T00:00:00Z")
    r2 = mon.update_monitor(a, df.iloc[cut:], "second", None, now="2026-01-02T00:00:00Z")
    assert r1["runs_added"] == list(range(300000, 300021)) and r2["runs_extended"] == [300020]
    assert r2["runs_added"] == list(range(300021, 300040)) and r1["lumis_added"] + r2["lumis_added"] == len(df)
    mon.update_monitor(b, df, "all", None, now="2026-01-03T00:00:00Z")
    ra, rb = mon.read_runs(a), mon.read_runs(b)
    pd.testing.assert_frame_equal(ra.drop(columns=TIME_COLS), rb.drop(columns=TIME_COLS))
    assert sorted(ra.run[ra.flagged]) == list(FAULTY)
    assert ra.set_index("run").loc[300020, "source"] == "first,second"
    assert ra.set_index("run").loc[300020, ["first_seen_utc", "updated_utc"]].tolist() == \
        ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
    # the expected rate is recomputed over the whole table: the first update's figures are not kept
    assert ra.events.sum() == df.events.sum() and ra.anomalous.sum() == df.selected.sum()


def test_rerun_is_idempotent_and_conflicts_are_reported(tmp_path):
    df = per_ls(seed=2)
    mon.update_monitor(tmp_path, df, "s1", None, now="2026-01-01T00:00:00Z")
    before = snapshot(tmp_path)
    res = mon.update_monitor(tmp_path, df.sample(frac=1, random_state=0), "s1", None, now="2026-02-01T00:00:00Z")
    assert res["runs_added"] == [] and res["lumis_added"] == 0 and not res["conflicts"]
    after = snapshot(tmp_path)
    for k in before:
        if isinstance(before[k], pd.DataFrame):
            pd.testing.assert_frame_equal(before[k], after[k])
        else:
            assert before[k] == after[k], k
    # the same run again with other counts: kept and reported, unless it is a reprocessing
    changed = df[df.run == 300005].assign(selected=lambda x: x.selected + 2)
    res = mon.update_monitor(tmp_path, changed, "s2", None, now="2026-03-01T00:00:00Z")
    assert [c["run"] for c in res["conflicts"]] == [300005] and res["lumis_added"] == 0
    pd.testing.assert_frame_equal(mon.read_runs(tmp_path), before["runs"])
    res = mon.update_monitor(tmp_path, changed, "s2", None, replace=True, now="2026-03-01T00:00:00Z")
    assert res["runs_replaced"] == [300005] and not res["conflicts"]
    row = mon.read_runs(tmp_path).set_index("run").loc[300005]
    assert row.anomalous == changed.selected.sum() and row.source == "s2"
    assert (row.first_seen_utc, row.updated_utc) == ("2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z")
    # a reprocessing that reproduces the stored counts changes nothing
    res = mon.update_monitor(tmp_path, changed, "s3", None, replace=True, now="2026-04-01T00:00:00Z")
    assert res["runs_replaced"] == [] and mon.read_runs(tmp_path).set_index("run").loc[300005, "source"] == "s2"


def test_products_agree_with_the_table(tmp_path):
    conf = {"check": {"alpha": 0.01}, "monitor": {"prometheus_runs": 5}}
    res = mon.update_monitor(tmp_path, per_ls(seed=3), "src", conf, now="2026-01-01T00:00:00Z")
    runs = mon.read_runs(tmp_path)
    assert list(runs.columns[:14]) == ["run", "lumi_sections", "first_ls", "last_ls", "events", "anomalous", "rate",
                                       "rate_lo", "rate_hi", "expected", "band_lo", "band_hi", "pull", "p_value"]
    assert sorted(runs.run[runs.flagged]) == list(FAULTY) == res["flagged"]
    assert ((runs.rate_lo <= runs.rate) & (runs.rate <= runs.rate_hi)).all()
    assert (runs.flagged == (runs.p_global < 0.01)).all()
    assert runs.flagged_since_utc[runs.flagged].eq("2026-01-01T00:00:00Z").all()
    assert runs.flagged_since_utc[~runs.flagged].isna().all()
    alarms = json.loads((tmp_path / "alarms.json").read_text())
    assert [a["run"] for a in alarms["flagged_runs"]] == list(FAULTY) and alarms["runs_total"] == len(runs)
    for a in alarms["flagged_runs"]:
        r = runs.set_index("run").loc[a["run"]]
        assert (a["pull"], a["p_global"], a["rate"], a["expected"]) == (r.pull, r.p_global, r.rate, r.expected)
        assert a["pull"] > 5
    m = parse_prometheus((tmp_path / "metrics.prom").read_text())
    assert m[("sparkad_runs_total", ())] == len(runs)
    assert m[("sparkad_flagged_runs", ())] == 2 and m[("sparkad_last_run", ())] == runs.run.max()
    assert m[("sparkad_events_total", ())] == runs.events.sum()
    assert m[("sparkad_last_update_timestamp_seconds", ())] == 1767225600.0
    shown = sorted(int(dict(lab)["run"]) for (name, lab) in m if name == "sparkad_run_pull")
    assert shown == sorted(set(runs.run.nlargest(5)) | set(FAULTY))  # latest 5 runs and every flagged run
    for r in shown:
        row = runs.set_index("run").loc[r]
        assert m[("sparkad_run_pull", (("run", str(r)),))] == pytest.approx(row.pull, rel=1e-12)
        assert m[("sparkad_run_anomaly_rate", (("run", str(r)),))] == pytest.approx(row.rate, rel=1e-12)
        assert m[("sparkad_run_flagged", (("run", str(r)),))] == float(row.flagged)
    check = json.loads((tmp_path / "check.json").read_text())
    assert [r["run"] for r in check["runs"]] == runs.run.tolist()
    png = (tmp_path / "rate_vs_run.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(tmp_path.rglob(".*.tmp*"))  # atomic writes leave no temporary files behind


def test_prometheus_reader_rejects_bad_text():
    with pytest.raises(AssertionError):
        parse_prometheus("sparkad_x 1\n")  # no HELP/TYPE
    with pytest.raises(AssertionError):
        parse_prometheus("# HELP a x\n# TYPE a gauge\na{run=1} 2\n")  # unquoted label value
    assert parse_prometheus("# HELP a x\n# TYPE a gauge\na{run=\"1\"} NaN\n")[("a", (("run", "1"),))] != 0


# ------------------------------------------------------------------------------ from a scores folder

THR = {"alad_l1": {"1000ppm": {"value": 2.0}, "100ppm": {"value": 3.0}, "10ppm": {"value": None}},
       "alad_l2": {"1000ppm": {"value": 5.0}}}


def write_scores(root: Path, df_ls: pd.DataFrame, seed=0, report: dict | None = None) -> pd.DataFrame:
    """A scores folder as `sparkad score` writes it: data events whose alad_l1 is above 2.0 exactly
    ``selected`` times per LS (one event sits exactly at 2.0: not above), plus an MC dataset."""
    rng = np.random.default_rng(seed)
    run = np.repeat(df_ls.run.to_numpy(), df_ls.events.to_numpy())
    lumi = np.repeat(df_ls.luminosityBlock.to_numpy(), df_ls.events.to_numpy())
    anom = np.concatenate([np.arange(n) < k for n, k in zip(df_ls.events, df_ls.selected)])
    s1 = np.where(anom, 2.0 + 1e-3 + rng.exponential(1.0, len(run)), 2.0 - rng.exponential(1.0, len(run)))
    s1[np.flatnonzero(~anom)[0]] = 2.0
    data = pd.DataFrame({"run": run, "luminosityBlock": lumi, "event": np.arange(len(run)), "weight": 1.0,
                         "label": "data", "alad_l1": s1.astype(np.float32),
                         "alad_l2": rng.normal(0, 1, len(run)).astype(np.float32)})
    mc = pd.DataFrame({"run": 1, "luminosityBlock": np.arange(1, 501) // 100 + 1, "event": np.arange(500),
                       "weight": 0.1, "label": "W", "alad_l1": rng.normal(3, 1, 500).astype(np.float32),
                       "alad_l2": rng.normal(0, 1, 500).astype(np.float32)})
    for name, part in (("data", data), ("wjets", mc)):
        d = root / "scores" / f"dataset={name}"
        d.mkdir(parents=True)
        half = len(part) // 2
        pq.write_table(pa.Table.from_pandas(part.iloc[:half], preserve_index=False), d / "part-0.parquet")
        pq.write_table(pa.Table.from_pandas(part.iloc[half:], preserve_index=False), d / "part-1.parquet")
    rep = {"complete": True, "engine": "spark", "model_hash": "abc123", "scores": ["alad_l1", "alad_l2"],
           "thresholds": THR, "events": {"data": len(data), "wjets": 500}, "total_events": len(data) + 500}
    (root / "_score_report.json").write_text(json.dumps({**rep, **(report or {})}))
    return pd.concat([data, mc.assign(dataset="wjets")])


@pytest.fixture(scope="module")
def scores_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("scores")
    df_ls = per_ls(seed=4, n_runs=20, faulty=(300007,))
    events = write_scores(root, df_ls)
    return root, df_ls, events


def test_counts_from_a_scores_folder(scores_dir, tmp_path):
    root, df_ls, events = scores_dir
    got = mon.per_ls_counts_from_scores(root, "alad_l1", 2.0)
    pd.testing.assert_frame_equal(got, df_ls.sort_values(["run", "luminosityBlock"]).reset_index(drop=True),
                                  check_like=True)
    mc = mon.per_ls_counts_from_scores(root, "alad_l1", 2.0, datasets=["wjets"])
    w = events[events.label == "W"]
    assert mc.events.sum() == len(w) and mc.selected.sum() == (w.alad_l1 > 2.0).sum()
    with pytest.raises(SparkadError, match="no scores for dataset"):
        mon.per_ls_counts_from_scores(root, "alad_l1", 2.0, datasets=["nope"])
    with pytest.raises(SparkadError, match="lacks column"):
        mon.per_ls_counts_from_scores(root, "vae_nll", 2.0)
    rep = json.loads((root / "_score_report.json").read_text())
    assert mon.resolve_anomaly_threshold(rep, root) == ("alad_l1", 2.0, "model 1000ppm")
    assert mon.resolve_anomaly_threshold(rep, root, ppm=100) == ("alad_l1", 3.0, "model 100ppm")
    assert mon.resolve_anomaly_threshold(rep, root, "alad_l2", threshold=1.5) == ("alad_l2", 1.5, "given")
    with pytest.raises(SparkadError, match="finite"):  # `score > nan` would count no event, silently
        mon.resolve_anomaly_threshold(rep, root, "alad_l2", threshold=float("nan"))
    assert mon.resolve_anomaly_threshold({**rep, "anomaly_threshold": {"score": "alad_l2", "threshold": 4.0}}, root) == \
        ("alad_l2", 4.0, "score report")
    with pytest.raises(SparkadError, match="no 10ppm threshold"):
        mon.resolve_anomaly_threshold(rep, root, ppm=10)
    with pytest.raises(SparkadError, match="no score 'x'"):
        mon.resolve_anomaly_threshold(rep, root, "x")


def test_operating_point_rule_when_the_default_threshold_leaves_runs_untestable(scores_dir, tmp_path):
    """alad_l2's model threshold (5.0 on a unit normal) puts ~0 anomalous events in a run: with no
    threshold from the user, the monitor moves to the fraction of the data at which the median run
    expects min_expected_per_run (10) anomalous events, sets it exactly on the data, keeps it in the
    folder and reuses it; a threshold the user gives is never moved."""
    root, df_ls, events = scores_dir
    data = events[events.label == "data"]
    median_run = data.groupby("run").size().median()
    res = mon.monitor_scores(root, tmp_path / "m", score="alad_l2")
    fraction = max(1e-3, 10 / median_run)
    assert res["threshold_from"].startswith(f"operating point: {fraction:.3g} of the data")
    s = np.sort(data.alad_l2.to_numpy(np.float64))[::-1]
    k = int(np.floor(fraction * len(s) + 1e-9))
    assert res["threshold"] == s[k] and (s > res["threshold"]).sum() == k
    held = json.loads((tmp_path / "m" / "anomaly_threshold.json").read_text())
    assert held["score"] == "alad_l2" and held["threshold"] == res["threshold"]
    again = mon.monitor_scores(root, tmp_path / "m")  # no flags: the folder's own threshold
    assert again["threshold_from"] == "monitor folder" and again["threshold"] == res["threshold"]
    given = mon.monitor_scores(root, tmp_path / "g", score="alad_l2", ppm=1000)
    assert given["threshold"] == 5.0 and given["threshold_from"] == "model 1000ppm"
    assert mon.operating_fraction([100, 2000, 4000], 10, 0.05) == pytest.approx(10 / 2000)
    assert mon.operating_fraction([10, 20, 30], 10, 0.05) == 0.05 and mon.operating_fraction([1e8], 10, 0.05) == 1e-3


def test_cli(scores_dir, tmp_path):
    root, df_ls, _ = scores_dir
    out = tmp_path / "mon"
    r = CliRunner().invoke(monitor_cmd, ["--scores", str(root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "alad_l1 > 2 (model 1000ppm): 20 runs added, 20 runs in" in r.output
    assert "flagged runs: 300007 (pull +" in r.output
    first = (out / "runs.parquet").read_bytes()
    r = CliRunner().invoke(monitor_cmd, ["--scores", str(root), "--out", str(out)])
    assert r.exit_code == 0 and ": 0 runs added, 20 runs in" in r.output
    assert (out / "runs.parquet").read_bytes() == first
    # another threshold into the same folder: refused, the rates would not compare
    r = CliRunner().invoke(monitor_cmd, ["--scores", str(root), "--out", str(out), "--ppm", "100"])
    assert r.exit_code == 1 and "alad_l1 > 2 (model abc123); this input uses alad_l1 > 3" in r.output
    # the same runs again with other counts: kept and warned, one line per run; --replace takes them
    other = tmp_path / "other"
    three = df_ls[df_ls.run < 300003]
    write_scores(other, three.assign(selected=np.minimum(three.selected + 1, three.events)))
    r = CliRunner().invoke(monitor_cmd, ["--scores", str(other), "--out", str(out)])
    assert r.exit_code == 0 and r.output.count("warning: run ") == 3 and "use --replace" in r.output
    assert (out / "runs.parquet").read_bytes() == first
    r = CliRunner().invoke(monitor_cmd, ["--scores", str(other), "--out", str(out), "--replace"])
    assert r.exit_code == 0 and "0 runs added, 3 replaced, 20 runs in" in r.output and "warning" not in r.output
    r = CliRunner().invoke(monitor_cmd, ["--scores", str(root), "--out", str(out), "--threshold", "1", "--ppm", "1"])
    assert r.exit_code == 2 and "either --threshold or --ppm" in r.output
    r = CliRunner().invoke(monitor_cmd, ["--scores", str(root), "--out", str(tmp_path / "bb"), "--method",
                                         "beta-binomial", "--alpha", "0.001"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "bb" / "alarms.json").read_text())["method"] == "beta-binomial"
    # refusals: one line naming the folder, exit code 1
    for setup, msg in ((lambda d: None, "no _score_report.json"),
                       (lambda d: (d / "_score_report.json").write_text('{"complete": false}'), "not mark a complete"),
                       (lambda d: (d / "_score_report.json").write_text("{nope"), "unreadable score report")):
        bad = tmp_path / f"bad{len(msg)}"
        bad.mkdir()
        setup(bad)
        r = CliRunner().invoke(monitor_cmd, ["--scores", str(bad), "--out", str(tmp_path / "x")])
        lines = r.output.strip().splitlines()
        assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], r.output
        assert msg in lines[0]
    assert not (tmp_path / "x" / "runs.parquet").exists()


def test_monitor_configuration(tmp_path):
    conf = mon.load_monitor_conf()
    assert conf["check"]["alpha"] == 0.01 and conf["monitor"]["prometheus_runs"] == 50
    f = tmp_path / "m.yaml"
    f.write_text("check: {method: beta-binomial, ls_block_size: 10}\nmonitor: {plot: false}\n")
    conf = mon.load_monitor_conf(f, alpha=0.05)
    assert (conf["check"]["method"], conf["check"]["ls_block_size"], conf["check"]["alpha"], conf["monitor"]["plot"]) \
        == ("beta-binomial", 10, 0.05, False)
    mon.update_monitor(tmp_path / "m", per_ls(n_runs=5), "s", conf)
    assert not (tmp_path / "m" / "rate_vs_run.png").exists()
    f.write_text("checks: {}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        mon.load_monitor_conf(f)
    with pytest.raises(ConfigError, match="alpha"):
        mon.load_monitor_conf(alpha=2.0)
    for text, msg in (("check: [1]\n", "check: expected a mapping"),
                      ("check: {periods: [{name: a, first_run: x, last_run: 3}]}\n", "first_run: expected a number"),
                      ("check: {min_events: -5}\n", "min_events: must be >= 0"),
                      ("check: {exclude_flagged: 'no'}\n", "exclude_flagged: expected true or false"),
                      ("monitor: {prometheus_runs: -1}\n", "prometheus_runs: must be >= 0")):
        f.write_text(text)
        with pytest.raises(SparkadError, match=msg):
            mon.load_monitor_conf(f)


def test_spark_job_gives_the_same_table(spark, scores_dir, tmp_path):
    root, df_ls, _ = scores_dir
    a = mon.per_ls_counts_with_spark(spark, root, "alad_l1", 2.0)
    b = mon.per_ls_counts_from_scores(root, "alad_l1", 2.0)
    pd.testing.assert_frame_equal(a, b)
    spec = importlib.util.spec_from_file_location("monitor_job", Path(__file__).resolve().parents[2] / "jobs" / "monitor.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job.main(["--scores", str(root), "--out", str(tmp_path / "spark")]) == 0
    CliRunner().invoke(monitor_cmd, ["--scores", str(root), "--out", str(tmp_path / "arrow")])
    pd.testing.assert_frame_equal(mon.read_runs(tmp_path / "spark").drop(columns=TIME_COLS),
                                  mon.read_runs(tmp_path / "arrow").drop(columns=TIME_COLS))
    assert job.main(["--scores", str(tmp_path), "--out", str(tmp_path / "spark")]) == 1  # no report: refused
    assert math.isfinite(mon.read_runs(tmp_path / "spark").pull.iloc[0])
