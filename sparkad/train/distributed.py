"""One worker of a multi-worker training run: ``python -m sparkad.train.distributed`` with ``TF_CONFIG`` set.

Started once per Spark barrier task by ``jobs/train.py`` (the pattern of Spark's TorchDistributor:
the task gathers every task's address, builds TF_CONFIG and starts one training process). The worker
trains under ``tf.distribute.MultiWorkerMirroredStrategy`` with the same loop as a local run; worker 0
(the chief) writes the model directory, the others write to ``OUT/_workers/<i>`` and the job removes it.
The last line printed is a JSON summary with a hash of the worker's final weights.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np


def weights_hash(model_dir) -> str:
    """sha256 over the exported weights (names and bytes), to compare workers' final states (a local
    folder or a published s3:// model directory)."""
    import io

    from sparkad.core import storage

    loc = storage.location(model_dir)
    src = io.BytesIO(storage.read_bytes(storage.join(loc, "networks.npz"))) if storage.is_remote(loc) \
        else Path(loc) / "networks.npz"
    h = hashlib.sha256()
    with np.load(src) as z:
        for k in sorted(z.files):
            h.update(k.encode())
            h.update(np.ascontiguousarray(z[k]).tobytes())
    return h.hexdigest()


def peer_lost(e: BaseException) -> str:
    """One line for a training step whose collective op was aborted because a peer worker went away."""
    text = str(getattr(e, "message", e))
    why = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("Collective ops is aborted by")), None)
    peer = re.search(r"remote target (/job:\w+/replica:\d+/task:\d+)", text)
    return (f"lost a peer worker{f' ({peer.group(1)})' if peer else ''} in mid-training "
            f"({why or type(e).__name__}); the model directory was not completed")


def worker_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m sparkad.train.distributed")
    ap.add_argument("--model", required=True)
    ap.add_argument("--hlf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--train-on-data", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = worker_args(argv)
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    index = int(tf_config.get("task", {}).get("index", 0))
    n_workers = len(tf_config.get("cluster", {}).get("worker", [])) or 1
    import tensorflow as tf

    from sparkad.core.errors import SparkadError
    from sparkad.train.api import train_from_config

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from sparkad.core import storage
    remote = storage.is_remote(storage.location(args.out))
    if index == 0:  # the chief writes the model directory (an s3:// one through its node's work folder)
        out = args.out if remote else Path(args.out)
    elif remote:  # the others' folders stay on their nodes, one per URI and worker (a re-run there resumes)
        from sparkad.model.store import work_root
        out = work_root() / f"{hashlib.sha256(args.out.encode()).hexdigest()[:16]}-worker{index}"
    else:
        out = Path(args.out) / "_workers" / str(index)
    try:
        doc = train_from_config(args.model, args.hlf, out, config_file=args.config, epochs=args.epochs,
                                batch_size=args.batch_size, train_on_data=args.train_on_data, strategy=strategy, progress=False,
                                shard=(index, n_workers) if n_workers > 1 else None,
                                log=lambda m: print(m, file=sys.stderr))
    except SparkadError as e:
        print(json.dumps({"worker": index, "ok": False, "error": str(e)}))
        return 1
    except (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError) as e:
        # a collective op aborted: another worker is gone (killed, out of memory, its node lost)
        print(json.dumps({"worker": index, "ok": False, "error": peer_lost(e)}))
        return 1
    digest = weights_hash(out)
    if remote and index != 0:
        import shutil
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"worker": index, "ok": True, "out": str(out), "weights_sha256": digest,
                      "replicas": doc["config"]["replicas"], "epochs": doc["history"]["epochs"],
                      "shard": doc["provenance"].get("shard"), "n_train_local": doc["provenance"]["n_train"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
