"""The dijet search's evaluation and bump hunt (seeds/004 sec. 2.3 and 3), as drivers over pure functions:

- `run_dijet_evaluation`: ROC / AUC / TPR at fixed FPR of every loss strategy (sparkad.model.jet_vae) per
  signal, on signal-region events (|Δη| < 1.4), beside simple references fitted on the background sideband:
  τ21 of both jets (−(τ21_J1 + τ21_J2)), and the Mahalanobis distance, PCA reconstruction error and isolation
  forest of sparkad.model.baselines on the jets' HLF (mass, soft-drop mass, τ21, τ32 of both jets).
- `run_bump_hunt`: the mjj spectrum of a dataset's signal-region events before and after the anomaly
  selection `score > L_T(mjj)` (mjj from the spectrum's peak up, above the turn-on), L_T fitted by quantile regression (sparkad.analysis.quantile_threshold) on
  the background MC's signal region (or on the dataset itself), the background efficiency's flatness in
  mjj (χ²), and the dijet-function fit with the sliding-window local / global significance
  (sparkad.analysis.bump_hunt) of both spectra.
Outputs: JSON, a Markdown table and mplhep plots in OUT.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sparkad.core import storage
from sparkad.core.atomic import write_json_atomic, write_text_atomic
from sparkad.core.errors import SparkadError
from sparkad.evaluate.metrics import auc, roc_curve, tpr_at_fpr
from sparkad.extract.dijet import read_dijet_report
from sparkad.model.jet_vae import MJJ_THRESHOLDS, STRATEGIES, JetVAEScorer, store_threshold
from sparkad.model.store import local_model_dir, publish_file

SR_DETA = 1.4
HLF_FOR_BASELINES = [f"j{k}_{f}" for k in (1, 2) for f in ("mass", "msd", "tau21", "tau32")]
FPR_POINTS = (0.1, 0.01, 0.001)




def read_dataset(hlf_dir, name: str):
    """A dataset's rows as a pyarrow table (every column, constituents included)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = storage.list_files(storage.join(storage.location(hlf_dir), name), ".parquet")
    if not files:
        raise SparkadError(f"{hlf_dir}/{name}: no Parquet files")
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def region(table, signal_region: bool):
    import pyarrow.compute as pc

    cut = pc.less(table["deta"], SR_DETA) if signal_region else pc.greater(table["deta"], SR_DETA)
    return table.filter(cut)


def _hlf(table) -> np.ndarray:
    return np.stack([table[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in HLF_FOR_BASELINES], axis=1)


def reference_scores(bkg_sideband, tables: dict, seed: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """τ21 and the classic baselines (fitted on the background sideband, robust-scaled HLF) per table."""
    from sparkad.model.baselines import fit_baselines, score_baselines

    x = _hlf(bkg_sideband)
    ok = np.all(np.isfinite(x), axis=1)
    med = np.median(x[ok], axis=0)
    iqr = np.subtract(*np.percentile(x[ok], [75, 25], axis=0))
    iqr[iqr <= 0] = 1.0
    arrays = fit_baselines(((x[ok] - med) / iqr).astype(np.float32), np.ones(int(ok.sum())), seed)
    out = {}
    for name, t in tables.items():
        xt = (_hlf(t) - med) / iqr
        finite = np.all(np.isfinite(xt), axis=1)
        s = score_baselines(arrays, np.where(finite[:, None], xt, 0.0).astype(np.float32))
        s = {k: np.where(finite, v, np.nan) for k, v in s.items()}  # an undefined τ ratio: no baseline score
        tau = t["tau21_J1"].to_numpy(zero_copy_only=False) + t["tau21_J2"].to_numpy(zero_copy_only=False)
        out[name] = {"tau21": -tau.astype(np.float64), **s}
    return out


def _finite_pair(b, s):
    return b[np.isfinite(b)], s[np.isfinite(s)]


def run_dijet_evaluation(model_dir, hlf_dir, out, signals=None, background=None, log=print) -> dict:
    """ROC per loss strategy and signal beside the references; writes OUT/dijet_evaluation.{json,md}, plots."""
    report = read_dijet_report(hlf_dir)
    out = storage.checked_output(out)
    scorer = JetVAEScorer(local_model_dir(model_dir))
    labels = set(scorer.meta["config"]["data"]["background_labels"] or [])
    mc = {n: d for n, d in report["datasets"].items() if not d["is_data"]}
    background = background or [n for n, d in mc.items() if d["label"] in labels]
    signals = signals or [n for n in mc if n not in background]
    for n in list(background) + list(signals):
        if n not in report["datasets"]:
            raise SparkadError(f"{hlf_dir}: no dataset {n!r} (datasets: {', '.join(report['datasets'])})")
    if not background or not signals:
        raise SparkadError(f"{hlf_dir}: needs background and signal MC datasets (background {background}, "
                           f"signals {signals}); name them with --background / --signals")
    import pyarrow as pa

    bkg_all = pa.concat_tables([read_dataset(hlf_dir, n) for n in background])
    tables = {"background": region(bkg_all, True), **{s: region(read_dataset(hlf_dir, s), True) for s in signals}}
    scores = {name: {k: v for k, v in scorer.score_table(t).items() if k in STRATEGIES} for name, t in tables.items()}
    refs = reference_scores(region(bkg_all, False), tables)
    rows = []
    for sig in signals:
        for kind, src in (("model", scores), ("reference", refs)):
            for name in src["background"]:
                b, s = _finite_pair(src["background"][name], src[sig][name])
                row = {"signal": sig, "score": name, "kind": kind, "n_background": int(len(b)), "n_signal": int(len(s)),
                       "auc": auc(b, s)}
                for f in FPR_POINTS:
                    row[f"tpr_at_fpr_{f:g}"] = tpr_at_fpr(b, s, f).get("tpr")
                rows.append(row)
    best = {}
    for sig in signals:
        m = max((r for r in rows if r["signal"] == sig and r["kind"] == "model"), key=lambda r: r["auc"])
        ref = max((r for r in rows if r["signal"] == sig and r["kind"] == "reference"), key=lambda r: r["auc"])
        best[sig] = {"best_strategy": m["score"], "auc": m["auc"], "best_reference": ref["score"],
                     "reference_auc": ref["auc"], "model_beats_references": m["auc"] > ref["auc"]}
    lines = ["| signal | score | kind | AUC | " + " | ".join(f"TPR @ FPR {f:g}" for f in FPR_POINTS) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in FPR_POINTS) + " |"]
    for r in rows:
        tprs = " | ".join("n/a" if r[f"tpr_at_fpr_{f:g}"] is None else f"{r[f'tpr_at_fpr_{f:g}']:.3f}" for f in FPR_POINTS)
        lines.append(f"| {r['signal']} | {r['score']} | {r['kind']} | {r['auc']:.3f} | {tprs} |")
    md = "\n".join(lines) + "\n"
    res = {"rows": rows, "best": best, "background": background, "signals": signals,
           "n_background_sr": int(tables["background"].num_rows), "markdown": md}
    with storage.local_output(out, markers=("dijet_evaluation.json",), prefix="sparkad-evaluate-") as local:
        write_json_atomic({k: v for k, v in res.items() if k != "markdown"}, local / "dijet_evaluation.json")
        write_text_atomic(md, local / "dijet_evaluation.md")
        _roc_plots(local, scores, refs, signals)
    return res


def _roc_plots(out: Path, scores, refs, signals):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    hep.style.use("CMS")
    for sig in signals:
        fig, ax = plt.subplots(figsize=(8, 7))
        for src, style in ((scores, "-"), (refs, ":")):
            for name in src["background"]:
                b, s = _finite_pair(src["background"][name], src[sig][name])
                fpr, tpr, _ = roc_curve(b, s)
                ax.plot(tpr, np.where(fpr > 0, 1 / np.maximum(fpr, 1e-12), np.nan), style, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("signal efficiency")
        ax.set_ylabel("1 / background efficiency")
        ax.set_title(f"{sig}: loss strategies (solid), references (dotted)", fontsize=14)
        ax.legend(fontsize=12)
        fig.tight_layout()
        fig.savefig(out / f"roc_{sig}.png", dpi=80)
        plt.close(fig)


def default_mjj_range(mjj) -> tuple[float, float]:
    """From the spectrum's peak (the trigger / pT-hat turn-on is below it, where the falling dijet function
    does not apply) to its 99.5 % quantile."""
    mjj = np.asarray(mjj, np.float64)
    hi = float(np.quantile(mjj, 0.995))
    counts, edges = np.histogram(mjj, 40, (float(np.quantile(mjj, 0.005)), hi))
    k = int(np.argmax(counts))
    return float(edges[k + 1]), hi


def run_bump_hunt(model_dir, hlf_dir, out, dataset: str, strategy: str = "both", efficiency: float = 0.01,
                  fit_on: str = "background", background=None, bins: int = 30, mjj_range=None, degree: int = 2,
                  n_toys: int = 200, sqrt_s: float = 13000.0, save_threshold: bool = False,
                  use_stored: bool = False, log=print) -> dict:
    """The anomaly-selected bump hunt of seeds/004 on `dataset`'s signal region (see the module docstring).
    save_threshold: store the fitted L_T(mjj) in the model directory; use_stored: apply the stored one."""
    from sparkad.analysis.bump_hunt import sliding_window
    from sparkad.analysis.quantile_threshold import QuantileThreshold, efficiency_flatness, fit_quantile_threshold

    if strategy not in STRATEGIES:
        raise SparkadError(f"unknown strategy {strategy!r} (strategies: {', '.join(STRATEGIES)})")
    if fit_on not in ("background", "data"):
        raise SparkadError(f"--fit-on must be background or data, got {fit_on!r}")
    report = read_dijet_report(hlf_dir)
    if dataset not in report["datasets"]:
        raise SparkadError(f"{hlf_dir}: no dataset {dataset!r} (datasets: {', '.join(report['datasets'])})")
    out = storage.checked_output(out)
    scorer = JetVAEScorer(local_model_dir(model_dir))
    labels = set(scorer.meta["config"]["data"]["background_labels"] or [])
    background = background or [n for n, d in report["datasets"].items() if not d["is_data"] and d["label"] in labels]
    import pyarrow as pa

    data = region(read_dataset(hlf_dir, dataset), True)
    d_mjj = data["mjj"].to_numpy().astype(np.float64)
    d_score = scorer.score_table(data)[strategy]
    bkg = region(pa.concat_tables([read_dataset(hlf_dir, n) for n in background]), True) if background else None
    if use_stored:
        f_mjj = f_score = f_w = None
    elif fit_on == "background":
        if bkg is None or bkg.num_rows == 0:
            raise SparkadError(f"{hlf_dir}: no background MC to fit the threshold on (use --fit-on data)")
        f_mjj, f_score = bkg["mjj"].to_numpy().astype(np.float64), scorer.score_table(bkg)[strategy]
        f_w = bkg["weight"].to_numpy().astype(np.float64)
    else:
        f_mjj, f_score, f_w = d_mjj, d_score, None
    if use_stored:
        stored = scorer.stored_threshold(strategy, efficiency)
        lt = QuantileThreshold.from_dict(stored)
        fit_on = stored.get("fit_on", "stored")
    else:
        lt = fit_quantile_threshold(f_mjj, f_score, efficiency, degree=degree, weights=f_w)
    if save_threshold and not use_stored:
        store_threshold(scorer, strategy, efficiency, {**lt.to_dict(), "fit_on": fit_on, "degree": degree,
                                                       "datasets": background if fit_on == "background" else [dataset]})
        publish_file(model_dir, scorer.model_dir, MJJ_THRESHOLDS)  # an s3:// model: its prefix gets it too
    lo, hi = mjj_range or default_mjj_range(d_mjj)
    edges = np.linspace(lo, hi, bins + 1)
    selected = lt.selects(d_mjj, d_score)
    res = {"dataset": dataset, "strategy": strategy, "efficiency": efficiency, "fit_on": fit_on,
           "threshold": lt.to_dict(), "n_signal_region": int(len(d_mjj)), "n_selected": int(selected.sum()),
           "edges": edges.tolist()}
    if bkg is not None and bkg.num_rows:
        b_mjj = bkg["mjj"].to_numpy().astype(np.float64)
        b_sel = lt.selects(b_mjj, scorer.score_table(bkg)[strategy])
        res["background_flatness"] = efficiency_flatness(b_mjj, b_sel, edges, bkg["weight"].to_numpy())
    res["data_flatness"] = efficiency_flatness(d_mjj, selected, edges)
    spectra = {"all": np.histogram(d_mjj, edges)[0], "selected": np.histogram(d_mjj[selected], edges)[0]}
    for name, counts in spectra.items():
        try:
            res[name] = {"counts": counts.tolist(),
                         **sliding_window(edges, counts, sqrt_s, n_toys=n_toys, seed=1)}
        except ValueError as e:  # too few events for the fit: said, not hidden
            res[name] = {"counts": counts.tolist(), "error": str(e)}
            log(f"bump hunt, {name} events: {e}")
    with storage.local_output(out, markers=("bump_hunt.json",), prefix="sparkad-bumphunt-") as local:
        write_json_atomic(res, local / "bump_hunt.json")
        _bump_plots(local, res, d_mjj, d_score, lt, sqrt_s)
    return res


def _bump_plots(out: Path, res, mjj, score, lt, sqrt_s):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    from sparkad.analysis.bump_hunt import expected_counts

    hep.style.use("CMS")
    edges = np.asarray(res["edges"])
    fig, ax = plt.subplots(figsize=(8, 7))
    for name, color in (("all", "k"), ("selected", "tab:red")):
        r = res[name]
        hep.histplot(np.asarray(r["counts"]), edges, ax=ax, histtype="errorbar", color=color,
                     label=f"{name} ({sum(r['counts'])} events)")
        if "fit" in r:
            ax.stairs(expected_counts(edges, r["fit"]["params"], sqrt_s), edges, color=color,
                      label=f"dijet fit, local Z = {r['z_local']:.1f}")
    ax.set_yscale("log")
    ax.set_xlabel("$m_{jj}$ [GeV]")
    ax.set_ylabel("events / bin")
    ax.legend(fontsize=12)
    fig.tight_layout()
    fig.savefig(out / "mjj_spectra.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 7))
    flat = res.get("background_flatness") or res["data_flatness"]
    centers = 0.5 * (edges[:-1] + edges[1:])
    ax.errorbar(centers, flat["efficiency"], yerr=flat["error"], fmt="o", color="k",
                label=f"χ²/ndf = {flat['chi2']:.1f}/{flat['ndf']}, p = {flat['p_value']:.2g}")
    ax.axhline(res["efficiency"], color="tab:red", label=f"target {res['efficiency']:g}")
    ax.set_xlabel("$m_{jj}$ [GeV]")
    ax.set_ylabel("background efficiency of score > $L_T(m_{jj})$")
    ax.legend(fontsize=12)
    fig.tight_layout()
    fig.savefig(out / "efficiency_vs_mjj.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 7))
    ax.scatter(mjj, score, s=2, color="0.5")
    grid = np.linspace(edges[0], edges[-1], 200)
    ax.plot(grid, lt(grid), color="tab:red", label=f"$L_T(m_{{jj}})$, q = {res['efficiency']:g}")
    ax.set_yscale("log")
    ax.set_xlabel("$m_{jj}$ [GeV]")
    ax.set_ylabel(f"score ({res['strategy']})")
    ax.legend(fontsize=12)
    fig.tight_layout()
    fig.savefig(out / "quantile_threshold.png", dpi=80)
    plt.close(fig)
