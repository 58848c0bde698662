"""Generator throughput: events/s per core written to ROOT (one JSON line on stdout).

usage: python benchmarks/generate.py [N] [--preset NAME] [--workers K] [--compression zlib:4] [--keep DIR]

Generates N events (default 1e6) of the preset (default: default; the data-like W/DY/ttbar mix and the
MC samples in the preset's proportions), one worker process per core, and reports wall time, events/s,
events/s per core, bytes per event and the total file size.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=float, default=1e6, help="number of events (default 1e6)")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--compression", default=None, help="override, e.g. zlib:1, lzma:1, lz4:1, zstd:3")
    ap.add_argument("--max-per-file", type=int, default=250_000)
    ap.add_argument("--keep", default=None, help="write into this directory and keep the files")
    args = ap.parse_args(argv)

    from sparkad.generator.api import generate

    n = int(args.n)
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sparkad-genbench-"))
    overrides = {"max_events_per_file": args.max_per_file}
    if args.compression:
        overrides["compression"] = args.compression
    try:
        t0 = time.perf_counter()
        fs = generate(args.preset, n_events=n, out_dir=out, workers=args.workers, progress=False, **overrides)
        wall = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in out.glob("*.root"))
        cpu = os.times()
        res = {
            "benchmark": "generate", "preset": args.preset, "events": n, "workers": args.workers,
            "wall_s": round(wall, 3), "events_per_s": round(n / wall, 1),
            "events_per_s_per_core": round(n / wall / args.workers, 1),
            "cpu_s": round(cpu.user + cpu.system + cpu.children_user + cpu.children_system, 3),
            "file_bytes": size, "bytes_per_event": round(size / n, 1),
            "compression": overrides.get("compression", "preset"), "fileset": str(fs) if args.keep else None,
        }
        print(json.dumps(res))
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
