"""Anomaly scores from exported networks, in numpy only (no TensorFlow, no training code).

Each model type maps a pre-processed batch (events × inputs, float32) to named scores; larger
means more anomalous. ``wanted`` (a collection of score names, None: all) limits the work to what
those scores need: ALAD's L1 and L2 need only the encoder and generator (44 % of its FLOPs), its
features and logits scores add Dxx. A score is the same bits whether computed alone or with others. Scores are kept in forms without ties in the far tail (distances and
logit-based cross entropies, never saturated probabilities).
"""
from __future__ import annotations

import numpy as np

from sparkad.model.dense import dense
from sparkad.model.networks import forward
from sparkad.model.vae_likelihoods import score_vae


def _softplus(x):
    return np.logaddexp(0.0, x)


def _forward_pairs(layers, left, right_a, right_b):
    """forward(layers, [left, right_a]) and forward(layers, [left, right_b]) (inputs concatenated):
    the first layer's products over ``left`` are summed once and continued for each right half,
    which is bit for bit the sum over the concatenated inputs (``dense``'s ``init``)."""
    first = layers[0] if layers else {"op": None}
    if first["op"] != "dense":
        return (forward(layers, np.concatenate([left, right_a], axis=1)),
                forward(layers, np.concatenate([left, right_b], axis=1)))
    k = left.shape[1]
    shared = dense(left, first["w"][:k])
    return tuple(forward(layers[1:], dense(r, first["w"][k:], first["b"], init=shared)) for r in (right_a, right_b))


def _dense_pair_one(layers, left, right):
    """forward(layers, [left, right]) exactly as ``_forward_pairs`` computes each of its two."""
    first = layers[0] if layers else {"op": None}
    if first["op"] != "dense":
        return forward(layers, np.concatenate([left, right], axis=1))
    k = left.shape[1]
    return forward(layers[1:], dense(right, first["w"][k:], first["b"], init=dense(left, first["w"][:k])))


def score_ae(nets, x: np.ndarray, wanted=None) -> dict[str, np.ndarray]:
    rec = forward(nets["decoder"], forward(nets["encoder"], x))
    return {"mse": np.mean((x - rec) ** 2, axis=1)}


ALAD_SCORES = ("l1", "l2", "features", "logits")


def score_alad(nets, x: np.ndarray, wanted=None) -> dict[str, np.ndarray]:
    """The four ALAD scores (seeds/000 sec. 2) with the EMA weights, the headline score first:
    l1 / l2: L1 / L2 distance between x and its reconstruction G(E(x)) (L1 performs best in seeds/000
    Fig. 4, and is what its top re-discovery selects on);
    features: L1 distance of Dxx's last hidden layer between (x, x) and (x, G(E(x)));
    logits: cross entropy of Dxx(x, G(E(x))) against "real" = softplus(-logit)."""
    wanted = set(ALAD_SCORES if wanted is None else wanted)
    rec = forward(nets["generator"], forward(nets["encoder"], x))
    out = {}
    if wanted & {"l1", "l2"}:
        d = x - rec
        if "l1" in wanted:
            out["l1"] = np.sum(np.abs(d), axis=1)
        if "l2" in wanted:
            out["l2"] = np.sqrt(np.sum(d * d, axis=1))
    if "features" in wanted:
        f_fake, f_real = _forward_pairs(nets["dxx_hidden"], x, rec, x)
        out["features"] = np.sum(np.abs(f_real - f_fake), axis=1)
    elif "logits" in wanted:
        f_fake = _dense_pair_one(nets["dxx_hidden"], x, rec)
    if "logits" in wanted:
        out["logits"] = _softplus(-forward(nets["dxx_out"], f_fake)[:, 0])
    return {k: out[k] for k in ALAD_SCORES if k in out}


SCORERS = {"ae": score_ae, "alad": score_alad, "vae": score_vae}
