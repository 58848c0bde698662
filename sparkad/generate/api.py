"""Public API of the event generator: `generate(preset, n_events, out_dir, ...)`.

Every file is produced independently from its own seed (SeedSequence([seed, sample index, file index,
chunk index])), so files can be written in parallel and the same config + seed always gives identical
arrays. Each file is written in chunks of `chunk_size` events (bounded memory) to a temporary name and
renamed when complete; the fileset YAML (the input of `sparkad extract`) is written last, atomically.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import yaml

from sparkad.core.atomic import write_text_atomic
from sparkad.core.heap import freeze_long_lived, keep_freed_memory
from sparkad.generate import layout, runs
from sparkad.generate.config import GeneratorConfigError, load_preset, scale_events
from sparkad.generate.detector import Packed, simulate
from sparkad.generate.processes import (
    PROCESS_IDS,
    SHAPES,
    Context,
    fill,
    generate_truth,
)
from sparkad.generate.record import allocate

__all__ = ["GeneratorConfigError", "generate", "plan", "run_job"]

FILESET_NAME = "fileset.yaml"
_RUNS_SALT = 0x52554E53  # "RUNS"
_PYTHIA_SALT = 0x50594838  # "PYH8": the Pythia seed of a file


def _rng(*key):
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def plan(cfg: dict, out_dir: Path) -> list[dict]:
    """One job per output file: sample, file index, first event (within the sample), count, path."""
    jobs = []
    per_file = cfg["max_events_per_file"]
    for d, (name, s) in enumerate(cfg["samples"].items()):
        n = s["events"]
        nfiles = max(1, -(-n // per_file))
        bounds = np.linspace(0, n, nfiles + 1).round().astype(np.int64)
        for f in range(nfiles):
            jobs.append({"sample": name, "sample_index": d, "file_index": f, "start": int(bounds[f]),
                         "count": int(bounds[f + 1] - bounds[f]),
                         "path": str(out_dir / f"{name}_{f:04d}.root")})
    return jobs


def _mc_pileup(rng, n, det):
    mean = float(det.get("pileup_mu", 21.0))
    sd = float(det.get("pileup_mu_sd", 5.0))
    return rng.gamma((mean / sd) ** 2, sd * sd / mean, n)


def _chunk(cfg, s, job, c, a, b, ctx, rstruct, source=None):
    """Generate events [a, b) of the sample (global indices); returns the uproot payload. `source`: the
    file's PythiaSource under engine pythia (its next b - a filtered events), else None (parametric)."""
    rng = _rng(cfg["seed"], job["sample_index"], job["file_index"], c)
    n = b - a
    det = cfg["detector"] or {}
    is_data = bool(s.get("data_like"))
    if is_data:
        run, lumi, event, mu = rstruct.events(a, b)
        trig = s.get("trigger")
        if source is not None:  # engine pythia: a PythiaMix
            batch = source.truth(rng, n)
            reco = simulate(batch, rng, det, mu, is_data=True, faults=_faults(s, run, lumi),
                            pf_candidates=cfg["pf_candidates"])
        elif trig:
            reco, batch = _triggered(cfg, s, rng, ctx, det, run, lumi, mu, trig)
        else:
            batch = _mix_truth(s, rng, n, ctx)
            reco = simulate(batch, rng, det, mu, is_data=True, faults=_faults(s, run, lumi),
                            pf_candidates=cfg["pf_candidates"])
    else:
        k = np.arange(a, b, dtype=np.int64)
        run = np.ones(n, np.int32)
        lumi = (1 + k // 1000).astype(np.uint32)
        event = (k + 1).astype(np.uint64)
        mu = _mc_pileup(rng, n, det)
        batch = source.truth(n) if source is not None else generate_truth(s["process"], rng, n, ctx, s["params"])
        batch.is_signal[:] = s.get("is_signal", False)
        reco = simulate(batch, rng, det, mu, is_data=False, faults=[], pf_candidates=cfg["pf_candidates"])
    ids = {"run": run, "luminosityBlock": lumi, "event": event, "Truth_process": batch.process,
           "Truth_isSignal": batch.is_signal}
    if not is_data:
        ids["genWeight"] = np.ones(n, np.float32)
    return layout.to_branches(reco, ids, is_mc=not is_data, exact=cfg["exact_layout"],
                              pfcands=cfg["pf_candidates"])


def _faults(s, run, lumi):
    return [(f["type"], runs.fault_mask(f, run, lumi), f) for f in s["faults"]]


def _mix_truth(s, rng, n, ctx):
    """n events of a data-like mix: components drawn by weight, interleaved in one batch."""
    comps = s["components"]
    w = np.array([x["weight"] for x in comps], dtype=np.float64)
    order = rng.choice(len(comps), n, p=w / w.sum())
    batch = allocate(n, max(SHAPES[c["process"]][0] for c in comps), max(SHAPES[c["process"]][1] for c in comps))
    for ci, comp in enumerate(comps):
        rows = np.flatnonzero(order == ci)
        if rows.size:
            fill(comp["process"], rng, batch, rows, ctx, comp["params"])
            batch.is_signal[rows] = comp["is_signal"]
    return batch


def trigger_pass(reco: dict, trig: dict) -> np.ndarray:
    """Events accepted by the sample's trigger (single_muon: a PF muon with pT > pt_min, |eta| < eta_max,
    0 <= pfRelIso03_all < iso_max, and the trigger efficiency draw of the event)."""
    tm = trig["single_muon"]
    m = reco["Muon"]
    f = m.fields
    n = len(m.counts)
    ok = (f["pt"] > tm["pt_min"]) & (np.abs(f["eta"]) < tm["eta_max"]) & (f["pfRelIso03_all"] >= 0) \
        & (f["pfRelIso03_all"] < tm["iso_max"])
    ev = np.repeat(np.arange(n), m.counts)
    return (np.bincount(ev[ok], minlength=n) > 0) & reco["_trigger_ok"]


def _triggered(cfg, s, rng, ctx, det, run, lumi, mu, trig, max_rounds=10_000):
    """Acceptance-rejection: events failing the trigger are regenerated (same run, lumi and pile-up
    slot) until every slot holds an accepted event, so the stream's composition is cross section x
    trigger efficiency per component. QCD is pre-biased at generator level (config.py)."""
    n = len(run)
    todo = np.arange(n)
    pos, parts, procs, sigs = [], [], [], []
    for _ in range(max_rounds):
        if not todo.size:
            break
        batch = _mix_truth(s, rng, todo.size, ctx)
        reco = simulate(batch, rng, det, mu[todo], is_data=True, faults=_faults(s, run[todo], lumi[todo]),
                        pf_candidates=cfg["pf_candidates"])
        acc = np.flatnonzero(trigger_pass(reco, trig))
        pos.append(todo[acc])
        parts.append(_select(reco, acc))
        procs.append(batch.process[acc])
        sigs.append(batch.is_signal[acc])
        mask = np.ones(todo.size, bool)
        mask[acc] = False
        todo = todo[mask]
    else:
        raise RuntimeError(f"trigger acceptance too low: {todo.size} of {n} events still rejected")
    order = np.argsort(np.concatenate(pos), kind="stable")
    reco = _select(_concat(parts), order)
    return reco, _Labels(np.concatenate(procs)[order], np.concatenate(sigs)[order])


class _Labels:
    """The truth labels the writer needs from a batch."""

    def __init__(self, process, is_signal):
        self.process, self.is_signal = process, is_signal


def _select(reco: dict, idx):
    return {k: (v.select(idx) if isinstance(v, Packed) else v if v is None else np.asarray(v)[idx])
            for k, v in reco.items()}


def _concat(parts: list[dict]) -> dict:
    out = {}
    for k, v in parts[0].items():
        if isinstance(v, Packed):
            out[k] = Packed(np.concatenate([p[k].counts for p in parts]),
                            {f: np.concatenate([p[k].fields[f] for p in parts]) for f in v.fields})
        elif v is None:
            out[k] = None
        else:
            out[k] = np.concatenate([p[k] for p in parts])
    return out


_FROZEN = False


def _freeze_once():
    global _FROZEN
    if not _FROZEN:
        freeze_long_lived()
        _FROZEN = True


def run_job(cfg: dict, job: dict, progress=None) -> dict:
    """Write one file. progress(n) is called after each chunk with the number of events written."""
    keep_freed_memory()  # chunk k+1 reuses chunk k's buffers instead of page-faulting new ones
    _freeze_once()  # full collections stop re-walking the modules' ~250 k objects (sparkad.core.heap)
    s = cfg["samples"][job["sample"]]
    ctx = Context(float(cfg["sqrt_s"]))
    is_data = bool(s.get("data_like"))
    rstruct = None
    if is_data:
        rstruct = runs.build(s["runs"], s["events"], _rng(cfg["seed"], job["sample_index"], _RUNS_SALT))
    if cfg.get("engine") == "pythia_dijet":
        return _dijet_job(cfg, job, s, rstruct, progress)
    source = None
    if cfg.get("engine") == "pythia":
        from sparkad.generate.pythia import PythiaMix, PythiaSource, pythia_seed

        key = [int(cfg["seed"]), job["sample_index"], job["file_index"], _PYTHIA_SALT]
        if is_data:
            comps = s["components"]
            seeds = [pythia_seed(np.random.SeedSequence(key + [ci])) for ci in range(len(comps))]
            source = PythiaMix(comps, float(cfg["sqrt_s"]), seeds, [PROCESS_IDS[c["process"]] for c in comps])
        else:
            source = PythiaSource(s["process"], s["params"], float(cfg["sqrt_s"]),
                                  pythia_seed(np.random.SeedSequence(key)), PROCESS_IDS[s["process"]])
    start, stop = job["start"], job["start"] + job["count"]
    cs = cfg["chunk_size"]
    with layout.RootWriter(job["path"], cfg["compression"], is_mc=not is_data,
                           write_runs=not cfg["exact_layout"]) as w:
        for c, a in enumerate(range(start, stop, cs)):
            b = min(a + cs, stop)
            w.extend(_chunk(cfg, s, job, c, a, b, ctx, rstruct, source))
            if progress:
                progress(b - a)
        n, sumw = w.n, w.sumw
    out = {**job, "n": n, "sumw": sumw}
    if source is not None and not is_data:
        out["pythia"] = source.cross_section()
    return out


def _dijet_job(cfg: dict, job: dict, s: dict, rstruct, progress=None) -> dict:
    """Write one file of the Pythia dijet engine (sparkad.generate.dijet): PFNano-style branches."""
    from sparkad.generate.dijet import PROCESS_IDS as DIJET_IDS, DijetMix, DijetSource
    from sparkad.generate.pythia import pythia_seed

    is_data = rstruct is not None
    key = [int(cfg["seed"]), job["sample_index"], job["file_index"], _PYTHIA_SALT]
    sqrt_s = float(cfg["sqrt_s"])
    if is_data:
        comps = s["components"]
        source = DijetMix(comps, sqrt_s, [pythia_seed(np.random.SeedSequence(key + [ci])) for ci in range(len(comps))],
                          [DIJET_IDS[c["process"]] for c in comps])
    else:
        source = DijetSource(s["process"], s["params"], sqrt_s, pythia_seed(np.random.SeedSequence(key)),
                             DIJET_IDS[s["process"]])
    start, stop = job["start"], job["start"] + job["count"]
    truth = [] if s.get("blind") else None  # a black box: the truth goes to a file of its own
    with layout.RootWriter(job["path"], cfg["compression"], is_mc=not is_data) as w:
        for c, a in enumerate(range(start, stop, cfg["chunk_size"])):
            b = min(a + cfg["chunk_size"], stop)
            n = b - a
            if is_data:
                run, lumi, event, _ = rstruct.events(a, b)
                out = source.branches(_rng(cfg["seed"], job["sample_index"], job["file_index"], c), n)
                if truth is not None:
                    truth.append({"run": np.asarray(run, np.int64), "luminosityBlock": np.asarray(lumi, np.int64),
                                  "event": np.asarray(event, np.int64),
                                  "is_signal": np.asarray(out.pop("Truth_isSignal"), bool),
                                  "process": np.asarray(out.pop("Truth_process"), np.int32)})
            else:
                k = np.arange(a, b, dtype=np.int64)
                run, lumi, event = np.ones(n, np.uint32), (1 + k // 1000).astype(np.uint32), (k + 1).astype(np.uint64)
                out = source.branches(n)
                out["Truth_isSignal"] = np.full(n, bool(s.get("is_signal")))
                out["genWeight"] = np.ones(n, np.float32)
            w.extend({"run": np.asarray(run, np.uint32), "luminosityBlock": np.asarray(lumi, np.uint32),
                      "event": np.asarray(event, np.uint64), **out})
            if progress:
                progress(n)
        n, sumw = w.n, w.sumw
    if truth is not None:
        write_truth(job["path"], truth)
    res = {**job, "n": n, "sumw": sumw}
    if not is_data:
        res["pythia"] = source.cross_section()
    return res


#: where a blind (black-box) sample's truth goes: beside the files, never listed in the fileset
TRUTH_DIR = "truth"


def truth_path(root_path) -> Path:
    p = Path(root_path)
    return p.parent / TRUTH_DIR / f"{p.stem}.parquet"


def write_truth(root_path, parts: list[dict]) -> Path:
    """The per-event truth of a black-box file (run, luminosityBlock, event, is_signal, process) as Parquet
    in TRUTH_DIR/<file stem>.parquet: what a benchmark compares with, what the pipeline never reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkad.core.atomic import atomic_path

    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    path = truth_path(root_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(cols), tmp)
    return path


def pythia_cross_section(parts: list[dict], k_factor: float = 1.0) -> dict:
    """A sample's cross section from its files' Pythia estimates: sigma_gen averaged with the files'
    generated-event counts as weights, times the filter efficiency (passed / tried over all files) and
    the k-factor; xsec (pb) is what the fileset's dataset gets."""
    tried = sum(p["n_tried"] for p in parts)
    passed = sum(p["n_passed"] for p in parts)
    sigma = sum(p["sigma_gen_pb"] * p["n_tried"] for p in parts) / tried
    err = math.sqrt(sum((p["sigma_err_pb"] * p["n_tried"]) ** 2 for p in parts)) / tried
    eff = passed / tried
    return {"sigma_gen_pb": float(f"{sigma:.6g}"), "sigma_err_pb": float(f"{err:.3g}"), "n_tried": int(tried),
            "n_passed": int(passed), "filter_eff": float(f"{eff:.6g}"), "k_factor": float(k_factor),
            "xsec": sigma * eff * k_factor}


def _write_fileset(cfg, results, out_dir: Path) -> Path:
    datasets = {}
    pythia = {}
    for name, s in cfg["samples"].items():
        res = sorted((r for r in results if r["sample"] == name), key=lambda r: r["file_index"])
        files = [Path(r["path"]).name for r in res]
        if res and "pythia" in res[0]:
            pythia[name] = pythia_cross_section([r["pythia"] for r in res], s["k_factor"])
            s = {**s, "xsec": pythia[name].pop("xsec")}
        elif cfg.get("engine") in ("pythia", "pythia_dijet") and s.get("data_like"):  # the mix's weights (pb)
            mix = {"mix_xsec_pb": {c["name"]: float(f"{c['weight']:.6g}") for c in s["components"]}}
            if s.get("blind"):  # hidden from the pipeline: kept with the truth files
                (out_dir / TRUTH_DIR).mkdir(exist_ok=True)
                write_text_atomic(yaml.safe_dump({"sample": name, **mix}, sort_keys=False),
                                  out_dir / TRUTH_DIR / f"{name}_mix.yaml")
            else:
                pythia[name] = mix
        if s.get("data_like"):
            datasets[name] = {"files": files, "treename": "Events", "is_data": True, "label": s["label"]}
        else:
            datasets[name] = {"files": files, "treename": "Events", "xsec": float(f"{s['xsec']:.6g}"),
                              "n_gen": int(sum(r["n"] for r in res)),
                              "sum_w": float(sum(r["sumw"] for r in res)), "is_data": False,
                              "label": s["label"]}
    doc = {
        "luminosity": float(cfg["luminosity"]),
        "datasets": datasets,
        "generator": {"preset": cfg["name"], "seed": int(cfg["seed"]), "sqrt_s": float(cfg["sqrt_s"]),
                      "exact_layout": bool(cfg["exact_layout"]), "pf_candidates": bool(cfg["pf_candidates"]),
                      "engine": cfg.get("engine", "parametric")},
    }
    if pythia:  # provenance of the datasets' xsec: Pythia's sigma_gen x filter efficiency x k_factor
        doc["generator"]["pythia"] = pythia
    if cfg.get("engine") == "pythia_dijet":  # HLF.md: the substructure conventions travel with the files
        from sparkad.generate.dijet import SUBSTRUCTURE

        doc["generator"]["substructure"] = SUBSTRUCTURE
    path = out_dir / FILESET_NAME
    write_text_atomic(yaml.safe_dump(doc, sort_keys=False), path)
    return path


def generate(preset: str | dict = "default", n_events: int | None = None, out_dir="generated",
             seed: int | None = None, workers: int = 1, progress: bool = True, executor: str = "local",
             master: str | None = None, scheduler: str | None = None, **overrides) -> Path:
    """Generate the samples of `preset` into `out_dir`; returns the path of the fileset YAML.

    preset: a name in conf/generate/, a YAML path, or a config dict. n_events: total events over all
    samples (proportions of the preset kept). seed: overrides the preset's seed. executor: where the
    per-file tasks run (one task per output file): "local" (`workers` forked processes), "spark" (on
    `master`, default local[workers] or spark-submit's; an active SparkSession is used as it is) or "dask" (on the
    `scheduler`, default a LocalCluster of `workers` processes); the workers write the files into
    `out_dir` (a path they all see), the driver writes the fileset. The files are identical whatever the
    executor and workers. overrides: top-level preset keys (e.g. exact_layout=True, pf_candidates=True,
    max_events_per_file=...)."""
    from sparkad.generate.distributed import JobRunner

    if isinstance(preset, dict) and preset.get("_validated"):
        if overrides or seed is not None:
            raise GeneratorConfigError("seed/overrides need a raw preset (name, path or unvalidated dict)")
        cfg = preset
    else:
        raw = dict(preset) if isinstance(preset, dict) else _raw_preset(preset)
        raw.update(overrides)
        if seed is not None:
            raw["seed"] = seed
        cfg = load_preset(raw)
    cfg = scale_events(cfg, n_events)
    workers = int(workers)
    if workers < 1:
        raise GeneratorConfigError(f"workers must be >= 1, got {workers}")
    runner = JobRunner(executor, workers, master=master, scheduler=scheduler)  # checks the combination
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # a previous run's fileset would describe files this run is about to replace: an interrupted re-run
    # must not leave a complete-looking fileset (with the old n_gen / sum_w) next to the new files
    (out / FILESET_NAME).unlink(missing_ok=True)
    jobs = plan(cfg, out)
    total = sum(j["count"] for j in jobs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="evt", desc=f"generate {cfg['name']}", dynamic_ncols=True)
    t0 = time.time()
    results = []
    try:
        if _pending_mix_weights(cfg):
            # engine pythia: a data-like mix weighs its samples by their cross sections, known once the
            # MC samples are generated: those first, then the data-like samples
            mc = [j for j in jobs if not cfg["samples"][j["sample"]].get("data_like")]
            results += runner.run(cfg, mc, bar)
            cfg = _with_mix_weights(cfg, results)
            jobs = [j for j in jobs if cfg["samples"][j["sample"]].get("data_like")]
        results += runner.run(cfg, jobs, bar)
    finally:
        runner.close()
        if bar:
            bar.close()
    path = _write_fileset(cfg, results, out)
    cfg["_elapsed_s"] = time.time() - t0
    return path


def _pending_mix_weights(cfg) -> bool:
    return any(c["weight"] is None for s in cfg["samples"].values() if s.get("data_like") for c in s["components"])


def _with_mix_weights(cfg, results) -> dict:
    """The config with every data-like component's missing weight set to its MC sample's cross section
    (Pythia's sigma_gen x filter efficiency x k_factor over the sample's files)."""
    xsec = {}
    for name, s in cfg["samples"].items():
        parts = [r["pythia"] for r in results if r["sample"] == name and "pythia" in r]
        if parts:
            xsec[name] = pythia_cross_section(parts, s["k_factor"])["xsec"]
    samples = {}
    for name, s in cfg["samples"].items():
        if s.get("data_like"):
            s = {**s, "components": [{**c, "weight": xsec[c["name"]] if c["weight"] is None else c["weight"]}
                                     for c in s["components"]]}
        samples[name] = s
    return {**cfg, "samples": samples}


def _raw_preset(name) -> dict:
    """The unvalidated YAML mapping of a named preset or preset file (for overrides)."""
    from sparkad.generate.config import list_presets, load_yaml_mapping, preset_path

    p = Path(str(name))
    if p.suffix in (".yaml", ".yml") and (p.exists() or len(p.parts) > 1):  # a missing path: "not found"
        raw = load_yaml_mapping(p, "preset file")
        raw.setdefault("name", p.stem)
        return raw
    path = preset_path(str(name))
    if not path.exists():
        raise GeneratorConfigError(f"unknown preset {name!r} (known: {', '.join(list_presets()) or 'none'})")
    raw = load_yaml_mapping(path, "preset")
    raw.setdefault("name", str(name))
    return raw
