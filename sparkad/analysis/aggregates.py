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
from sparkad.analysis.run_shapes import count_by_run, merge_run_counts, run_index

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
    #: every score's own threshold (the model's 1000 ppm): yields above it compare the scores, the
    #: model's and the classic baselines', on the same events
    score_thresholds: dict = field(default_factory=dict)
    #: features whose per-run histograms of the data are kept (the anomaly score is always added)
    run_shape_features: list = field(default_factory=list)

    def cut_mask(self, cols: dict) -> np.ndarray:
        return cuts_mask(self.cuts, {c.feature: cols[c.feature] for c in self.cuts} or
                         {"_": next(iter(cols.values()))})


def feature_axis(edges: np.ndarray, name: str = "x"):
    """The binning as a hist axis with under/overflow: Regular for uniform edges (placed by arithmetic,
    ~4x faster to fill than a search; a value within a few ulp of an inner edge may land on either
    side of it), Variable otherwise (binary search over the edges themselves, as ``np.searchsorted``)."""
    import hist

    e = np.asarray(edges, np.float64)
    n = len(e) - 1
    if np.all(np.isfinite(e)) and np.allclose(np.diff(e), (e[-1] - e[0]) / n, rtol=1e-9, atol=0):
        return hist.axis.Regular(n, e[0], e[-1], name=name, underflow=True, overflow=True)
    return hist.axis.Variable(e, name=name, underflow=True, overflow=True)


@dataclass
class FeatureHist:
    """One feature of one dataset, all events split by anomalous (no / yes).

    ``weights``: hist.Hist (Boolean ``anomalous`` × the feature's bins with flow) with Weight storage,
    Σw and Σw² per bin. ``entries``: the raw entries on the same axes (Int64 storage), or None for
    unit-weight samples (data), whose Σw are the entries. ``nan``: the events with a NaN value (no
    bin) as the six H_* quantities. Partials add up with ``+``."""

    weights: object
    entries: object | None
    nan: np.ndarray

    def entry_view(self) -> np.ndarray:
        """Raw entries (2, nb + 2) indexed [anomalous, flow bin]."""
        if self.entries is not None:
            return np.asarray(self.entries.view(flow=True), np.int64)
        return np.rint(self.weights.view(flow=True)["value"]).astype(np.int64)

    def __add__(self, other: "FeatureHist") -> "FeatureHist":
        if self.entries is not None and other.entries is not None:
            entries = self.entries + other.entries
        elif self.entries is None and other.entries is None:
            entries = None
        else:  # a unit-weight batch of a weighted sample
            entries = _entries_hist(self.weights, self.entry_view() + other.entry_view())
        return FeatureHist(self.weights + other.weights, entries, self.nan + other.nan)

    def rows(self) -> np.ndarray:
        """(6, nb + 3) rows H_*: bins 0 = underflow, 1..n, n + 1 = overflow, n + 2 = NaN."""
        v = self.weights.view(flow=True)
        n = self.entry_view()
        w, w2 = v["value"], v["variance"]
        body = np.stack([n[0] + n[1], n[1], w[0] + w[1], w2[0] + w2[1], w[1], w2[1]]).astype(np.float64)
        return np.concatenate([body, np.asarray(self.nan, np.float64)[:, None]], axis=1)


def _entries_hist(like, view: np.ndarray):
    import hist

    h = hist.Hist(*like.axes, storage=hist.storage.Int64())
    h.view(flow=True)[...] = view
    return h


def fill_feature(x: np.ndarray, edges: np.ndarray, w: np.ndarray | None, sel: np.ndarray) -> FeatureHist:
    """Histogram one batch of one feature. ``w`` None: unit weights (data). The upper edge belongs
    to the last bin (as ``numpy.histogram``); NaN values are counted apart."""
    import hist

    x = np.asarray(x, np.float64)
    sel = np.asarray(sel, bool)
    isnan = np.isnan(x)
    nan = np.zeros(6)
    if isnan.any():
        wn = np.ones(int(isnan.sum())) if w is None else w[isnan]
        sn = sel[isnan]
        nan[[H_N_ALL, H_N_SEL, H_W_ALL, H_W2_ALL, H_W_SEL, H_W2_SEL]] = [
            len(wn), sn.sum(), wn.sum(), (wn * wn).sum(), wn[sn].sum(), (wn[sn] ** 2).sum()]
        keep = ~isnan
        x, sel, w = x[keep], sel[keep], (None if w is None else w[keep])
    top = x == edges[-1]
    if top.any():
        x = np.where(top, 0.5 * (edges[-2] + edges[-1]), x)  # into the last bin on either axis type
    axes = (hist.axis.Boolean(name="anomalous"), feature_axis(edges))
    hw = hist.Hist(*axes, storage=hist.storage.Weight()).fill(sel, x, weight=w)
    he = None if w is None else hist.Hist(*axes, storage=hist.storage.Int64()).fill(sel, x)
    return FeatureHist(hw, he, nan)


def _yield(w: np.ndarray) -> np.ndarray:
    return np.array([len(w), w.sum(), (w * w).sum()], np.float64)


@dataclass
class Partial:
    """A mergeable partial result (hist objects and numpy arrays: cheap to ship between tasks, and
    stored as an npz of named arrays, never a pickle)."""

    hists: dict = field(default_factory=dict)        # (dataset, feature) → FeatureHist
    score_hists: dict = field(default_factory=dict)  # (dataset, score) → FeatureHist
    totals: dict = field(default_factory=dict)       # dataset → {"all"|"selected"|"pps"|"pps_anomalous": (3,)}
    per_ls: dict = field(default_factory=dict)       # dataset → (4, k) run, ls, events, selected
    run_counts: dict = field(default_factory=dict)   # (data dataset, feature or score) → {run: counts per bin}

    def add(self, other: "Partial") -> "Partial":
        for attr in ("hists", "score_hists"):
            mine = getattr(self, attr)
            for k, v in getattr(other, attr).items():
                mine[k] = mine[k] + v if k in mine else v  # `+` makes a new object: no aliasing
        for ds, parts in other.totals.items():
            mine = self.totals.setdefault(ds, {})
            for k, v in parts.items():
                mine[k] = mine[k] + v if k in mine else v.copy()
        for k, per_run in other.run_counts.items():
            self.run_counts[k] = merge_run_counts(self.run_counts[k], per_run) if k in self.run_counts else dict(per_run)
        for ds, arr in other.per_ls.items():
            self.per_ls[ds] = merge_counts(self.per_ls[ds], arr) if ds in self.per_ls else arr
        return self


def write_aggregates(partial: Partial, spec: AnalysisSpec, path) -> None:
    """The merged aggregates and their binning as an npz of named arrays (``read_aggregates``):
    edges/FEATURE, score_edges/SCORE; for each histogram ("hists" per feature, "score_hists" per score)
    KIND/DATASET/NAME/{value,variance,entries,nan}: Σw, Σw² and raw entries indexed [anomalous, bin with
    under/overflow], and the NaN events' six H_* sums; totals/DATASET/KIND; per_ls/DATASET. Portable
    and safe to open (no pickle)."""
    from sparkad.core.atomic import atomic_path
    arrays = {f"edges/{f}": np.asarray(e) for f, e in spec.edges.items()}
    arrays |= {f"score_edges/{s}": np.asarray(e) for s, e in spec.score_edges.items()}
    for kind in ("hists", "score_hists"):
        for (ds, name), fh in getattr(partial, kind).items():
            v = fh.weights.view(flow=True)
            arrays |= {f"{kind}/{ds}/{name}/value": v["value"], f"{kind}/{ds}/{name}/variance": v["variance"],
                       f"{kind}/{ds}/{name}/entries": fh.entry_view(), f"{kind}/{ds}/{name}/nan": fh.nan}
    arrays |= {f"totals/{ds}/{k}": v for ds, parts in partial.totals.items() for k, v in parts.items()}
    arrays |= {f"per_ls/{ds}": v for ds, v in partial.per_ls.items()}
    for (ds, name), per_run in partial.run_counts.items():
        runs = sorted(per_run)
        arrays[f"run_counts/{ds}/{name}/runs"] = np.asarray(runs, np.int64)
        arrays[f"run_counts/{ds}/{name}/counts"] = np.stack([per_run[r] for r in runs]) if runs else np.zeros((0, 0), np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def read_aggregates(path) -> tuple[Partial, dict, dict]:
    """(partial, edges per feature, edges per score) from ``write_aggregates``' npz."""
    import hist

    part, edges, score_edges, parts, run_parts = Partial(), {}, {}, {}, {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            kind, *rest = key.split("/")
            v = z[key]
            if kind == "edges":
                edges[rest[0]] = v
            elif kind == "score_edges":
                score_edges[rest[0]] = v
            elif kind in ("hists", "score_hists"):
                parts.setdefault((kind, rest[0], rest[1]), {})[rest[2]] = v
            elif kind == "totals":
                part.totals.setdefault(rest[0], {})[rest[1]] = v
            elif kind == "per_ls":
                part.per_ls[rest[0]] = v
            elif kind == "run_counts":
                run_parts.setdefault((rest[0], rest[1]), {})[rest[2]] = v
    for key, a in run_parts.items():
        part.run_counts[key] = {int(r): c for r, c in zip(a["runs"], a["counts"])}
    for (kind, ds, name), a in parts.items():
        axes = (hist.axis.Boolean(name="anomalous"),
                feature_axis(edges[name] if kind == "hists" else score_edges[name]))
        hw = hist.Hist(*axes, storage=hist.storage.Weight())
        hw.view(flow=True)["value"], hw.view(flow=True)["variance"] = a["value"], a["variance"]
        getattr(part, kind)[(ds, name)] = FeatureHist(hw, _entries_hist(hw, a["entries"]), a["nan"])
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
        p.hists[(dataset, f)] = fill_feature(cols[f], spec.edges[f], hw, sel)
    for name, edges in spec.score_edges.items():
        p.score_hists[(dataset, name)] = fill_feature(scores[name], edges, hw, sel)
    pps = spec.cut_mask(cols)
    p.totals[dataset] = {"all": _yield(w), "selected": _yield(w[sel]), "pps": _yield(w[pps]),
                         "pps_anomalous": _yield(w[pps & sel])}
    for name, thr in spec.score_thresholds.items():
        p.totals[dataset][f"above:{name}"] = _yield(w[np.asarray(scores[name], np.float64) > thr])
    if dataset in spec.data_datasets:
        p.per_ls[dataset] = count_per_ls(run, lumi, sel)
        index = run_index(run)
        for name in spec.run_shape_features:
            p.run_counts[(dataset, name)] = count_by_run(run, cols[name], spec.edges[name], index)
        p.run_counts[(dataset, spec.score)] = count_by_run(run, scores[spec.score], spec.score_edges[spec.score], index)
    return p
