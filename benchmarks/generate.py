"""Generator throughput vs extraction: events/s per core written to ROOT, and the extraction rate of the
same events (issue 3 goal: generation >= 2x extraction, so the generator is never the bottleneck).

usage: python benchmarks/generate.py [--events 1e6] [--preset P | --process wjets] [--compression lz4:1]
                                     [--chunksize 500000] [--repeat 3] [--workers K] [--workdir DIR]
                                     [--no-extract]

One sample (a single MC process, default wjets, or the data-like sample of a preset) is generated into
ONE ROOT file by one worker (timed: generation + detector simulation + ROOT writing and compression),
then `sparkad extract` (coffea iterative executor, feature set cms2012, one core) runs on that file
(timed by benchmarks/extract.py's `extraction`). Generation and extraction alternate; both rates are
medians of `--repeat` runs, and `ratio_per_pair` gives each run's generation / extraction ratio. Numba
kernels are compiled / loaded from the cache by a small warm-up run first (start-up cost, reported
separately). Prints one JSON line per measurement and a final summary line.
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


def _gen_config(args) -> dict:
    if args.preset:
        from sparkad.generate.api import _raw_preset

        raw = _raw_preset(args.preset)
        data = [k for k, s in raw["samples"].items() if s.get("data_like")]
        keep = data[:1] or list(raw["samples"])[:1]
        samples = {k: v for k, v in raw["samples"].items() if k in keep}
        # data-like mixes referencing MC samples by name need them in the config (0 events: not generated)
        mix = samples[keep[0]].get("mix") or []
        for ref in (mix if isinstance(mix, list) else list(mix)):
            if ref in raw["samples"] and ref not in samples:
                samples[ref] = {**raw["samples"][ref]}
        raw["samples"] = samples
        raw["name"] = f"bench-{args.preset}"
        return raw, keep[0]
    return {"name": "bench", "sqrt_s": 8000, "seed": 1,
            "samples": {args.process: {"process": args.process, "events": 1}}}, args.process


class _StageTimer:
    """Wraps the generator's stage functions for one run and adds up their wall time. Compression is
    timed on uproot's own calls inside the writer (`uproot.compression.compress`, the bytes exactly as
    written: branch contents, entry offsets, basket headers), so it is a measured part of the writer's
    time, not an estimate."""

    def __init__(self):
        self.seconds = {"truth_s": 0.0, "detector_s": 0.0, "assemble_s": 0.0, "root_write_s": 0.0,
                        "compression_only_s": 0.0}
        self.raw_bytes = 0
        self.runs = []  # per-run stage seconds (one dict per `with` block)

    def _wrap(self, mod, name, key, hook=None):
        f = getattr(mod, name)

        def timed(*a, **k):
            t = time.perf_counter()
            r = f(*a, **k)
            self.seconds[key] += time.perf_counter() - t
            if hook:
                hook(a, r)
            return r

        self._saved.append((mod, name, f))
        setattr(mod, name, timed)

    def _count(self, args, _):
        self.raw_bytes += len(args[0])

    def scale(self, f):
        self.seconds = {k: v * f for k, v in self.seconds.items()}
        self.raw_bytes *= f

    def __enter__(self):
        import uproot.compression

        from sparkad.generate import api, layout

        self._saved = []
        self._start = dict(self.seconds)
        self._wrap(api, "generate_truth", "truth_s")
        self._wrap(api, "_mix_truth", "truth_s")
        self._wrap(api, "simulate", "detector_s")
        self._wrap(layout, "to_branches", "assemble_s")
        self._wrap(layout.RootWriter, "extend", "root_write_s")
        self._wrap(uproot.compression, "compress", "compression_only_s", hook=self._count)
        return self

    def __exit__(self, *exc):
        for mod, name, f in self._saved:
            setattr(mod, name, f)
        self.runs.append({k: v - self._start[k] for k, v in self.seconds.items()})
        return False

    def steady_min(self) -> dict:
        """Each stage's fastest run after the first (which also pays the heap's first-touch faults):
        the steady per-core cost, less sensitive to a noisy machine than the mean."""
        later = self.runs[1:] or self.runs
        return {k: round(min(r[k] for r in later), 3) for k in self.seconds}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=float, default=1e6)
    ap.add_argument("--process", default="wjets", help="single MC process (ignored with --preset)")
    ap.add_argument("--preset", default=None, help="benchmark the data-like sample of this preset instead")
    ap.add_argument("--compression", default="lz4:1", help="e.g. lz4:1 (default), zstd:1, zlib:4 (CMS-like)")
    ap.add_argument("--gen-chunk", type=int, default=250_000, help="generator chunk size (events per extend)")
    ap.add_argument("--chunksize", type=int, default=500_000, help="extraction chunk size (conf/extract.yaml default)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the files here")
    ap.add_argument("--no-extract", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="single-worker runs (median)")
    ap.add_argument("--workers", type=int, default=1,
                    help="also time K files written by K worker processes (scaling with cores)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import numpy as np

    from sparkad.generate.api import generate
    from sparkad.generate.config import load_preset

    n = int(args.events)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sparkad-genbench-"))
    work.mkdir(parents=True, exist_ok=True)
    raw, sample = _gen_config(args)
    raw.update(compression=args.compression, max_events_per_file=max(n, 1), chunk_size=args.gen_chunk)
    try:
        # warm-up: numba compilation / cache load and imports (start-up, not throughput)
        t0 = time.perf_counter()
        warm = dict(raw, samples={k: dict(v, events=(1000 if k == sample else 1)) for k, v in raw["samples"].items()})
        generate(warm, out_dir=work / "warmup", progress=False)
        startup = time.perf_counter() - t0
        cfg = dict(raw, samples={k: dict(v, events=(n if k == sample else 1)) for k, v in raw["samples"].items()})
        cfg = load_preset(cfg)
        cfg["samples"] = {sample: cfg["samples"][sample]}  # generate only the benchmarked sample
        # Repeats: the first run in a process also pays first-touch page faults while the heap grows
        # to one chunk's size; the median of the repeats is the steady per-core rate. Generation and
        # extraction alternate, so both rates sample the same state of a shared, noisy machine; each
        # extraction reads the file just written (same seed: the same events).
        extraction = None
        if not args.no_extract:
            sys.path.insert(0, str(Path(__file__).parent))
            from extract import extraction

            extraction(next((work / "warmup").glob(f"{sample}_*.root")), work / "extract_warmup", args.chunksize)
        walls, cpus, ext_runs = [], [], []
        stages = _StageTimer()
        for r in range(args.repeat):
            out = work / f"gen{r}"
            with stages:
                c0, t0 = os.times(), time.perf_counter()
                generate(cfg, out_dir=out, progress=False)
                walls.append(time.perf_counter() - t0)
                c1 = os.times()
            cpus.append((c1.user + c1.system) - (c0.user + c0.system))
            if extraction:
                ext_runs.append(extraction(next(out.glob("*.root")), work / f"extract{r}", args.chunksize))
            if r:
                shutil.rmtree(out, ignore_errors=True)
        stages.scale(1.0 / args.repeat)
        wall, cpu = float(np.median(walls)), float(np.median(cpus))
        out = work / "gen0"
        files = sorted(out.glob("*.root"))
        assert len(files) == 1, files
        size = files[0].stat().st_size
        gen = {"what": "generate", "sample": sample, "preset": args.preset, "events": n,
               "compression": args.compression, "workers": 1, "repeats": args.repeat,
               "first_run_events_per_s": round(n / walls[0]), "startup_s": round(startup, 2),
               "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "events_per_s": round(n / wall),
               "events_per_cpu_s": round(n / cpu) if cpu else None, "file_bytes": size,
               "bytes_per_event": round(size / n, 1)}
        print(json.dumps(gen), flush=True)
        # where the time goes: truth-level physics, detector simulation, assembling the branches, and
        # uproot's writer (serialisation + compression); the compression within it is the floor of any
        # ROOT writer at this setting
        split = {k: round(v, 3) for k, v in stages.seconds.items()}
        split["uncompressed_bytes_per_event"] = round(stages.raw_bytes / n, 1)
        split["steady_min"] = stages.steady_min()
        print(json.dumps({"what": "generate_stages", **split}), flush=True)
        summary = {"what": "summary", "cores": 1, "events": n, "compression": args.compression,
                   "generate_events_per_s_per_core": gen["events_per_s"], "bytes_per_event": gen["bytes_per_event"]}
        if args.workers > 1:
            # K files of n events by K worker processes (per-file seeds): does generation scale with cores?
            k = args.workers
            cfg_k = dict(raw, samples={s: dict(v, events=(k * n if s == sample else 1)) for s, v in raw["samples"].items()})
            cfg_k = load_preset(cfg_k)
            cfg_k["samples"] = {sample: cfg_k["samples"][sample]}
            t0 = time.perf_counter()
            generate(cfg_k, out_dir=work / "gen_workers", workers=k, progress=False)
            wall_k = time.perf_counter() - t0
            par = {"what": "generate_parallel", "workers": k, "events": k * n, "wall_s": round(wall_k, 3),
                   "events_per_s": round(k * n / wall_k),
                   "scaling_efficiency": round(k * n / wall_k / (k * gen["events_per_s"]), 3)}
            print(json.dumps(par), flush=True)
            summary.update(parallel_workers=k, parallel_events_per_s=par["events_per_s"],
                           parallel_scaling_efficiency=par["scaling_efficiency"])
        if ext_runs:
            ext = dict(ext_runs[0], repeats=args.repeat,
                       events_per_s=round(float(np.median([x["events_per_s"] for x in ext_runs]))),
                       seconds=round(float(np.median([x["seconds"] for x in ext_runs])), 3))
            print(json.dumps(ext), flush=True)
            pairs = [(n / w) / x["events_per_s"] for w, x in zip(walls, ext_runs)]
            summary.update(extract_events_per_s_per_core=ext["events_per_s"],
                           ratio_generate_to_extract=round(gen["events_per_s"] / ext["events_per_s"], 3),
                           ratio_per_pair=[round(p, 3) for p in pairs],
                           ratio_median_of_pairs=round(float(np.median(pairs)), 3))
            # the ratio each stage alone would allow: generation can reach 2x extraction only if the
            # stages together take <= half the extraction time
            ext_s = n / ext["events_per_s"]
            summary["stage_seconds_per_extraction_second"] = {
                k: round(v / ext_s, 3) for k, v in split.items() if k.endswith("_s")}
        summary["goal_ratio"] = 2.0
        print(json.dumps(summary))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
