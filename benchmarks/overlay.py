"""Both engines side by side: every alad24 HLF of W+jets, DY+jets and tt̄ at 8 TeV from the parametric
engine and from Pythia 8, after the same extraction and selection, with a per-feature distance.

    python benchmarks/overlay.py [--events 1500] [--param-factor 20] [--seed 11] [--workers 2]
                                 [--workdir DIR] [--plots DIR] [--threshold 0.1] [--dpi 80]

1. generates the three processes on both engines with the same sample structure (Pythia: the lepton
   pT > 20 GeV generator filter of docs/pythia.md, all tt̄ decays, DY m > 50 GeV; parametric: the same
   processes, tt̄ with `decay: inclusive`, DY m > 50 GeV, no generator filter; --param-factor times
   more events, it is ~1000x faster), into WORKDIR/<engine>/gen (reused when the fileset is there);
2. extracts both with `sparkad extract` (alad24 features, `single_lepton` selection: one lepton with
   pT > 23 GeV and relative isolation < 0.45) into WORKDIR/<engine>/hlf (reused when complete): the
   comparison is made after the selection, where the parametric engine's missing filter does not matter;
3. per process and feature: the two-sample Kolmogorov-Smirnov distance and p-value (scipy
   `ks_2samp`, exact on the float32 values the Parquet holds), the means, and for the integer features a
   chi2 test of the counts (categories merged from the top until each has >= 10 events);
4. a figure per process: normalised histograms of the 25 features (binning of conf/analysis.yaml),
   parametric against Pythia (mplhep), `overlay_<process>.png` in --plots (default WORKDIR).

Prints JSON lines (`what`: "sample" per engine, "overlay" per process x feature, then "summary" with the
features whose KS distance exceeds --threshold with a p-value below --alpha, per process, largest
first) and a markdown table.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

PROCESSES = ("wjets", "dyjets", "ttbar")
TITLES = {"wjets": "W+jets", "dyjets": "DY+jets", "ttbar": r"$t\bar{t}$"}
INTEGER = ("NJ", "NB", "n_mu", "n_ele", "lep_charge", "lep_is_ele")
ENGINES = ("parametric", "pythia")


def config(engine: str, events: int, seed: int) -> dict:
    """The same three samples on either engine (inline preset)."""
    if engine == "pythia":
        samples = {"wjets": {"process": "wjets", "events": events, "params": {"lepton_pt_min": 20.0}},
                   "dyjets": {"process": "dyjets", "events": events, "params": {"lepton_pt_min": 20.0, "m_min": 50.0}},
                   "ttbar": {"process": "ttbar", "events": events, "params": {"lepton_pt_min": 20.0}}}
    else:
        samples = {"wjets": {"process": "wjets", "events": events},
                   "dyjets": {"process": "dyjets", "events": events, "params": {"m_min": 50.0}},
                   "ttbar": {"process": "ttbar", "events": events, "params": {"decay": "inclusive"}}}
    return {"name": f"overlay_{engine}", "engine": engine, "sqrt_s": 8000, "luminosity": 4400.0, "seed": seed,
            "max_events_per_file": max(events, 1), "samples": samples}


def merged_counts(a: np.ndarray, b: np.ndarray, min_total: int = 10):
    """Counts of the integer values of a and b, categories merged from the top until each holds >= min_total
    events of a and b together (the last one also from the bottom). Returns (values, counts_a, counts_b)."""
    vals = np.union1d(np.unique(a), np.unique(b))
    ca = np.array([(a == v).sum() for v in vals], np.int64)
    cb = np.array([(b == v).sum() for v in vals], np.int64)
    while len(vals) > 1 and ca[-1] + cb[-1] < min_total:
        ca[-2] += ca[-1]
        cb[-2] += cb[-1]
        vals, ca, cb = vals[:-1], ca[:-1], cb[:-1]
    while len(vals) > 1 and ca[0] + cb[0] < min_total:
        ca[1] += ca[0]
        cb[1] += cb[0]
        vals, ca, cb = vals[1:], ca[1:], cb[1:]
    return vals, ca, cb


def compare(param: np.ndarray, pythia: np.ndarray, feature: str) -> dict:
    """KS distance / p-value and means of one feature (float64 of the stored float32 values)."""
    from scipy.stats import chi2_contingency, ks_2samp

    a = np.asarray(param, np.float64)
    b = np.asarray(pythia, np.float64)
    ks = ks_2samp(a, b)
    row = {"n_parametric": int(len(a)), "n_pythia": int(len(b)),
           "mean_parametric": float(a.mean()), "mean_pythia": float(b.mean()),
           "ks": float(ks.statistic), "ks_p": float(ks.pvalue)}
    if feature in INTEGER:
        vals, ca, cb = merged_counts(a, b)
        if len(vals) > 1:
            c = chi2_contingency(np.stack([ca, cb]))
            row.update(chi2=float(c.statistic), chi2_dof=int(c.dof), chi2_p=float(c.pvalue))
        else:
            row.update(chi2=0.0, chi2_dof=0, chi2_p=1.0)
    return row


def binning(feature: str):
    from sparkad.core.config import load_conf

    h = load_conf("analysis")["histograms"][feature]
    if "edges" in h:
        return np.asarray(h["edges"], np.float64)
    return np.linspace(h["lo"], h["hi"], int(h["bins"]) + 1)


def plot_process(proc: str, frames: dict, features: list, rows: dict, path: Path, dpi: int) -> None:
    """A 5 x 5 grid of normalised histograms, parametric against Pythia, the KS distance in each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    hep.style.use(hep.style.CMS)
    ncol = 5
    nrow = (len(features) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.6 * nrow))
    for ax, f in zip(axes.flat, features):
        edges = binning(f)
        for eng, color in (("parametric", "tab:blue"), ("pythia", "black")):
            x = frames[eng][f]
            h, _ = np.histogram(np.clip(x, edges[0], edges[-1] - 1e-9 * (edges[-1] - edges[0])), bins=edges)
            tot = h.sum()
            dens = h / (tot * np.diff(edges)) if tot else h.astype(float)
            err = np.sqrt(h) / (tot * np.diff(edges)) if tot else None
            hep.histplot(dens, edges, yerr=err if eng == "pythia" else None, ax=ax, color=color,
                         histtype="errorbar" if eng == "pythia" else "step",
                         label=("Pythia 8" if eng == "pythia" else "parametric"),
                         **({"markersize": 3, "elinewidth": 0.8} if eng == "pythia" else {"linewidth": 1.4}))
        r = rows[f]
        ax.set_xlabel(f, fontsize=13)
        ax.set_ylabel("")
        ax.tick_params(labelsize=9)
        if f in ("HT", "MJ", "MET", "MT", "lep_pt", "mu_pt_tot", "ele_pt_tot", "mu_mass", "ele_mass",
                 "lep_iso", "lep_iso_ch", "lep_iso_neu", "lep_iso_gamma"):
            ax.set_yscale("log")
        ax.text(0.97, 0.95, f"KS {r['ks']:.3f}", transform=ax.transAxes, ha="right", va="top", fontsize=11,
                color="tab:red" if r["far_off"] else "black")
    for ax in list(axes.flat)[len(features):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    n = rows[features[0]]
    fig.suptitle(f"{TITLES[proc]} at 8 TeV after the single_lepton selection, normalised: parametric "
                 f"({n['n_parametric']} events) vs Pythia 8 ({n['n_pythia']} events); KS distance in red where "
                 f"far off", fontsize=16)
    fig.legend(handles, labels, loc="upper right", ncol=2, fontsize=13, bbox_to_anchor=(0.99, 0.975))
    fig.tight_layout(rect=(0, 0, 1, 0.955))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1500, help="Pythia events per process (after its lepton filter)")
    ap.add_argument("--param-factor", type=int, default=20, help="parametric events = this x --events")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.1, help="KS distance above which a feature is far off")
    ap.add_argument("--alpha", type=float, default=0.01, help="... and whose KS p-value is below this")
    ap.add_argument("--workdir", type=Path, default=None, help="reuses the generated and extracted samples found there")
    ap.add_argument("--plots", type=Path, default=None, help="folder of the PNGs (default: the workdir)")
    ap.add_argument("--dpi", type=int, default=80)
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sparkad-overlay-"))
    work.mkdir(parents=True, exist_ok=True)
    plots = args.plots or work

    from sparkad.extract.fileset import load_fileset
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.generate.api import generate
    from sparkad.train.cocktail import load_hlf

    t0 = time.time()
    frames, features = {}, None
    for eng in ENGINES:
        n = args.events * (args.param_factor if eng == "parametric" else 1)
        fileset = work / eng / "gen" / "fileset.yaml"
        t1 = time.time()
        if not fileset.exists():
            generate(config(eng, n, args.seed), out_dir=work / eng / "gen", workers=args.workers, progress=False)
        t_gen = time.time() - t1
        hlf = work / eng / "hlf"
        t1 = time.time()
        if not (hlf / "_report.json").exists():
            run_extraction(load_fileset(fileset), ExtractOptions.from_conf(
                hlf, feature_set="alad24", selection="single_lepton", executor="futures", workers=args.workers,
                progress=False), log=lambda m: None)
        t_ext = time.time() - t1
        df, report = load_hlf(hlf)
        features = list(report["features"])
        frames[eng] = df
        print(json.dumps({"what": "sample", "engine": eng, "events_per_process": n,
                          "selected": {p: int((df.dataset == p).sum()) for p in PROCESSES},
                          "generate_s": round(t_gen, 1), "extract_s": round(t_ext, 1)}), flush=True)

    rows, far = {}, {}
    for p in PROCESSES:
        sub = {e: frames[e][frames[e].dataset == p] for e in ENGINES}
        rows[p] = {}
        for f in features:
            r = {"what": "overlay", "process": p, "feature": f,
                 **compare(sub["parametric"][f].to_numpy(), sub["pythia"][f].to_numpy(), f)}
            r["far_off"] = r["ks"] > args.threshold and r["ks_p"] < args.alpha
            rows[p][f] = r
            print(json.dumps(r), flush=True)
        far[p] = [[f, round(r["ks"], 4)] for f, r in sorted(rows[p].items(), key=lambda kv: -kv[1]["ks"])
                  if r["far_off"]]
        if not args.no_plots:
            plot_process(p, {e: sub[e] for e in ENGINES}, features, rows[p], plots / f"overlay_{p}.png", args.dpi)

    print("\n| feature | " + " | ".join(f"{p}: KS (p) | {p}: mean param. / Pythia" for p in PROCESSES) + " |")
    print("|---|" + "---|---|" * len(PROCESSES))
    for f in features:
        cells = []
        for p in PROCESSES:
            r = rows[p][f]
            ks = f"**{r['ks']:.3f}**" if r["far_off"] else f"{r['ks']:.3f}"
            cells += [f"{ks} ({r['ks_p']:.1e})", f"{r['mean_parametric']:.3g} / {r['mean_pythia']:.3g}"]
        print(f"| {f} | " + " | ".join(cells) + " |")
    print()
    print(json.dumps({"what": "summary", "threshold": args.threshold, "alpha": args.alpha, "far_off": far,
                      "selected": {p: {e: rows[p][features[0]][f"n_{e}"] for e in ENGINES} for p in PROCESSES},
                      "plots": None if args.no_plots else [str(plots / f"overlay_{p}.png") for p in PROCESSES],
                      "total_s": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
