"""Detector performance as pure functions: ROC, AUC, TPR at fixed FPR, LR+ = TPR/FPR with
Agresti–Coull intervals (seeds/000 sec. 3). Larger score = more anomalous."""
from __future__ import annotations

import numpy as np

from sparkad.analysis.intervals import agresti_coull


def roc_curve(bkg: np.ndarray, sig: np.ndarray, w_bkg=None, w_sig=None):
    """(fpr, tpr, thresholds) for the selection score >= threshold, at every distinct score
    (scikit-learn's weighted ROC, no point dropped; the first point is (0, 0) at +inf)."""
    from sklearn.metrics import roc_curve as sk_roc_curve

    s = np.concatenate([bkg, sig]).astype(np.float64)
    y = np.concatenate([np.zeros(len(bkg)), np.ones(len(sig))])
    w = None if w_bkg is None and w_sig is None else np.concatenate(
        [np.ones(len(bkg)) if w_bkg is None else w_bkg, np.ones(len(sig)) if w_sig is None else w_sig])
    return sk_roc_curve(y, s, sample_weight=w, drop_intermediate=False)


def auc(bkg, sig, w_bkg=None, w_sig=None) -> float:
    """Area under the ROC curve (trapezoidal, ties as one point: the Mann–Whitney U with ties at ½)."""
    from sklearn.metrics import auc as sk_auc

    fpr, tpr, _ = roc_curve(bkg, sig, w_bkg, w_sig)
    return float(sk_auc(fpr, tpr))


def tpr_at_fpr(bkg, sig, fpr_target: float) -> dict:
    """Selection at the exact background fraction fpr_target: TPR, LR+ and their intervals, or None
    where the background sample is too small (fewer than one event at that fraction)."""
    b = np.sort(np.asarray(bkg, np.float64))[::-1]
    k = int(np.floor(fpr_target * len(b) + 1e-9))
    if k < 1 or k >= len(b):
        return {"fpr": fpr_target, "tpr": None, "note": f"needs ≥ {int(np.ceil(1 / fpr_target))} background events"}
    thr = b[k]
    n_sig = len(sig)
    k_sig = int((np.asarray(sig) > thr).sum())
    fpr = k / len(b)
    tpr = k_sig / n_sig
    lo, hi = agresti_coull(k_sig, n_sig)
    flo, fhi = agresti_coull(k, len(b))
    return {"fpr": fpr, "threshold": float(thr), "tpr": tpr, "tpr_interval": [float(lo), float(hi)],
            "lr_plus": tpr / fpr, "lr_plus_interval": [float(lo / fhi), float(hi / flo) if flo > 0 else None]}


FPR_POINTS = (1e-3, 1e-4, 1e-5)


def evaluate_scores(sm_scores: dict, signals: dict, fpr_points=FPR_POINTS) -> list[dict]:
    """One row per (signal, score): AUC and TPR / LR+ at each FPR point."""
    rows = []
    for sig_name, sig_scores in signals.items():
        for score, bkg in sm_scores.items():
            row = {"signal": sig_name, "score": score, "n_sm": int(len(bkg)), "n_signal": int(len(sig_scores[score])),
                   "auc": auc(bkg, sig_scores[score])}
            for f in fpr_points:
                row[f"fpr_{f:g}"] = tpr_at_fpr(bkg, sig_scores[score], f)
            rows.append(row)
    return rows


def supervised_reference(x_sm: np.ndarray, x_sig: np.ndarray, seed: int = 1, fpr_points=FPR_POINTS) -> dict:
    """The upper reference of seeds/001 sec. 4.2: a gradient-boosted classifier trained on half of the SM
    and signal events and evaluated on the other half (AUC, TPR at fixed FPR)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    i_sm, i_sig = rng.permutation(len(x_sm)), rng.permutation(len(x_sig))
    h_sm, h_sig = len(x_sm) // 2, len(x_sig) // 2
    x = np.concatenate([x_sm[i_sm[:h_sm]], x_sig[i_sig[:h_sig]]])
    y = np.r_[np.zeros(h_sm), np.ones(h_sig)]
    w = np.r_[np.full(h_sm, 0.5 / h_sm), np.full(h_sig, 0.5 / h_sig)]  # balanced classes
    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)
    clf.fit(x, y, sample_weight=w)
    # decision_function keeps the far tail free of ties (probabilities saturate at 1)
    s_sm = clf.decision_function(x_sm[i_sm[h_sm:]])
    s_sig = clf.decision_function(x_sig[i_sig[h_sig:]])
    out = {"auc": auc(s_sm, s_sig), "n_sm_test": int(len(s_sm)), "n_signal_test": int(len(s_sig))}
    for f in fpr_points:
        out[f"fpr_{f:g}"] = tpr_at_fpr(s_sm, s_sig, f)
    return out
