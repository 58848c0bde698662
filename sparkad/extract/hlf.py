"""High-level features (HLF) of ../shared/spec/HLF.md as pure functions of event objects.

``EventObjects`` is the format-independent view of one chunk of events (built by
``sparkad.extract.formats`` from NanoAOD, CMS-2012, PFNano or Delphes inputs). ``select`` applies a
selection preset and returns the per-step cut-flow; ``compute_hlf`` returns one numpy column per
requested feature for the selected events. Nothing here knows about files or engines.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import awkward as ak
import numpy as np

from sparkad.extract import kernels
from sparkad.extract.selection import Selection

#: What each capability means, for error messages.
CAPABILITIES = {
    "iso_ch": "charged-hadron isolation of the lepton",
    "iso_neu_pho": "neutral-hadron and photon isolation components of the lepton",
    "pf_counts": "PF candidate multiplicities (charged hadrons, neutral hadrons, photons)",
    "photons": "reconstructed photons",
}

#: feature -> capabilities it needs beyond leptons, jets and MET (which every format has).
FEATURE_REQUIRES: dict[str, tuple[str, ...]] = {
    "HT": (), "ST": ("photons",), "MJ": (), "NJ": (), "NB": (), "MET": (),
    "mu_pt_tot": (), "mu_mass": (), "n_mu": (),
    "ele_pt_tot": (), "ele_mass": (), "n_ele": (),
    "n_neu": ("pf_counts",), "n_ch": ("pf_counts",), "n_photon": ("pf_counts",),
    "lep_pt": (), "lep_eta": (), "lep_charge": (),
    "lep_iso_ch": ("iso_ch",), "lep_iso_neu": ("iso_neu_pho",), "lep_iso_gamma": ("iso_neu_pho",),
    "lep_iso": (), "MT": (), "met_par": (), "met_perp": (), "lep_is_ele": (),
}
KNOWN_FEATURES = tuple(FEATURE_REQUIRES)


@dataclass
class EventObjects:
    """Format-independent physics objects of a chunk of events.

    muons / electrons: jagged records with pt, eta, phi, mass, charge, iso (total relative
    isolation, ΔR < 0.3; negative = not available for this lepton, e.g. -999 for non-PF muons
    in 2012 files) and, where the format has them, iso_ch, iso_neu, iso_pho (relative).
    jets: pt, eta, phi, mass, btag (bool at the configured working point).
    photons: pt, eta, phi, or None when the input has no photons.
    pf_counts: dict n_ch / n_neu / n_photon of per-event counts, or None.
    """

    muons: ak.Array
    electrons: ak.Array
    jets: ak.Array
    met_pt: np.ndarray
    met_phi: np.ndarray
    photons: ak.Array | None = None
    pf_counts: dict | None = None
    capabilities: frozenset = field(default_factory=frozenset)

    _flat: dict = field(default_factory=dict, repr=False)
    _dirs: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.met_pt)

    def flat(self, name: str, fields=("pt", "eta", "phi", "mass")):
        """(offsets, {field: flat numpy content}) of a collection; each field is flattened once per
        chunk and only when asked for (reading a branch is most of the cost)."""
        coll = getattr(self, name)
        if name not in self._flat:
            counts = ak.to_numpy(ak.num(coll, axis=1)).astype(np.int64)
            off = np.zeros(len(counts) + 1, np.int64)
            np.cumsum(counts, out=off[1:])
            self._flat[name] = (off, {})
        off, content = self._flat[name]
        for f in fields:
            if f not in content and f in coll.fields:
                content[f] = ak.to_numpy(ak.flatten(coll[f], axis=1))
        return off, content

    def directions(self, name: str):
        """kernels.directions (cos φ, sin φ, sinh η) of a collection, once per chunk: the
        top_rediscovery jet sums run twice (the NJ cut, then the features)."""
        if name not in self._dirs:
            _, c = self.flat(name, ("eta", "phi"))
            self._dirs[name] = kernels.directions(c["eta"], c["phi"])
        return self._dirs[name]


def missing_capabilities(features, capabilities, requires=None) -> dict[str, list[str]]:
    """feature -> capabilities it needs that the input lacks (empty when all are computable); `requires`:
    the analysis's feature -> capabilities table (default: these single-lepton features')."""
    requires = FEATURE_REQUIRES if requires is None else requires
    out = {}
    for f in features:
        lack = [c for c in requires[f] if c not in capabilities]
        if lack:
            out[f] = lack
    return out


LEPTON_FIELDS = ("pt", "eta", "phi", "charge", "iso", "iso_ch", "iso_neu", "iso_pho")


@dataclass
class ChosenLepton:
    """The lepton the selection chose in each event: ``which`` indexes the muon or electron content
    (-1: none), ``is_ele`` says which. Fields are picked on demand, for all events (cached; jet
    cleaning needs η, φ everywhere) or only for listed events (the features of the selected ones)."""

    which: np.ndarray
    is_ele: np.ndarray
    mu: dict
    el: dict
    _all: dict = field(default_factory=dict, repr=False)

    def pick(self, name: str, events: np.ndarray | None = None) -> np.ndarray:
        """float32 values of one field (LEPTON_FIELDS or is_ele) for `events` (default: all); NaN
        where there is no lepton or its flavour lacks the field."""
        ev = np.arange(len(self.which)) if events is None else events
        if name == "is_ele":
            return np.where(self.which[ev] >= 0, self.is_ele[ev], np.nan).astype(np.float32)
        none = np.empty(0, np.float32)  # isolation components exist only where the format provides them
        return kernels.pick_lepton(self.which, self.is_ele, self.mu.get(name, none), self.el.get(name, none), ev)

    def __getitem__(self, name: str) -> np.ndarray:
        """All events' values of one field."""
        if name not in self._all:
            self._all[name] = self.pick(name)
        return self._all[name]


def select(obj: EventObjects, sel: Selection, pre_steps=()):
    """Apply a selection preset.

    Returns (mask, lepton, cutflow): the event mask; the chosen lepton of every event (a
    ``ChosenLepton``: ``lepton["pt"]`` etc. for all events, NaN where there is none); and an
    ordered list of (step name, events passing so far). ``pre_steps`` are earlier (name, mask) cuts
    such as the certified-luminosity mask.
    """
    n = len(obj)
    passing = np.ones(n, dtype=bool)
    cutflow = [("all", n)]
    for name, m in pre_steps:
        passing &= np.asarray(m, dtype=bool)
        cutflow.append((name, int(passing.sum())))

    cut = sel.lepton
    mu_off, mu = obj.flat("muons", LEPTON_FIELDS)
    el_off, el = obj.flat("electrons", LEPTON_FIELDS)
    eta_max = np.inf if cut.eta_max is None else cut.eta_max
    pass_pt, pass_iso, pass_eta, which, is_ele = kernels.choose_lepton(
        mu_off, mu["pt"], mu["eta"], mu["iso"], el_off, el["pt"], el["eta"], el["iso"], cut.pt_min, cut.iso_max, eta_max)
    passing &= pass_pt
    cutflow.append((f"lepton pT > {cut.pt_min:g}", int(passing.sum())))
    passing &= pass_iso
    cutflow.append((f"lepton Iso < {cut.iso_max:g}", int(passing.sum())))
    if cut.eta_max is not None:
        passing &= pass_eta
        cutflow.append((f"lepton |eta| < {cut.eta_max:g}", int(passing.sum())))

    lepton = ChosenLepton(which, is_ele, mu, el)

    if sel.min_jets > 0:
        idx = np.flatnonzero(passing)
        nj = _jets(obj, lepton, sel, idx)[0]
        passing[idx[nj < sel.min_jets]] = False
        cutflow.append((f">= {sel.min_jets} jets pT > {sel.jets.pt_min:g}", int(passing.sum())))
    return passing, lepton, cutflow


def _jets(obj: EventObjects, lepton: ChosenLepton, sel: Selection, events: np.ndarray):
    """NJ, NB, HT, MJ of the clean jets (HLF.md: pT, |η|, ΔR to the lepton) of the listed events."""
    off, j = obj.flat("jets", ("pt", "eta", "phi", "mass", "btag"))
    jc = sel.jets
    return kernels.jet_sums(off, j["pt"], j["eta"], j["phi"], j["mass"], j["btag"], events,
                            lepton["eta"], lepton["phi"], jc.pt_min, jc.eta_max, jc.lepton_dr or 0.0,
                            dirs=obj.directions("jets"))


def compute_hlf(obj: EventObjects, lepton: ChosenLepton, sel: Selection, features, events: np.ndarray) -> dict[str, np.ndarray]:
    """The requested features (float32 columns) of the listed events (indices that passed ``select``).

    A feature whose inputs the format lacks (see ``missing_capabilities``) comes out as NaN: the
    caller decides beforehand whether that is allowed and records it.
    """
    n = len(events)
    want = set(features)
    cols: dict[str, np.ndarray] = {}
    lep = _LeptonColumns(lepton, events)

    if want & {"HT", "ST", "MJ", "NJ", "NB"}:
        cols["NJ"], cols["NB"], cols["HT"], cols["MJ"] = _jets(obj, lepton, sel, events)
        if "ST" in want:
            cols["ST"] = _scalar_sum_st(obj, cols["HT"], sel, events) if "photons" in obj.capabilities else np.full(n, np.nan)
    if want & {"MET", "MT", "met_par", "met_perp"}:
        met = np.asarray(obj.met_pt, dtype=np.float64)[events]
        met_phi = np.asarray(obj.met_phi, dtype=np.float64)[events]
        cols["MET"] = met
        cols["MT"], cols["met_par"], cols["met_perp"] = kernels.lepton_met(lep["pt"], lep["phi"], met, met_phi)
    for prefix, name in (("mu", "muons"), ("ele", "electrons")):
        if want & {f"{prefix}_pt_tot", f"{prefix}_mass", f"n_{prefix}"}:
            off, c = obj.flat(name)
            cols[f"n_{prefix}"], cols[f"{prefix}_pt_tot"], cols[f"{prefix}_mass"] = kernels.vector_sum(
                off, c["pt"], c["eta"], c["phi"], c["mass"], events, dirs=obj.directions(name))
    if want & {"n_ch", "n_neu", "n_photon"}:
        for k in ("n_ch", "n_neu", "n_photon"):
            cols[k] = np.asarray(obj.pf_counts[k])[events] if obj.pf_counts is not None else np.full(n, np.nan)
    for feature, name in (("lep_pt", "pt"), ("lep_eta", "eta"), ("lep_charge", "charge"), ("lep_is_ele", "is_ele"),
                          ("lep_iso", "iso"), ("lep_iso_ch", "iso_ch"), ("lep_iso_neu", "iso_neu"),
                          ("lep_iso_gamma", "iso_pho")):
        if feature in want:
            cols[feature] = lep[name]
    return {f: np.asarray(cols[f], dtype=np.float32) for f in features}


class _LeptonColumns(dict):
    """The chosen lepton's fields for the listed events, picked when first asked for."""

    def __init__(self, lepton: ChosenLepton, events: np.ndarray):
        super().__init__()
        self._lepton, self._events = lepton, events

    def __missing__(self, name):
        self[name] = v = self._lepton.pick(name, self._events)
        return v


def _scalar_sum_st(obj: EventObjects, ht: np.ndarray, sel: Selection, events: np.ndarray) -> np.ndarray:
    """VAE ST: HT plus leptons and photons with pT > jet pT threshold and |η| < jet |η| limit."""
    st = np.asarray(ht, np.float64).copy()
    for name in ("muons", "electrons", "photons"):
        off, c = obj.flat(name, ("pt", "eta"))
        st += kernels.scalar_sum(off, c["pt"], c["eta"], events, sel.jets.pt_min, sel.jets.eta_max)
    return st
