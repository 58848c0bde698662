"""Speed of the Pythia 8 engine (`sparkad generate --engine pythia`) against bare Pythia + FastJet.

    python benchmarks/pythia.py [--events 2000] [--processes wjets,dyjets,ttbar] [--workdir DIR]

Per process, with and without the generator-level lepton filter (pT > 20 GeV, |eta| < 2.5), on one core:
- engine: `sparkad.generate.api.generate` of one sample (Pythia, filter, particle roles, anti-kT R = 0.5,
  truth slots, detector emulation, CMS 2012 ROOT file); events written and Pythia events generated
  (tried) per second, Pythia's initialisation included;
- bare: the same Pythia settings and seed, `Pythia.nextBatch` + FastJet anti-kT R = 0.5 (awkward
  interface) on all visible final-state particles, nothing else: events per second;
- ratio: engine tried/s over bare events/s (what the engine's own work costs per generated event).
One JSON line per measurement, then a summary line.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

FILTER_PT = 20.0


def bare(process: str, n: int, seed: int) -> dict:
    import awkward as ak
    import fastjet

    from sparkad.generate.pythia import COMMON_DEFAULTS, PROCESS_DEFAULTS, base_settings, make_pythia, process_settings

    params = {**COMMON_DEFAULTS, **PROCESS_DEFAULTS[process]}
    t0 = time.perf_counter()
    p = make_pythia(base_settings(8000.0, seed) + process_settings(process, params))
    jd = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.5)
    njets = 0
    done = 0
    while done < n:
        prt = p.nextBatch(min(1000, n - done)).prt
        a = abs(prt.id)
        fin = prt[(prt.status > 0) & (a != 12) & (a != 14) & (a != 16)]
        parts = ak.zip({"px": fin.p.px, "py": fin.p.py, "pz": fin.p.pz, "E": fin.p.e}, with_name="Momentum4D")
        jets = fastjet.ClusterSequence(parts, jd).inclusive_jets(10.0)
        njets += int(ak.sum(ak.num(jets.px)))
        done += len(prt)
    dt = time.perf_counter() - t0
    return {"events": done, "seconds": round(dt, 3), "events_per_s": round(done / dt, 2),
            "jets_per_event": round(njets / done, 3)}


def engine(process: str, n: int, seed: int, pt_min: float, workdir: Path) -> dict:
    import yaml

    from sparkad.generate.api import generate

    cfg = {"name": "bench", "engine": "pythia", "sqrt_s": 8000, "seed": seed, "chunk_size": 5000,
           "samples": {process: {"process": process, "events": n, "params": {"lepton_pt_min": pt_min}}}}
    t0 = time.perf_counter()
    fs = generate(cfg, out_dir=workdir, progress=False)
    dt = time.perf_counter() - t0
    py = yaml.safe_load(fs.read_text())["generator"]["pythia"][process]
    return {"events_written": n, "events_tried": py["n_tried"], "seconds": round(dt, 3),
            "written_per_s": round(n / dt, 2), "tried_per_s": round(py["n_tried"] / dt, 2),
            "filter_eff": py["filter_eff"], "sigma_gen_pb": py["sigma_gen_pb"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000, help="events written per engine measurement")
    ap.add_argument("--processes", default="wjets,dyjets,ttbar")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--workdir", default=None, help="work folder (default: a temporary one)")
    a = ap.parse_args(argv)

    tmp = None if a.workdir else tempfile.TemporaryDirectory()
    work = Path(a.workdir or tmp.name)
    procs = [p.strip() for p in a.processes.split(",") if p.strip()]
    engine(procs[0], 20, a.seed, 0.0, work / "warmup")  # numba caches and imports out of the timings
    rows = []
    for proc in procs:
        for pt_min in (0.0, FILTER_PT):
            e = engine(proc, a.events, a.seed, pt_min, work / f"{proc}_{int(pt_min)}")
            b = bare(proc, e["events_tried"], a.seed)
            row = {"what": "pythia", "process": proc, "lepton_pt_min": pt_min, "engine": e, "bare": b,
                   "ratio_engine_to_bare": round(e["tried_per_s"] / b["events_per_s"], 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"what": "summary", "cores": 1,
                      "engine_written_per_s": {f"{r['process']}@{r['lepton_pt_min']:g}": r["engine"]["written_per_s"] for r in rows},
                      "bare_per_s": {f"{r['process']}@{r['lepton_pt_min']:g}": r["bare"]["events_per_s"] for r in rows},
                      "ratio_engine_to_bare": {f"{r['process']}@{r['lepton_pt_min']:g}": r["ratio_engine_to_bare"] for r in rows}}),
          flush=True)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
