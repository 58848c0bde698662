"""High-level features (HLF) of ../shared/spec/HLF.md as pure functions of event objects.

``EventObjects`` is the format-independent view of one chunk of events (built by
``sparkad.formats`` from NanoAOD, CMS-2012, PFNano or Delphes inputs). ``select`` applies a
selection preset and returns the per-step cut-flow; ``compute_hlf`` returns one numpy column per
requested feature for the selected events. Nothing here knows about files or engines.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import awkward as ak
import numpy as np

from .kinematics import delta_phi, delta_r, met_projections, system_pt_mass, transverse_mass
from .selection import Selection

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
    in 2012 files), iso_ch, iso_neu, iso_pho (relative; NaN where the format lacks them).
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

    def __len__(self) -> int:
        return len(self.met_pt)

    def subset(self, mask: np.ndarray) -> "EventObjects":
        return EventObjects(
            muons=self.muons[mask],
            electrons=self.electrons[mask],
            jets=self.jets[mask],
            met_pt=self.met_pt[mask],
            met_phi=self.met_phi[mask],
            photons=None if self.photons is None else self.photons[mask],
            pf_counts=None if self.pf_counts is None else {k: v[mask] for k, v in self.pf_counts.items()},
            capabilities=self.capabilities,
        )


def missing_capabilities(features, capabilities) -> dict[str, list[str]]:
    """feature -> capabilities it needs that the input lacks (empty when all are computable)."""
    out = {}
    for f in features:
        lack = [c for c in FEATURE_REQUIRES[f] if c not in capabilities]
        if lack:
            out[f] = lack
    return out


def lepton_candidates(obj: EventObjects) -> ak.Array:
    """Electrons and muons in one pT-ordered (descending) list with an is_ele flag."""
    fields = ["pt", "eta", "phi", "charge", "iso", "iso_ch", "iso_neu", "iso_pho"]
    mu = ak.zip({f: obj.muons[f] for f in fields} | {"is_ele": ak.zeros_like(obj.muons.pt, dtype=np.int8)})
    el = ak.zip({f: obj.electrons[f] for f in fields} | {"is_ele": ak.ones_like(obj.electrons.pt, dtype=np.int8)})
    leps = ak.concatenate([mu, el], axis=1)
    order = ak.argsort(leps.pt, axis=1, ascending=False, stable=True)
    return leps[order]


def select(obj: EventObjects, sel: Selection, pre_steps=()):
    """Apply a selection preset.

    Returns (mask, lepton, cutflow): the event mask, the chosen lepton of every event (None
    where there is none) and an ordered list of (step name, events passing so far). ``pre_steps``
    are earlier (name, mask) cuts such as the certified-luminosity mask.
    """
    n = len(obj)
    passing = np.ones(n, dtype=bool)
    cutflow = [("all", n)]
    for name, m in pre_steps:
        passing &= np.asarray(m, dtype=bool)
        cutflow.append((name, int(passing.sum())))

    leps = lepton_candidates(obj)
    cut = sel.lepton
    ok = leps.pt > cut.pt_min
    passing &= ak.to_numpy(ak.any(ok, axis=1))
    cutflow.append((f"lepton pT > {cut.pt_min:g}", int(passing.sum())))
    # iso < 0 marks an isolation the input could not compute (e.g. -999 for non-PF 2012 muons)
    ok = ok & (leps.iso >= 0) & (leps.iso < cut.iso_max)
    passing &= ak.to_numpy(ak.any(ok, axis=1))
    cutflow.append((f"lepton Iso < {cut.iso_max:g}", int(passing.sum())))
    if cut.eta_max is not None:
        ok = ok & (abs(leps.eta) < cut.eta_max)
        passing &= ak.to_numpy(ak.any(ok, axis=1))
        cutflow.append((f"lepton |eta| < {cut.eta_max:g}", int(passing.sum())))
    lepton = ak.firsts(leps[ok], axis=1)

    if sel.min_jets > 0:
        jets = clean_jets(obj.jets, lepton, sel)
        passing &= ak.to_numpy(ak.num(jets, axis=1) >= sel.min_jets)
        cutflow.append((f">= {sel.min_jets} jets pT > {sel.jets.pt_min:g}", int(passing.sum())))
    return passing, lepton, cutflow


def clean_jets(jets: ak.Array, lepton, sel: Selection) -> ak.Array:
    """Jets with pT > pt_min, |η| < eta_max, and ΔR(jet, lepton) ≥ lepton_dr (HLF.md)."""
    jc = sel.jets
    keep = (jets.pt > jc.pt_min) & (abs(jets.eta) < jc.eta_max)
    if jc.lepton_dr and jc.lepton_dr > 0:
        dr = delta_r(jets.eta, jets.phi, lepton.eta, lepton.phi)
        keep = keep & ak.fill_none(dr >= jc.lepton_dr, True)
    return jets[keep]


def _np(x, dtype=np.float64):
    return np.asarray(ak.to_numpy(ak.fill_none(x, np.nan)), dtype=dtype)


def compute_hlf(obj: EventObjects, lepton: ak.Array, sel: Selection, features) -> dict[str, np.ndarray]:
    """The requested features (float32 columns) for events that already passed ``select``.

    ``obj`` and ``lepton`` must hold only the selected events. A feature whose inputs the format
    lacks (see ``missing_capabilities``) comes out as NaN: the caller decides beforehand whether
    that is allowed and records it.
    """
    n = len(obj)
    want = set(features)
    cols: dict[str, np.ndarray] = {}
    jets = clean_jets(obj.jets, lepton, sel)
    lep_pt, lep_phi = _np(lepton.pt), _np(lepton.phi)

    if want & {"HT", "ST", "MJ", "NJ", "NB"}:
        ht = ak.to_numpy(ak.sum(jets.pt, axis=1)).astype(np.float64)
        cols["HT"] = ht
        cols["NJ"] = ak.to_numpy(ak.num(jets, axis=1))
        cols["NB"] = ak.to_numpy(ak.sum(jets.btag, axis=1))
        cols["MJ"] = system_pt_mass(jets.pt, jets.eta, jets.phi, jets.mass)[1]
        if "ST" in want:
            cols["ST"] = _scalar_sum_st(obj, ht, sel) if "photons" in obj.capabilities else np.full(n, np.nan)
    if want & {"MET", "MT", "met_par", "met_perp"}:
        met = np.asarray(obj.met_pt, dtype=np.float64)
        cols["MET"] = met
        cols["MT"] = transverse_mass(lep_pt, met, delta_phi(obj.met_phi, lep_phi))
        cols["met_par"], cols["met_perp"] = met_projections(met, obj.met_phi, lep_phi)
    for prefix, coll in (("mu", obj.muons), ("ele", obj.electrons)):
        if want & {f"{prefix}_pt_tot", f"{prefix}_mass", f"n_{prefix}"}:
            cols[f"{prefix}_pt_tot"], cols[f"{prefix}_mass"] = system_pt_mass(coll.pt, coll.eta, coll.phi, coll.mass)
            cols[f"n_{prefix}"] = ak.to_numpy(ak.num(coll, axis=1))
    if want & {"n_ch", "n_neu", "n_photon"}:
        for k in ("n_ch", "n_neu", "n_photon"):
            cols[k] = np.asarray(obj.pf_counts[k]) if obj.pf_counts is not None else np.full(n, np.nan)
    cols["lep_pt"] = lep_pt
    cols["lep_eta"] = _np(lepton.eta)
    cols["lep_charge"] = _np(lepton.charge)
    cols["lep_is_ele"] = _np(lepton.is_ele)
    cols["lep_iso"] = _np(lepton.iso)
    cols["lep_iso_ch"] = _np(lepton.iso_ch)
    cols["lep_iso_neu"] = _np(lepton.iso_neu)
    cols["lep_iso_gamma"] = _np(lepton.iso_pho)
    return {f: np.asarray(cols[f], dtype=np.float32) for f in features}


def _scalar_sum_st(obj: EventObjects, ht: np.ndarray, sel: Selection) -> np.ndarray:
    """VAE ST: HT plus leptons and photons with pT > jet pT threshold and |η| < jet |η| limit."""
    pt_min, eta_max = sel.jets.pt_min, sel.jets.eta_max
    st = ht.copy()
    for coll in (obj.muons, obj.electrons, obj.photons):
        keep = (coll.pt > pt_min) & (abs(coll.eta) < eta_max)
        st += ak.to_numpy(ak.sum(coll.pt[keep], axis=1))
    return st
