"""Generator presets: loading from conf/generate/*.yaml and validation with one-line errors."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from .detector import DETECTOR_DEFAULTS, FAULT_CODES
from .processes import LABELS, PROCESSES, SIGNALS, branching_fraction, qcd_trigger_acceptance
from .runs import RUNS_DEFAULTS


class GeneratorConfigError(ValueError):
    """A bad preset or configuration value (message is one line)."""


TOP_DEFAULTS = {
    "description": "",
    "sqrt_s": 8000.0,
    "luminosity": 4400.0,
    "seed": 12345,
    "max_events_per_file": 250_000,
    "chunk_size": 50_000,
    "compression": "zlib:4",
    "exact_layout": False,
    "pf_candidates": False,
    "cross_sections": "xsec",
    "detector": {},
    "samples": {},
}
TOP_KEYS = set(TOP_DEFAULTS)
SAMPLE_KEYS = {"process", "events", "params", "xsec", "k_factor", "filter_eff", "label", "data_like",
               "mix", "runs", "signal", "faults", "is_signal", "trigger"}
TRIGGER_DEFAULTS = {"single_muon": {"pt_min": 24.0, "eta_max": 2.1, "iso_max": 0.15}}
# generator-level bias of QCD under a single-muon trigger: looser than the trigger by these margins so
# that resolution cannot move rejected-at-generation events into the accepted region
QCD_BIAS_PT_FACTOR, QCD_BIAS_ETA_MARGIN = 0.85, 0.2
FAULT_KEYS = {"type", "runs", "lumis", "rate", "eta", "phi", "pt_scale", "shift"}


def conf_dir() -> Path:
    env = os.environ.get("SPARKAD_CONF")
    if env:
        return Path(env)
    import sparkad

    return Path(sparkad.__file__).resolve().parent.parent / "conf"


def generate_dir() -> Path:
    return conf_dir() / "generate"


def list_presets() -> dict[str, str]:
    """{preset name: description} of conf/generate/*.yaml (cross-section tables excluded)."""
    out = {}
    d = generate_dir()
    for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and "samples" in data:
            out[p.stem] = str(data.get("description", "")).strip().splitlines()[0] if data.get("description") else ""
    return out


def _load_yaml(path: Path, what: str) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise GeneratorConfigError(f"{what} not found: {path}") from None
    except yaml.YAMLError as e:
        raise GeneratorConfigError(f"{what} {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise GeneratorConfigError(f"{what} {path} must be a mapping")
    return data


def load_preset(preset) -> dict:
    """A preset name (conf/generate/NAME.yaml), a path to a YAML file, or a dict -> validated config."""
    if isinstance(preset, dict):
        raw = copy.deepcopy(preset)
        name = raw.get("name", "custom")
    else:
        p = Path(str(preset))
        if p.suffix in (".yaml", ".yml") and p.exists():
            raw, name = _load_yaml(p, "preset file"), p.stem
        else:
            path = generate_dir() / f"{preset}.yaml"
            if not path.exists():
                known = ", ".join(list_presets()) or "none"
                raise GeneratorConfigError(f"unknown preset {preset!r} (known: {known})")
            raw, name = _load_yaml(path, "preset"), str(preset)
    return validate(raw, name)


def _xsec_table(ref, sqrt_s) -> dict:
    if isinstance(ref, dict):
        table = ref
    else:
        table = _load_yaml(generate_dir() / f"{ref}.yaml", "cross-section table")
    key = int(round(float(sqrt_s)))
    for k in (key, str(key)):
        if k in table:
            return table[k] or {}
    raise GeneratorConfigError(f"cross-section table has no entry for sqrt_s = {key} GeV")


def _num(v, what, positive=True, integer=False):
    try:
        x = int(v) if integer else float(v)
    except (TypeError, ValueError):
        raise GeneratorConfigError(f"{what} must be a number, got {v!r}") from None
    if integer and float(v) != x:
        raise GeneratorConfigError(f"{what} must be an integer, got {v!r}")
    if positive and x <= 0:
        raise GeneratorConfigError(f"{what} must be > 0, got {v!r}")
    return x


def validate(raw: dict, name: str = "custom") -> dict:
    unknown = set(raw) - TOP_KEYS - {"name"}
    if unknown:
        raise GeneratorConfigError(f"preset {name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    cfg = {**copy.deepcopy(TOP_DEFAULTS), **raw, "name": name}
    cfg["sqrt_s"] = _num(cfg["sqrt_s"], "sqrt_s")
    cfg["luminosity"] = _num(cfg["luminosity"], "luminosity")
    cfg["seed"] = _num(cfg["seed"], "seed", positive=False, integer=True)
    if cfg["seed"] < 0:
        raise GeneratorConfigError(f"seed must be >= 0, got {cfg['seed']}")
    cfg["max_events_per_file"] = _num(cfg["max_events_per_file"], "max_events_per_file", integer=True)
    cfg["chunk_size"] = _num(cfg["chunk_size"], "chunk_size", integer=True)
    from .layout import parse_compression

    try:
        parse_compression(cfg["compression"])
    except ValueError as e:
        raise GeneratorConfigError(str(e)) from None
    det = cfg["detector"] or {}
    bad = set(det) - set(DETECTOR_DEFAULTS)
    if bad:
        raise GeneratorConfigError(f"detector: unknown parameter(s) {sorted(bad)}")
    xs = _xsec_table(cfg["cross_sections"], cfg["sqrt_s"])
    samples = cfg["samples"]
    if not isinstance(samples, dict) or not samples:
        raise GeneratorConfigError(f"preset {name}: 'samples' must be a non-empty mapping name -> sample")
    out = {}
    for sname, s in samples.items():
        if not isinstance(s, dict):
            raise GeneratorConfigError(f"sample {sname}: must be a mapping")
        bad = set(s) - SAMPLE_KEYS
        if bad:
            raise GeneratorConfigError(f"sample {sname}: unknown key(s) {sorted(bad)}")
        s = dict(s)
        s["events"] = _num(s.get("events", 0), f"sample {sname}: events", integer=True)
        if s.get("data_like"):
            out[sname] = s  # resolved below, once all MC samples are known
        else:
            out[sname] = _resolve_component(s, sname, xs)
    for sname, s in out.items():
        if s.get("data_like"):
            out[sname] = _resolve_data(s, sname, out, xs)
    cfg["samples"] = out
    cfg["_validated"] = True
    return cfg


def _resolve_component(s: dict, what: str, xs: dict) -> dict:
    proc = s.get("process")
    if proc not in PROCESSES:
        raise GeneratorConfigError(f"{what}: unknown process {proc!r}; known: {', '.join(PROCESSES)}")
    params = dict(s.get("params") or {})
    entry = xs.get(proc) or {}
    xsec = s.get("xsec", entry.get("xsec"))
    if xsec is None:
        raise GeneratorConfigError(f"{what}: no cross section for {proc!r} (give xsec: or add it to the table)")
    xsec = _num(xsec, f"{what}: xsec")
    k = _num(s.get("k_factor", entry.get("k_factor", 1.0)), f"{what}: k_factor")
    feff = _num(s.get("filter_eff", entry.get("filter_eff", 1.0)), f"{what}: filter_eff")
    for key, val in (entry.get("params") or {}).items():
        params.setdefault(key, val)
    try:
        br = branching_fraction(proc, params)
    except KeyError as e:
        raise GeneratorConfigError(f"{what}: bad parameter value {e}") from None
    return {**s, "process": proc, "params": params, "xsec_total": xsec, "k_factor": k, "filter_eff": feff,
            "xsec": xsec * k * feff * br, "label": s.get("label", LABELS[proc]),
            "is_signal": bool(s.get("is_signal", proc in SIGNALS))}


def _resolve_data(s: dict, sname: str, samples: dict, xs: dict) -> dict:
    comps = []
    mix = s.get("mix")
    if not mix:
        raise GeneratorConfigError(f"sample {sname}: a data_like sample needs a non-empty 'mix'")
    items = mix.items() if isinstance(mix, dict) else [(m, None) for m in mix]
    for ref, w in items:
        if isinstance(ref, str) and ref in samples and not samples[ref].get("data_like"):
            c = dict(samples[ref])
        elif isinstance(ref, str) and ref in PROCESSES:
            c = _resolve_component({"process": ref}, f"sample {sname}: mix {ref}", xs)
        else:
            raise GeneratorConfigError(f"sample {sname}: mix entry {ref!r} is neither an MC sample nor a process")
        weight = c["xsec"] if w is None else _num(w, f"sample {sname}: mix weight of {ref}")
        comps.append({"name": ref, "process": c["process"], "params": c["params"], "weight": weight,
                      "is_signal": bool(c.get("is_signal", False))})
    trigger = _resolve_trigger(s.get("trigger"), sname)
    if trigger:
        tm = trigger["single_muon"]
        for c in comps:
            if c["process"] == "qcd":
                # QCD is generated already biased to a muon near the trigger acceptance; its weight is
                # the cross section times the probability of that bias (see processes.qcd)
                c["params"] = {**c["params"], "force_muon": {"pt_min": QCD_BIAS_PT_FACTOR * tm["pt_min"],
                                                             "eta_max": tm["eta_max"] + QCD_BIAS_ETA_MARGIN}}
                c["weight"] *= qcd_trigger_acceptance(c["params"])
    total_bkg = sum(c["weight"] for c in comps)
    sig = s.get("signal")
    if sig:
        if not isinstance(sig, dict) or ("fraction" in sig) == ("xsec" in sig):
            raise GeneratorConfigError(f"sample {sname}: signal needs process and exactly one of fraction, xsec")
        c = _resolve_component({"process": sig.get("process"), "params": sig.get("params")},
                               f"sample {sname}: signal", xs)
        if "fraction" in sig:
            f = _num(sig["fraction"], f"sample {sname}: signal fraction")
            if f >= 1:
                raise GeneratorConfigError(f"sample {sname}: signal fraction must be < 1, got {f}")
            weight = total_bkg * f / (1.0 - f)
        else:
            weight = _num(sig["xsec"], f"sample {sname}: signal xsec")
        comps.append({"name": "signal", "process": c["process"], "params": c["params"], "weight": weight,
                      "is_signal": True})
    runs_cfg = dict(s.get("runs") or {})
    bad = set(runs_cfg) - set(RUNS_DEFAULTS) - {"run_list"}
    if bad:
        raise GeneratorConfigError(f"sample {sname}: runs: unknown key(s) {sorted(bad)}")
    faults = []
    for i, f in enumerate(s.get("faults") or []):
        if not isinstance(f, dict) or f.get("type") not in FAULT_CODES or f.get("type") == "none":
            raise GeneratorConfigError(
                f"sample {sname}: fault {i}: type must be one of {sorted(set(FAULT_CODES) - {'none'})}")
        bad = set(f) - FAULT_KEYS
        if bad:
            raise GeneratorConfigError(f"sample {sname}: fault {i}: unknown key(s) {sorted(bad)}")
        if f.get("lumis") is not None and (len(f["lumis"]) != 2 or f["lumis"][0] > f["lumis"][1]):
            raise GeneratorConfigError(f"sample {sname}: fault {i}: lumis must be [first, last]")
        faults.append(dict(f))
    return {**s, "components": comps, "runs": runs_cfg, "faults": faults, "label": s.get("label", "data"),
            "trigger": trigger}


def _resolve_trigger(spec, sname):
    if not spec:
        return None
    if not isinstance(spec, dict) or set(spec) - set(TRIGGER_DEFAULTS):
        raise GeneratorConfigError(f"sample {sname}: trigger must be a mapping with key(s) {sorted(TRIGGER_DEFAULTS)}")
    out = {}
    for name, vals in spec.items():
        vals = vals or {}
        bad = set(vals) - set(TRIGGER_DEFAULTS[name])
        if bad:
            raise GeneratorConfigError(f"sample {sname}: trigger {name}: unknown key(s) {sorted(bad)}")
        out[name] = {k: _num(vals.get(k, d), f"sample {sname}: trigger {name}: {k}")
                     for k, d in TRIGGER_DEFAULTS[name].items()}
    return out


def scale_events(cfg: dict, n_events: int | None) -> dict:
    """Rescale the samples' event counts so that they add up to n_events (proportions kept)."""
    if n_events is None:
        return cfg
    n_events = _num(n_events, "events", integer=True)
    total = sum(s["events"] for s in cfg["samples"].values())
    names = list(cfg["samples"])
    raw = [cfg["samples"][k]["events"] * n_events / total for k in names]
    ints = [int(x) for x in raw]
    rest = n_events - sum(ints)
    for i in sorted(range(len(raw)), key=lambda i: ints[i] - raw[i])[:rest]:
        ints[i] += 1
    cfg = copy.deepcopy(cfg)
    for k, v in zip(names, ints):
        cfg["samples"][k]["events"] = max(v, 1)
    return cfg
