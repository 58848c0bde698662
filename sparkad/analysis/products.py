"""Turn the merged aggregates of a scoring pass into the analysis products (files under OUT/products).

histograms.json / histograms.root  hist objects per dataset, role and feature, all and anomalous events
                                   (uhi's JSON schema; ROOT)
aggregates.npz                     the merged aggregates and their binning (named arrays, no pickle)
astf.csv / astf.parquet            ASTF per feature and bin, data vs MC background (sparkad.analysis.astf)
pps_yields.csv, pps_closure.csv    post-processing selection yields and the closure test
per_ls.parquet, run_check.json     per-(run, lumi section) counts of data and the run-period check
run_shapes.json                    each data run's distributions against the other runs' (run_shapes.py)
plots/*.png                        the pictures (mplhep)
summary.json                       the headline numbers the report and the CLI print

Everything is written into a staging folder that replaces OUT/products only when complete.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from sparkad.analysis.aggregates import H_N_ALL, H_N_SEL, H_W2_ALL, H_W2_SEL, H_W_ALL, H_W_SEL, T_N, T_W, T_W2, Partial, write_aggregates
from sparkad.analysis.lumi_counts import counts_frame, merge_counts
from sparkad.analysis.run_shapes import merge_run_counts, run_shape_check
from sparkad.analysis.astf import BinCounts, astf_tables, plot_astf_grid, pps_closure, pps_yields_table, write_astf
from sparkad.core.parquet_io import publish_dir
from sparkad.core.atomic import atomic_path, write_json_atomic, write_text_atomic
from sparkad.core.jsonsafe import records


def role_rows(partial: Partial, roles: dict, role: str, feature: str, nb: int) -> np.ndarray:
    """Summed (6, nb+3) histogram rows of every dataset with this role."""
    out = np.zeros((6, nb + 3))
    for (ds, f), v in partial.hists.items():
        if f == feature and roles.get(ds) == role:
            out += v.rows()
    return out


def bin_counts(rows: np.ndarray) -> BinCounts:
    """In-range bins, with under/overflow folded into the first and last bin (as the plots show them)."""
    r = rows[:, :-1].copy()  # drop the NaN column
    r[:, 1] += r[:, 0]
    r[:, -2] += r[:, -1]
    r = r[:, 1:-1]
    return BinCounts(r[H_N_ALL].round(), r[H_N_SEL].round(), r[H_W_ALL], r[H_W2_ALL], r[H_W_SEL], r[H_W2_SEL])


def to_hists(partial: Partial, spec, roles: dict) -> dict:
    """{(group, feature, 'all'|'anomalous'): hist.Hist} with Weight storage and flow bins; group is a
    dataset name or a role ('data', 'background')."""
    import hist

    out = {}
    groups = {ds: [ds] for ds in roles}
    for role in ("data", "background"):
        members = [d for d, r in roles.items() if r == role]
        if members:
            groups[role] = members
    for group, members in groups.items():
        for f in spec.features:
            nb = len(spec.edges[f]) - 1
            rows = sum((partial.hists[(d, f)].rows() for d in members if (d, f) in partial.hists), np.zeros((6, nb + 3)))
            for which, (iw, iw2, inn) in {"all": (H_W_ALL, H_W2_ALL, H_N_ALL),
                                          "anomalous": (H_W_SEL, H_W2_SEL, H_N_SEL)}.items():
                h = hist.Hist(hist.axis.Variable(spec.edges[f], name=f, label=f), storage=hist.storage.Weight(),
                              name=f"{group}/{f}_{which}", label=f"{group} {which}")
                v = h.view(flow=True)
                v["value"] = rows[iw, :-1]
                v["variance"] = rows[iw2, :-1]
                h.metadata = {"nan_entries": float(rows[inn, -1]), "entries": float(rows[inn, :-1].sum())}
                out[(group, f, which)] = h
    return out


def write_hists_json(hists: dict, path: Path) -> None:
    """The histograms in uhi's portable JSON schema, keyed GROUP/FEATURE/WHICH like histograms.root;
    read back with ``read_hists_json`` (or ``json.load(f, object_hook=uhi.io.json.object_hook)`` and
    ``hist.Hist(entry)``)."""
    import uhi.io.json

    write_text_atomic(json.dumps({"/".join(k): h for k, h in hists.items()}, default=uhi.io.json.default), path)


def read_hists_json(path) -> dict:
    """{(group, feature, which): hist.Hist} from ``write_hists_json``."""
    import hist
    import uhi.io.json

    with open(path) as fh:
        doc = json.load(fh, object_hook=uhi.io.json.object_hook)
    return {tuple(k.split("/")): hist.Hist(v) for k, v in doc.items()}


def _write_root(hists: dict, path: Path) -> None:
    import uproot

    with atomic_path(path) as tmp:
        with uproot.recreate(tmp) as f:
            for (group, feat, which), h in hists.items():
                f[f"{group}/{feat}_{which}"] = h


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep
    plt.style.use(hep.style.CMS)
    return plt, hep


def plot_before_after(hists: dict, group: str, features: list[str], out_png: Path, title: str) -> None:
    """seeds/000 Fig. 6: a group's distributions before and after the anomaly selection, unit area."""
    plt, hep = _plt()
    n = len(features)
    ncols = 2
    nrows = (n + 1) // 2
    fig, axes = plt.subplots(nrows, ncols, figsize=(10 * ncols, 8 * nrows), squeeze=False)
    for ax, f in zip(axes.flat, features):
        for which, style in (("all", {"histtype": "step", "label": "all events"}),
                             ("anomalous", {"histtype": "errorbar", "label": "anomalous", "color": "black"})):
            h = hists.get((group, f, which))
            if h is None or h.sum().value <= 0:
                continue
            hep.histplot(h, ax=ax, density=True, **style)
        _label_axis(ax, f, "normalised")
    _finish_grid(fig, plt, axes, n, title, out_png)


def plot_background_stack(hists: dict, roles: dict, labels: dict, features: list[str], out_png: Path,
                          which: str = "anomalous") -> None:
    """seeds/000 Fig. 7: the MC background by process (stacked, weighted), with the data on top."""
    plt, hep = _plt()
    n = len(features)
    nrows = (n + 1) // 2
    fig, axes = plt.subplots(nrows, 2, figsize=(20, 8 * nrows), squeeze=False)
    mc = [d for d, r in roles.items() if r != "data"]
    for ax, f in zip(axes.flat, features):
        stack = [hists[(d, f, which)] for d in mc if (d, f, which) in hists]
        names = [labels.get(d, d) for d in mc if (d, f, which) in hists]
        if stack and sum(h.sum().value for h in stack) > 0:
            hep.histplot(stack, ax=ax, stack=True, histtype="fill", label=names)
        hd = hists.get(("data", f, which))
        if hd is not None and hd.sum().value > 0:
            hep.histplot(hd, ax=ax, histtype="errorbar", color="black", label="data")
        _label_axis(ax, f, "events")
    _finish_grid(fig, plt, axes, n, f"{which} events by process", out_png)


def plot_scores(partial: Partial, spec, roles: dict, labels: dict, out_png: Path) -> None:
    """Score distributions per dataset (unit area) with the anomaly threshold."""
    plt, hep = _plt()
    edges = spec.score_edges[spec.score]
    fig, ax = plt.subplots(figsize=(12, 8))
    for (ds, name), fh in sorted(partial.score_hists.items()):
        if name != spec.score:
            continue
        rows = fh.rows()[[H_N_ALL, H_W_ALL, H_W2_ALL]]
        w = rows[1, 1:-2].copy()
        w[0] += rows[1, 0]
        w[-1] += rows[1, -2]
        if w.sum() <= 0:
            continue
        hep.histplot(w / w.sum(), edges, ax=ax, label=f"{labels.get(ds, ds)} ({roles[ds]})",
                     histtype="errorbar" if roles[ds] == "data" else "step",
                     **({"color": "black", "yerr": False} if roles[ds] == "data" else {}))
    ax.axvline(spec.threshold, color="red", ls="--", label=f"threshold {spec.threshold:.4g}")
    ax.set_yscale("log")
    ax.set_xlabel(spec.score)
    ax.set_ylabel("fraction of events")
    ax.legend(fontsize=14)
    _save(fig, plt, out_png)


def _label_axis(ax, feature: str, ylabel: str) -> None:
    ax.set_xlabel(feature)
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.legend(fontsize=14)


def _finish_grid(fig, plt, axes, n: int, title: str, out_png: Path) -> None:
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=22)
    _save(fig, plt, out_png)


def _save(fig, plt, out_png: Path) -> None:
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=60, bbox_inches="tight")
    plt.close(fig)


def data_run_counts(partial: Partial) -> dict:
    """{feature or score: {run: counts per bin}} of all data datasets together."""
    out: dict = {}
    for (ds, name), per_run in partial.run_counts.items():
        out[name] = merge_run_counts(out.get(name, {}), per_run)
    return out


def per_ls_table(partial: Partial) -> pd.DataFrame:
    """Per-(run, lumi section) events and anomalous events, all data datasets together."""
    return counts_frame(merge_counts(*partial.per_ls.values()))


def yieldsrecords(partial: Partial, roles: dict, labels: dict, key: str) -> dict:
    return {ds: {"label": labels.get(ds, ds), "is_data": roles[ds] == "data", "n": int(t[key][T_N]),
                 "sumw": float(t[key][T_W]), "sumw2": float(t[key][T_W2])}
            for ds, t in partial.totals.items()}


def write_products(out: Path, result: dict, roles: dict, labels: dict, conf: dict, luminosity_text: str = "",
                   run_check=None, log=lambda m: None) -> dict:
    """All products of one scoring pass into OUT/products (replaced atomically); returns the summary."""
    out = Path(out)
    partial, spec = result["partial"], result["spec"]
    staging = out / f".products-{uuid.uuid4().hex}"
    (staging / "plots").mkdir(parents=True)
    try:
        baselines = result["scorer"].baseline_scores if result.get("scorer") is not None else ()
        summary = _write_all(staging, partial, spec, roles, labels, conf, luminosity_text, run_check, log, baselines)
        publish_dir(staging, out / "products")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return summary


def score_comparison(partial: Partial, spec, roles: dict, baselines=()) -> dict:
    """Every score (the model's and the classic baselines') at its own 1000 ppm SM threshold, on the
    same events: per dataset the events and Σw above it and the fraction of the dataset."""
    out = {}
    for name, thr in spec.score_thresholds.items():
        per = {}
        for ds, t in sorted(partial.totals.items()):
            above, total = t.get(f"above:{name}"), t["all"]
            if above is None:
                continue
            per[ds] = {"role": roles.get(ds), "events": int(above[T_N]), "sumw": float(above[T_W]),
                       "fraction": float(above[T_W] / total[T_W]) if total[T_W] > 0 else None}
        out[name] = {"kind": "baseline" if name in baselines else "model", "threshold": thr, "datasets": per}
    return out


def _write_all(d: Path, partial: Partial, spec, roles, labels, conf, lumi_text, run_check, log, baselines=()) -> dict:
    write_aggregates(partial, spec, d / "aggregates.npz")
    hists = to_hists(partial, spec, roles)
    write_hists_json(hists, d / "histograms.json")
    _write_root(hists, d / "histograms.root")
    aconf = conf.get("astf") or {}
    grid = [f for f in aconf.get("features_for_grid") or [] if f in spec.features] or spec.features[:4]
    has_data = any(r == "data" for r in roles.values())
    has_bkg = any(r == "background" for r in roles.values())
    summary: dict = {"anomaly_threshold": {"score": spec.score, "threshold": spec.threshold},
                     "datasets": {}, "grid_features": grid, "plots": {}}
    for ds, t in sorted(partial.totals.items()):
        a, s = t["all"], t["selected"]
        summary["datasets"][ds] = {"role": roles[ds], "label": labels.get(ds, ds), "events": int(a[T_N]),
                                   "anomalous": int(s[T_N]), "sumw": float(a[T_W]), "sumw_anomalous": float(s[T_W]),
                                   "fraction": float(s[T_W] / a[T_W]) if a[T_W] > 0 else None}
    summary["score_comparison"] = score_comparison(partial, spec, roles, baselines)
    log("products: histograms")
    if has_data:
        plot_before_after(hists, "data", grid, d / "plots" / "data_before_after.png", "data: before / after the anomaly selection")
        summary["plots"]["data_before_after"] = "plots/data_before_after.png"
    if any(r != "data" for r in roles.values()):
        plot_background_stack(hists, roles, labels, grid, d / "plots" / "anomalous_by_process.png")
        summary["plots"]["anomalous_by_process"] = "plots/anomalous_by_process.png"
    plot_scores(partial, spec, roles, labels, d / "plots" / "scores.png")
    summary["plots"]["scores"] = "plots/scores.png"

    if has_data or has_bkg:
        log("products: ASTF")
        inputs = {}
        for f in spec.features:
            nb = len(spec.edges[f]) - 1
            data = bin_counts(role_rows(partial, roles, "data", f, nb)) if has_data else None
            mc = bin_counts(role_rows(partial, roles, "background", f, nb)) if has_bkg else None
            inputs[f] = (spec.edges[f], data, mc)
        table = astf_tables(inputs, method=aconf.get("method", "clopper-pearson"), cl=float(aconf.get("cl", 0.6827)),
                            min_entries=float(aconf.get("min_entries", 10)))
        write_astf(table, d)
        plot_astf_grid(table, grid, d / "plots" / "astf_grid.png", lumi_text=lumi_text,
                       labels={"mc": "MC background (" + ", ".join(sorted(labels.get(x, x) for x, r in roles.items()
                                                                          if r == "background")) + ")"})
        summary["plots"]["astf_grid"] = "plots/astf_grid.png"
        ok = table[~table.masked & table.significance.notna()]
        top = ok.reindex(ok.significance.abs().sort_values(ascending=False).index).head(10)
        summary["astf_top_bins"] = records(top[["feature", "bin_lo", "bin_hi", "data_astf", "mc_astf", "ratio",
                                                 "significance"]])

    if spec.cuts:
        log("products: post-processing selection")
        pps = yieldsrecords(partial, roles, labels, "pps_anomalous")
        table = pps_yields_table(pps)
        table.to_csv(d / "pps_yields.csv", index=False)
        pps_yields_table(yieldsrecords(partial, roles, labels, "pps")).to_csv(d / "pps_yields_before_anomaly.csv",
                                                                               index=False)
        summary["pps"] = {"cuts": [str(c) for c in spec.cuts], "table": records(table)}
        others = sorted({labels.get(x, x) for x, r in roles.items() if r == "other"})
        if has_data and has_bkg and others:
            closure = pps_closure({k: v for k, v in pps.items() if roles[k] != "other" or labels.get(k, k) in others},
                                  others)
            closure.to_csv(d / "pps_closure.csv", index=False)
            summary["pps"]["closure"] = records(closure)

    if has_data:
        per_ls = per_ls_table(partial)
        per_ls.to_parquet(d / "per_ls.parquet", index=False)
        if run_check is not None:
            log("products: run-period check")
            summary["run_check"] = run_check(per_ls, d)
    if partial.run_counts:
        log("products: run shapes")
        shapes = run_shape_check(data_run_counts(partial), **{k: v for k, v in (conf.get("run_shapes") or {}).items()
                                                                  if k in ("alpha", "min_events")})
        write_json_atomic(shapes, d / "run_shapes.json")
        summary["run_shapes"] = {"tests": shapes["tests"], "flagged_runs": shapes["flagged_runs"],
                                 "flagged": shapes["flagged"][:20]}
    write_json_atomic(summary, d / "summary.json")
    return summary
