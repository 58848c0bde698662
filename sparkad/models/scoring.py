"""Anomaly scores from exported networks, in numpy only (no TensorFlow, no training code).

Each model type maps a pre-processed batch (events × inputs, float32) to named scores; larger
means more anomalous. Scores are kept in forms without ties in the far tail (distances and
logit-based cross entropies, never saturated probabilities).
"""
from __future__ import annotations

import numpy as np

from .nets import forward
from .vae_likelihoods import score_vae

SCORE_NAMES = {
    "ae": ("mse",),
    "alad": ("logits", "features", "l1", "l2"),
    "vae": ("nll", "kl"),
}


def _softplus(x):
    return np.logaddexp(0.0, x)


def score_ae(nets, x: np.ndarray) -> dict[str, np.ndarray]:
    rec = forward(nets["decoder"], forward(nets["encoder"], x))
    return {"mse": np.mean((x - rec) ** 2, axis=1)}


def score_alad(nets, x: np.ndarray) -> dict[str, np.ndarray]:
    """The four ALAD scores (seeds/000 sec. 2) with the EMA weights:
    logits: cross entropy of Dxx(x, G(E(x))) against "real" = softplus(-logit);
    features: L1 distance of Dxx's last hidden layer between (x, x) and (x, G(E(x)));
    l1 / l2: L1 / L2 distance between x and its reconstruction G(E(x))."""
    rec = forward(nets["generator"], forward(nets["encoder"], x))
    f_fake = forward(nets["dxx_hidden"], np.concatenate([x, rec], axis=1))
    f_real = forward(nets["dxx_hidden"], np.concatenate([x, x], axis=1))
    logit = forward(nets["dxx_out"], f_fake)[:, 0]
    d = x - rec
    return {"logits": _softplus(-logit), "features": np.sum(np.abs(f_real - f_fake), axis=1),
            "l1": np.sum(np.abs(d), axis=1), "l2": np.sqrt(np.sum(d * d, axis=1))}


SCORERS = {"ae": score_ae, "alad": score_alad, "vae": score_vae}
