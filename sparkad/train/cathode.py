"""CATHODE-style anomaly detection (Hallin et al., arXiv:2109.00546; seeds/003) — `sparkad train --model cathode`.

1. A conditional normalising flow p(x | mjj) (sparkad/train/flows.py) learns the features' density on the
   data's sidebands (mjj within `sideband_width` of the signal region, outside it), with early stopping.
2. It is interpolated into the signal region: mjj values drawn from a Gaussian kernel density of the SR
   data's mjj (Silverman's bandwidth), features sampled from the flow at those values — `oversample` ×
   the SR data events: a synthetic background of the SR.
3. A classifier tells the SR data (label 1) from the samples (label 0), k-fold (data by event identity as
   CWoLa's, samples at random), balanced classes; its logit is the anomaly score: where the data exceed the
   interpolated background, the signal is. Exported and scored like CWoLa (sparkad.model.cwola.CWoLaScorer).

Stored: the out-of-fold thresholds at 10 %, 1 %, 0.1 % of the SR data, the flow's history, the classifier's
data-vs-samples AUC (≈ 0.5 when the interpolation is perfect and there is no signal: the closure).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sparkad.core.errors import ConfigError, SparkadError
from sparkad.model.store import writes_model_dir
from sparkad.model.cwola import classifier_logits, event_folds, mjj_regions
from sparkad.model.networks import fold
from sparkad.train.cwola import SECTIONS as CWOLA_SECTIONS, fit_fold_classifiers, load_events, resolve_config, \
    write_model_dir

KIND = "cathode"
SECTIONS = {**CWOLA_SECTIONS, "flow": {"hidden", "blocks", "epochs", "batch_size", "learning_rate", "patience",
                                       "oversample"}}
MJJ_SCALE = 1000.0  # the flow's conditioning: (mjj − SR centre) / 1 TeV


def kde_sample(values: np.ndarray, n: int, lo: float, hi: float, rng) -> np.ndarray:
    """n draws of a Gaussian kernel density of `values` (Silverman's bandwidth), folded back into [lo, hi)."""
    v = np.asarray(values, np.float64)
    h = 1.06 * v.std() * len(v) ** -0.2
    x = rng.choice(v, n) + h * rng.standard_normal(n)
    x = np.where(x < lo, 2 * lo - x, x)
    x = np.where(x >= hi, 2 * hi - x, x)
    return np.clip(x, lo, np.nextafter(hi, lo))


@writes_model_dir
def train_cathode(hlf_dir, out, *, config_file=None, signal_region=None, epochs=None, batch_size=None, progress=True,
                  log=print) -> dict:
    conf = resolve_config(config_file, signal_region, epochs, batch_size, conf_name=KIND, sections=SECTIONS)
    x, mjj, run, lumi, event, prov = load_events(hlf_dir, conf["data"], log)
    t0 = time.time()
    r = fit_cathode(x, mjj, (run, lumi, event), conf, progress=progress, log=log, where=str(hlf_dir))
    return write_model_dir(Path(out), nets=r["nets"], conf=conf, mean=r["mean"], scale=r["scale"],
                           sr_scores=r["oof"][r["y"] == 1],
                           provenance={**prov, "n_sr": r["n_sr"], "n_sb": r["n_sb"], "n_samples": r["n_samples"],
                                       "train_seconds": round(time.time() - t0, 2)},
                           history={"folds": r["history"], "flow": {k: v for k, v in r["flow_history"].items()
                                                                    if k != "per_epoch"}},
                           extra={"data_vs_samples_auc": r["auc"]}, kind=KIND)


def check_flow_conf(fc: dict) -> None:
    for key in ("blocks", "epochs", "batch_size", "patience", "oversample"):
        if isinstance(fc[key], bool) or not isinstance(fc[key], int) or fc[key] < 1:
            raise ConfigError(f"cathode config: flow.{key} must be a positive integer, got {fc[key]!r}")


def fit_cathode(x, mjj, ids, conf: dict, progress=False, log=print, where: str = "input") -> dict:
    """Steps 1-3 of the module docstring on arrays: features x (n, f), mjj, ids = (run, lumi, event); returns
    the fold networks, the standardisation, the flow (sparkad.train.flows.ConditionalMAF) and its history, the
    out-of-fold logits `oof` of the classifier's events with their labels `y` (1: SR data), the counts, the AUC."""
    from sklearn.metrics import roc_auc_score

    from sparkad.train.flows import fit_flow

    dc, tc, mc, fc = conf["data"], conf["training"], conf["model"], conf["flow"]
    check_flow_conf(fc)
    run, lumi, event = ids
    lo, hi = dc["signal_region"]
    region = mjj_regions(mjj, dc["signal_region"], dc["sideband_width"])
    finite = np.all(np.isfinite(x), axis=1)
    sb, sr = (region == 0) & finite, (region == 1) & finite
    k = int(dc["folds"])
    log(f"cathode: {int(sb.sum())} sideband events ({dc['sideband_width']:g} GeV each side) for the flow, "
        f"{int(sr.sum())} in the signal region {lo:g}-{hi:g} GeV")
    if sb.sum() < 100 or sr.sum() < 5 * k:
        raise SparkadError(f"{where}: {int(sb.sum())} sideband and {int(sr.sum())} signal-region events: too few "
                           f"for the flow and {k}-fold training")
    mean, scale = x[sb | sr].mean(axis=0), x[sb | sr].std(axis=0)
    scale[scale == 0] = 1.0
    z = ((x - mean) / scale).astype(np.float32)
    centre = 0.5 * (lo + hi)
    flow, flow_hist = fit_flow(z[sb], (mjj[sb] - centre) / MJJ_SCALE, hidden=fc["hidden"], blocks=fc["blocks"],
                               epochs=fc["epochs"], batch_size=fc["batch_size"], learning_rate=fc["learning_rate"],
                               patience=fc["patience"], seed=int(dc["seed"]))
    log(f"cathode: flow trained ({flow_hist['epochs']} epochs, validation NLL {flow_hist['best_val_nll']:.4f})")
    rng = np.random.default_rng(int(dc["seed"]) + 7)
    n_samples = int(fc["oversample"]) * int(sr.sum())
    m_samples = kde_sample(mjj[sr], n_samples, lo, hi, rng)
    samples = flow.sample((m_samples - centre) / MJJ_SCALE, seed=int(dc["seed"]) + 11)
    samples = samples[np.all(np.isfinite(samples), axis=1)]
    zd = z[sr]
    zz = np.concatenate([zd, samples]).astype(np.float32)
    y = np.r_[np.ones(len(zd)), np.zeros(len(samples))].astype(np.float32)
    folds = np.r_[event_folds(run[sr], lumi[sr], event[sr], k), rng.integers(0, k, len(samples))]
    w = np.where(y == 1, 0.5 * len(y) / len(zd), 0.5 * len(y) / len(samples)).astype(np.float32)
    nets, history = fit_fold_classifiers(zz, y, w, folds, mc, tc, progress=progress, desc="train cathode")
    oof = classifier_logits([fold(nets[f"fold{i}"]) for i in range(k)], zz, folds)
    auc = float(roc_auc_score(y, oof))
    log(f"cathode: SR data vs interpolated background samples AUC {auc:.4f} out of fold (0.5: indistinguishable)")
    return {"nets": nets, "history": history, "mean": mean, "scale": scale, "flow": flow, "flow_history": flow_hist,
            "oof": oof, "y": y, "n_sr": int(sr.sum()), "n_sb": int(sb.sum()), "n_samples": int(len(samples)),
            "auc": auc, "centre": centre}
