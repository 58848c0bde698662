"""The weakly supervised resonant search's bump hunt (CWoLa hunting, seeds/002–003), a driver over pure functions.

`run_cwola_hunt`: a dataset's events scored by a CWoLa model (sparkad.model.cwola: each event by the fold
network that never saw it); for each efficiency ε the threshold keeping the top ε of the dataset's
signal-region events; the mjj spectra of all events and of the selected ones; on each, the dijet function
fitted to the bins outside the model's signal region and interpolated into it (`region_excess`: the
signal region's observed against expected events and their local significance), and the sliding-window
search over the whole spectrum with its global significance (sparkad.analysis.bump_hunt). A classifier that
learned the signal enriches the signal region after the cut; one that learned nothing leaves its share
unchanged. Outputs: cwola_hunt.json and mjj_spectra.png in OUT.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sparkad.core import storage
from sparkad.core.atomic import write_json_atomic
from sparkad.core.errors import SparkadError
from sparkad.evaluate.dijet import default_mjj_range, read_dataset
from sparkad.extract.dijet import read_dijet_report
from sparkad.model.cwola import ID_COLUMNS, CWoLaScorer
from sparkad.model.directory import exact_thresholds
from sparkad.model.store import local_model_dir


def run_cwola_hunt(model_dir, hlf_dir, out, dataset: str, efficiencies=(0.1, 0.01), bins: int = 30,
                   mjj_range=None, n_toys: int = 200, sqrt_s: float = 13000.0, log=print) -> dict:
    from sparkad.analysis.bump_hunt import region_excess, sliding_window

    report = read_dijet_report(hlf_dir)
    if dataset not in report["datasets"]:
        raise SparkadError(f"{hlf_dir}: no dataset {dataset!r} (datasets: {', '.join(report['datasets'])})")
    for e in efficiencies:
        if not 0 < e < 1:
            raise SparkadError(f"efficiency must be in (0, 1), got {e}")
    out = storage.checked_output(out)
    scorer = CWoLaScorer(local_model_dir(model_dir))
    t = read_dataset(hlf_dir, dataset)
    scorer.check_columns(t.column_names, f"{hlf_dir}/{dataset}")
    col = lambda c: t[c].to_numpy(zero_copy_only=False)  # noqa: E731
    x = np.column_stack([col(f).astype(np.float64) for f in scorer.features])
    score = scorer.score_columns(x, *(col(c) for c in ID_COLUMNS))
    mjj = col("mjj").astype(np.float64)
    sr = [float(v) for v in scorer.meta["signal_region"]]
    in_sr = (mjj >= sr[0]) & (mjj < sr[1]) & np.isfinite(score)
    if in_sr.sum() < 10:
        raise SparkadError(f"{hlf_dir}/{dataset}: {int(in_sr.sum())} events in the signal region {sr[0]:g}-{sr[1]:g} "
                           f"GeV: too few to hunt in")
    lo, hi = mjj_range or default_mjj_range(mjj)
    lo, hi = min(lo, sr[0] - (sr[1] - sr[0])), max(hi, sr[1] + (sr[1] - sr[0]))  # the SR with room on both sides
    edges = aligned_edges(lo, hi, bins, sr)
    res = {"dataset": dataset, "signal_region": sr, "n_events": int(len(mjj)), "n_signal_region": int(in_sr.sum()),
           "edges": edges.tolist(), "selections": {"all": {}}}
    selections = {"all": np.ones(len(mjj), bool)}
    for e in efficiencies:
        th = exact_thresholds(score[in_sr], [e * 1e6])[f"{e * 1e6:g}ppm"]
        if th["value"] is None:
            raise SparkadError(f"{hlf_dir}/{dataset}: {th['note']} in the signal region for efficiency {e:g}")
        selections[f"{e:g}"] = score > th["value"]
        res["selections"][f"{e:g}"] = {"threshold": th["value"]}
    for name, sel in selections.items():
        counts = np.histogram(mjj[sel], edges)[0]
        r = res["selections"].setdefault(name, {})
        r.update({"counts": counts.tolist(), "n_selected": int(sel.sum()), "n_selected_sr": int((sel & in_sr).sum())})
        for what, fn in (("signal_region", lambda: region_excess(edges, counts, sqrt_s, sr)),
                         ("sliding_window", lambda: sliding_window(edges, counts, sqrt_s, n_toys=n_toys, seed=1))):
            try:
                r[what] = fn()
            except ValueError as err:  # too few events for the fit: said, not hidden
                r[what] = {"error": str(err)}
                log(f"cwola hunt, {name}: {what}: {err}")
    with storage.local_output(out, markers=("cwola_hunt.json",), prefix="sparkad-bumphunt-") as local:
        write_json_atomic(res, local / "cwola_hunt.json")
        _plot(local, res)
    return res


def aligned_edges(lo: float, hi: float, bins: int, region) -> np.ndarray:
    """About `bins` equal mjj bins over [lo, hi] with the region's bounds on bin edges (a whole number of bins
    in the region), so that the region's observed count is exactly its events'."""
    width_region = float(region[1] - region[0])
    k = max(1, int(round(width_region / ((hi - lo) / bins))))
    w = width_region / k
    start = region[0] - np.ceil((region[0] - lo) / w - 1e-9) * w
    while start <= 0:
        start += w
    n = int(np.ceil((hi - start) / w - 1e-9))
    return start + w * np.arange(n + 1)


def _plot(out: Path, res: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    hep.style.use("CMS")
    edges = np.asarray(res["edges"])
    fig, ax = plt.subplots(figsize=(8, 7))
    colors = ["k", "tab:red", "tab:blue", "tab:green", "tab:purple"]
    for (name, r), c in zip(res["selections"].items(), colors):
        label = "all events" if name == "all" else f"top {float(name):g} of the SR"
        z = (r.get("signal_region") or {}).get("z_local")
        hep.histplot(np.asarray(r["counts"]), edges, ax=ax, histtype="errorbar", color=c,
                     label=label + (f" (SR Z = {z:.1f})" if z is not None else ""))
        if "expected" in (r.get("signal_region") or {}):
            ax.stairs(np.asarray(r["signal_region"]["expected"]), edges, color=c, ls="--")
    ax.axvspan(*res["signal_region"], color="0.9", zorder=0, label="signal region")
    ax.set_yscale("log")
    ax.set_xlabel("$m_{jj}$ [GeV]")
    ax.set_ylabel("events / bin")
    ax.legend(fontsize=11)
    fig.tight_layout()
    fig.savefig(out / "mjj_spectra.png", dpi=80)
    plt.close(fig)


def run_cwola_scan_hunt(scan_dir, hlf_dir, out, dataset: str, efficiency: float = 0.1, bins: int = 30,
                        n_toys: int = 0, sqrt_s: float = 13000.0, log=print) -> dict:
    """The hunt of every window of a CWoLa scan (`sparkad train --model cwola --scan`): per window, its
    signal region's observed and sideband-fit expected events before and after keeping the top `efficiency`
    of that window's SR; the window with the largest local significance after the cut is the candidate."""
    import json

    from sparkad.train.cwola import SCAN_FILE

    scan_dir, out = local_model_dir(scan_dir), storage.checked_output(out)
    try:
        scan = json.loads((scan_dir / SCAN_FILE).read_text())
    except (OSError, ValueError) as e:
        raise SparkadError(f"{scan_dir}: no readable {SCAN_FILE} (not a complete CWoLa scan: {e})") from None
    with storage.local_output(out, markers=("scan_hunt.json", "cwola_hunt.json"), prefix="sparkad-bumphunt-") as local:
        doc = _scan_hunt(scan, scan_dir, hlf_dir, local, dataset, efficiency, bins, n_toys, sqrt_s, log)
    return doc


def _scan_hunt(scan, scan_dir: Path, hlf_dir, out: Path, dataset, efficiency, bins, n_toys, sqrt_s, log) -> dict:
    rows = []
    for w in scan["windows"]:
        if "model" not in w:
            rows.append({"signal_region": w["signal_region"], "skipped": w.get("skipped")})
            continue
        res = run_cwola_hunt(scan_dir / w["model"], hlf_dir, out / w["model"], dataset, efficiencies=(efficiency,),
                             bins=bins, n_toys=n_toys, sqrt_s=sqrt_s, log=log)
        row = {"signal_region": w["signal_region"], "sr_vs_sb_auc": w["sr_vs_sb_auc"]}
        for name, key in (("all", "before"), (f"{efficiency:g}", "after")):
            g = res["selections"][name].get("signal_region") or {}
            row[key] = {k: g[k] for k in ("n_observed", "n_expected", "z_local") if k in g} or {"error": g.get("error")}
        rows.append(row)
    done = [r for r in rows if "z_local" in r.get("after", {})]
    best = max(done, key=lambda r: r["after"]["z_local"]) if done else None
    doc = {"dataset": dataset, "efficiency": efficiency, "windows": rows,
           "best": best["signal_region"] if best else None, "best_z_local": best["after"]["z_local"] if best else None}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(doc, out / "scan_hunt.json")
    if done:
        _plot_scan(out, done, efficiency)
    return doc


def _plot_scan(out: Path, rows, efficiency) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    hep.style.use("CMS")
    fig, ax = plt.subplots(figsize=(8, 6))
    centre = [0.5 * sum(r["signal_region"]) for r in rows]
    for key, c, label in (("before", "k", "all events"), ("after", "tab:red", f"top {efficiency:g} of each SR")):
        ax.plot(centre, [r[key].get("z_local", np.nan) for r in rows], "o-", color=c, label=label)
    ax.set_xlabel("signal region centre $m_{jj}$ [GeV]")
    ax.set_ylabel("local Z of the SR excess (sideband fit)")
    ax.legend(fontsize=12)
    fig.tight_layout()
    fig.savefig(out / "scan_z.png", dpi=80)
    plt.close(fig)
