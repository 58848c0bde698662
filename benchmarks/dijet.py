"""Dijet benchmark (seeds/004): the per-jet VAE against simple references, and the bump hunt before and after
the anomaly selection, on an independent Pythia 8 simulation.

    python benchmarks/dijet.py [--qcd 20000] [--signal 3000] [--masses 1500,2500,3500] [--epochs 30]
                               [--workers 2] [--injections 0.002,0.005,0.01] [--efficiency 0.1] [--workdir DIR]
                               [--pictures docs/img]

1. `sparkad generate` with the Pythia dijet engine (13 TeV, anti-kT R = 0.8, soft drop, N-subjettiness):
   QCD with pT-hat > 600 GeV, G -> WW at each mass and G -> tt̄ at the first mass (timed: events/s);
   `sparkad extract --analysis dijet` (timed);
2. `sparkad train --model jet_vae` on the QCD |Δη| sideband (timed), then `sparkad evaluate`: AUC and TPR at
   FPR 10 %, 1 %, 0.1 % per loss strategy and signal, beside τ21 and the Mahalanobis / PCA / isolation-forest
   references fitted on the same sideband;
3. scoring rates: the exported numpy networks (jet images built from the constituents + encoder + decoder)
   against Keras' own predict on the same jets, in this process, on one core (`OMP/TF threads = 1`); the bare
   event rate of the scoring kernel (both jets, every strategy), and `sparkad score --engine spark` (local[2],
   all products) over every event, its rate per core as a fraction of the bare rate;
4. the bump hunt: QCD's signal region split in two halves (one fits L_T(mjj), the other is the pseudo-data),
   each G -> WW signal injected at the given fractions of the pseudo-data; the largest excess's local Z of the
   dijet-function fit before and after the selection `both > L_T(mjj)` at the given background efficiency,
   and after the same selection on the physics reference −(τ21_J1 + τ21_J2) with its own L_T(mjj).

Prints JSON lines (`what`: timing, auc, rate, bump) and a Markdown summary; every number is measured here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PAPER = {"best_strategy": "both", "statement": "both jets above L_T gives the best ROC for signal efficiencies "
                                               "above 1e-4 (seeds/004 Fig. 5); a 3 sigma excess becomes 4-5 sigma "
                                               "after the VAE selection (Figs. 7, 10)"}


def emit(**kv):
    print(json.dumps(kv, default=float), flush=True)


def run(*args):
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "sparkad.cli", *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"sparkad {' '.join(map(str, args))} failed:\n{r.stderr[-2000:]}")
    return time.time() - t, r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qcd", type=int, default=20000)
    ap.add_argument("--signal", type=int, default=3000)
    ap.add_argument("--masses", default="1500,2500,3500")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--injections", default="0.002,0.005,0.01")
    ap.add_argument("--efficiency", type=float, default=0.1)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--pictures", default=None, help="Folder for the average jet images and the ROC plots.")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="sparkad_dijet_"))
    work.mkdir(parents=True, exist_ok=True)
    masses = [float(m) for m in a.masses.split(",")]
    preset = {"name": "bench_dijet", "engine": "pythia_dijet", "sqrt_s": 13000, "seed": 2024, "luminosity": 1000.0,
              "max_events_per_file": max(1000, a.qcd // (2 * a.workers)), "chunk_size": 1000,
              "samples": {"qcd": {"process": "qcd_dijet", "events": a.qcd},
                          **{f"g_ww_{m / 1000:g}tev": {"process": "rsg_ww", "events": a.signal, "params": {"mass": m}}
                             for m in masses},
                          f"g_tt_{masses[0] / 1000:g}tev": {"process": "rsg_tt", "events": a.signal,
                                                            "params": {"mass": masses[0]}}}}
    import yaml

    gen, hlf, model, ev = work / "gen", work / "hlf", work / "model", work / "eval"
    n_events = a.qcd + a.signal * (len(masses) + 1)
    if not (gen / "fileset.yaml").exists():
        (work / "preset.yaml").write_text(yaml.safe_dump(preset))
        dt, _ = run("generate", "--preset", work / "preset.yaml", "--out", gen, "--workers", a.workers, "--quiet")
        emit(what="timing", step="generate", seconds=dt, events=n_events, workers=a.workers,
             events_per_s_per_worker=n_events / dt / a.workers)
    if not (hlf / "_report.json").exists():
        dt, _ = run("extract", "--fileset", gen / "fileset.yaml", "--analysis", "dijet", "--out", hlf, "--quiet")
        emit(what="timing", step="extract", seconds=dt, events=n_events, events_per_s=n_events / dt)
    if not (model / "model.json").exists():
        dt, _ = run("train", "--model", "jet_vae", "--hlf", hlf, "--out", model, "--epochs", a.epochs, "--quiet")
        doc = json.loads((model / "model.json").read_text())
        emit(what="timing", step="train", seconds=dt, epochs=a.epochs, jets=doc["provenance"]["n_train_jets"],
             jets_per_s=doc["provenance"]["n_train_jets"] * a.epochs / doc["provenance"]["train_seconds"],
             val_loss=doc["history"]["last"].get("val_loss"))
    run("evaluate", "--model", model, "--hlf", hlf, "--out", ev)
    res = json.loads((ev / "dijet_evaluation.json").read_text())
    for r in res["rows"]:
        emit(what="auc", signal=r["signal"], score=r["score"], kind=r["kind"], auc=r["auc"],
             tpr_at_fpr_0_01=r["tpr_at_fpr_0.01"], tpr_at_fpr_0_001=r["tpr_at_fpr_0.001"])
    for sig, b in res["best"].items():
        emit(what="verdict", signal=sig, **b)
    if a.pictures:
        pictures(hlf, Path(a.pictures), ev)
    bare = rates(model, hlf)
    spark_rate(model, hlf, work, bare)
    bumps(model, hlf, masses, [float(x) for x in a.injections.split(",")], a.efficiency)
    print(f"\n{PAPER['statement']}\nresults in {work}")


def pictures(hlf, out: Path, ev: Path):
    """The average jet image (jet 1) of each sample, log colour scale, and the evaluation's ROC plots."""
    import shutil

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep
    from matplotlib.colors import LogNorm

    from sparkad.evaluate.dijet import read_dataset
    from sparkad.model.jet_images import constituents_of, jet_images

    out.mkdir(parents=True, exist_ok=True)
    hep.style.use("CMS")
    names = sorted(p.name for p in Path(hlf).iterdir() if p.is_dir() and not p.name.startswith("_"))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 5))
    for ax, name in zip(np.atleast_1d(axes), names):
        img = jet_images(*constituents_of(read_dataset(hlf, name).slice(0, 5000), 1))[0].mean(axis=0)
        ax.imshow(img, origin="lower", extent=[-0.4, 0.4, -0.4, 0.4], norm=LogNorm(vmin=1e-5, vmax=1), cmap="viridis")
        ax.set_title(name, fontsize=16)
        ax.set_xlabel(r"$\Delta\phi$", fontsize=14)
        ax.set_ylabel(r"$\Delta\eta$", fontsize=14)
        ax.tick_params(labelsize=10)
    fig.tight_layout()
    fig.savefig(out / "jet_images.png", dpi=70)
    plt.close(fig)
    for p in Path(ev).glob("roc_*.png"):
        shutil.copy(p, out / f"dijet_{p.name}")


def rates(model, hlf):
    """Jets per second of the exported numpy network and of Keras on the same jets, one thread each."""
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    from threadpoolctl import threadpool_limits

    from sparkad.evaluate.dijet import read_dataset
    from sparkad.model.jet_vae import JetVAEScorer

    s = JetVAEScorer(model)
    t = read_dataset(hlf, "qcd").slice(0, 2000)
    with threadpool_limits(1):
        s.score_jets(s.images(t.slice(0, 64), 1))  # warm: numba's compilation, the first buffers
        t0 = time.perf_counter()
        img = s.images(t, 1)
        t_img = time.perf_counter() - t0
        t0 = time.perf_counter()
        s.score_jets(img)
        t_np = time.perf_counter() - t0
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from sparkad.train.jet_vae import build

    m = s.meta["config"]
    enc, dec = build(int(s.image["n_pixels"]), m["filters"], int(m["dense"]), int(m["latent"]), 0)
    x = img[..., None]
    enc.predict(x[:10], verbose=0)
    t0 = time.perf_counter()
    stats = enc.predict(x, batch_size=512, verbose=0)
    dec.predict(stats[:, : int(m["latent"])], batch_size=512, verbose=0)
    t_keras = time.perf_counter() - t0
    n = len(img)
    # the limit: this core's float32 GEMM rate (one thread), times the network's multiply-adds per jet
    flops = 2.0 * sum(int(np.prod(op["w"].shape)) for net in s.nets.values() for op in net if op["op"] == "dense")
    flops += 2.0 * sum(int(np.prod(op["w"].shape)) * _pixels(net, i, int(s.image["n_pixels"]))
                       for net in s.nets.values() for i, op in enumerate(net) if op["op"] == "conv2d")
    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    with threadpool_limits(1):
        a @ a
        t0 = time.perf_counter()
        for _ in range(5):
            a @ a
        gemm = 5 * 2.0 * 1024 ** 3 / (time.perf_counter() - t0)
    emit(what="rate", jets=n, images_per_s=n / t_img, numpy_jets_per_s=n / t_np, keras_jets_per_s=n / t_keras,
         numpy_over_keras=t_keras / t_np, flops_per_jet=flops, gemm_flops_per_s=gemm,
         numpy_fraction_of_gemm_limit=flops * n / t_np / gemm, keras_fraction_of_gemm_limit=flops * n / t_keras / gemm)
    keras.backend.clear_session()
    # the bare in-process event rate of the scoring pass's kernel: both jets' images and losses, all strategies
    with threadpool_limits(1):
        s.score_arrow(t.slice(0, 100))
        t0 = time.perf_counter()
        s.score_arrow(t)
        bare = t.num_rows / (time.perf_counter() - t0)
    emit(what="rate", step="bare_events", events=t.num_rows, events_per_s=bare)
    return bare


def spark_rate(model, hlf, work: Path, bare: float):
    """`sparkad score --engine spark` over every event of the HLF folder (jet images built in the workers)
    with all products, against the bare in-process event rate measured above."""
    out = work / "scores_spark"
    dt, _ = run("score", "--engine", "spark", "--master", "local[2]", "--hlf", hlf, "--model", model, "--out", out,
                "--scores", "all")
    rep = json.loads((out / "_score_report.json").read_text())
    n, cores, t = rep["total_events"], rep["cores"], rep["timings"]
    per_core = n / t["score_pass_s"] / cores
    emit(what="rate", step="spark_score", events=n, cores=cores, score_pass_s=t["score_pass_s"],
         products_s=t.get("products_s"), elapsed_s=rep["elapsed_s"], command_s=dt,
         pass_events_per_s_per_core=per_core, job_events_per_s_per_core=n / rep["elapsed_s"] / cores,
         bare_events_per_s=bare, pass_over_bare=per_core / bare, job_over_bare=n / rep["elapsed_s"] / cores / bare)


def _pixels(net, i, n_pixels) -> int:
    """Output pixels of the i-th op (a conv2d) of an exported network: the input size halved by every
    avgpool2 and doubled by every upsample2 before it (the decoder starts from its reshape's size)."""
    size = n_pixels
    for op in net[:i]:
        if op["op"] == "avgpool2":
            size //= 2
        elif op["op"] == "upsample2":
            size *= 2
        elif op["op"] == "reshape" and len(op["shape"]) == 3:
            size = int(op["shape"][0])
    return size * size


def bumps(model, hlf, masses, injections, efficiency):
    from sparkad.analysis.quantile_threshold import efficiency_flatness, fit_quantile_threshold
    from sparkad.evaluate.dijet import default_mjj_range, read_dataset, region
    from sparkad.model.jet_vae import JetVAEScorer

    s = JetVAEScorer(model)

    def scores(t):  # the VAE's best strategy and the physics reference, each selected by its own L_T(mjj)
        tau = t["tau21_J1"].to_numpy(zero_copy_only=False) + t["tau21_J2"].to_numpy(zero_copy_only=False)
        return {"vae_both": s.score_table(t)["both"], "tau21": np.nan_to_num(-tau.astype(np.float64), nan=-9.0)}

    qcd = region(read_dataset(hlf, "qcd"), True)
    q_mjj = qcd["mjj"].to_numpy().astype(np.float64)
    q_scores = scores(qcd)
    rng = np.random.default_rng(5)
    half = rng.permutation(len(q_mjj))
    fit_idx, data_idx = half[: len(half) // 2], half[len(half) // 2:]
    lo, hi = default_mjj_range(q_mjj)
    edges = np.linspace(lo, max(hi, max(masses) * 1.2), 31)
    lts = {}
    for name, q_score in q_scores.items():
        lts[name] = fit_quantile_threshold(q_mjj[fit_idx], q_score[fit_idx], efficiency)
        flat = efficiency_flatness(q_mjj[data_idx], lts[name].selects(q_mjj[data_idx], q_score[data_idx]), edges)
        emit(what="flatness", score=name, efficiency=efficiency, chi2=flat["chi2"], ndf=flat["ndf"],
             p_value=flat["p_value"], mean=flat["mean"])
    for m in masses:
        sig = region(read_dataset(hlf, f"g_ww_{m / 1000:g}tev"), True)
        s_mjj = sig["mjj"].to_numpy().astype(np.float64)
        s_scores = scores(sig)
        for f in injections:
            k = min(len(s_mjj), int(round(f * len(data_idx))))
            pick = rng.choice(len(s_mjj), k, replace=False)
            mjj = np.r_[q_mjj[data_idx], s_mjj[pick]]
            row = {"before": _z(edges, mjj)}
            for name in q_scores:
                sel = lts[name].selects(mjj, np.r_[q_scores[name][data_idx], s_scores[name][pick]])
                row[f"after_{name}"] = {**_z(edges, mjj[sel]), "n_selected": int(sel.sum()),
                                        "signal_selected": int(lts[name].selects(s_mjj[pick], s_scores[name][pick]).sum())}
            emit(what="bump", mass=m, injected_fraction=f, n_signal=k, **row)


def _z(edges, x) -> dict:
    from sparkad.analysis.bump_hunt import sliding_window

    try:
        r = sliding_window(edges, np.histogram(x, edges)[0], 13000.0, n_toys=0)
        return {"z_local": r["z_local"], "window": r["window"]}
    except ValueError as e:
        return {"error": str(e)}


if __name__ == "__main__":
    main()
