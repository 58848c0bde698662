"""``sparkad demo``: the whole chain on one machine, as a story you can read in the report.

generate (CMS-2012-like W / DY / tt̄ MC and a Run2012B-like data mix with tt̄ at its real cross section
and a hot calorimeter region in two runs, conf/generate/demo.yaml) → extract (coffea on a local Dask
cluster, seeds/000's top re-discovery selection, alad24 features) → train (ALAD on the W + DY MC
cocktail) → score (Spark ``local[*]``: scores, ASTF, post-processing selection, run-period check) →
monitor (per-run anomaly rates, alarms) → report (one HTML page).

Why the model is trained on the W + DY cocktail and not on the data as seeds/000 does: in the
generated sample tt̄ is ~9% of the selected data (the generator's W + ≥ 2-jet rate is low), not the rare
process that training on data assumes; an ALAD trained on that data learns tt̄ as normal (measured, L1
score after 100 epochs: 0.4% of tt̄ and 1.3% of W above the 1% data threshold). The W + DY cocktail is
the "known Standard Model" of the story, without the top quark, which keeps the premise of seeds/000
(tt̄ unknown to the model); trained on it, ~4% of tt̄ and ~0.6% of W pass the same threshold.

Resumability: every stage writes its output atomically and has a completion marker; OUT/demo.json
records, per stage, a key (a hash of the stage's parameters and of the key of the stage before it)
and whether the stage completed. A re-run skips a stage whose key matches and whose marker exists;
once one stage runs, every later stage runs too (its inputs are new). A training interrupted with an
unchanged key resumes from its checkpoint. demo.json is replaced atomically and marks a stage
complete only after the stage returned, so Ctrl-C never leaves a half-written product marked complete.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from sparkad.core.errors import SparkadError, one_line_errors
from sparkad.core.atomic import write_json_atomic, write_text_atomic
from sparkad.core.jsonsafe import jsonable

PRESET = "demo"
DEFAULT_OUT = "sparkad-demo"
STAGES = ("generate", "extract", "train", "score", "monitor", "report")
FORMAT = "sparkad-demo/1"

FEATURE_SET = "alad24"
SELECTION = "top_rediscovery"          # seeds/000 sec. 4: iso lepton |eta| < 1.4, >= 2 jets
BACKGROUND = ["wjets", "dyjets"]       # the SM cocktail the model learns, and the ASTF's MC
SCORE = "l1"                           # seeds/000 sec. 4 selects on the L1 score
# anomalous fraction of the data: seeds/000 keeps ~1e-3 of 4.4 fb^-1; the demo's ~125 pb^-1 (~49k selected
# events) needs 1e-2 for ~500 anomalous events, and tighter cuts reach the W-like tail (measured: at 3e-3
# the tt̄ efficiency falls below W's)
FRACTION = 0.01
# ALAD schedule, measured on the default sample (2 seeds): the paper's base learning rate 1e-5 at batch 50
# gives, in 100 epochs at batch 500, a tt̄ efficiency of ~2.4% at the 1% data threshold; base 3e-5 at batch
# 1000 (the rate scales linearly with the batch: 6e-4) gives 3.6-5.6% in ~50 s. Longer schedules made the
# model more sensitive to the hot-cell fault and less to tt̄.
EPOCHS = 100
BATCH_SIZE = 1000
LEARNING_RATE = 3.0e-5
MIN_STEPS_PER_EPOCH = 20               # small --events: the batch shrinks rather than the epoch vanishing
WORKERS = 2

# where each stage writes, relative to OUT, and the file that marks it complete
PATHS = {"generate": "gen", "extract": "hlf", "train": "model", "score": "scored", "monitor": "monitor",
         "report": "report.html"}


# ------------------------------------------------------------------------------------------ helpers

def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(stage: str, params: dict, upstream: str | None) -> str:
    blob = json.dumps({"stage": stage, "params": params, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _complete(out: Path, stage: str) -> bool:
    """The stage's own completion marker (written last by the stage)."""
    p = out / PATHS[stage]
    if stage == "generate":
        return (p / "fileset.yaml").is_file()
    if stage == "extract":
        return bool((_read_json(p / "_report.json") or {}).get("complete"))
    if stage == "train":
        return (p / "model.json").is_file() and (p / "networks.npz").is_file()
    if stage == "score":
        return bool((_read_json(p / "_score_report.json") or {}).get("complete")) \
            and (p / "products" / "summary.json").is_file()
    if stage == "monitor":
        return all((p / f).is_file() for f in ("runs.parquet", "alarms.json", "check.json"))
    return p.is_file()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def preset_config(events: int | None, seed: int | None) -> dict:
    """The demo preset, scaled to ``events`` (total over all samples, proportions kept), with the data's
    equivalent luminosity (data events / Σ mix cross sections) so that MC yields compare with data counts."""
    from sparkad.generate.config import GeneratorConfigError, load_preset, scale_events

    try:
        cfg = scale_events(load_preset(PRESET), events)
    except GeneratorConfigError as e:
        raise SparkadError(str(e)) from None
    data = [s for s in cfg["samples"].values() if s.get("data_like")]
    xsec = sum(c["weight"] for s in data for c in s["components"])
    cfg["luminosity"] = sum(s["events"] for s in data) / xsec
    if seed is not None:
        cfg["seed"] = int(seed)
    return cfg


def _preset_sha() -> str:
    from sparkad.generate.config import preset_path
    return hashlib.sha256(preset_path(PRESET).read_bytes()).hexdigest()[:16]


def _batch_size(hlf_dir: Path, requested: int) -> int:
    """ALAD batch: ``requested``, or smaller when the cocktail's training half (estimated from the HLF
    report as the cocktail code builds it) would give fewer than MIN_STEPS_PER_EPOCH steps."""
    rep = _read_json(hlf_dir / "_report.json") or {}
    ds = rep.get("datasets") or {}
    w = {n: float(ds[n].get("sumw_written") or 0.0) for n in BACKGROUND if n in ds}
    total = sum(w.values())
    caps = [(ds[n]["written"] - round(0.5 * ds[n]["written"])) / (w[n] / total) for n in w if w[n] > 0]
    if not caps:
        return requested
    return int(max(8, min(requested, min(caps) // MIN_STEPS_PER_EPOCH)))


@contextlib.contextmanager
def _lock(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".demo.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SparkadError(f"{out}: another sparkad demo is running in this folder") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_stderr_fd():
    """Silence file descriptor 2 (not Python's exceptions): TensorFlow's C++ start-up lines (oneDNN, no
    CUDA driver) are printed by absl before TF_CPP_MIN_LOG_LEVEL applies and would tear the progress line."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# Spark's driver logs at WARN by default (host name, native Hadoop, ...): errors only, for a tidy display;
# the PythonGatewayServer logger at the root level also stops the "Setting default log level" banner
LOG4J2 = """rootLogger.level = error
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.shell.name = org.apache.spark.api.python.PythonGatewayServer
logger.shell.level = error
"""


class _Display:
    """One progress line across the stages (tqdm on stderr); messages are printed above it."""

    def __init__(self, progress: bool, log):
        self.log = log
        self.bar = None
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=len(STAGES), unit="stage", dynamic_ncols=True,
                            bar_format="{desc} |{bar:20}| {n_fmt}/{total_fmt} stages [{elapsed}]{postfix}")

    def say(self, msg: str) -> None:
        if self.bar is not None:
            with self.bar.external_write_mode():
                self.log(msg)
        else:
            self.log(msg)

    def stage(self, name: str, i: int) -> None:
        if self.bar is not None:
            self.bar.set_description_str(f"demo {i + 1}/{len(STAGES)} {name}")
            self.bar.set_postfix_str("")

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -------------------------------------------------------------------------------------------- stages

def _stage_generate(ctx) -> dict:
    from sparkad.generate.api import generate

    cfg = ctx["preset"]
    gen = ctx["out"] / PATHS["generate"]
    _remove(gen)  # a half-written earlier generation must not leave stale files beside the new ones
    generate(PRESET, n_events=ctx["events"], out_dir=gen, seed=cfg["seed"], workers=ctx["workers"], progress=False,
             luminosity=cfg["luminosity"])
    return {"events": {n: int(s["events"]) for n, s in cfg["samples"].items()},
            "luminosity_pb": cfg["luminosity"], "seed": cfg["seed"],
            "fault_runs": sorted({int(r) for s in cfg["samples"].values() for f in s.get("faults") or []
                                  for r in f.get("runs") or []})}


def _stage_extract(ctx) -> dict:
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.extract.fileset import load_fileset

    out = ctx["out"]
    hlf = out / PATHS["extract"]
    _remove(hlf)
    opts = ExtractOptions.from_conf(hlf, feature_set=FEATURE_SET, selection=SELECTION, executor="dask",
                                    workers=ctx["workers"], progress=False)
    rep = run_extraction(load_fileset(out / PATHS["generate"] / "fileset.yaml"), opts, log=ctx["say"])
    return {"events": {n: {"read": int(d["events_in"]), "selected": int(d["written"])} for n, d in rep["datasets"].items()},
            "elapsed_s": rep.get("elapsed_s")}


def _stage_train(ctx) -> dict:
    import yaml

    from sparkad.train.api import train_from_config

    out = ctx["out"]
    model = out / PATHS["train"]
    p = ctx["params"]["train"]
    if not ctx["resume"]:
        _remove(model)
    cfg = out / "train.yaml"  # the training configuration, kept beside the model for the reader
    write_text_atomic("# written by `sparkad demo`: overrides of conf/train.yaml\n"
                      + yaml.safe_dump({"cocktail": {"background": p["background"]},
                                        "models": {"alad": {"model": {"learning_rate": p["learning_rate"]}}}},
                                       sort_keys=False), cfg)
    epochs = p["epochs"]

    def on_epoch(record, _score):
        ctx["note"](f"epoch {record['epoch']}/{epochs}")

    with _quiet_stderr_fd():
        import tensorflow as tf
        tf.config.list_physical_devices()  # device discovery (the "no CUDA" lines) happens here, silenced

    def run():
        return train_from_config("alad", out / PATHS["extract"], model, config_file=cfg, epochs=epochs,
                                 batch_size=p["batch_size"], progress=False, log=ctx["say"], on_epoch=on_epoch)

    try:
        doc = run()
    except SparkadError:
        if not (model / "checkpoint").exists():
            raise
        # a checkpoint that does not belong to this configuration (e.g. another code version): start over
        ctx["say"]("train: the checkpoint does not match this configuration; training from scratch")
        _remove(model)
        doc = run()
    hist = doc.get("history") or {}
    return {"n_train": (doc.get("provenance") or {}).get("n_train"), "epochs": hist.get("epochs"),
            "batch_size": p["batch_size"], "train_seconds": (hist.get("last") or {}).get("train_seconds")}


def _stage_score(ctx) -> dict:
    from sparkad.score.run import run_analysis
    from sparkad.core.spark import get_session

    out = ctx["out"]
    p = ctx["params"]["score"]
    from pyspark.sql import SparkSession
    existing = SparkSession.getActiveSession()
    log4j = out / ".spark-log4j2.properties"
    log4j.write_text(LOG4J2)
    spark = get_session("sparkad-demo", "local[*]", {
        "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(2 * ctx["workers"]),
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={log4j.resolve().as_uri()}"})
    try:
        spark.sparkContext.setLogLevel("ERROR")
        rep = run_analysis(out / PATHS["extract"], out / PATHS["train"], out / PATHS["score"], engine="spark",
                           spark=spark, score=p["score"], fraction=p["fraction"], select_on="data",
                           background=p["background"], log=lambda m: None)
    finally:
        if existing is None:  # a session someone else opened (e.g. a notebook's) stays open
            spark.stop()
    return {"events": rep["events"], "anomaly_threshold": rep["anomaly_threshold"], "engine_cores": rep.get("cores")}


def _stage_monitor(ctx) -> dict:
    from sparkad.monitor.runs import monitor_scores

    out = ctx["out"]
    mon = out / PATHS["monitor"]
    _remove(mon)  # the table is rebuilt from this scoring (the scores of an earlier run would conflict)
    res = monitor_scores(out / PATHS["score"], mon, source=f"sparkad demo ({out.name})")
    return {"runs": res["runs_total"], "flagged": res["flagged"], "threshold": res["threshold"], "score": res["score"]}


def _stage_report(ctx) -> dict:
    try:
        from sparkad.report.html import write_report
    except ImportError as e:
        raise SparkadError(f"the HTML report needs sparkad.report ({e}); the other products are in {ctx['out']}") from None
    out = ctx["out"]
    path = write_report(out / PATHS["score"], out / PATHS["report"], monitor_dir=out / PATHS["monitor"],
                        model_dir=out / PATHS["train"],
                        title="sparkad demo: a top-quark-like excess and a detector fault in CMS-2012-like data")
    return {"path": str(Path(path).resolve())}


RUNNERS = {"generate": _stage_generate, "extract": _stage_extract, "train": _stage_train, "score": _stage_score,
           "monitor": _stage_monitor, "report": _stage_report}


# ---------------------------------------------------------------------------------------------- plan

def stage_params(preset: dict, events: int | None, *, epochs: int, batch_size: int) -> dict:
    """Per stage, the parameters that decide its output (the stage key hashes them with the key
    before it). The training batch is resolved once the HLF exists (see _batch_size)."""
    return {
        "generate": {"preset": PRESET, "preset_sha": _preset_sha(), "events": events, "seed": preset["seed"],
                     "samples": {n: s["events"] for n, s in preset["samples"].items()},
                     "luminosity": round(preset["luminosity"], 9)},
        "extract": {"feature_set": FEATURE_SET, "selection": SELECTION},
        "train": {"kind": "alad", "epochs": epochs, "batch_size": batch_size, "learning_rate": LEARNING_RATE,
                  "background": BACKGROUND},
        "score": {"engine": "spark", "score": SCORE, "fraction": FRACTION, "select_on": "data",
                  "background": BACKGROUND},
        "monitor": {},
        "report": {},
    }


def _write_state(out: Path, state: dict) -> None:
    state["updated_utc"] = _now()
    write_json_atomic(state, out / "demo.json")


# ------------------------------------------------------------------------------------------ the demo

def run_demo(out=DEFAULT_OUT, events: int | None = None, *, progress: bool = True, log=print, fresh: bool = False,
             seed: int | None = None, epochs: int | None = None, batch_size: int | None = None,
             workers: int = WORKERS) -> dict:
    """Run (or resume) the demo into ``out``; returns the summary (also in OUT/demo.json, key "summary").

    ``events``: total generated events over all samples (default: the preset's, ~9.7M; the data are
    ~52% of them). ``fresh``: remove the demo's earlier products first. ``seed``, ``epochs``,
    ``batch_size``: override the preset's seed and the training schedule (tests use a short one)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SparkadError(f"{out}: exists and is not a folder")
    if events is not None and int(events) < 1:
        raise SparkadError(f"--events must be positive, got {events}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info and warning logs
    t_start = time.time()
    with _lock(out):
        if fresh:
            for name in list(PATHS.values()) + ["demo.json", "train.yaml", ".spark-log4j2.properties"]:
                _remove(out / name)
        state = _read_json(out / "demo.json")
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            state = {"format": FORMAT, "stages": {}}
        preset = preset_config(events, seed)
        params = stage_params(preset, events, epochs=epochs or EPOCHS, batch_size=batch_size or BATCH_SIZE)
        requested_batch = params["train"]["batch_size"]

        def plan_keys():
            keys, up = {}, None
            for s in STAGES:
                keys[s] = up = _key(s, params[s], up)
            return keys

        # the training batch depends on the HLF: resolve it now when the extraction is already done
        if _complete(out, "extract"):
            params["train"]["batch_size"] = _batch_size(out / PATHS["extract"], requested_batch)
        keys = plan_keys()
        todo = []
        for s in STAGES:
            rec = state["stages"].get(s) or {}
            if todo or not (rec.get("complete") and rec.get("key") == keys[s] and _complete(out, s)):
                todo.append(s)
        if "score" in todo:
            from sparkad.core.spark import check_java
            check_java()  # one line with the fix, before any stage runs

        disp = _Display(progress, log)
        ctx = {"out": out, "events": events, "preset": preset, "params": params, "workers": int(workers),
               "say": disp.say, "note": disp.note}
        timings = {}
        try:
            for i, s in enumerate(STAGES):
                disp.stage(s, i)
                rec = state["stages"].get(s) or {}
                if s not in todo:
                    timings[s] = {"wall_s": rec.get("wall_s"), "skipped": True}
                    disp.say(f"{s}: up to date ({_fmt_s(rec.get('wall_s'))} when it ran), skipped")
                    disp.advance()
                    continue
                if s == "train":
                    params["train"]["batch_size"] = _batch_size(out / PATHS["extract"], requested_batch)
                    keys = plan_keys()
                first = s == todo[0]
                # an interrupted stage with the same key and unchanged inputs may resume (training's checkpoint)
                ctx["resume"] = first and rec.get("key") == keys[s] and not rec.get("complete")
                # forget this stage and every later one before touching their outputs; the later stages'
                # outputs go too (they describe inputs that are about to change: no stale report)
                for later in STAGES[i:]:
                    state["stages"].pop(later, None)
                for later in STAGES[i + 1:]:
                    _remove(out / PATHS[later])
                state.pop("summary", None)
                state["stages"][s] = {"key": keys[s], "complete": False, "started_utc": _now()}
                _write_state(out, state)
                t0 = time.time()
                info = RUNNERS[s](ctx)
                wall = round(time.time() - t0, 2)
                state["stages"][s] = {"key": keys[s], "complete": True, "params": params[s], "wall_s": wall,
                                      "finished_utc": _now(), "info": info}
                _write_state(out, state)
                timings[s] = {"wall_s": wall, "skipped": False}
                disp.say(f"{s}: done in {_fmt_s(wall)}")
                disp.advance()
        finally:
            disp.close()

        summary = build_summary(out, state, timings, round(time.time() - t_start, 2))
        state["summary"] = summary
        _write_state(out, state)
    for line in format_summary(summary):
        log(line)
    return summary


# --------------------------------------------------------------------------------------------- summary

def _fmt_s(s) -> str:
    if s is None:
        return "?"
    return f"{s:.1f} s" if s < 120 else f"{int(s // 60)} min {s % 60:.0f} s"


def build_summary(out: Path, state: dict, timings: dict, total_s: float) -> dict:
    """What the demo found, from the products on disk (the same numbers the report shows)."""
    import pandas as pd

    st = state["stages"]
    gen = (st.get("generate") or {}).get("info") or {}
    ext = (st.get("extract") or {}).get("info") or {}
    prod = out / PATHS["score"] / "products"
    summ = _read_json(prod / "summary.json") or {}
    events = {}
    for name, n in (gen.get("events") or {}).items():
        e = (ext.get("events") or {}).get(name, {})
        d = (summ.get("datasets") or {}).get(name, {})
        events[name] = {"generated": n, "selected": e.get("selected"), "role": d.get("role"),
                        "anomalous": d.get("anomalous"), "anomalous_fraction": d.get("fraction")}
    data = [d for d in (summ.get("datasets") or {}).values() if d.get("role") == "data"]
    n_data, n_anom = sum(d["events"] for d in data), sum(d["anomalous"] for d in data)

    # the excess the story is about: the grid features of seeds/000 Fig. 8 (HT, MJ, NJ, NB)
    excess, rule = [], None
    if (prod / "astf.csv").is_file():
        t = pd.read_csv(prod / "astf.csv")
        grid = summ.get("grid_features") or ["HT", "MJ", "NJ", "NB"]
        t = t[(~t.masked.astype(bool)) & t.feature.isin(grid) & (t.significance > 0)]
        # where the anomalies cluster: bins with a >= 3 sigma data excess, largest data/MC ratio first
        strong = t[t.significance >= 3]
        rule = ">= 3σ bins, largest data/MC ratio first" if len(strong) >= 3 else "most significant first"
        t = (strong.sort_values("ratio", ascending=False) if len(strong) >= 3
             else t.sort_values("significance", ascending=False)).head(6)
        excess = [{k: jsonable(r[k]) for k in ("feature", "bin_lo", "bin_hi", "data_n_sel", "data_astf", "mc_astf",
                                             "ratio", "significance")} for r in t.to_dict("records")]
    run_check = _read_json(prod / "run_check.json") or {}
    flagged_check = sorted({int(f["run"]) for f in run_check.get("flagged") or [] if f.get("unit") == "run"})
    flagged_ls = [{"run": int(f["run"]), "first_ls": f.get("first_ls"), "last_ls": f.get("last_ls")}
                  for f in run_check.get("flagged") or [] if f.get("unit") == "ls_range"]
    alarms = _read_json(out / PATHS["monitor"] / "alarms.json") or {}
    flagged_mon = sorted(int(r["run"]) for r in alarms.get("flagged_runs") or [])
    pps = summ.get("pps") or {}
    report = out / PATHS["report"]
    return {
        "out": str(out.resolve()),
        "stages": {s: timings.get(s, {"wall_s": None, "skipped": None}) for s in STAGES},
        "total_wall_s": total_s,
        "luminosity_pb": gen.get("luminosity_pb"),
        "seed": gen.get("seed"),
        "events": events,
        "anomaly_threshold": summ.get("anomaly_threshold"),
        "anomalous_fraction_data": (n_anom / n_data) if n_data else None,
        "astf_top_bins": (summ.get("astf_top_bins") or [])[:5],
        "astf_excess_grid": excess,
        "astf_excess_order": rule,
        "pps": {"cuts": pps.get("cuts"), "table": pps.get("table"), "closure": pps.get("closure")},
        "flagged_runs": {"run_check": flagged_check, "monitor": flagged_mon, "injected_fault_runs": gen.get("fault_runs"),
                         "run_check_ls_ranges": flagged_ls},
        "runs": len(run_check.get("runs") or []),
        "report": str(report.resolve()) if report.is_file() else None,
    }


def format_summary(s: dict) -> list[str]:
    lines = ["", "sparkad demo — summary", "  stages:"]
    for name, t in s["stages"].items():
        lines.append(f"    {name:<9} {_fmt_s(t.get('wall_s')):>10}{'  (skipped: up to date)' if t.get('skipped') else ''}")
    lines.append(f"    {'this run':<9} {_fmt_s(s['total_wall_s']):>10}")
    lumi = s.get("luminosity_pb")
    lines.append(f"  events (generated → selected → anomalous){f', data ≈ {lumi:.1f} pb⁻¹' if lumi else ''}:")
    for name, e in s["events"].items():
        frac = e.get("anomalous_fraction")
        lines.append(f"    {name:<8} {e['generated']:>10,} → {e['selected'] if e['selected'] is not None else '?':>7} → "
                     f"{e['anomalous'] if e['anomalous'] is not None else '?':>5}"
                     + (f"  ({100 * frac:.2f}%)" if frac is not None else "") + (f"  [{e['role']}]" if e.get("role") else ""))
    sel = s.get("anomaly_threshold") or {}
    if s.get("anomalous_fraction_data") is not None:
        lines.append(f"  anomalous: {sel.get('score')} > {sel.get('threshold', float('nan')):.4g}, "
                     f"{100 * s['anomalous_fraction_data']:.2f}% of the data")
    if s["astf_excess_grid"]:
        lines.append(f"  ASTF excess of the data over the W+Z MC in HT, MJ, NJ, NB ({s.get('astf_excess_order')}):")
        for b in s["astf_excess_grid"]:
            lines.append(f"    {b['feature']:<3} [{b['bin_lo']:g}, {b['bin_hi']:g})  data {b['data_astf']:.3f} "
                         f"vs MC {b['mc_astf']:.3f}  (ratio {b['ratio']:.1f}, {b['significance']:+.1f}σ)")
    if s["astf_top_bins"]:
        lines.append("  most significant ASTF bins (all features):")
        for b in s["astf_top_bins"]:
            lines.append(f"    {b['feature']:<13} [{b['bin_lo']:g}, {b['bin_hi']:g})  data {b['data_astf']:.4f} "
                         f"vs MC {b['mc_astf']:.4f}  ({b['significance']:+.1f}σ)")
    pps = s.get("pps") or {}
    if pps.get("table"):
        lines.append(f"  post-processing selection ({' and '.join(pps.get('cuts') or [])}), anomalous events:")
        for r in pps["table"]:
            if r.get("kind") in ("data", "mc", "mc_total", "ratio"):
                y, e = r.get("yield"), r.get("error")
                val = "–" if y is None else (f"{y:.2f} ± {e:.2f}" if e is not None else f"{y:.2f}")
                lines.append(f"    {r['row']:<12} {val}")
        for c in pps.get("closure") or []:
            if c.get("data") is not None and c.get("expected") is not None and c.get("pull") is not None:
                lines.append(f"    closure, {c['comparison']}: {c['data']:.0f} vs {c['expected']:.2f} "
                             f"± {c.get('expected_err') or 0:.2f} expected (pull {c['pull']:+.1f})")
    fl = s["flagged_runs"]
    lines.append(f"  flagged runs (of {s['runs']}): run check {', '.join(map(str, fl['run_check'])) or 'none'}; "
                 f"monitor {', '.join(map(str, fl['monitor'])) or 'none'}; "
                 f"injected fault in {', '.join(map(str, fl['injected_fault_runs'] or [])) or 'none'}")
    lines.append(f"  report: {s['report'] or 'not written'}")
    return lines


# ------------------------------------------------------------------------------------------------ CLI

@click.command("demo")
@click.option("--out", "-o", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False),
              help="Folder for every product (re-running into it resumes or refreshes).")
@click.option("--events", type=click.IntRange(min=1), default=None,
              help="Total generated events over all samples, proportions kept (default: the demo preset's ~9.7M).")
@click.option("--seed", type=int, default=None, help="Generator seed (default: the preset's).")
@click.option("--fresh", is_flag=True, help="Remove the demo's earlier products in OUT and start over.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display (the summary is still printed).")
@one_line_errors
def demo(out, events, seed, fresh, quiet):
    """Generate → extract (Dask) → train ALAD → score (Spark) → monitor → HTML report, in one command."""
    run_demo(out, events, progress=not quiet, log=click.echo, fresh=fresh, seed=seed)


if __name__ == "__main__":  # python -m sparkad.demo (the same command without the sparkad group)
    demo()
