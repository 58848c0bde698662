"""``sparkad report``: one self-contained HTML page of a scoring output — plots (embedded as data
URIs, so the page opens offline and can be mailed), tables, flagged runs, and the provenance of the
model and the data. Built only from files on disk: OUT/_score_report.json, OUT/products/, the model
directory, the HLF report and, when given, a monitor folder."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from pathlib import Path

import pandas as pd

from sparkad.core import storage
from sparkad.core.atomic import write_text_atomic
from sparkad.core.errors import SparkadError

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:18px 32px}header h1{margin:0;font-size:24px}header p{margin:4px 0 0;opacity:.85}
main{padding:8px 32px 40px;max-width:1300px}section{background:#fff;border-radius:8px;padding:16px 22px;margin:18px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}h2{margin-top:0;font-size:19px;color:#1d3557}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{border-bottom:1px solid #e3e6ea;padding:4px 10px;text-align:right}
th{background:#eef1f5}td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #e3e6ea;border-radius:4px;margin:6px 0}
.flag{color:#b00020;font-weight:600}.ok{color:#2b7a0b;font-weight:600}.kv td{text-align:left}.muted{color:#667}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:12px}
"""


def _img(path, alt: str) -> str:
    if not storage.is_file(path):
        return f'<p class="muted">({html.escape(alt)}: not produced)</p>'
    data = base64.b64encode(storage.read_bytes(path)).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[dict], cols: list[str] | None = None, left=("row", "dataset", "label", "role", "feature",
                                                                   "comparison", "unit", "kind")) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    cols = cols or list(rows[0])
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(c)}</th>' for c in cols)
    body = "".join("<tr>" + "".join(f'<td class="{"l" if c in left else ""}">{_fmt(r.get(c))}</td>' for c in cols)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _kv(d: dict) -> str:
    return '<table class="kv">' + "".join(f"<tr><th class='l'>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>"
                                          for k, v in d.items()) + "</table>"


def _read_json(path) -> dict | None:
    """A local file or an s3:// object, or None when it is missing or unreadable."""
    try:
        return json.loads(storage.read_bytes(path).decode())
    except (OSError, ValueError, SparkadError):
        return None


def write_report(score_out, out_html, *, monitor_dir=None, model_dir=None, title: str = "sparkad report") -> Path:
    """Write the HTML page (atomically) and return its path."""
    score_out = storage.location(score_out)  # a local folder or an s3:// prefix, like the page
    rep = _read_json(storage.join(score_out, "_score_report.json"))
    if not rep or not rep.get("complete"):
        raise SparkadError(f"{score_out}: no complete _score_report.json — run `sparkad score` first")
    prod = storage.join(score_out, "products")
    summary = _read_json(storage.join(prod, "summary.json"))
    if summary is None:
        raise SparkadError(f"{score_out}: no products/summary.json — the scoring ran with --no-products")
    model_dir = storage.location(model_dir or rep["model"])  # a local folder or an s3:// prefix
    model = _read_json(storage.join(model_dir, "model.json")) or {}
    hlf = _read_json(storage.join(storage.location(rep["hlf"]), "_report.json")) or {}
    sel = rep.get("anomaly_threshold") or {}
    parts = [f"<header><h1>{html.escape(title)}</h1><p>{rep['total_events']:,} events scored with "
             f"{html.escape(rep['model_kind'])} on {html.escape(rep['engine'])} · generated "
             f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p></header><main>"]

    ds = [{"dataset": k, **v} for k, v in summary["datasets"].items()]
    parts.append("<section><h2>Anomaly selection</h2>"
                 f"<p>Anomalous: <b>{html.escape(sel.get('score', '?'))} &gt; {_fmt(sel.get('threshold'))}</b> "
                 f"({html.escape(str(sel.get('source', '')))}).</p>"
                 + _table(ds, ["dataset", "role", "label", "events", "anomalous", "sumw", "sumw_anomalous", "fraction"])
                 + _img(storage.join(prod, "plots", "scores.png"), "score distributions") + "</section>")

    shapes = summary.get("run_shapes")
    if shapes is not None:
        flagged = shapes.get("flagged") or []
        status = (f'<p class="flag">{len(shapes.get("flagged_runs") or [])} run(s) with a distribution that moved</p>'
                  if flagged else '<p class="ok">no run\'s distributions differ from the other runs\'</p>')
        parts.append("<section><h2>Run distributions against the other runs</h2>" + status
                     + f"<p>{shapes.get('tests', 0)} tests (run × feature, binned two-sample Kolmogorov–Smirnov, "
                       "Šidák-corrected): a fault that moves the bulk of a distribution (e.g. a jet-energy-scale "
                       "shift) changes no tail rate but shows here.</p>"
                     + (_table(flagged, ["run", "feature", "events", "ks_d", "p", "p_global"]) if flagged else "")
                     + "</section>")

    comparison = summary.get("score_comparison") or {}
    if comparison:
        names = list(dict.fromkeys(d for v in comparison.values() for d in v["datasets"]))
        rows = [{"score": n, "kind": v["kind"], "threshold": v["threshold"],
                 **{d: (v["datasets"].get(d) or {}).get("fraction") for d in names}} for n, v in comparison.items()]
        parts.append("<section><h2>Every score on the same events, beside the classic baselines</h2>"
                     "<p>Fraction of each dataset above each score's own threshold at 1000 ppm of the model's SM "
                     "validation sample. The baselines (Mahalanobis distance, PCA reconstruction error, isolation "
                     "forest) were fitted on the model's training sample: a deep model that does not enrich a "
                     "signal more than they do has not earned its cost.</p>"
                     + _table(rows, ["score", "kind", "threshold", *names]) + "</section>")

    run = _read_json(storage.join(prod, "run_check.json"))
    if run is not None:
        flagged = run.get("flagged") or []
        status = (f'<p class="flag">{len(flagged)} run(s) / range(s) flagged</p>' if flagged else
                  '<p class="ok">no run or luminosity range flagged</p>')
        s = run.get("summary", {})
        parts.append("<section><h2>Run-period check</h2>" + status
                     + f"<p>Global anomaly rate {_fmt(s.get('rate'))} over {_fmt(s.get('events'))} events; "
                       f"{len(run.get('runs', []))} runs; change points at runs "
                       f"{', '.join(map(str, run.get('change_points', []))) or 'none'}.</p>"
                     + _table(flagged, [c for c in ("unit", "run", "first_ls", "last_ls", "period", "events", "selected",
                                                    "rate", "expected", "pull", "p_value", "p_global")
                                        if any(c in f for f in flagged)] if flagged else None)
                     + _img(storage.join(prod, "plots", "rate_vs_run.png"), "anomaly rate versus run") + "</section>")

    if monitor_dir is not None:
        mon = storage.location(monitor_dir)  # a local folder or an s3:// prefix
        if storage.is_remote(mon):
            storage.check_bucket(mon)
        if not storage.is_file(storage.join(mon, "lumis.parquet")):
            raise SparkadError(f"{mon}: no lumis.parquet — not a monitor folder (`sparkad monitor --out`)")
        alarms = _read_json(storage.join(mon, "alarms.json"))
        runs_file = storage.join(mon, "runs.parquet")
        runs = pd.read_parquet(io.BytesIO(storage.read_bytes(runs_file))) if storage.is_file(runs_file) else None
        body = ""
        if runs is not None:
            body += f"<p>{len(runs)} runs in the monitoring table, {int(runs['flagged'].sum())} flagged.</p>"
        if alarms:
            items = alarms.get("flagged_runs") or []
            body += (f'<p class="flag">alarms: {len(items)} flagged run(s) (updated {_fmt(alarms.get("updated_utc"))})</p>'
                     if items else '<p class="ok">no alarm</p>')
            body += _table(items, [c for c in ("run", "lumi_sections", "events", "anomalous", "rate", "expected", "pull",
                                               "p_global", "flagged_since_utc") if any(c in i for i in items)] or None)
        parts.append("<section><h2>Operations monitoring</h2>" + body
                     + _img(storage.join(mon, "rate_vs_run.png"), "monitor: rate versus run") + "</section>")

    astf_top = summary.get("astf_top_bins") or []
    parts.append("<section><h2>ASTF: anomaly selection transfer function</h2>"
                 "<p>Per bin, the fraction of events passing the anomaly selection, data against the MC "
                 "background (seeds/000 Fig. 8); grey: bins masked for low statistics. Full table: "
                 "<code>products/astf.csv</code>.</p>"
                 + _img(storage.join(prod, "plots", "astf_grid.png"), "ASTF grid")
                 + "<h3>Most significant bins</h3>"
                 + _table(astf_top, ["feature", "bin_lo", "bin_hi", "data_astf", "mc_astf", "ratio", "significance"])
                 + "</section>")

    pps = summary.get("pps")
    if pps:
        parts.append("<section><h2>Post-processing selection</h2>"
                     f"<p>Anomalous events with {html.escape(' and '.join(pps['cuts']))} (seeds/000 Fig. 9).</p>"
                     + _table(pps["table"], ["row", "kind", "n", "yield", "error", "fraction"])
                     + ("<h3>Closure</h3>" + _table(pps["closure"]) if pps.get("closure") else "") + "</section>")

    parts.append('<section><h2>Distributions</h2><div class="grid">'
                 + _img(storage.join(prod, "plots", "data_before_after.png"), "data before and after the selection")
                 + _img(storage.join(prod, "plots", "anomalous_by_process.png"), "anomalous events by process")
                 + "</div></section>")

    prov_model = {"directory": str(model_dir), "kind": model.get("kind"), "content hash": model.get("content_hash"),
                  "features": ", ".join(model.get("features", [])), "code version": model.get("code_version"),
                  "training events": (model.get("provenance") or {}).get("n_train"),
                  "trained on": ", ".join((model.get("provenance") or {}).get("datasets", []))}
    prov_data = {"HLF folder": rep.get("hlf"), "feature set": hlf.get("feature_set"),
                 "event selection": (hlf.get("selection") or {}).get("name"), "fileset": hlf.get("fileset"),
                 "files read": len(hlf.get("files_read", [])), "files skipped": len(hlf.get("files_skipped", [])),
                 "extraction code version": hlf.get("code_version")}
    prov_run = {"engine": rep.get("engine"), "cores": rep.get("cores"), "fragments": rep.get("fragments"),
                "elapsed (s)": rep.get("elapsed_s"), "worker peak RSS (MB)": rep.get("worker_peak_rss_mb"),
                **{k: v for k, v in (rep.get("timings") or {}).items()}}
    parts.append("<section><h2>Provenance</h2><div class='grid'><div><h3>Model</h3>" + _kv(prov_model)
                 + "</div><div><h3>Data</h3>" + _kv(prov_data) + "<h3>Scoring</h3>" + _kv(prov_run)
                 + "</div></div></section></main>")

    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    out_html = storage.location(out_html)
    if storage.is_remote(out_html):
        return storage.write_bytes(page.encode(), out_html)  # one object: whole or absent
    out_html.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(page, out_html)
    return out_html
