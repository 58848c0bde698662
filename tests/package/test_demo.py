"""`sparkad demo` end to end at a tiny size: every product exists and agrees with the others, a re-run
skips what is done, and an interrupted run (Ctrl-C inside a stage) leaves the finished stages reusable
and nothing half-written marked complete. The physics at the default size is measured by hand (see
conf/generate/demo.yaml); a tiny sample cannot show it."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from sparkad import demo as demo_mod
from sparkad.demo import STAGES, run_demo
from sparkad.core.errors import SparkadError

EVENTS = 300_000   # ~1.5k selected data events: every stage runs, in about a minute on 2 cores
EPOCHS = 2


def _java_or_skip():
    from sparkad.core.spark import check_java
    try:
        check_java()
    except SparkadError as e:
        pytest.skip(str(e))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    _java_or_skip()
    out = tmp_path_factory.mktemp("demo") / "out"
    lines = []
    t0 = time.time()
    summary = run_demo(out, EVENTS, progress=False, log=lines.append, epochs=EPOCHS)
    return out, summary, lines, time.time() - t0


def test_every_stage_ran_and_is_recorded(demo_run):
    out, summary, lines, _ = demo_run
    state = json.loads((out / "demo.json").read_text())
    assert list(summary["stages"]) == list(STAGES)
    for s in STAGES:
        rec = state["stages"][s]
        assert rec["complete"] is True and len(rec["key"]) == 16
        assert summary["stages"][s]["skipped"] is False
        assert summary["stages"][s]["wall_s"] == rec["wall_s"] >= 0
    assert state["summary"] == json.loads(json.dumps(summary))
    # keys chain: each differs from the others
    assert len({state["stages"][s]["key"] for s in STAGES}) == len(STAGES)
    text = "\n".join(lines)
    assert "summary" in text and summary["report"] in text


def test_products_are_consistent(demo_run):
    out, summary, _, _ = demo_run
    hlf = json.loads((out / "hlf" / "_report.json").read_text())
    score = json.loads((out / "scored" / "_score_report.json").read_text())
    assert hlf["complete"] and score["complete"]
    assert hlf["feature_set"] == "alad24" and hlf["selection"]["name"] == "top_rediscovery"
    # generated events (preset proportions) were all read; every selected event was scored once
    for name, d in hlf["datasets"].items():
        assert d["events_in"] == summary["events"][name]["generated"]
        assert score["events"][name] == d["written"] == summary["events"][name]["selected"]
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in (out / "scored" / "scores" / f"dataset={name}").glob("*.parquet"))
        assert rows == d["written"]
    assert sum(summary["events"][n]["generated"] for n in summary["events"]) == EVENTS
    # the model: ALAD trained on the W + DY cocktail only
    model = json.loads((out / "model" / "model.json").read_text())
    assert model["kind"] == "alad" and sorted(model["provenance"]["datasets"]) == ["dyjets", "wjets"]
    # the anomalous fraction of the data is the requested one (exact threshold on the data)
    data = [n for n, d in hlf["datasets"].items() if d["is_data"]]
    n_data = sum(hlf["datasets"][n]["written"] for n in data)
    assert summary["anomalous_fraction_data"] == pytest.approx(demo_mod.FRACTION, abs=1.5 / n_data)
    prod = out / "scored" / "products"
    for f in ("astf.csv", "pps_yields.csv", "run_check.json", "summary.json", "plots/astf_grid.png"):
        assert (prod / f).is_file(), f
    # MC normalised to the data-equivalent luminosity (data events / sum of the mix cross sections)
    fs = yaml.safe_load((out / "gen" / "fileset.yaml").read_text())
    assert fs["luminosity"] == pytest.approx(summary["luminosity_pb"])
    xsec = sum(fs["datasets"][n]["xsec"] for n in ("wjets", "dyjets", "ttbar"))
    assert fs["luminosity"] == pytest.approx(summary["events"]["data"]["generated"] / xsec, rel=1e-5)


def test_monitor_has_every_data_run(demo_run):
    out, summary, _, _ = demo_run
    runs = pd.read_parquet(out / "monitor" / "runs.parquet")
    data_runs = set(pd.read_parquet(out / "hlf" / "data", columns=["run"]).run.unique())
    assert set(runs.run) == data_runs and len(data_runs) > 1
    assert summary["runs"] == len(data_runs)
    flagged = summary["flagged_runs"]
    assert set(flagged["monitor"]) <= data_runs and set(flagged["run_check"]) <= data_runs
    assert flagged["injected_fault_runs"] == [194115, 194117]


def test_report_references_existing_images(demo_run):
    out, summary, _, _ = demo_run
    report = out / "report.html"
    assert summary["report"] == str(report.resolve())
    page = report.read_text()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
    assert len(srcs) >= 4
    for src in srcs:
        if src.startswith("data:image/png;base64,"):
            assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert (report.parent / src).is_file(), src


def test_rerun_skips_completed_stages(demo_run):
    out, first, _, first_s = demo_run
    marker_files = [out / "gen" / "fileset.yaml", out / "hlf" / "_report.json", out / "model" / "model.json",
                    out / "scored" / "_score_report.json", out / "monitor" / "runs.parquet", out / "report.html"]
    before = {p: (_sha(p), p.stat().st_mtime_ns) for p in marker_files}
    lines = []
    t0 = time.time()
    again = run_demo(out, EVENTS, progress=False, log=lines.append, epochs=EPOCHS)
    took = time.time() - t0
    assert all(again["stages"][s]["skipped"] for s in STAGES)
    assert {s: again["stages"][s]["wall_s"] for s in STAGES} == {s: first["stages"][s]["wall_s"] for s in STAGES}
    assert took < min(20.0, first_s / 3)
    assert {p: (_sha(p), p.stat().st_mtime_ns) for p in marker_files} == before
    for k in ("events", "astf_excess_grid", "flagged_runs", "pps", "anomalous_fraction_data"):
        assert again[k] == first[k]
    assert sum(line.endswith("up to date (skipped)") or line.endswith(", skipped") for line in lines) == len(STAGES)


def test_interrupted_runs_resume_cleanly(demo_run, tmp_path, monkeypatch):
    """Ctrl-C inside training, then inside scoring: the finished stages are reused, the interrupted
    training resumes from its checkpoint, and no stage is marked complete before it finished."""
    src, first, _, _ = demo_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    state0 = json.loads((out / "demo.json").read_text())

    # 1. a longer training (new key: train and everything after re-run), interrupted after a few steps
    import sparkad.train.api as train_api
    real_train = train_api.train_from_config

    def train_then_ctrl_c(*a, **kw):
        real_train(*a, **dict(kw, stop_after_steps=3))
        raise KeyboardInterrupt

    monkeypatch.setattr(train_api, "train_from_config", train_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, EVENTS, progress=False, log=lambda m: None, epochs=EPOCHS + 1)
    state = json.loads((out / "demo.json").read_text())
    assert [s for s in STAGES if (state["stages"].get(s) or {}).get("complete")] == ["generate", "extract"]
    assert state["stages"]["generate"] == state0["stages"]["generate"]
    assert state["stages"]["train"]["complete"] is False
    assert not (out / "model" / "model.json").exists() and (out / "model" / "checkpoint" / "state.npz").exists()
    # the later stages' old products are gone: nothing describes a model that no longer exists
    assert not (out / "scored").exists() and not (out / "monitor").exists() and not (out / "report.html").exists()
    monkeypatch.setattr(train_api, "train_from_config", real_train)

    # 2. the same command resumes the training, then Ctrl-C while the products are written
    import sparkad.analysis.products as products
    real_write = products.write_products

    def products_then_ctrl_c(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(products, "write_products", products_then_ctrl_c)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, EVENTS, progress=False, log=lines.append, epochs=EPOCHS + 1)
    assert any("resuming from" in line for line in lines)
    state = json.loads((out / "demo.json").read_text())
    assert [s for s in STAGES if (state["stages"].get(s) or {}).get("complete")] == ["generate", "extract", "train"]
    assert state["stages"]["score"]["complete"] is False
    assert not (out / "scored" / "_score_report.json").exists()
    assert json.loads((out / "model" / "model.json").read_text())["history"]["epochs"] == EPOCHS + 1
    monkeypatch.setattr(products, "write_products", real_write)

    # 3. a clean re-run reuses generate / extract / train and finishes the rest
    done = run_demo(out, EVENTS, progress=False, log=lambda m: None, epochs=EPOCHS + 1)
    assert [s for s in STAGES if done["stages"][s]["skipped"]] == ["generate", "extract", "train"]
    state = json.loads((out / "demo.json").read_text())
    assert all(state["stages"][s]["complete"] for s in STAGES)
    score = json.loads((out / "scored" / "_score_report.json").read_text())
    assert score["events"] == {n: e["selected"] for n, e in first["events"].items()}
    assert (out / "report.html").is_file() and done["events"] == first["events"]


def test_different_events_regenerate(tmp_path, monkeypatch):
    """A different --events changes the generation key: the plan starts at generate (checked without
    running it: the stage runners are replaced by recorders)."""
    ran = []
    for s in STAGES:
        monkeypatch.setitem(demo_mod.RUNNERS, s, lambda ctx, s=s: ran.append(s) or {})
    monkeypatch.setattr(demo_mod, "_complete", lambda out, stage: True)
    monkeypatch.setattr("sparkad.core.spark.check_java", lambda: "java")
    monkeypatch.setattr(demo_mod, "build_summary", lambda *a: {"stages": {}})
    monkeypatch.setattr(demo_mod, "format_summary", lambda s: [])
    run_demo(tmp_path, 100_000, progress=False, log=lambda m: None)
    assert ran == list(STAGES)
    ran.clear()
    run_demo(tmp_path, 100_000, progress=False, log=lambda m: None)
    assert ran == []
    run_demo(tmp_path, 120_000, progress=False, log=lambda m: None)
    assert ran == list(STAGES)
    ran.clear()
    run_demo(tmp_path, 120_000, progress=False, log=lambda m: None, seed=5)
    assert ran == list(STAGES)
    ran.clear()
    run_demo(tmp_path, 120_000, progress=False, log=lambda m: None, seed=5, fresh=True)
    assert ran == list(STAGES)


def test_cli_arguments_and_missing_java(tmp_path, monkeypatch):
    runner = CliRunner()
    res = runner.invoke(demo_mod.demo, ["--help"])
    assert res.exit_code == 0 and "--events" in res.output and "--fresh" in res.output
    res = runner.invoke(demo_mod.demo, ["--events", "0", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    # no Java: one line saying how to get one, before any stage ran
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    res = runner.invoke(demo_mod.demo, ["--out", str(tmp_path / "d"), "--events", "1000", "--quiet"])
    assert res.exit_code == 1
    err = [line for line in res.output.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: no Java runtime found") and "JAVA_HOME" in err[0]
    assert not (tmp_path / "d" / "gen").exists() and not (tmp_path / "d" / "demo.json").exists()


def test_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "sparkad.demo", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--events" in res.stdout
