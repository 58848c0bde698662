"""Extraction benchmark: events/s per core of the whole extraction vs a bare uproot read of the
same branches from the same file (the I/O limit), and peak memory for a 1× and a 10× file
(with the resident set after every chunk of the 10× run: it must level off, not grow).

    python benchmarks/extract.py [--events 1000000] [--chunksize N] [--repeat 3] [--workdir DIR] [--no-memory]

Prints one JSON object per measurement and a final summary line with the ratios: medians of
`--repeat` interleaved runs of each, plus the first extraction run on its own.
The input is a CMS-2012-layout file (exact real layout, no PF information) written with uproot:
random but plausible multiplicities and kinematics; what is measured is throughput, not physics.
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

import awkward as ak
import numpy as np
import uproot

BRANCHES = (["run", "luminosityBlock", "event", "MET_pt", "MET_phi", "nMuon", "nElectron", "nJet"]
            + [f"{c}_{f}" for c in ("Muon", "Electron") for f in ("pt", "eta", "phi", "mass", "charge", "pfRelIso03_all")]
            + [f"Jet_{f}" for f in ("pt", "eta", "phi", "mass", "btag")])


def _jagged(rng, counts, make):
    return ak.unflatten(make(int(counts.sum())), counts)


def write_cms2012(path: Path, n_events: int, seed: int = 1, batch: int = 250_000) -> Path:
    """A file in the exact CMS 2012 NanoAOD-like layout with n_events events."""
    rng = np.random.default_rng(seed)
    first = True
    with uproot.recreate(path) as f:
        for start in range(0, n_events, batch):
            n = min(batch, n_events - start)
            cols = {"run": np.full(n, 194050, np.int32),
                    "luminosityBlock": (1 + (start + np.arange(n)) // 2000).astype(np.uint32),
                    "event": (start + np.arange(n)).astype(np.uint64),
                    "MET_pt": rng.exponential(30.0, n).astype(np.float32),
                    "MET_phi": rng.uniform(-np.pi, np.pi, n).astype(np.float32)}
            for name, mean, ptscale in (("Muon", 1.2, 25.0), ("Electron", 0.6, 20.0), ("Jet", 3.5, 40.0)):
                k = rng.poisson(mean, n).astype(np.int64)
                tot = int(k.sum())
                fields = {"pt": (5.0 + rng.exponential(ptscale, tot)).astype(np.float32),
                          "eta": rng.uniform(-2.5, 2.5, tot).astype(np.float32),
                          "phi": rng.uniform(-np.pi, np.pi, tot).astype(np.float32),
                          "mass": np.full(tot, 0.1057 if name == "Muon" else 0.000511, np.float32)
                          if name != "Jet" else rng.uniform(2, 20, tot).astype(np.float32)}
                if name == "Jet":
                    fields["btag"] = rng.uniform(0, 1, tot).astype(np.float32)
                else:
                    fields["charge"] = rng.choice(np.array([-1, 1], np.int32), tot)
                    fields["pfRelIso03_all"] = rng.exponential(0.15, tot).astype(np.float32)
                cols[name] = ak.zip({key: ak.unflatten(v, k) for key, v in fields.items()})
            if first:
                tree = f.mktree("Events", {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in cols.items()},
                                counter_name=lambda c: "n" + c, field_name=lambda o, i: f"{o}_{i}")
                first = False
            tree.extend(cols)
    return path


def bare_read(path: Path, chunksize: int) -> dict:
    """uproot.iterate of BRANCHES, with uproot's default source (fsspec) and with memory maps (what
    the extraction uses for local files); the faster of the two is the I/O limit."""
    best = None
    for name, kw in (("fsspec", {}), ("memmap", {"handler": uproot.MemmapSource})):
        t0 = time.perf_counter()
        n = 0
        for arrays in uproot.iterate({str(path): "Events"}, BRANCHES, step_size=chunksize, library="ak", **kw):
            n += len(arrays)
        dt = time.perf_counter() - t0
        if best is None or dt < best["seconds"]:
            best = {"what": "bare_uproot_read", "source": name, "events": n, "seconds": round(dt, 3),
                    "events_per_s": n / dt}
    return best


def extraction(path: Path, out: Path, chunksize: int) -> dict:
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.extract.fileset import DatasetSpec, Fileset

    import coffea.processor  # noqa: F401  (imports are start-up cost, not throughput)
    import pyarrow.parquet  # noqa: F401
    from coffea.nanoevents import NanoAODSchema  # noqa: F401

    fs = Fileset({"bench": DatasetSpec(name="bench", files=[str(path)], is_data=True, label="data")})
    opts = ExtractOptions.from_conf(out, feature_set="cms2012", executor="iterative", chunksize=chunksize, progress=False)
    t0 = time.perf_counter()
    report = run_extraction(fs, opts, log=lambda m: None)
    dt = time.perf_counter() - t0
    n = report["totals"]["events_in"]
    return {"what": "extraction", "events": n, "written": report["totals"]["written"], "seconds": round(dt, 3),
            "events_per_s": n / dt}


def _status_mb(key: str) -> float:
    """A memory line of /proc/self/status (VmHWM, VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status (Linux only)")


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), MB."""
    return _status_mb("VmHWM")


def track_rss_per_chunk() -> list:
    """Record this process's resident set (VmRSS, MB) after every processed chunk."""
    import sparkad.extract.processor as hp

    trace, process = [], hp.HLFProcessor.process

    def traced(self, events):
        out = process(self, events)
        trace.append(round(_status_mb("VmRSS")))
        return out

    hp.HLFProcessor.process = traced
    return trace


def child_memory(path: Path, out: Path, chunksize: int, tiny: Path) -> dict:
    """Run one extraction in a fresh process (after a warm-up on the tiny file, so the rate excludes
    start-up) and report its rate and the process's peak RSS."""
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork + exec, so a child would
    # report the benchmark parent's (larger) RSS instead of its own
    code = ("import json,sys; sys.path.insert(0, %r); import extract as b; from pathlib import Path;"
            "b.extraction(Path(%r), Path(%r), %d); t=b.track_rss_per_chunk();"
            "r=b.extraction(Path(%r), Path(%r), %d); r['peak_rss_mb']=b.peak_rss_mb(); r['rss_mb_after_chunk']=t;"
            "print(json.dumps(r))") % (str(Path(__file__).parent), str(tiny), str(out) + "_warm", chunksize,
                                       str(path), str(out), chunksize)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--chunksize", type=int, default=None, help="default: conf/extract.yaml's chunksize")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--no-memory", action="store_true", help="skip the 1× / 10× peak-memory measurement")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved bare-read / extraction repeats (medians)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.chunksize is None:
        from sparkad.core.config import load_conf

        args.chunksize = int(load_conf("extract")["chunksize"])
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sparkad-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    f1 = work / f"cms2012_{args.events}.root"
    if not f1.exists():
        t0 = time.perf_counter()
        write_cms2012(f1, args.events)
        print(json.dumps({"what": "write_input", "events": args.events, "seconds": round(time.perf_counter() - t0, 2),
                          "bytes": f1.stat().st_size}))
    bare_read(f1, args.chunksize)  # warms the page cache for both measurements
    # start-up paid once per process (imports, JIT cache load, Arrow init), measured on a tiny file
    tiny = work / "cms2012_tiny.root"
    if not tiny.exists():
        write_cms2012(tiny, 2000, seed=3)
    warm = extraction(tiny, work / "out_tiny", args.chunksize)
    print(json.dumps({"what": "startup", "seconds": warm["seconds"]}))
    # interleaved repeats: this class of machine (shared 2-core VM) varies by +-15 % from one second
    # to the next, so both rates are medians of the same number of alternating runs; the first
    # extraction of the big file also pays one-time costs (the second heap freeze, first-touch pages)
    reads, exts = [], []
    for r in range(args.repeat):
        reads.append(bare_read(f1, args.chunksize))
        exts.append(extraction(f1, work / f"out1_{r}", args.chunksize))
        print(json.dumps(reads[-1]))
        print(json.dumps(exts[-1]))
    read_rate = float(np.median([x["events_per_s"] for x in reads]))
    ext_rate = float(np.median([x["events_per_s"] for x in exts]))
    summary = {"what": "summary", "cores": 1, "chunksize": args.chunksize, "repeats": args.repeat, "startup_s": warm["seconds"],
               "extraction_events_per_s_per_core": round(ext_rate),
               "extraction_first_run_events_per_s": round(exts[0]["events_per_s"]),
               "bare_read_events_per_s": round(read_rate),
               "ratio_extraction_to_bare_read": round(ext_rate / read_rate, 3),
               "ratio_first_run_to_bare_read": round(exts[0]["events_per_s"] / read_rate, 3), "goal_ratio": 0.6}
    if not args.no_memory:
        f10 = work / f"cms2012_{10 * args.events}.root"
        if not f10.exists():
            write_cms2012(f10, 10 * args.events, seed=2)
        m1 = child_memory(f1, work / "m1", args.chunksize, tiny)
        # read first: it loads the big file into the page cache for the timed child (this VM's memory
        # manager evicts files untouched for a while, and a cold 1.2 GB read halves the child's rate)
        bare_read(f10, args.chunksize)
        read10 = bare_read(f10, args.chunksize)
        m10 = child_memory(f10, work / "m10", args.chunksize, tiny)
        print(json.dumps(m1))
        print(json.dumps(m10))
        print(json.dumps(dict(read10, file="10x")))
        summary.update(peak_rss_mb_1x=round(m1["peak_rss_mb"]), peak_rss_mb_10x=round(m10["peak_rss_mb"]),
                       ratio_peak_rss_10x_to_1x=round(m10["peak_rss_mb"] / m1["peak_rss_mb"], 3),
                       # bounded memory: the resident set after the last chunk vs after the middle one
                       rss_growth_second_half_10x_mb=m10["rss_mb_after_chunk"][-1]
                       - m10["rss_mb_after_chunk"][len(m10["rss_mb_after_chunk"]) // 2],
                       extraction_events_per_s_per_core_10x=round(m10["events_per_s"]),
                       bare_read_events_per_s_10x=round(read10["events_per_s"]),
                       ratio_extraction_10x_to_bare_read_10x=round(m10["events_per_s"] / read10["events_per_s"], 3))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
