"""spark-submit entry point for distributed training (a barrier stage of N TensorFlow workers).

    spark-submit --master local[2] jobs/train.py --model ae --hlf HLF --out MODEL_DIR --workers 2
    python jobs/train.py --model ae --hlf HLF --out MODEL_DIR --workers 1        # same code, no Spark

Each barrier task gathers the executors' addresses, builds TF_CONFIG and starts one training process
(`python -m sparkad.train.distributed`); worker 0 writes MODEL_DIR. The job checks that every worker ended with
identical weights and prints one JSON summary line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, choices=["ae", "alad", "vae"])
    ap.add_argument("--hlf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--master", default=None, help="Spark master when not launched by spark-submit")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    return args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def barrier_task(worker_cmd: list[str], threads: int):
    """The function run by every barrier task (on the executors)."""

    def run(_):
        from pyspark import BarrierTaskContext

        ctx = BarrierTaskContext.get()
        host = ctx.getTaskInfos()[ctx.partitionId()].address.rsplit(":", 1)[0] or "127.0.0.1"
        addresses = ctx.allGather(f"{host}:{_free_port()}")
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": ctx.partitionId()}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), OMP_NUM_THREADS=str(threads),
                   TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
        proc = subprocess.run(worker_cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        summary = json.loads(lines[-1]) if lines else {"worker": ctx.partitionId(), "ok": False}
        summary.update(returncode=proc.returncode, stderr_tail=proc.stderr[-1500:] if proc.returncode else "")
        ctx.barrier()
        yield json.dumps(summary)

    return run


def main(argv=None) -> int:
    args = parse(argv)
    # the installed sparkad, as on the executors (never a checkout ahead of it on sys.path)
    from sparkad.core.runtime import setup_process
    setup_process()
    from sparkad.core.errors import SparkadError

    try:
        if args.workers == 1 and not args.master and "SPARK_ENV_LOADED" not in os.environ:
            from sparkad.train.api import train_from_config
            doc = train_from_config(args.model, args.hlf, args.out, config_file=args.config, epochs=args.epochs,
                                    batch_size=args.batch_size, progress=False)
            print(json.dumps({"ok": True, "workers": 1, "out": args.out, "epochs": doc["history"]["epochs"]}))
            return 0
        from sparkad.core.spark import get_session
        spark = get_session("sparkad-train", args.master,
                            {"spark.task.cpus": "1", "spark.python.worker.reuse": "false"})
        cmd = [sys.executable, "-m", "sparkad.train.distributed", "--model", args.model, "--hlf", str(Path(args.hlf).resolve()),
               "--out", str(Path(args.out).resolve())]
        for flag, val in (("--config", args.config), ("--epochs", args.epochs), ("--batch-size", args.batch_size)):
            if val is not None:
                cmd += [flag, str(Path(val).resolve()) if flag == "--config" else str(val)]
        rdd = spark.sparkContext.parallelize(range(args.workers), args.workers)
        results = [json.loads(r) for r in rdd.barrier().mapPartitions(barrier_task(cmd, threads=1)).collect()]
        spark.stop()
    except SparkadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    bad = [r for r in results if not r.get("ok")]
    if bad:
        for r in bad:
            print(f"error: worker {r.get('worker')}: {r.get('error') or r.get('stderr_tail', '').strip().splitlines()[-1:]}",
                  file=sys.stderr)
        return 1
    hashes = {r["weights_sha256"] for r in results}
    shutil.rmtree(Path(args.out) / "_workers", ignore_errors=True)
    summary = {"ok": len(hashes) == 1, "workers": len(results), "identical_weights": len(hashes) == 1,
               "weights_sha256": sorted(hashes), "out": args.out, "replicas": results[0].get("replicas"),
               "shards": [r.get("shard") for r in results], "n_train_per_worker": [r.get("n_train_local") for r in results]}
    print(json.dumps(summary))
    if len(hashes) != 1:
        print("error: workers ended with different weights", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
