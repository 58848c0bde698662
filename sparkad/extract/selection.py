"""Event-selection presets (conf/selections.yaml) as validated, picklable dataclasses."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from sparkad.core.config import as_number, check_keys, load_conf, load_yaml, require_mapping
from sparkad.core.errors import ConfigError


@dataclass(frozen=True)
class LeptonCut:
    pt_min: float = 23.0
    iso_max: float = 0.45
    eta_max: float | None = None


@dataclass(frozen=True)
class JetCut:
    pt_min: float = 30.0
    eta_max: float = 2.4
    lepton_dr: float = 0.4  # jets within this ΔR of the lepton are removed (0 disables)


@dataclass(frozen=True)
class Selection:
    name: str
    lepton: LeptonCut
    jets: JetCut
    min_jets: int = 0
    analysis: str = "single_lepton"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DijetSelection:
    """The dijet analysis (seeds/004): events with two large-R jets above pt_min within |eta| < eta_max;
    jet 1 / jet 2 = the two highest-pT such jets, each with its `constituents` leading constituents kept;
    jet 1 above `lead_pt_min` (the LHC Olympics trigger-like cut: one jet pT > 1.2 TeV)."""
    name: str
    jets: JetCut
    constituents: int = 100
    analysis: str = "dijet"
    lead_pt_min: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


ANALYSES = ("single_lepton", "dijet")


def dijet_selection_from_dict(name: str, d: dict, where: str) -> DijetSelection:
    check_keys(d, {"analysis", "jets", "constituents", "description"}, where)
    jets = require_mapping(d.get("jets", {}), f"{where}.jets")
    check_keys(jets, {"pt_min", "eta_max", "lead_pt_min"}, f"{where}.jets")
    k = d.get("constituents", 100)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"{where}.constituents: expected a positive integer, got {k!r}")
    return DijetSelection(name=name, jets=JetCut(pt_min=as_number(jets.get("pt_min", 30.0), f"{where}.jets.pt_min"),
                                                 eta_max=as_number(jets.get("eta_max", 2.4), f"{where}.jets.eta_max",
                                                                   positive=True), lepton_dr=0.0),
                          constituents=k, lead_pt_min=as_number(jets.get("lead_pt_min", 0.0), f"{where}.jets.lead_pt_min"))


def selection_from_dict(name: str, d: dict, where: str) -> Selection | DijetSelection:
    d = require_mapping(d, where)
    analysis = d.get("analysis", "single_lepton")
    if analysis not in ANALYSES:
        raise ConfigError(f"{where}.analysis: expected one of {', '.join(ANALYSES)}, got {analysis!r}")
    if analysis == "dijet":
        return dijet_selection_from_dict(name, d, where)
    check_keys(d, {"analysis", "lepton", "jets", "min_jets", "description"}, where)
    lep = require_mapping(d.get("lepton", {}), f"{where}.lepton")
    check_keys(lep, {"pt_min", "iso_max", "eta_max"}, f"{where}.lepton")
    jets = require_mapping(d.get("jets", {}), f"{where}.jets")
    check_keys(jets, {"pt_min", "eta_max", "lepton_dr"}, f"{where}.jets")
    min_jets = d.get("min_jets", 0)
    if isinstance(min_jets, bool) or not isinstance(min_jets, int) or min_jets < 0:
        raise ConfigError(f"{where}.min_jets: expected a non-negative integer, got {min_jets!r}")
    return Selection(
        name=name,
        lepton=LeptonCut(
            pt_min=as_number(lep.get("pt_min", 23.0), f"{where}.lepton.pt_min"),
            iso_max=as_number(lep.get("iso_max", 0.45), f"{where}.lepton.iso_max", positive=True),
            eta_max=as_number(lep.get("eta_max"), f"{where}.lepton.eta_max", positive=True, allow_none=True),
        ),
        jets=JetCut(
            pt_min=as_number(jets.get("pt_min", 30.0), f"{where}.jets.pt_min"),
            eta_max=as_number(jets.get("eta_max", 2.4), f"{where}.jets.eta_max", positive=True),
            lepton_dr=as_number(jets.get("lepton_dr", 0.4), f"{where}.jets.lepton_dr"),
        ),
        min_jets=min_jets,
    )


def load_selection(name_or_path: str) -> Selection | DijetSelection:
    """A preset name from conf/selections.yaml, or a YAML file holding one selection mapping."""
    if name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).is_file():
        return selection_from_dict(Path(name_or_path).stem, load_yaml(name_or_path), name_or_path)
    presets = require_mapping(load_conf("selections"), "conf/selections.yaml")
    if name_or_path not in presets:
        raise ConfigError(f"unknown selection {name_or_path!r} (presets: {', '.join(presets)}; or give a YAML file)")
    return selection_from_dict(name_or_path, presets[name_or_path], f"conf/selections.yaml:{name_or_path}")
