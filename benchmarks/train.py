"""Training benchmark: events/s per model on this machine (CPU, or GPU when TensorFlow sees one), and the
time until the validation AUC of a held-out anomaly (tt̄ or a BSM benchmark) versus the SM validation
sample is stable.

    python benchmarks/train.py [--events 200000] [--epochs 10] [--models ae,alad] [--workdir DIR]

Generates the `sm13` preset (SM cocktail + four BSM samples), extracts `vae21`, trains each model epoch by
epoch (each call resumes the previous checkpoint) and prints one JSON line per epoch and a summary per model.

The limit in the same run: the summary gives the matrix-product FLOPs of one training step per event
(forward and backward of every network the step evaluates, counted on the traced TensorFlow graph: 2·M·K·N
per MatMul), this core's sustained float32 GEMM rate (benchmarks/score.py's ``gemm_limit``, one thread),
and the training rate as a fraction of that limit times the threads TensorFlow used.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml


def train_step_flops(kind: str, n_inputs: int, model_cfg: dict, batch: int) -> float:
    """Matrix-product FLOPs per event of one training step of ``kind`` (its ``train_step`` traced at
    ``batch`` events: the forward passes, the gradients, every optimiser phase of the step). The spectral
    norms' power iterations (per batch, in conditional branches) and the element-wise work are left out."""
    import tensorflow as tf

    from sparkad.train.models import make_model

    model = make_model(kind, n_inputs, dict(model_cfg), 1)
    for opt, variables in model.optimizers().values():
        opt.build(variables)
    strategy = tf.distribute.get_strategy()

    @tf.function
    def step(x, w):
        return strategy.run(lambda x, w: model.train_step(x, w, batch), args=(x, w))

    graph = step.get_concrete_function(tf.TensorSpec([batch, n_inputs], tf.float32),
                                       tf.TensorSpec([batch], tf.float32)).graph
    total = 0
    for op in graph.get_operations():
        if op.type == "MatMul":
            a, b = (t.shape.as_list() for t in op.inputs[:2])
            ta, tb = op.get_attr("transpose_a"), op.get_attr("transpose_b")
            m, k = (a[1], a[0]) if ta else (a[0], a[1])
            n = b[0] if tb else b[1]
            total += 2 * m * k * n
    return total / batch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--models", default="ae,alad")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="override the model's batch size (ALAD scales its LR)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sparkad-train-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    from sparkad.train.cocktail import build_training_data, load_hlf
    from sparkad.evaluate.metrics import auc
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.extract.fileset import load_fileset
    from sparkad.generate.api import generate
    from sparkad.train.api import resolve_config, train_from_config

    hlf = work / "hlf"
    if not (hlf / "_report.json").exists():
        fs = generate("sm13", n_events=args.events, out_dir=work / "gen", seed=11, progress=False, workers=2)
        run_extraction(load_fileset(fs), ExtractOptions.from_conf(hlf, feature_set="vae21", executor="futures",
                                                                   progress=False), log=lambda m: None)
    sm = ["wjets", "qcd", "dyjets", "ttbar"]
    cfg_file = work / "train.yaml"
    cfg_file.write_text(yaml.safe_dump({"cocktail": {"background": sm}}))
    df, report = load_hlf(hlf)
    anomalies = [d for d in report["datasets"] if d not in sm] + ["ttbar"]

    try:
        import tensorflow as tf
        device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    except ImportError:
        device = "CPU"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from score import gemm_limit  # benchmarks/score.py: one thread's float32 GEMM rate, 2048² products

    limit = gemm_limit()
    print(json.dumps({"what": "limit", "gemm_float32_gflops_one_thread": round(limit / 1e9, 1),
                      "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}), flush=True)
    for kind in args.models.split(","):
        cocktail, training = resolve_config(kind, cfg_file)
        data = build_training_data(df, report, cocktail)
        out = work / f"model_{kind}"
        aucs = []

        def on_epoch(record, score):
            bkg = score(data.x_val)
            main_score = {"alad": "l2", "ae": "mse", "vae": "nll"}[kind]
            per = {a: round(auc(bkg[main_score], score(df[df.dataset == a][data.features].to_numpy())[main_score]), 4)
                   for a in anomalies}
            aucs.append(float(np.mean(list(per.values()))))
            print(json.dumps({"model": kind, "epoch": record["epoch"], "train_seconds": record["train_seconds"],
                              "score": main_score, "auc": per, "val": {k: v for k, v in record.items() if k.startswith("val_")}}),
                  flush=True)

        train_from_config(kind, hlf, out, config_file=cfg_file, epochs=args.epochs, progress=False, log=lambda m: None,
                          on_epoch=on_epoch, batch_size=args.batch_size)
        n_events = data.x_train.shape[0]
        stable = next((i + 1 for i in range(len(aucs)) if all(abs(a - aucs[-1]) < 0.01 for a in aucs[i:])), len(aucs))
        hist = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
        per_epoch_s = np.array([h["epoch_s"] for h in hist])
        batch = args.batch_size or training.get("batch_size")
        rate = n_events / float(np.median(per_epoch_s))
        n_inputs = json.loads((out / "model.json").read_text())["n_inputs"]  # after pre-processing (one-hot)
        flops = train_step_flops(kind, n_inputs, training.get("model") or {}, int(batch))
        threads = int(training.get("threads") or os.cpu_count())
        print(json.dumps({"what": "summary", "model": kind, "device": device,
                          "batch_size": batch, "threads": threads,
                          "train_events": n_events, "events_per_s": round(rate),
                          "train_step_flops_per_event": round(flops),
                          "gflops": round(rate * flops / 1e9, 2),
                          # on a GPU the CPU's GEMM rate is no limit: the fraction is printed for CPUs only
                          "fraction_of_gemm_limit": round(rate * flops / (limit * threads), 4) if device == "CPU" else None,
                          "epochs": len(hist), "mean_auc_last": round(float(aucs[-1]), 4),
                          "epochs_to_stable_auc": stable,
                          "seconds_to_stable_auc": round(float(np.sum(per_epoch_s[:stable])), 2)}))


if __name__ == "__main__":
    main()
