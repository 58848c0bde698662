"""Mergeable partial aggregates of a scored HLF batch: the analysis products of seeds/000 sec. 4.

``aggregate_batch`` is a pure function (HLF columns + scores → ``Partial``); partials add up with
``merge`` in any order and grouping, so Spark tasks, Dask tasks and an in-memory loop give the same
totals. Everything the products need is here, weighted for MC:

* per dataset and feature: histograms of all events and of the anomalous ones (entries, Σw, Σw²),
  with under/overflow and a NaN count — for the histograms, the ASTF tables and the plots;
* per dataset and score: score histograms;
* per dataset: totals, and the yields of the post-processing selection (with and without the
  anomaly selection, for the closure test);
* per data dataset: events and anomalous events per (run, luminosity section) — for the run-period
  check and the monitor.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sparkad.analysis.astf import cuts_mask
from sparkad.analysis.lumi_counts import count_per_ls, merge_counts

#: row layout of a feature histogram: entries and weight sums for all and for selected events
H_N_ALL, H_N_SEL, H_W_ALL, H_W2_ALL, H_W_SEL, H_W2_SEL = range(6)
#: totals / yields: entries, Σw, Σw²
T_N, T_W, T_W2 = range(3)

@dataclass
class AnalysisSpec:
    """What the pass aggregates, fixed before it starts (shipped to every task)."""

    features: list[str]
    edges: dict[str, np.ndarray]
    score: str
    threshold: float
    score_edges: dict[str, np.ndarray]
    cuts: list = field(default_factory=list)  # sparkad.analysis.astf.Cut: the post-processing selection
    data_datasets: frozenset = frozenset()

    def cut_mask(self, cols: dict) -> np.ndarray:
        return cuts_mask(self.cuts, {c.feature: cols[c.feature] for c in self.cuts} or
                         {"_": next(iter(cols.values()))})


def _bin_index(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: 0 underflow, 1..n, n+1 overflow, n+2 NaN. Regular binning by arithmetic
    (no search); the upper edge belongs to the last bin, as in numpy and hist."""
    nb = len(edges) - 1
    width = (edges[-1] - edges[0]) / nb
    if np.allclose(np.diff(edges), width, rtol=1e-9, atol=0):
        with np.errstate(invalid="ignore"):
            f = (x - edges[0]) * (1.0 / width)
        idx = np.floor(f, out=f)
        np.clip(idx, -1, nb, out=idx)
        idx = np.nan_to_num(idx, nan=0.0).astype(np.int64) + 1  # NaN: set below
        # float rounding can land one bin off next to an edge: settle against the edges themselves
        down = (idx >= 1) & (x < edges[np.clip(idx - 1, 0, nb)])
        up = (idx <= nb) & (x >= edges[np.clip(idx, 0, nb)])
        idx += up.astype(np.int64) - down.astype(np.int64)
    else:
        idx = np.searchsorted(edges, x, side="right")
    idx[x == edges[-1]] = nb
    idx[np.isnan(x)] = nb + 2
    return idx


def _hist_rows(x: np.ndarray, edges: np.ndarray, w: np.ndarray | None, sel: np.ndarray) -> np.ndarray:
    """(6, nbins + 3) rows H_*: bins 0 = underflow, 1..n, n+1 = overflow, n+2 = NaN. One bincount per
    quantity splits selected from the rest (index + size·selected); unit weights (data) need one."""
    size = len(edges) + 2
    idx = _bin_index(x, edges) + size * sel
    n = np.bincount(idx, minlength=2 * size).astype(np.float64).reshape(2, size)
    if w is None:
        sw = sw2 = n
    else:
        sw = np.bincount(idx, weights=w, minlength=2 * size).reshape(2, size)
        sw2 = np.bincount(idx, weights=w * w, minlength=2 * size).reshape(2, size)
    return np.stack([n[0] + n[1], n[1], sw[0] + sw[1], sw2[0] + sw2[1], sw[1], sw2[1]])


def _yield(w: np.ndarray) -> np.ndarray:
    return np.array([len(w), w.sum(), (w * w).sum()], np.float64)


@dataclass
class Partial:
    """A mergeable partial result (plain numpy arrays: cheap to ship between tasks, and stored as an
    npz of named arrays, never a pickle)."""

    hists: dict = field(default_factory=dict)        # (dataset, feature) → (6, nb+3)
    score_hists: dict = field(default_factory=dict)  # (dataset, score) → (3, nb+3) entries, Σw, Σw²
    totals: dict = field(default_factory=dict)       # dataset → {"all"|"selected"|"pps"|"pps_anomalous": (3,)}
    per_ls: dict = field(default_factory=dict)       # dataset → (4, k) run, ls, events, selected

    def add(self, other: "Partial") -> "Partial":
        for attr in ("hists", "score_hists"):
            mine = getattr(self, attr)
            for k, v in getattr(other, attr).items():
                mine[k] = mine[k] + v if k in mine else v.copy()
        for ds, parts in other.totals.items():
            mine = self.totals.setdefault(ds, {})
            for k, v in parts.items():
                mine[k] = mine[k] + v if k in mine else v.copy()
        for ds, arr in other.per_ls.items():
            self.per_ls[ds] = merge_counts(self.per_ls[ds], arr) if ds in self.per_ls else arr
        return self


def write_aggregates(partial: Partial, spec: AnalysisSpec, path) -> None:
    """The merged aggregates and their binning as an npz of named arrays (``read_aggregates``):
    hists/DATASET/FEATURE, score_hists/DATASET/SCORE, totals/DATASET/KIND, per_ls/DATASET, edges/FEATURE,
    score_edges/SCORE. Portable and safe to open (no pickle)."""
    from sparkad.core.atomic import atomic_path
    arrays = {f"edges/{f}": np.asarray(e) for f, e in spec.edges.items()}
    arrays |= {f"score_edges/{s}": np.asarray(e) for s, e in spec.score_edges.items()}
    arrays |= {f"hists/{ds}/{f}": v for (ds, f), v in partial.hists.items()}
    arrays |= {f"score_hists/{ds}/{s}": v for (ds, s), v in partial.score_hists.items()}
    arrays |= {f"totals/{ds}/{k}": v for ds, parts in partial.totals.items() for k, v in parts.items()}
    arrays |= {f"per_ls/{ds}": v for ds, v in partial.per_ls.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def read_aggregates(path) -> tuple[Partial, dict, dict]:
    """(partial, edges per feature, edges per score) from ``write_aggregates``' npz."""
    part, edges, score_edges = Partial(), {}, {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            kind, *rest = key.split("/")
            v = z[key]
            if kind == "edges":
                edges[rest[0]] = v
            elif kind == "score_edges":
                score_edges[rest[0]] = v
            elif kind == "hists":
                part.hists[tuple(rest)] = v
            elif kind == "score_hists":
                part.score_hists[tuple(rest)] = v
            elif kind == "totals":
                part.totals.setdefault(rest[0], {})[rest[1]] = v
            elif kind == "per_ls":
                part.per_ls[rest[0]] = v
    return part, edges, score_edges


def merge(a: Partial | None, b: Partial | None) -> Partial:
    """Associative, commutative merge (None is the identity)."""
    if a is None:
        return b if b is not None else Partial()
    if b is None:
        return a
    out = Partial()
    out.add(a)
    out.add(b)
    return out


def aggregate_batch(cols: dict, dataset: str, weight: np.ndarray, run: np.ndarray, lumi: np.ndarray,
                    scores: dict, spec: AnalysisSpec) -> Partial:
    """One batch of one dataset → its partial aggregates. ``cols`` holds the HLF feature arrays."""
    p = Partial()
    w = np.asarray(weight, np.float64)
    hw = None if np.all(w == 1.0) else w  # data: the weight sums are the counts
    s = np.asarray(scores[spec.score], np.float64)
    sel = s > spec.threshold  # strictly above, as the stored thresholds are defined
    for f in spec.features:
        p.hists[(dataset, f)] = _hist_rows(np.asarray(cols[f], np.float64), spec.edges[f], hw, sel)
    for name, edges in spec.score_edges.items():
        full = _hist_rows(np.asarray(scores[name], np.float64), edges, hw, sel)
        p.score_hists[(dataset, name)] = full[[H_N_ALL, H_W_ALL, H_W2_ALL]]
    pps = spec.cut_mask(cols)
    p.totals[dataset] = {"all": _yield(w), "selected": _yield(w[sel]), "pps": _yield(w[pps]),
                         "pps_anomalous": _yield(w[pps & sel])}
    if dataset in spec.data_datasets:
        p.per_ls[dataset] = count_per_ls(run, lumi, sel)
    return p
