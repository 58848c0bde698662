"""Classic anomaly detectors beside every model, fitted on the model's own (pre-processed) training
sample and scored with it on the same events: a deep model has to beat them to earn its cost.

* ``mahalanobis``: the distance √((x−μ)ᵀ Σ⁻¹ (x−μ)) to the weighted mean under the weighted
  covariance, on the directions with non-zero variance (one-hot inputs make Σ singular);
* ``pca``: the mean squared reconstruction error of x from its first ``PCA_COMPONENTS`` principal
  components (the same covariance);
* ``iforest``: an isolation forest (scikit-learn, fitted once); scored here from its exported trees
  as log₂ s = −E[h(x)] / c(ψ), the logarithm of the anomaly score s of Liu et al. (scikit-learn's
  ``-score_samples``), so no transcendental function enters the score.

Fitting needs scikit-learn (at training time only). Scoring is numpy + numba and, like the networks,
multiplies in the fixed order of ``sparkad.model.dense``: the same bits whatever the batch, the BLAS
threads or the CPU. The fitted state is plain arrays (``baselines/...`` entries of networks.npz).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from sparkad.model.dense import dense

NAMES = ("mahalanobis", "pca", "iforest")
PCA_COMPONENTS = 4
IFOREST_TREES = 100
IFOREST_SAMPLES = 256
#: events of the training sample the baselines are fitted on (its first ones: the sample is shuffled)
FIT_EVENTS = 200_000
PREFIX = "baselines/"


def _weighted_moments(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    w = np.clip(np.asarray(w, np.float64), 0.0, None)
    if not w.sum() > 0:
        w = np.ones(len(x))
    mean = w @ x / w.sum()
    c = x - mean
    cov = (c * w[:, None]).T @ c / w.sum()
    return mean, 0.5 * (cov + cov.T)


def fit_gaussian(x: np.ndarray, w: np.ndarray, n_components: int = PCA_COMPONENTS) -> dict[str, np.ndarray]:
    """Weighted mean; whitening matrix of the covariance on its non-degenerate directions (eigenvalues
    above 1e-9 of the largest); the first ``n_components`` principal axes."""
    mean, cov = _weighted_moments(x, w)
    vals, vecs = np.linalg.eigh(cov)  # ascending
    vals, vecs = vals[::-1], vecs[:, ::-1]
    vecs = vecs * np.where(vecs[np.abs(vecs).argmax(axis=0), np.arange(vecs.shape[1])] < 0, -1.0, 1.0)  # fixed signs
    keep = vals > 1e-9 * max(vals[0], 1e-300)
    return {"mean": mean.astype(np.float32),
            "whiten": (vecs[:, keep] / np.sqrt(vals[keep])).astype(np.float32),
            "pca": vecs[:, :min(n_components, int(keep.sum()))].astype(np.float32)}


def _avg_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n points."""
    n = np.asarray(n, np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def fit_iforest(x: np.ndarray, w: np.ndarray, seed: int, n_trees: int = IFOREST_TREES,
                max_samples: int = IFOREST_SAMPLES) -> dict[str, np.ndarray]:
    """Fit scikit-learn's IsolationForest and export its trees as flat arrays: split feature and
    threshold per node, the two children (a leaf is its own child; indices into the concatenated nodes), each leaf's
    path length (depth + c(leaf size) − 1, as scikit-learn adds it), each tree's root and depth."""
    from sklearn.ensemble import IsolationForest

    x = np.asarray(x, np.float32)
    forest = IsolationForest(n_estimators=n_trees, max_samples=min(max_samples, len(x)), random_state=seed)
    forest.fit(x, sample_weight=np.clip(np.asarray(w, np.float64), 0.0, None) if w is not None else None)
    feats, thrs, children, leafs, roots, depths = [], [], [], [], [], []
    offset = 0
    for tree, columns in zip(forest.estimators_, forest.estimators_features_):
        t = tree.tree_
        is_leaf = t.children_left == -1
        own = np.arange(t.node_count) + offset
        roots.append(offset)
        node_depth = t.compute_node_depths()  # 1 at the root
        depths.append(int(node_depth.max()) - 1)
        feats.append(np.where(is_leaf, 0, np.asarray(columns)[np.maximum(t.feature, 0)]))
        thrs.append(np.where(is_leaf, np.inf, t.threshold))
        children.append(np.stack([np.where(is_leaf, own, t.children_left + offset),
                                  np.where(is_leaf, own, t.children_right + offset)], axis=1))
        leafs.append(node_depth + _avg_path_length(t.n_node_samples) - 1.0)
        offset += t.node_count
    return {"iforest_feature": np.concatenate(feats).astype(np.int32),
            "iforest_threshold": np.concatenate(thrs).astype(np.float64),
            "iforest_child": np.concatenate(children).astype(np.int32).ravel(),
            "iforest_leaf": np.concatenate(leafs).astype(np.float64),
            "iforest_root": np.asarray(roots, np.int32),
            "iforest_depth": np.asarray(depths, np.int32),
            "iforest_norm": np.array([len(roots) * _avg_path_length(np.array([forest.max_samples_]))[0]], np.float64)}


def fit_baselines(x: np.ndarray, w: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Every baseline fitted on (the first FIT_EVENTS of) a pre-processed training sample: the arrays
    to store, keyed without the ``baselines/`` prefix."""
    x, w = x[:FIT_EVENTS], np.asarray(w)[:FIT_EVENTS]
    return {**fit_gaussian(x, w), **fit_iforest(x, w, seed)}


@njit(cache=True)
def _iforest_path_sum(x, feature, threshold, child, leaf, roots, depth):  # pragma: no cover - compiled
    """Σ over trees of each event's leaf path length. A leaf is its own child (threshold +inf), so each
    tree is walked a fixed ``depth[t]`` steps for a block of events at once: no data-dependent branch,
    and the events' walks overlap in the CPU instead of waiting on each other."""
    n = x.shape[0]
    out = np.zeros(n, np.float64)
    node = np.empty(256, np.int32)
    for start in range(0, n, 256):  # a block of events stays in cache while every tree visits it
        m = min(256, n - start)
        for t in range(roots.shape[0]):  # tree by tree, in order: the sum is scikit-learn's
            node[:m] = roots[t]
            for _ in range(depth[t]):
                for j in range(m):
                    k = node[j]
                    node[j] = child[2 * k + (x[start + j, feature[k]] > threshold[k])]
            for j in range(m):
                out[start + j] += leaf[node[j]]
    return out


def score_baselines(arrays: dict[str, np.ndarray], x: np.ndarray, wanted=None) -> dict[str, np.ndarray]:
    """Pre-processed batch (events × inputs, float32) → {"mahalanobis", "pca", "iforest"} (or the
    ``wanted`` ones among them); larger is more anomalous; NaN for an event with a NaN input."""
    wanted = set(NAMES if wanted is None else wanted)
    x = np.ascontiguousarray(x, np.float32)
    out = {}
    c = x - arrays["mean"]
    if "mahalanobis" in wanted:
        z = dense(c, arrays["whiten"])
        out["mahalanobis"] = np.sqrt(np.sum(z * z, axis=1))
    if "pca" in wanted:
        p = arrays["pca"]
        r = c - dense(dense(c, p), np.ascontiguousarray(p.T))
        out["pca"] = np.mean(r * r, axis=1)
    if "iforest" in wanted:
        path = _iforest_path_sum(x, arrays["iforest_feature"], arrays["iforest_threshold"], arrays["iforest_child"],
                                 arrays["iforest_leaf"], arrays["iforest_root"], arrays["iforest_depth"])
        iforest = -(path / arrays["iforest_norm"][0])
        iforest[np.isnan(x).any(axis=1)] = np.nan
        out["iforest"] = iforest
    return out


def to_npz_entries(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {PREFIX + k: v for k, v in arrays.items()}


def from_npz_entries(entries: dict[str, np.ndarray], n_inputs: int) -> dict[str, np.ndarray] | None:
    """The baseline arrays among networks.npz's entries, or None for a model saved without them.
    Raises ValueError when they do not fit together (a tree walk must never leave its arrays)."""
    out = {k[len(PREFIX):]: v for k, v in entries.items() if k.startswith(PREFIX)}
    if out:
        check_arrays(out, n_inputs)
    return out or None


def check_arrays(a: dict[str, np.ndarray], n_inputs: int) -> None:
    missing = [k for k in ("mean", "whiten", "pca", "iforest_feature", "iforest_threshold", "iforest_child",
                           "iforest_leaf", "iforest_root", "iforest_depth", "iforest_norm") if k not in a]
    if missing:
        raise ValueError(f"baselines lack {', '.join(missing)}")
    nodes = len(a["iforest_feature"])
    ok = (a["mean"].shape == (n_inputs,) and a["whiten"].ndim == 2 and a["whiten"].shape[0] == n_inputs
          and a["pca"].ndim == 2 and a["pca"].shape[0] == n_inputs
          and len(a["iforest_threshold"]) == nodes and len(a["iforest_leaf"]) == nodes
          and len(a["iforest_child"]) == 2 * nodes and len(a["iforest_root"]) == len(a["iforest_depth"])
          and a["iforest_norm"].shape == (1,))
    if not ok:
        raise ValueError("baseline arrays of inconsistent shapes")
    if nodes and (a["iforest_child"].min() < 0 or a["iforest_child"].max() >= nodes
                  or a["iforest_feature"].min() < 0 or a["iforest_feature"].max() >= n_inputs
                  or a["iforest_root"].min() < 0 or a["iforest_root"].max() >= nodes):
        raise ValueError("isolation-forest indices out of range")
