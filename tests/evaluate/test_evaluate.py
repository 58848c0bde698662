"""ROC / AUC / TPR at fixed FPR / LR+ against values worked out by hand."""
import numpy as np
import pytest

from sparkad.analysis.intervals import agresti_coull
from sparkad.evaluate.metrics import auc, roc_curve, tpr_at_fpr


def test_auc_perfect_random_and_inverted():
    b, s = np.arange(100.0), np.arange(100.0) + 1000
    assert auc(b, s) == 1.0 and auc(s, b) == 0.0
    assert auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == pytest.approx(0.5)  # ties count half


def test_roc_points():
    fpr, tpr, thr = roc_curve(np.array([0.1, 0.4]), np.array([0.35, 0.8]))
    assert list(fpr) == [0.0, 0.0, 0.5, 0.5, 1.0] and list(tpr) == [0.0, 0.5, 0.5, 1.0, 1.0]


def test_tpr_at_fpr_and_lr_plus():
    bkg = np.arange(10_000.0)  # exactly 10 events above 9989
    sig = np.r_[np.full(30, 20_000.0), np.zeros(70)]
    r = tpr_at_fpr(bkg, sig, 1e-3)
    assert r["fpr"] == 1e-3 and r["threshold"] == 9989.0 and r["tpr"] == 0.3 and r["lr_plus"] == pytest.approx(300.0)
    lo, hi = r["tpr_interval"]
    assert lo < 0.3 < hi
    assert tpr_at_fpr(bkg, sig, 1e-5)["tpr"] is None  # 10^4 background events cannot probe 1e-5


def test_agresti_coull_contains_the_estimate_and_shrinks():
    lo1, hi1 = agresti_coull(5, 50)
    lo2, hi2 = agresti_coull(500, 5000)
    assert lo1 < 0.1 < hi1 and lo2 < 0.1 < hi2 and (hi2 - lo2) < (hi1 - lo1) / 5


def test_weighted_auc_is_the_weighted_pair_probability():
    """AUC = P(s_sig > s_bkg) + ½ P(tie), each pair weighted by w_sig·w_bkg: brute force over all pairs."""
    rng = np.random.default_rng(3)
    b, s = rng.integers(0, 20, 300).astype(float), rng.integers(5, 25, 200).astype(float)  # many ties
    wb, ws = rng.random(300), rng.random(200)
    pair_w = ws[:, None] * wb[None, :]
    truth = ((s[:, None] > b[None, :]) * pair_w + 0.5 * (s[:, None] == b[None, :]) * pair_w).sum() / pair_w.sum()
    assert auc(b, s, wb, ws) == pytest.approx(truth, rel=1e-12)
    fpr, tpr, thr = roc_curve(b, s, wb, ws)
    k = 7  # a point of the curve: the weighted fractions above its threshold
    assert fpr[k] == pytest.approx(wb[b >= thr[k]].sum() / wb.sum()) and tpr[k] == pytest.approx(ws[s >= thr[k]].sum() / ws.sum())
