"""`sparkad evaluate`: a trained model against the SM validation sample and each anomaly sample of an
HLF folder — table (CSV, JSON, Markdown) and ROC / LR+ plots (mplhep)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sparkad.train.cocktail import CocktailConfig, build_training_data, load_hlf
from sparkad.core.errors import SparkadError
from sparkad.evaluate.metrics import FPR_POINTS, evaluate_scores, roc_curve, supervised_reference
from sparkad.model.directory import Scorer
from sparkad.core.atomic import write_json_atomic


def run_evaluation(model_dir, hlf_dir, out, signals=None, bdt: bool = False, background=None, log=print) -> dict:
    """``background``: SM reference datasets (default: the model's cocktail; required for a model trained
    on data, e.g. W and Z MC to measure how it isolates tt̄ as in seeds/000 Fig. 5)."""
    from sparkad.core import storage
    from sparkad.model.store import local_model_dir, model_text

    out = storage.location(out)  # a local folder or an s3:// prefix (written locally, then published)
    if storage.is_remote(out):
        storage.check_bucket(out)  # before the work
    model_name = str(model_dir) if not storage.is_remote(storage.location(model_dir)) else model_text(model_dir)
    scorer = Scorer(local_model_dir(model_dir))
    df, report = load_hlf(hlf_dir)
    scorer.check_columns(df.columns, str(hlf_dir))
    prov = scorer.meta["provenance"]
    on_data = bool(prov.get("cocktail", {}).get("train_on_data"))
    if on_data and not background:
        raise SparkadError(f"{model_dir} was trained on data: name the SM reference datasets with --background")
    unknown = [b for b in (background or []) if b not in report["datasets"]]
    if unknown:
        raise SparkadError(f"{hlf_dir}: no dataset {', '.join(unknown)} (have {', '.join(report['datasets'])})")
    explicit = bool(background)
    background = list(background or prov.get("datasets") or [])
    if not explicit and prov.get("hlf_report_hash") == report.get("content_hash"):
        data = build_training_data(df, report, CocktailConfig.from_dict(prov["cocktail"]))
        x_sm, sm_note = data.x_val, "the model's held-out SM validation sample"
    else:
        sm = df[df.dataset.isin(background)] if background else df[~df.label.eq("data")]
        if sm.empty:
            raise SparkadError(f"{hlf_dir}: holds none of the model's background datasets ({', '.join(background)})")
        x_sm = sm[scorer.features].to_numpy(np.float64)
        sm_note = f"all events of {', '.join(background)}" + ("" if explicit else " (not the training split)")
        if not explicit:
            log(f"note: {hlf_dir} is not the HLF folder the model was trained on; SM reference = {sm_note}")
    names = signals or [d for d, meta in report["datasets"].items() if d not in background and not meta["is_data"]]
    if on_data:
        log("note: the model was trained on data; signals are scored against the named SM datasets")
    if not names:
        raise SparkadError(f"{hlf_dir}: no anomaly dataset to evaluate (all are in the model's cocktail); use --signals")
    unknown = [n for n in names if n not in report["datasets"]]
    if unknown:
        raise SparkadError(f"{hlf_dir}: no dataset {', '.join(unknown)} (have {', '.join(report['datasets'])})")
    sig_x = {n: df[df.dataset == n][scorer.features].to_numpy(np.float64) for n in names}
    # a ROC of NaN scores is meaningless: AUC and efficiencies need every event scored
    for name, x in [("the SM reference", x_sm), *sig_x.items()]:
        bad = ~np.isfinite(x)
        if bad.any():
            cols = [f for f, b in zip(scorer.features, bad.any(axis=0)) if b]
            raise SparkadError(f"{hlf_dir}: {name}: {int(bad.any(axis=1).sum())} event(s) with non-finite "
                               f"feature(s) {', '.join(cols)}; the evaluation needs every event scored")
        if name != "the SM reference" and not len(x):
            raise SparkadError(f"{hlf_dir}: signal dataset {name} has no events to evaluate")
    sm_scores = scorer.score(x_sm)
    sig_scores = {n: scorer.score(x) for n, x in sig_x.items()}
    rows = evaluate_scores(sm_scores, sig_scores)
    bdt_rows = {n: supervised_reference(x_sm, x) for n, x in sig_x.items()} if bdt else {}

    kinds = {s: ("baseline" if s in scorer.baseline_scores else "model") for s in scorer.score_names}
    flat = [_table_row(r["signal"], r["score"], kinds[r["score"]], r, r["n_sm"], r["n_signal"]) for r in rows]
    flat += [_table_row(n, "supervised_bdt", "supervised", b, b["n_sm_test"], b["n_signal_test"])
             for n, b in bdt_rows.items()]
    # performance.json last: on an object store it is the marker (deleted first, written last)
    with storage.local_output(out, markers=("performance.json",), prefix="sparkad-evaluate-") as local:
        md, doc = _write_outputs(local, flat, rows, bdt_rows, kinds, sm_scores, sig_scores, scorer, x_sm, sm_note,
                                 model_name, hlf_dir)
    return {"table": flat, "markdown": "\n".join(md), **doc}


def _write_outputs(out: Path, flat, rows, bdt_rows, kinds, sm_scores, sig_scores, scorer, x_sm, sm_note, model_name,
                   hlf_dir):
    with (out / "performance.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(flat[0]))
        w.writeheader()
        w.writerows(flat)
    md = ["| " + " | ".join(flat[0]) + " |", "|" + "---|" * len(flat[0])]
    md += ["| " + " | ".join("–" if v is None else str(v) for v in d.values()) + " |" for d in flat]
    (out / "performance.md").write_text("\n".join(md) + "\n")
    _plots(out, sm_scores, sig_scores, scorer)
    doc = {"model": model_name, "model_hash": scorer.content_hash, "hlf": str(hlf_dir), "sm_reference": sm_note,
           "n_sm": int(len(x_sm)), "rows": rows, "supervised_reference": bdt_rows,
           "versus_baselines": versus_baselines(rows, kinds)}
    write_json_atomic(doc, out / "performance.json")
    return md, doc


def versus_baselines(rows: list[dict], kinds: dict) -> dict:
    """Per signal: the model's best score and the best classic baseline by AUC, and whether the model
    beats every baseline (empty for a model saved without baselines)."""
    out = {}
    for sig in dict.fromkeys(r["signal"] for r in rows):
        mine = [r for r in rows if r["signal"] == sig and kinds.get(r["score"]) == "model"]
        base = [r for r in rows if r["signal"] == sig and kinds.get(r["score"]) == "baseline"]
        if mine and base:
            m, b = max(mine, key=lambda r: r["auc"]), max(base, key=lambda r: r["auc"])
            out[sig] = {"best_model_score": m["score"], "model_auc": m["auc"], "best_baseline": b["score"],
                        "baseline_auc": b["auc"], "model_beats_baselines": bool(m["auc"] > b["auc"])}
    return out


def _table_row(signal, score, kind, r, n_sm, n_signal) -> dict:
    d = {"signal": signal, "score": score, "kind": kind, "auc": round(r["auc"], 5), "n_sm": n_sm,
         "n_signal": n_signal}
    for f in FPR_POINTS:
        p = r[f"fpr_{f:g}"]
        d[f"tpr@{f:g}"] = None if p["tpr"] is None else round(p["tpr"], 6)
        d[f"lr+@{f:g}"] = None if p["tpr"] is None else round(p["lr_plus"], 3)
    return d


def _plots(out: Path, sm_scores, sig_scores, scorer):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    plt.style.use(hep.style.CMS)
    for score in scorer.score_names:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(20, 9))
        for name, s in sig_scores.items():
            fpr, tpr, _ = roc_curve(sm_scores[score], s[score])
            ok = fpr > 0
            ax1.plot(fpr[ok], tpr[ok], label=name)
            ax2.plot(fpr[ok], tpr[ok] / fpr[ok], label=name)
        for ax, ylab in ((ax1, "signal efficiency (TPR)"), (ax2, "LR+ = TPR / FPR")):
            ax.set_xscale("log")
            ax.set_xlabel("SM efficiency (FPR)")
            ax.set_ylabel(ylab)
            ax.legend(fontsize=16)
        ax2.set_yscale("log")
        hep.cms.label(data=False, ax=ax1, loc=0, rlabel=f"{scorer.kind} · {score}")
        fig.tight_layout()
        fig.savefig(out / f"roc_{score}.png", dpi=80)
        plt.close(fig)
