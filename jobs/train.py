"""spark-submit entry point for distributed training (a barrier stage of N TensorFlow workers).

    spark-submit --master local[2] jobs/train.py --model ae --hlf HLF --out MODEL_DIR --workers 2
    python jobs/train.py --model ae --hlf HLF --out MODEL_DIR --workers 1        # same code, no Spark

Each barrier task gathers the executors' addresses, builds TF_CONFIG and starts one training process
(`python -m sparkad.train.distributed`); worker 0 writes MODEL_DIR. The job checks that every worker ended with
identical weights and prints one JSON summary line. The options are those of `sparkad train` (declared
once, in sparkad/cli.py), plus --workers and --master.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click

# the installed sparkad, as on the executors (never a checkout ahead of it on sys.path)
from sparkad.cli import train_options
from sparkad.core.errors import SparkadError
from sparkad.core.commands import run_command
from sparkad.core.errors import one_line_errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception))(?:: (.*))?$")


def _last_error_line(stderr: str) -> str | None:
    """The last exception line (``module.SomeError: message``) of a worker's stderr, without the module."""
    for line in reversed(stderr.splitlines()):
        m = _EXCEPTION_LINE.match(line.strip())
        if m:
            return f"{m.group(1)}: {m.group(2)}" if m.group(2) else m.group(1)
    return None


def _failure(r: dict) -> str:
    """Why a TensorFlow worker failed, in one line: its own error, the signal that killed its process, or
    the last exception line of its stderr."""
    if r.get("error"):
        return r["error"]
    rc = r.get("returncode")
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"killed by {name} (its process died: out of memory, or killed on its node)"
    if r.get("error_line"):
        return f"exited with code {rc}: {r['error_line'][:300]}"
    return f"exited with code {rc} without an error message"


def barrier_task(index: int, job: dict) -> dict:
    """One barrier task (on an executor): gather the executors' addresses, start the training process
    of worker ``index`` with its TF_CONFIG, return its JSON summary."""
    from pyspark import BarrierTaskContext

    ctx = BarrierTaskContext.get()
    host = ctx.getTaskInfos()[ctx.partitionId()].address.rsplit(":", 1)[0] or "127.0.0.1"
    addresses = ctx.allGather(f"{host}:{_free_port()}")
    tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
    threads = str(job["threads"])
    env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), OMP_NUM_THREADS=threads,
               TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS=threads)
    proc = subprocess.run(job["cmd"], env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {"worker": index, "ok": False}
    summary.update(returncode=proc.returncode, stderr_tail=proc.stderr[-1500:] if proc.returncode else "",
                   error_line=_last_error_line(proc.stderr) if proc.returncode else None)
    ctx.barrier()
    return summary


@click.command(help=__doc__.splitlines()[0])
@train_options
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="TensorFlow workers (Spark barrier tasks); 1 without --master trains in this process.")
@click.option("--master", help="Spark master, only when not launched by spark-submit.")
@one_line_errors
def train_job(kind, hlf_dir, out, config_file, epochs, batch_size, train_on_data, signal_region, scan, workers, master):
    from sparkad.core.runtime import setup_process
    setup_process()

    if scan:
        raise SparkadError("--scan: run `sparkad train --model cwola --scan ...` (one process)")
    one_process = kind in ("jet_vae", "cwola", "cathode")  # the dijet models train in the driver's process
    if one_process and workers > 1:
        raise SparkadError(f"--model {kind} trains in one process: give --workers 1")
    if (workers == 1 and not master and "SPARK_ENV_LOADED" not in os.environ) or one_process:
        from sparkad.train.api import train_from_config
        doc = train_from_config(kind, hlf_dir, out, config_file=config_file, epochs=epochs, batch_size=batch_size,
                                train_on_data=train_on_data, signal_region=signal_region, progress=False)
        epochs_run = doc["history"]["epochs"] if "epochs" in doc["history"] else \
            sum(f["epochs"] for f in doc["history"]["folds"])
        print(json.dumps({"ok": True, "workers": 1, "out": out, "epochs": epochs_run}))
        return
    from sparkad.core import storage
    from sparkad.core.spark import get_session, map_tasks
    spark = get_session("sparkad-train", master, {"spark.task.cpus": "1", "spark.python.worker.reuse": "false"})
    # local folders made absolute (executors run elsewhere); s3:// URIs as they are: worker 0 trains into a local
    # work folder of its node and publishes the model directory marker-last (sparkad.model.store)
    cmd = [sys.executable, "-m", "sparkad.train.distributed", "--model", kind,
           "--hlf", str(storage.absolute(hlf_dir)), "--out", str(storage.absolute(out))]
    for flag, val in (("--config", config_file), ("--epochs", epochs), ("--batch-size", batch_size)):
        if val is not None:
            cmd += [flag, str(Path(val).resolve()) if flag == "--config" else str(val)]
    if train_on_data:
        cmd.append("--train-on-data")
    # one barrier stage of `workers` tasks through the DataFrame API: classic and Spark Connect (sc://) sessions
    results = map_tasks(spark, barrier_task, list(range(workers)), {"cmd": cmd, "threads": 1}, barrier=True)
    spark.stop()
    bad = [r for r in results if not r.get("ok")]
    if bad:
        for r in bad:
            print(f"error: worker {r.get('worker')}: {_failure(r)}", file=sys.stderr)
        sys.exit(1)
    hashes = {r["weights_sha256"] for r in results}
    if not storage.is_remote(storage.location(out)):  # on s3 the other workers' folders were local to their nodes
        shutil.rmtree(Path(out) / "_workers", ignore_errors=True)
    summary = {"ok": len(hashes) == 1, "workers": len(results), "identical_weights": len(hashes) == 1,
               "weights_sha256": sorted(hashes), "out": out, "replicas": results[0].get("replicas"),
               "shards": [r.get("shard") for r in results], "n_train_per_worker": [r.get("n_train_local") for r in results]}
    print(json.dumps(summary))
    if len(hashes) != 1:
        print("error: workers ended with different weights", file=sys.stderr)
        sys.exit(1)


def main(argv=None) -> int:
    return run_command(train_job, argv)


if __name__ == "__main__":
    sys.exit(main())
