"""Anomaly selection transfer functions (ASTF) and the post-processing selection (PPS) of seeds/000 sec. 4.

The ASTF of a feature is, bin by bin, the fraction of events that pass the anomaly threshold (Fig. 8).
Comparing the ASTF of data with that of the SM background simulation tells in which range of which
quantity the anomalies cluster. The PPS then cuts on those quantities (e.g. NJ >= 6 and NB >= 2) and
compares the yields of the anomalous events in data with the simulation, with and without the process
thought to be the anomaly (the closure test of Fig. 9). Everything here is pure numpy/scipy/pandas on
per-bin sums; the histogramming itself (Spark, Dask or numpy: ``BinCounts.from_values``) is elsewhere.
See docs/astf.md.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from sparkad.core.atomic import atomic_path
from sparkad.core.config import as_number
from sparkad.core.errors import ConfigError
from sparkad.analysis.intervals import METHODS, binomial_interval, z_of_cl


ASTF_COLUMNS = (
    "feature", "bin", "bin_lo", "bin_hi",
    "data_n_all", "data_n_sel", "data_astf", "data_lo", "data_hi",
    "mc_n_all", "mc_n_sel", "mc_sumw_all", "mc_sumw_sel", "mc_n_eff", "mc_astf", "mc_lo", "mc_hi",
    "ratio", "ratio_err", "significance", "masked", "mask_reason",
)

# axis titles of the HLF (../shared/spec/HLF.md); other features are shown by name
FEATURE_LABELS = {
    "HT": r"$H_T$ [GeV]", "ST": r"$S_T$ [GeV]", "MJ": r"$M_J$ [GeV]", "NJ": r"$N_J$", "NB": r"$N_b$",
    "MET": r"$p_T^{miss}$ [GeV]", "MT": r"$M_T$ [GeV]", "met_par": r"$p_{T,\parallel}^{miss}$ [GeV]",
    "met_perp": r"$p_{T,\perp}^{miss}$ [GeV]", "lep_pt": r"lepton $p_T$ [GeV]", "lep_eta": r"lepton $\eta$",
    "lep_charge": "lepton charge", "lep_iso": "lepton isolation", "lep_iso_ch": "lepton isolation (ch. had.)",
    "lep_iso_neu": "lepton isolation (neu. had.)", "lep_iso_gamma": r"lepton isolation ($\gamma$)",
    "lep_is_ele": "lepton is electron", "mu_pt_tot": r"$p_T^{\mu,TOT}$ [GeV]", "mu_mass": r"$M_\mu$ [GeV]",
    "n_mu": r"$N_\mu$", "ele_pt_tot": r"$p_T^{e,TOT}$ [GeV]", "ele_mass": r"$M_e$ [GeV]", "n_ele": r"$N_e$",
    "n_ch": "charged-hadron candidates", "n_neu": "neutral-hadron candidates", "n_photon": "photon candidates",
}


# ---------------------------------------------------------------------------------------------------
# per-bin sums
# ---------------------------------------------------------------------------------------------------

@dataclass
class BinCounts:
    """Per-bin sums of one sample ("data" or the MC background) for one feature.

    n_* are raw entries; sumw*/sumw2* are Σw and Σw² of all events and of the anomaly-selected ones.
    Data carry weight 1, so sumw == sumw2 == n (``BinCounts.unweighted``)."""

    n_all: np.ndarray
    n_sel: np.ndarray
    sumw_all: np.ndarray
    sumw2_all: np.ndarray
    sumw_sel: np.ndarray
    sumw2_sel: np.ndarray

    def __post_init__(self):
        for f in ("n_all", "n_sel"):
            setattr(self, f, np.asarray(getattr(self, f), np.int64).ravel())
        for f in ("sumw_all", "sumw2_all", "sumw_sel", "sumw2_sel"):
            setattr(self, f, np.asarray(getattr(self, f), np.float64).ravel())

    def __len__(self):
        return len(self.n_all)

    @classmethod
    def unweighted(cls, n_all, n_sel) -> "BinCounts":
        """Counts of unit-weight events (data)."""
        n_all, n_sel = np.asarray(n_all, np.int64), np.asarray(n_sel, np.int64)
        return cls(n_all, n_sel, n_all.astype(float), n_all.astype(float), n_sel.astype(float), n_sel.astype(float))

    @classmethod
    def from_values(cls, values, edges, selected, weights=None, *, flow: bool = True) -> "BinCounts":
        """Histogram per-event values (numpy, for small samples and tests). Values outside the edges
        go to the first/last bin when flow is true, else are dropped; NaN values are always dropped."""
        edges = _check_edges(edges, "from_values")
        v = np.asarray(values, np.float64)
        sel = np.asarray(selected, bool)
        w = np.ones_like(v) if weights is None else np.asarray(weights, np.float64)
        if not (len(v) == len(sel) == len(w)):
            raise ValueError(f"from_values: values ({len(v)}), selected ({len(sel)}) and weights ({len(w)}) differ in length")
        nb = len(edges) - 1
        idx = np.searchsorted(edges, v, side="right") - 1
        idx[v == edges[-1]] = nb - 1  # the last edge belongs to the last bin (as numpy.histogram)
        if flow:
            idx = np.clip(idx, 0, nb - 1)
        ok = ~np.isnan(v) & (idx >= 0) & (idx < nb)
        idx, sel, w = idx[ok], sel[ok], w[ok]

        def s(x):
            return np.bincount(idx, weights=x, minlength=nb)

        return cls(s(np.ones_like(w)).round().astype(np.int64), s(sel.astype(float)).round().astype(np.int64),
                   s(w), s(w * w), s(w * sel), s(w * w * sel))


def _check_edges(edges, where: str) -> np.ndarray:
    e = np.asarray(edges, np.float64).ravel()
    if len(e) < 2 or np.isnan(e).any() or not np.all(np.diff(e) > 0):
        raise ValueError(f"{where}: bin edges must be at least two strictly increasing numbers (±inf allowed at the ends)")
    if np.isinf(e[1:-1]).any():
        raise ValueError(f"{where}: only the first and last bin edges may be infinite")
    return e


def _check_counts(c: BinCounts, nbins: int, where: str) -> None:
    for f in ("n_all", "n_sel", "sumw_all", "sumw2_all", "sumw_sel", "sumw2_sel"):
        a = getattr(c, f)
        if len(a) != nbins:
            raise ValueError(f"{where}: {f} has {len(a)} bins, the edges define {nbins}")
        if np.isnan(a).any() or (a < 0).any():
            raise ValueError(f"{where}: {f} has negative or NaN entries; negative weights are not supported "
                             "(drop or absorb them before histogramming)")
    tol = 1e-9
    if (c.n_sel > c.n_all).any():
        raise ValueError(f"{where}: n_sel exceeds n_all in bin(s) {np.flatnonzero(c.n_sel > c.n_all).tolist()}")
    for s, a in (("sumw_sel", "sumw_all"), ("sumw2_sel", "sumw2_all")):
        bad = getattr(c, s) > getattr(c, a) * (1 + tol) + tol
        if bad.any():
            raise ValueError(f"{where}: {s} exceeds {a} in bin(s) {np.flatnonzero(bad).tolist()}")


# ---------------------------------------------------------------------------------------------------
# intervals
# ---------------------------------------------------------------------------------------------------

def _sample(c: BinCounts, method: str, cl: float):
    """ASTF, interval and the Kish effective entries of one sample.

    ASTF = Σw_sel / Σw_all. The interval is the binomial one for the effective counts
    (k_eff = ASTF · n_int, n_int) where n_int makes the binomial variance ASTF(1−ASTF)/n_int equal the
    exact variance of a ratio of weighted sums with independent selected (s) and unselected (u) parts,
        V = (W_u² Σw²_s + W_s² Σw²_u) / W⁴,   i.e.  n_int = W_s W_u W² / (W_u² Σw²_s + W_s² Σw²_u).
    Unlike the Kish n_eff = (Σw)²/Σw² of all events it stays right when the selected events carry
    other weights than the rest (a bin mixing W and Z, whose anomaly fractions differ). Both equal n for
    equal weights (so weighted with constant w ≡ unweighted) and coincide when weights and selection are
    uncorrelated; at ASTF = 0 or 1, where V = 0, the Kish n_eff is used."""
    W, Ws = c.sumw_all, c.sumw_sel
    Wu = np.maximum(W - Ws, 0.0)
    S2s = c.sumw2_sel
    S2u = np.maximum(c.sumw2_all - c.sumw2_sel, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(W > 0, np.minimum(Ws / W, 1.0), np.nan)
        n_kish = np.where(c.sumw2_all > 0, W * W / c.sumw2_all, 0.0)
        inner = (Ws > 0) & (Wu > 0)
        n_int = np.where(inner, Ws * Wu * W * W / (Wu * Wu * S2s + Ws * Ws * S2u), n_kish)
    lo, hi = binomial_interval(np.where(W > 0, eff, 0.0) * n_int, n_int, method=method, cl=cl)
    lo, hi = np.where(W > 0, lo, np.nan), np.where(W > 0, hi, np.nan)
    # the interval must hold the estimate (floating-point effective counts can nudge it by an ulp)
    return eff, np.fmin(lo, eff), np.fmax(hi, eff), n_kish


# ---------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------

def astf_table(feature: str, edges, data: BinCounts | None, mc: BinCounts | None, *,
               method: str = "clopper-pearson", cl: float = 0.6827, min_entries: float = 10) -> pd.DataFrame:
    """One row per bin of `feature` (columns ASTF_COLUMNS; those of an absent sample are NaN).

    - astf, lo, hi: Σw_sel/Σw_all and its central binomial interval at `cl` (see ``_sample`` for
      weighted MC); data are unit-weight counts, so this is the plain binomial interval of n_sel/n_all.
    - mc_n_eff: Kish effective entries (Σw)²/Σw² of all MC events in the bin.
    - ratio = data_astf / mc_astf; ratio_err propagates the symmetric errors (hi − lo)/2/z of both.
    - significance = (data_astf − mc_astf) / sqrt(σ_data² + σ_mc²), each σ the interval's half-width
      on the side facing the other sample, scaled to one standard deviation (÷ z of `cl`): the
      asymmetric binomial errors, not a symmetric normal approximation, so that sparse bins with
      ASTF near 0 are not overstated. Positive: more anomalies in data than the simulation expects.
    - masked: the bin is not to be interpreted: empty, fewer than `min_entries` (effective) entries in
      data or MC, or no selected MC weight (ratio undefined). mask_reason says which.
    """
    edges = _check_edges(edges, f"{feature}")
    nb = len(edges) - 1
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r} (choose {' or '.join(METHODS)})")
    if data is None and mc is None:
        raise ValueError(f"{feature}: neither data nor MC counts given")
    z = z_of_cl(cl)
    nan = np.full(nb, np.nan)
    cols = {"feature": [feature] * nb, "bin": np.arange(nb), "bin_lo": edges[:-1], "bin_hi": edges[1:]}
    reasons = [[] for _ in range(nb)]
    res = {}
    for name, c in (("data", data), ("mc", mc)):
        if c is None:
            cols[f"{name}_n_all"] = pd.array([None] * nb, dtype="Int64")
            cols[f"{name}_n_sel"] = pd.array([None] * nb, dtype="Int64")
            if name == "mc":
                cols.update(mc_sumw_all=nan, mc_sumw_sel=nan, mc_n_eff=nan)
            cols.update({f"{name}_astf": nan, f"{name}_lo": nan, f"{name}_hi": nan})
            continue
        _check_counts(c, nb, f"{feature} ({name})")
        eff, lo, hi, n_eff = _sample(c, method, cl)
        res[name] = (eff, lo, hi)
        cols[f"{name}_n_all"] = pd.array(c.n_all, dtype="Int64")
        cols[f"{name}_n_sel"] = pd.array(c.n_sel, dtype="Int64")
        if name == "mc":
            cols.update(mc_sumw_all=c.sumw_all, mc_sumw_sel=c.sumw_sel, mc_n_eff=n_eff)
        cols.update({f"{name}_astf": eff, f"{name}_lo": lo, f"{name}_hi": hi})
        for i in range(nb):
            if not c.sumw_all[i] > 0:
                reasons[i].append(f"{name} empty")
            elif n_eff[i] < min_entries:
                reasons[i].append(f"{name} n_eff<{min_entries:g}" if name == "mc" else f"data n<{min_entries:g}")
        if name == "mc":
            for i in np.flatnonzero((c.sumw_all > 0) & ~(c.sumw_sel > 0)):
                reasons[i].append("mc selected weight 0")
    ratio, ratio_err, signif = nan.copy(), nan.copy(), nan.copy()
    if "data" in res and "mc" in res:
        (ad, lod, hid), (am, lom, him) = res["data"], res["mc"]
        with np.errstate(divide="ignore", invalid="ignore"):
            sd, sm = (hid - lod) / (2 * z), (him - lom) / (2 * z)
            ok = am > 0
            ratio = np.where(ok, ad / am, np.nan)
            ratio_err = np.where(ok, np.sqrt((sd / am) ** 2 + (ad * sm / am ** 2) ** 2), np.nan)
            up = ad > am  # data above MC: data's lower error and MC's upper error face each other
            sig_d = np.where(up, ad - lod, hid - ad) / z
            sig_m = np.where(up, him - am, am - lom) / z
            den = np.sqrt(sig_d ** 2 + sig_m ** 2)
            signif = np.where(ad == am, 0.0, np.where(den > 0, (ad - am) / den, np.nan))
            signif = np.where(np.isnan(ad) | np.isnan(am), np.nan, signif)
    cols.update(ratio=ratio, ratio_err=ratio_err, significance=signif)
    cols["masked"] = np.array([bool(r) for r in reasons])
    cols["mask_reason"] = ["; ".join(r) for r in reasons]
    df = pd.DataFrame(cols, columns=list(ASTF_COLUMNS))
    df.attrs.update(method=method, cl=cl, min_entries=min_entries)
    return df


def astf_tables(inputs: Mapping[str, tuple], *, method: str = "clopper-pearson", cl: float = 0.6827,
                min_entries: float = 10) -> pd.DataFrame:
    """Long table over features: inputs maps feature -> (edges, data BinCounts | None, mc BinCounts | None)."""
    frames = []
    for feature, spec in inputs.items():
        try:
            edges, data, mc = spec
        except (TypeError, ValueError):
            raise ValueError(f"{feature}: expected (edges, data, mc), got {type(spec).__name__}") from None
        frames.append(astf_table(feature, edges, data, mc, method=method, cl=cl, min_entries=min_entries))
    if not frames:
        raise ValueError("astf_tables: no features given")
    df = pd.concat(frames, ignore_index=True)
    df.attrs.update(method=method, cl=cl, min_entries=min_entries)
    return df


def write_astf(df: pd.DataFrame, out_dir: str | Path) -> dict:
    """astf.csv and astf.parquet in out_dir, each written atomically; returns their paths.
    The Parquet file carries method, cl and min_entries in its `sparkad` metadata."""
    import json

    import pyarrow as pa

    from sparkad.core.parquet_io import METADATA_KEY, write_atomic
    from sparkad.core.version import code_version

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "astf.csv"
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps({"product": "astf", **{k: df.attrs[k] for k in ("method", "cl", "min_entries")
                                                           if k in df.attrs}, "code_version": code_version()},
                                    sort_keys=True, default=str).encode()
    pq_path = write_atomic(table.replace_schema_metadata(meta), out / "astf.parquet")
    return {"csv": csv, "parquet": pq_path}


# ---------------------------------------------------------------------------------------------------
# plots (mplhep, CMS style)
# ---------------------------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep
    plt.style.use(hep.style.CMS)
    return plt, hep


def _display_edges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite drawing edges: an under/overflow bin is drawn as wide as its neighbour."""
    lo, hi = lo.astype(float).copy(), hi.astype(float).copy()
    if len(lo) and np.isinf(lo[0]):
        lo[0] = hi[0] - ((hi[1] - lo[1]) if len(lo) > 1 and np.isfinite(hi[1]) else 1.0)
    if len(hi) and np.isinf(hi[-1]):
        hi[-1] = lo[-1] + ((hi[-2] - lo[-2]) if len(hi) > 1 and np.isfinite(lo[-2]) else 1.0)
    return lo, hi


def _draw_feature(ax, rax, d: pd.DataFrame, feature: str, labels: Mapping, legend: bool = True):
    d = d.sort_values("bin")
    lo, hi = _display_edges(d["bin_lo"].to_numpy(), d["bin_hi"].to_numpy())
    x = (lo + hi) / 2
    masked = d["masked"].to_numpy(bool)
    mc = d["mc_astf"].to_numpy(float)
    mlo, mhi = d["mc_lo"].to_numpy(float), d["mc_hi"].to_numpy(float)
    da = d["data_astf"].to_numpy(float)
    dlo, dhi = d["data_lo"].to_numpy(float), d["data_hi"].to_numpy(float)
    for i in np.flatnonzero(masked):
        for a in (ax, rax):
            a.axvspan(lo[i], hi[i], color="0.85", lw=0, zorder=0)
    m = np.isfinite(mc)
    if m.any():
        ax.bar(lo[m], (mhi - mlo)[m], bottom=mlo[m], width=(hi - lo)[m], align="edge", color="tab:blue",
               alpha=0.3, lw=0, label=f"{labels['mc']} (unc.)")
        ax.hlines(mc[m], lo[m], hi[m], color="tab:blue", lw=2, label=labels["mc"])
    for sel, color, lab in ((~masked, "black", labels["data"]), (masked, "0.6", None)):
        s = sel & np.isfinite(da)
        if s.any():
            ax.errorbar(x[s], da[s], yerr=[(da - dlo)[s], (dhi - da)[s]], xerr=((hi - lo) / 2)[s], fmt="o",
                        color=color, ms=5, label=lab)
    # the y range follows the unmasked bins: a masked bin's wide interval must not flatten the rest
    keep = ~masked if (~masked).any() else np.ones_like(masked)
    vals = np.concatenate([v[keep] for v in (da, mc, dlo, mlo, dhi, mhi)])
    pos = vals[np.isfinite(vals) & (vals > 0)]
    if len(pos) and pos.min() < pos.max():
        if pos.max() / pos.min() > 100:
            ax.set_yscale("log")
            ax.set_ylim(pos.min() / 2, pos.max() * 3)
        else:
            ax.set_ylim(0, pos.max() * 1.3)
    ax.set_ylabel(labels.get("y", "ASTF"))
    if legend:
        ax.legend(fontsize=14, loc="best")
    r, re_ = d["ratio"].to_numpy(float), d["ratio_err"].to_numpy(float)
    s = ~masked & np.isfinite(r)
    if s.any():
        rax.errorbar(x[s], r[s], yerr=re_[s], xerr=((hi - lo) / 2)[s], fmt="o", color="black", ms=4)
        top = np.nanmax((r + np.nan_to_num(re_))[s])
        if top > 10:
            rax.set_yscale("log")
        else:
            rax.set_ylim(0, max(2.0, 1.1 * top))
    rax.axhline(1.0, color="tab:blue", lw=1, ls="--")
    rax.set_ylabel("data / MC", fontsize=16)
    rax.set_xlabel(labels.get("x") or FEATURE_LABELS.get(feature, feature))
    rax.set_xlim(lo.min(), hi.max())
    ax.set_xlim(lo.min(), hi.max())
    ax.tick_params(labelbottom=False)


def _labels(labels):
    return {"data": "Data", "mc": "SM MC (W, Z)", "y": "ASTF", **(labels or {})}


def _feature_rows(df: pd.DataFrame, feature: str) -> pd.DataFrame:
    d = df[df["feature"] == feature]
    if d.empty:
        raise ValueError(f"feature {feature!r} is not in the ASTF table (has: {', '.join(map(str, df['feature'].unique()))})")
    return d


def plot_astf(df: pd.DataFrame, feature: str, out_png: str | Path, *, labels: Mapping | None = None,
              lumi_text: str | None = None, cms_text: str = "Open Data") -> Path:
    """ASTF of data (points) and MC (line with its uncertainty band) versus one feature, and their
    ratio below; masked bins are shaded grey (their data points drawn grey, ratio omitted).
    labels may set "data", "mc", "x", "y"; lumi_text goes to the right of the CMS label."""
    plt, hep = _plt()
    d = _feature_rows(df, feature)
    lab = _labels(labels)
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(10, 10), gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05},
                                  sharex=True)
    _draw_feature(ax, rax, d, feature, lab)
    hep.cms.label(cms_text, data=True, rlabel=lumi_text or "", ax=ax)
    return _save(fig, plt, out_png)


def plot_astf_grid(df: pd.DataFrame, features: Sequence[str], out_png: str | Path, *, labels: Mapping | None = None,
                   lumi_text: str | None = None, cms_text: str = "Open Data", ncols: int = 2) -> Path:
    """Several features side by side (2×2 for HT, MJ, NJ, NB as seeds/000 Fig. 8), each with its ratio panel."""
    plt, hep = _plt()
    features = list(features)
    if not features:
        raise ValueError("plot_astf_grid: no features given")
    rows = [_feature_rows(df, f) for f in features]
    lab = _labels(labels)
    ncols = max(1, min(ncols, len(features)))
    nrows = math.ceil(len(features) / ncols)
    fig = plt.figure(figsize=(10 * ncols, 10 * nrows))
    outer = fig.add_gridspec(nrows, ncols, hspace=0.25, wspace=0.28)
    for i, (f, d) in enumerate(zip(features, rows)):
        inner = outer[i // ncols, i % ncols].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.05)
        ax = fig.add_subplot(inner[0])
        rax = fig.add_subplot(inner[1], sharex=ax)
        _draw_feature(ax, rax, d, f, lab, legend=(i == 0))
        hep.cms.label(cms_text, data=True, rlabel=lumi_text or "", ax=ax, fontsize=18)
    return _save(fig, plt, out_png)


def _save(fig, plt, out_png) -> Path:
    """Atomic PNG write (temp + rename): a reader never sees half a picture."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=80, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------------
# binning of conf/analysis.yaml
# ---------------------------------------------------------------------------------------------------

def binning_edges(spec: Mapping, where: str = "histograms") -> np.ndarray:
    """Bin edges from a conf/analysis.yaml `histograms` entry: {bins: N, lo: x, hi: y} or {edges: [...]}."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected {{bins, lo, hi}} or {{edges: [...]}}, got {type(spec).__name__}")
    if "edges" in spec:
        if set(spec) - {"edges"}:
            raise ConfigError(f"{where}: give either edges or bins/lo/hi, not both")
        try:
            return _check_edges([float(x) for x in spec["edges"]], where)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
    if set(spec) != {"bins", "lo", "hi"}:
        raise ConfigError(f"{where}: needs exactly bins, lo, hi (or edges), got {', '.join(map(str, spec)) or 'nothing'}")
    n = spec["bins"]
    lo, hi = as_number(spec["lo"], f"{where}.lo"), as_number(spec["hi"], f"{where}.hi")  # finite numbers
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or not hi > lo:
        raise ConfigError(f"{where}: need an integer bins >= 1 and finite lo < hi (got bins={n!r}, lo={lo}, hi={hi})")
    return np.linspace(lo, hi, n + 1)


# ---------------------------------------------------------------------------------------------------
# post-processing selection
# ---------------------------------------------------------------------------------------------------

class CutError(ConfigError, ValueError):
    """A post-processing cut that is not `feature OP number`."""


@dataclass(frozen=True)
class Cut:
    feature: str
    op: str
    value: float

    def __str__(self):
        return f"{self.feature} {self.op} {self.value:g}"


_OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less,
        "==": np.equal, "!=": np.not_equal}
_CUT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*"
                     r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_cuts(spec) -> list[Cut]:
    """Cuts from strings such as "NJ >= 6": a feature name, one of >= > <= < == !=, a finite number.
    A single string is one cut; Cut objects pass through. Nothing is evaluated as code."""
    if spec is None:
        return []
    if isinstance(spec, (str, Cut)):
        spec = [spec]
    cuts = []
    for s in spec:
        if isinstance(s, Cut):
            cuts.append(s)
            continue
        m = _CUT_RE.match(s) if isinstance(s, str) else None
        if m is None:
            raise CutError(f"bad cut {s!r}: expected 'feature OP number' with OP one of >=, >, <=, <, ==, != (e.g. 'NJ >= 6')")
        value = float(m.group(3))
        if not math.isfinite(value):
            raise CutError(f"bad cut {s!r}: the threshold must be a finite number")
        cuts.append(Cut(m.group(1), m.group(2), value))
    return cuts


def cuts_mask(cuts, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Events passing every cut (logical AND). A NaN feature value fails every cut, != included.
    No cuts: every event passes (the length comes from the columns)."""
    cuts = parse_cuts(cuts)
    lengths = {len(np.asarray(v)) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"cuts_mask: columns differ in length ({sorted(lengths)})")
    n = lengths.pop() if lengths else 0
    mask = np.ones(n, bool)
    for c in cuts:
        if c.feature not in columns:
            raise CutError(f"cut '{c}': no column {c.feature!r} (have: {', '.join(sorted(columns))})")
        v = np.asarray(columns[c.feature], np.float64)
        mask &= _OPS[c.op](v, c.value) & ~np.isnan(v)
    return mask


# ---------------------------------------------------------------------------------------------------
# post-processing yields and closure
# ---------------------------------------------------------------------------------------------------

_YIELD_KEYS = ("label", "is_data", "n", "sumw", "sumw2")
PPS_COLUMNS = ("row", "kind", "n", "yield", "error", "fraction")


def _yield_rows(yields: Mapping) -> list[dict]:
    out = []
    for ds, r in yields.items():
        missing = [k for k in _YIELD_KEYS if k not in r]
        if missing:
            raise ValueError(f"yields[{ds!r}]: missing {', '.join(missing)}")
        if r["sumw"] < 0 or r["sumw2"] < 0 or r["n"] < 0:
            raise ValueError(f"yields[{ds!r}]: negative n, sumw or sumw2")
        out.append({"dataset": ds, "label": str(r["label"]), "is_data": bool(r["is_data"]), "n": int(r["n"]),
                    "sumw": float(r["sumw"]), "sumw2": float(r["sumw2"])})
    return out


def _ratio(a, sa, b, sb):
    """a/b with Gaussian propagation written so that a = 0 still has an error."""
    if not b > 0:
        return float("nan"), float("nan")
    return a / b, math.sqrt((sa / b) ** 2 + (a * sb / b ** 2) ** 2)


def pps_yields_table(yields: Mapping[str, Mapping]) -> pd.DataFrame:
    """Yields of the anomalous events passing the PPS: data row(s), one row per MC process (datasets
    summed by label), the MC total, and data/MC.

    yields: {dataset: {"label", "is_data", "n", "sumw", "sumw2"}}. yield = Σw, error = sqrt(Σw²)
    (Poisson sqrt(n) for data); fraction = share of the MC total. The "data/MC" row holds the ratio of the
    data total to the MC total in `yield` and its propagated error in `error`."""
    recs = _yield_rows(yields)
    rows = []
    groups: dict[tuple, dict] = {}
    for r in recs:
        g = groups.setdefault((not r["is_data"], r["label"]), {"n": 0, "sumw": 0.0, "sumw2": 0.0})
        for k in ("n", "sumw", "sumw2"):
            g[k] += r[k]
    tot = {False: {"n": 0, "sumw": 0.0, "sumw2": 0.0}, True: {"n": 0, "sumw": 0.0, "sumw2": 0.0}}
    for (is_mc, label), g in groups.items():
        for k in g:
            tot[is_mc][k] += g[k]
    mc_w = tot[True]["sumw"]
    for (is_mc, label), g in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[1]["sumw"], kv[0][1])):
        rows.append({"row": label, "kind": "mc" if is_mc else "data", "n": g["n"], "yield": g["sumw"],
                     "error": math.sqrt(g["sumw2"]),
                     "fraction": g["sumw"] / mc_w if is_mc and mc_w > 0 else float("nan")})
    has_data = any(not k[0] for k in groups)
    has_mc = any(k[0] for k in groups)
    if has_mc:
        rows.append({"row": "MC total", "kind": "mc_total", "n": tot[True]["n"], "yield": mc_w,
                     "error": math.sqrt(tot[True]["sumw2"]), "fraction": 1.0 if mc_w > 0 else float("nan")})
    if has_data and has_mc:
        r, e = _ratio(tot[False]["sumw"], math.sqrt(tot[False]["sumw2"]), mc_w, math.sqrt(tot[True]["sumw2"]))
        rows.append({"row": "data/MC", "kind": "ratio", "n": pd.NA, "yield": r, "error": e, "fraction": float("nan")})
    df = pd.DataFrame(rows, columns=list(PPS_COLUMNS))
    df["n"] = df["n"].astype("Int64")
    return df


CLOSURE_COLUMNS = ("comparison", "data", "data_err", "expected", "expected_err", "ratio", "ratio_err", "pull")


def pps_closure(yields: Mapping[str, Mapping], process: str | Sequence[str]) -> pd.DataFrame:
    """The closure test of seeds/000 Fig. 9: data against the SM background alone, and against the
    background plus `process` (matched by label or dataset name, e.g. "ttbar"). Two rows; pull =
    (data − expected)/sqrt(σ_data² + σ_expected²) with Gaussian errors (sqrt(n) for data, sqrt(Σw²) for MC).
    Closure holds when the second pull is small while the first is not."""
    names = {process} if isinstance(process, str) else set(process)
    recs = _yield_rows(yields)
    data = [r for r in recs if r["is_data"]]
    mc = [r for r in recs if not r["is_data"]]
    sig = [r for r in mc if r["label"] in names or r["dataset"] in names]
    if not sig:
        labels = sorted({r["label"] for r in mc})
        raise ValueError(f"pps_closure: no MC process named {', '.join(sorted(names))} (MC labels: {', '.join(labels) or 'none'})")
    if not data:
        raise ValueError("pps_closure: no data in the yields")
    bkg = [r for r in mc if r not in sig]

    def tot(rs):
        return sum(r["sumw"] for r in rs), sum(r["sumw2"] for r in rs)

    d, d2 = tot(data)
    b, b2 = tot(bkg)
    s, s2 = tot(sig)
    rows = []
    for name, e, e2 in (("data vs background", b, b2), (f"data vs background + {'+'.join(sorted(names))}", b + s, b2 + s2)):
        r, re_ = _ratio(d, math.sqrt(d2), e, math.sqrt(e2))
        den = math.sqrt(d2 + e2)
        rows.append({"comparison": name, "data": d, "data_err": math.sqrt(d2), "expected": e, "expected_err": math.sqrt(e2),
                     "ratio": r, "ratio_err": re_, "pull": (d - e) / den if den > 0 else float("nan")})
    return pd.DataFrame(rows, columns=list(CLOSURE_COLUMNS))


def plot_pps_yields(table: pd.DataFrame, out_png: str | Path, *, lumi_text: str | None = None,
                    cms_text: str = "Open Data", title: str | None = None) -> Path:
    """The PPS yields as bars: data (black point), each MC process stacked into one bar beside it."""
    plt, hep = _plt()
    data = table[table["kind"] == "data"]
    mc = table[table["kind"] == "mc"]
    fig, ax = plt.subplots(figsize=(10, 9))
    bottom = 0.0
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (_, r) in enumerate(mc.iloc[::-1].iterrows()):
        ax.bar(1, r["yield"], bottom=bottom, width=0.6, color=colors[i % len(colors)], label=str(r["row"]))
        bottom += r["yield"]
    tot = table[table["kind"] == "mc_total"]
    if len(tot):
        ax.errorbar([1], [tot["yield"].iloc[0]], yerr=[tot["error"].iloc[0]], fmt="none", color="0.3", capsize=8)
    if len(data):
        ax.errorbar([0], [data["yield"].sum()], yerr=[math.sqrt((data["error"] ** 2).sum())], fmt="o", color="black",
                    ms=8, label="Data")
    ax.set_xticks([0, 1], ["Data", "MC"])
    ax.set_xlim(-0.7, 1.7)
    ax.set_ylabel("Events (anomalous, after PPS)")
    if title:
        ax.set_title(title, fontsize=16, loc="left", pad=30)
    ax.legend(fontsize=14)
    hep.cms.label(cms_text, data=True, rlabel=lumi_text or "", ax=ax)
    return _save(fig, plt, out_png)
