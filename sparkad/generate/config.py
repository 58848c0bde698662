"""Generator presets: loading from conf/generate/*.yaml and validation with one-line errors."""
from __future__ import annotations

import copy
import inspect
import math
from pathlib import Path

import yaml

from sparkad.core.config import merge_config, name_problem
from sparkad.generate.detector import DETECTOR_DEFAULTS, FAULT_CODES
from sparkad.generate.processes import LABELS, PROCESSES, SIGNALS, branching_fraction, qcd_trigger_acceptance
from sparkad.generate.runs import RUNS_DEFAULTS, selected_runs


class GeneratorConfigError(ValueError):
    """A bad preset or configuration value (message is one line)."""


TOP_DEFAULTS = {
    "description": "",
    "engine": "parametric",
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
               "mix", "runs", "signal", "faults", "is_signal", "trigger", "blind"}
TRIGGER_DEFAULTS = {"single_muon": {"pt_min": 24.0, "eta_max": 2.1, "iso_max": 0.15}}
# generator-level bias of QCD under a single-muon trigger: looser than the trigger by these margins so
# that resolution cannot move rejected-at-generation events into the accepted region
QCD_BIAS_PT_FACTOR, QCD_BIAS_ETA_MARGIN = 0.85, 0.2
FAULT_KEYS = {"type", "runs", "lumis", "rate", "eta", "phi", "pt_scale", "shift"}
ENGINES = ("parametric", "pythia", "pythia_dijet")
# sample keys the Pythia engine refuses: its cross section is Pythia's estimate x the filter efficiency
PYTHIA_REFUSED_KEYS = ("xsec", "filter_eff")


def preset_path(name: str) -> Path:
    """conf/generate/NAME.yaml by the configuration lookup order (SPARKAD_CONF, then packaged)."""
    from sparkad.core.config import conf_file
    return conf_file(f"generate/{name}.yaml")


def list_presets() -> dict[str, str]:
    """{preset name: description} of conf/generate/*.yaml (cross-section tables excluded)."""
    from sparkad.core.config import conf_files
    out = {}
    for p in conf_files("generate").values():
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and "samples" in data:
            out[p.stem] = str(data.get("description", "")).strip().splitlines()[0] if data.get("description") else ""
    return out


def load_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file holding a mapping (a preset, a cross-section table); generator errors name it."""
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
        if p.suffix in (".yaml", ".yml") and (p.exists() or len(p.parts) > 1):
            raw, name = load_yaml_mapping(p, "preset file"), p.stem  # a path that does not exist: "not found"
        else:
            path = preset_path(str(preset))
            if not path.exists():
                known = ", ".join(list_presets()) or "none"
                raise GeneratorConfigError(f"unknown preset {preset!r} (known: {known})")
            raw, name = load_yaml_mapping(path, "preset"), str(preset)
    return validate(raw, name)


def _xsec_table(ref, sqrt_s) -> dict:
    if isinstance(ref, dict):
        table = ref
    else:
        table = load_yaml_mapping(preset_path(str(ref)), "cross-section table")
    key = int(round(float(sqrt_s)))
    for k in (key, str(key)):
        if k in table:
            return table[k] or {}
    raise GeneratorConfigError(f"cross-section table has no entry for sqrt_s = {key} GeV")


def _num(v, what, positive=True, integer=False):
    if isinstance(v, bool):
        raise GeneratorConfigError(f"{what} must be a number, got {v!r}")
    if isinstance(v, int):
        x = v if integer else float(v)  # ints exactly (seeds beyond 2**53)
    else:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise GeneratorConfigError(f"{what} must be a number, got {v!r}") from None
        if not math.isfinite(x):
            raise GeneratorConfigError(f"{what} must be a finite number, got {v!r}")
        if integer:
            if x != int(x):
                raise GeneratorConfigError(f"{what} must be an integer, got {v!r}")
            x = int(x)
    if positive and x <= 0:
        raise GeneratorConfigError(f"{what} must be > 0, got {v!r}")
    return x


def _bool(v, what) -> bool:
    """YAML's true/false only: a quoted "no" or "false" is a non-empty string, i.e. true in Python."""
    if not isinstance(v, bool):
        raise GeneratorConfigError(f"{what} must be true or false, got {v!r}")
    return v


def _pair(v, what, integer=False, positive=False) -> list:
    """[low, high] with low <= high."""
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise GeneratorConfigError(f"{what} must be [low, high], got {v!r}")
    lo, hi = (_num(x, what, positive=positive, integer=integer) for x in v)
    if lo > hi:
        raise GeneratorConfigError(f"{what} must be [low, high] with low <= high, got {v!r}")
    return [lo, hi]


# detector parameters that are probabilities / fractions, and those that must be > 0
_DET_PROBABILITIES = {"vertex_eff", "nonpf_muon_frac", "pu_jet_rate", "btag_eff_b", "btag_eff_c", "btag_eff_light",
                      "btag_notrack", "tau_eff", "tau_fake_prob", "trigger_eff"}
_DET_POSITIVE = {"pileup_mu_sd"}


def _check_detector(det) -> dict:
    if not isinstance(det, dict):
        raise GeneratorConfigError(f"detector must be a mapping of parameters, got {det!r}")
    bad = set(det) - set(DETECTOR_DEFAULTS)
    if bad:
        raise GeneratorConfigError(f"detector: unknown parameter(s) {sorted(bad)}")
    out = {}
    for k, v in det.items():
        what = f"detector: {k}"
        if isinstance(DETECTOR_DEFAULTS[k], bool):
            out[k] = _bool(v, what)
            continue
        x = _num(v, what, positive=k in _DET_POSITIVE)
        if k in _DET_PROBABILITIES and not 0.0 <= x <= 1.0:
            raise GeneratorConfigError(f"{what} is a probability: must be in [0, 1], got {v!r}")
        if k not in _DET_PROBABILITIES and k != "btag_wp" and x < 0:
            raise GeneratorConfigError(f"{what} must be >= 0, got {v!r}")
        out[k] = x
    return out


def _check_params(proc: str, params, what: str) -> dict:
    """A process's parameters are keyword arguments of its model function: unknown ones are refused
    here rather than by the model in a worker."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise GeneratorConfigError(f"{what}: params must be a mapping, got {params!r}")
    sig = inspect.signature(PROCESSES[proc]).parameters
    known = [k for k in sig if k not in ("rng", "batch", "rows", "ctx")]
    bad = sorted(set(params) - set(known))
    if bad:
        raise GeneratorConfigError(f"{what}: unknown parameter(s) {bad} of process {proc}; known: {known}")
    return dict(params)


def _check_runs(spec, sname: str) -> dict:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise GeneratorConfigError(f"sample {sname}: runs must be a mapping, got {spec!r}")
    bad = set(spec) - set(RUNS_DEFAULTS) - {"run_list"}
    if bad:
        raise GeneratorConfigError(f"sample {sname}: runs: unknown key(s) {sorted(bad)}")
    out, where = dict(spec), f"sample {sname}: runs:"
    if "era" in out and not isinstance(out["era"], str):
        raise GeneratorConfigError(f"{where} era must be a name, got {out['era']!r}")
    if "run_list" in out:
        rl = out["run_list"]
        if not isinstance(rl, list) or not rl:
            raise GeneratorConfigError(f"{where} run_list must be a non-empty list of run numbers, got {rl!r}")
        out["run_list"] = [_num(r, f"{where} run_list entry", integer=True) for r in rl]
    if "first_run" in out:
        out["first_run"] = _num(out["first_run"], f"{where} first_run", positive=False, integer=True)
        if out["first_run"] < 0:
            raise GeneratorConfigError(f"{where} first_run must be >= 0, got {out['first_run']}")
    for k in ("n_runs", "runs_per_fill"):
        if k in out:
            out[k] = _num(out[k], f"{where} {k}", integer=True)
    if "lumis_per_run" in out:
        out["lumis_per_run"] = _pair(out["lumis_per_run"], f"{where} lumis_per_run", integer=True, positive=True)
    for k in ("lifetime_hours", "peak_pileup"):
        if k in out:
            out[k] = _num(out[k], f"{where} {k}")
    if "gap_minutes" in out:
        out["gap_minutes"] = _num(out["gap_minutes"], f"{where} gap_minutes", positive=False)
        if out["gap_minutes"] < 0:
            raise GeneratorConfigError(f"{where} gap_minutes must be >= 0, got {out['gap_minutes']}")
    return out


def _check_fault(f, i: int, sname: str) -> dict:
    where = f"sample {sname}: fault {i}:"
    if not isinstance(f, dict) or f.get("type") not in FAULT_CODES or f.get("type") == "none":
        raise GeneratorConfigError(f"{where} type must be one of {sorted(set(FAULT_CODES) - {'none'})}")
    bad = set(f) - FAULT_KEYS
    if bad:
        raise GeneratorConfigError(f"{where} unknown key(s) {sorted(bad)}")
    out = dict(f)
    if out.get("runs") is not None:
        runs = out["runs"] if isinstance(out["runs"], list) else None
        if not runs:
            raise GeneratorConfigError(f"{where} runs must be a non-empty list of run numbers, got {out['runs']!r}")
        out["runs"] = [_num(r, f"{where} runs entry", integer=True) for r in runs]
    if out.get("lumis") is not None:
        out["lumis"] = _pair(out["lumis"], f"{where} lumis = [first, last]", integer=True, positive=True)
    for k in ("eta", "phi"):
        if k in out:
            out[k] = _pair(out[k], f"{where} {k}", positive=False)
    if "rate" in out:
        out["rate"] = _num(out["rate"], f"{where} rate")
        if out["rate"] > 1:
            raise GeneratorConfigError(f"{where} rate is a probability per event: must be in (0, 1], got {f['rate']!r}")
    if "pt_scale" in out:
        out["pt_scale"] = _num(out["pt_scale"], f"{where} pt_scale")
    if "shift" in out:
        out["shift"] = _num(out["shift"], f"{where} shift", positive=False)
        if out["shift"] <= -1:
            raise GeneratorConfigError(f"{where} shift must be > -1 (a jet energy scale factor 1 + shift), got {f['shift']!r}")
    return out


def validate(raw: dict, name: str = "custom") -> dict:
    unknown = set(raw) - TOP_KEYS - {"name"}
    if unknown:
        raise GeneratorConfigError(f"preset {name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    cfg = merge_config(TOP_DEFAULTS, raw, {"name": name})
    cfg["sqrt_s"] = _num(cfg["sqrt_s"], "sqrt_s")
    cfg["luminosity"] = _num(cfg["luminosity"], "luminosity")
    cfg["seed"] = _num(cfg["seed"], "seed", positive=False, integer=True)
    if cfg["seed"] < 0:
        raise GeneratorConfigError(f"seed must be >= 0, got {cfg['seed']}")
    cfg["max_events_per_file"] = _num(cfg["max_events_per_file"], "max_events_per_file", integer=True)
    cfg["chunk_size"] = _num(cfg["chunk_size"], "chunk_size", integer=True)
    from sparkad.generate.layout import parse_compression

    try:
        parse_compression(cfg["compression"])
    except ValueError as e:
        raise GeneratorConfigError(str(e)) from None
    cfg["detector"] = _check_detector(cfg["detector"] or {})
    cfg["exact_layout"] = _bool(cfg["exact_layout"], "exact_layout")
    cfg["pf_candidates"] = _bool(cfg["pf_candidates"], "pf_candidates")
    if cfg["engine"] not in ENGINES:
        raise GeneratorConfigError(f"engine must be one of {', '.join(ENGINES)}, got {cfg['engine']!r}")
    pythia = cfg["engine"] in ("pythia", "pythia_dijet")
    if cfg["engine"] == "pythia_dijet":  # particle level, PFNano layout: nothing of the lepton detector applies
        for key in ("detector", "exact_layout", "pf_candidates"):
            if cfg[key]:
                raise GeneratorConfigError(f"preset {name}: {key} does not apply to engine pythia_dijet (particle-"
                                           f"level jets and constituents in the PFNano layout)")
    elif pythia:  # Pythia's particles carry the underlying event: isolation from the truth cone sums
        cfg["detector"].setdefault("particle_isolation", True)
    elif cfg["detector"].get("particle_isolation"):
        raise GeneratorConfigError("detector: particle_isolation needs engine pythia (the parametric processes "
                                   "have no particles in the cone)")
    xs = {} if pythia else _xsec_table(cfg["cross_sections"], cfg["sqrt_s"])
    samples = cfg["samples"]
    if not isinstance(samples, dict) or not samples:
        raise GeneratorConfigError(f"preset {name}: 'samples' must be a non-empty mapping name -> sample")
    out = {}
    for sname, s in samples.items():
        problem = name_problem(sname)  # names the output files: `../x` would write outside --out
        if problem:
            raise GeneratorConfigError(f"sample name {problem}")
        if not isinstance(s, dict):
            raise GeneratorConfigError(f"sample {sname}: must be a mapping")
        bad = set(s) - SAMPLE_KEYS
        if bad:
            raise GeneratorConfigError(f"sample {sname}: unknown key(s) {sorted(bad)}")
        s = dict(s)
        s["events"] = _num(s.get("events", 0), f"sample {sname}: events", integer=True)
        for key in ("data_like", "is_signal", "blind"):
            if key in s:
                s[key] = _bool(s[key], f"sample {sname}: {key}")
        if s.get("blind") and not (s.get("data_like") and cfg.get("engine") == "pythia_dijet"):
            raise GeneratorConfigError(f"sample {sname}: blind (a black box: truth written apart) needs a data_like "
                                       f"sample of engine pythia_dijet")
        if s.get("data_like") and pythia:
            for key in ("trigger", "signal"):
                if s.get(key):
                    raise GeneratorConfigError(f"sample {sname}: {key} is not supported by engine {cfg['engine']} "
                                               f"yet (the mix of the preset's samples at chosen weights is)")
            if s.get("faults") and cfg["engine"] == "pythia_dijet":
                raise GeneratorConfigError(f"sample {sname}: faults are not supported by engine pythia_dijet yet")
        if s.get("data_like"):
            out[sname] = s  # resolved below, once all MC samples are known
        elif pythia:
            out[sname] = _resolve_pythia_component(s, f"sample {sname}", cfg["sqrt_s"], cfg["engine"])
        else:
            out[sname] = _resolve_component(s, f"sample {sname}", xs)
    for sname, s in out.items():
        if s.get("data_like"):
            out[sname] = _resolve_data(s, sname, out, xs, pythia)
    cfg["samples"] = out
    cfg["_validated"] = True
    return cfg


def _resolve_component(s: dict, what: str, xs: dict) -> dict:
    proc = s.get("process")
    if proc not in PROCESSES:
        raise GeneratorConfigError(f"{what}: unknown process {proc!r}; known: {', '.join(PROCESSES)}")
    params = _check_params(proc, s.get("params"), what)
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


def _with_defaults(proc: str, params, what: str, known: dict, engine: str) -> tuple[dict, dict]:
    """(the sample's params, they over the process's defaults); unknown names refused."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise GeneratorConfigError(f"{what}: params must be a mapping, got {params!r}")
    bad = sorted(set(params) - set(known))
    if bad:
        raise GeneratorConfigError(f"{what}: unknown parameter(s) {bad} of process {proc} under engine {engine}; "
                                   f"known: {sorted(known)}")
    return params, {**known, **params}


def _check_pythia_params(proc: str, params, what: str, sqrt_s: float) -> dict:
    from sparkad.generate.pythia import COMMON_DEFAULTS, PROCESS_DEFAULTS, default_jet_r

    params, out = _with_defaults(proc, params, what, {**COMMON_DEFAULTS, **PROCESS_DEFAULTS[proc]}, "pythia")
    for k in ("lepton_pt_min", "m_min", "m_max", "parton_pt_min"):
        if k in out:
            out[k] = _num(out[k], f"{what}: {k}", positive=False)
            if out[k] < 0:
                raise GeneratorConfigError(f"{what}: {k} must be >= 0, got {params[k]!r}")
    if out["lepton_pt_min"] >= sqrt_s / 2:
        raise GeneratorConfigError(f"{what}: lepton_pt_min must be below sqrt_s / 2 = {sqrt_s / 2:g} GeV, "
                                   f"got {params['lepton_pt_min']!r}")
    out["lepton_eta_max"] = _num(out["lepton_eta_max"], f"{what}: lepton_eta_max")
    out["jet_r"] = default_jet_r(sqrt_s) if out["jet_r"] is None else _num(out["jet_r"], f"{what}: jet_r")
    if out["jet_r"] > 1.5:
        raise GeneratorConfigError(f"{what}: jet_r must be in (0, 1.5], got {params['jet_r']!r}")
    if proc == "dyjets" and 0 < out["m_max"] <= out["m_min"]:
        raise GeneratorConfigError(f"{what}: m_max must be > m_min (or 0: no upper cut), got {out['m_max']!r}")
    _check_settings_list(out["settings"], what)
    return out


def _check_dijet_params(proc: str, params, what: str, sqrt_s: float) -> dict:
    from sparkad.generate.dijet import COMMON_DEFAULTS, PROCESS_DEFAULTS

    params, out = _with_defaults(proc, params, what, {**COMMON_DEFAULTS, **PROCESS_DEFAULTS[proc]}, "pythia_dijet")
    for k in ("pt_hat_min", "mass", "mx", "my", "jet_pt_min"):
        if k in out:
            out[k] = _num(out[k], f"{what}: {k}", positive=False)
            if out[k] < 0 or out[k] >= sqrt_s:
                raise GeneratorConfigError(f"{what}: {k} must be in [0, sqrt_s = {sqrt_s:g}) GeV, got {params[k]!r}")
    out["pileup_mu"] = _num(out["pileup_mu"], f"{what}: pileup_mu", positive=False)
    if not 0 <= out["pileup_mu"] <= 200:
        raise GeneratorConfigError(f"{what}: pileup_mu must be in [0, 200] interactions per crossing, got "
                                   f"{params.get('pileup_mu')!r}")
    out["pileup_chs"] = _bool(out["pileup_chs"], f"{what}: pileup_chs")
    if proc == "wprime_xy" and not (0 < out["mx"] and 0 < out["my"] and out["mx"] + out["my"] < out["mass"]):
        raise GeneratorConfigError(f"{what}: wprime_xy needs 0 < mx, 0 < my and mx + my < mass, got mass "
                                   f"{out['mass']:g}, mx {out['mx']:g}, my {out['my']:g} GeV")
    out["jet_r"] = _num(out["jet_r"], f"{what}: jet_r")
    if out["jet_r"] > 1.5:
        raise GeneratorConfigError(f"{what}: jet_r must be in (0, 1.5], got {params['jet_r']!r}")
    _check_settings_list(out["settings"], what)
    return out


def _check_settings_list(settings, what: str) -> None:
    if not isinstance(settings, list) or not all(isinstance(x, str) for x in settings):
        raise GeneratorConfigError(f"{what}: settings must be a list of Pythia setting strings, got {settings!r}")
    if settings:
        from sparkad.generate.pythia import check_settings

        try:
            check_settings(settings)
        except ValueError as e:
            raise GeneratorConfigError(f"{what}: {e}") from None


def _resolve_pythia_component(s: dict, what: str, sqrt_s: float, engine: str = "pythia") -> dict:
    """An MC sample of a Pythia engine: the cross section is known only after generation (Pythia's
    sigma_gen x the filter efficiency x k_factor, written to the fileset by the driver)."""
    if engine == "pythia_dijet":
        from sparkad.generate.dijet import LABELS as labels, PROCESS_DEFAULTS, SIGNALS as signals
    else:
        from sparkad.generate.pythia import PROCESS_DEFAULTS
        labels, signals = LABELS, set()

    proc = s.get("process")
    if proc not in PROCESS_DEFAULTS:
        raise GeneratorConfigError(f"{what}: unknown process {proc!r} for engine {engine}; known: "
                                   f"{', '.join(PROCESS_DEFAULTS)}")
    for key in PYTHIA_REFUSED_KEYS:
        if key in s:
            raise GeneratorConfigError(f"{what}: {key} comes from Pythia under engine {engine} (remove it)")
    check = _check_dijet_params if engine == "pythia_dijet" else _check_pythia_params
    params = check(proc, s.get("params"), what, sqrt_s)
    k = _num(s.get("k_factor", 1.0), f"{what}: k_factor")
    return {**s, "process": proc, "params": params, "k_factor": k, "xsec": None,
            "label": s.get("label", labels[proc]), "is_signal": bool(s.get("is_signal", proc in signals))}


def _resolve_data(s: dict, sname: str, samples: dict, xs: dict, pythia: bool = False) -> dict:
    """A data-like mix. Under engine pythia its entries are the preset's MC samples; a weight left out is
    that sample's cross section, known once it is generated (None here; see api.generate)."""
    comps = []
    mix = s.get("mix")
    if not mix or not isinstance(mix, (list, dict)):
        raise GeneratorConfigError(f"sample {sname}: a data_like sample needs a non-empty 'mix' (a list of "
                                   f"samples or processes, or a mapping name -> weight), got {mix!r}")
    items = mix.items() if isinstance(mix, dict) else [(m, None) for m in mix]
    for ref, w in items:
        if isinstance(ref, str) and ref in samples and not samples[ref].get("data_like"):
            c = dict(samples[ref])
        elif pythia:
            raise GeneratorConfigError(f"sample {sname}: mix entry {ref!r} is not an MC sample of the preset "
                                       f"(engine pythia mixes the preset's samples)")
        elif isinstance(ref, str) and ref in PROCESSES:
            c = _resolve_component({"process": ref}, f"sample {sname}: mix {ref}", xs)
        else:
            raise GeneratorConfigError(f"sample {sname}: mix entry {ref!r} is neither an MC sample nor a process")
        weight = c["xsec"] if w is None else _num(w, f"sample {sname}: mix weight of {ref}")
        comps.append({"name": ref, "process": c["process"], "params": c["params"], "weight": weight,
                      "is_signal": bool(c.get("is_signal", False)), "k_factor": c.get("k_factor", 1.0)})
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
    sig = s.get("signal")
    if sig:
        if not isinstance(sig, dict) or ("fraction" in sig) == ("xsec" in sig):
            raise GeneratorConfigError(f"sample {sname}: signal needs process and exactly one of fraction, xsec")
        c = _resolve_component({"process": sig.get("process"), "params": sig.get("params")},
                               f"sample {sname}: signal", xs)
        total_bkg = sum(c["weight"] for c in comps)
        if "fraction" in sig:
            f = _num(sig["fraction"], f"sample {sname}: signal fraction")
            if f >= 1:
                raise GeneratorConfigError(f"sample {sname}: signal fraction must be < 1, got {f}")
            weight = total_bkg * f / (1.0 - f)
        else:
            weight = _num(sig["xsec"], f"sample {sname}: signal xsec")
        comps.append({"name": "signal", "process": c["process"], "params": c["params"], "weight": weight,
                      "is_signal": True})
    runs_cfg = _check_runs(s.get("runs"), sname)
    fault_list = s.get("faults") or []
    if not isinstance(fault_list, list):
        raise GeneratorConfigError(f"sample {sname}: faults must be a list of faults, got {fault_list!r}")
    faults = [_check_fault(f, i, sname) for i, f in enumerate(fault_list)]
    try:
        run_numbers = selected_runs(runs_cfg)
    except ValueError as e:
        raise GeneratorConfigError(f"sample {sname}: {e}") from None
    for i, f in enumerate(faults):  # a fault in a run the sample does not have would silently never fire
        absent = sorted(set(f.get("runs") or ()) - set(run_numbers))
        if absent:
            raise GeneratorConfigError(f"sample {sname}: fault {i}: run(s) {absent} are not among the sample's "
                                       f"runs ({run_numbers[0]}..{run_numbers[-1]}, {len(run_numbers)} runs)")
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
        if not isinstance(vals, dict):
            raise GeneratorConfigError(f"sample {sname}: trigger {name}: must be a mapping of cuts "
                                       f"{sorted(TRIGGER_DEFAULTS[name])}, got {vals!r}")
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
    if n_events < len(cfg["samples"]):  # every sample keeps at least one event
        raise GeneratorConfigError(f"--events {n_events} is fewer than the preset's {len(cfg['samples'])} samples "
                                   f"({', '.join(cfg['samples'])}): give at least one event per sample")
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
