"""Input formats: detection from a file's branches, what each can provide, and the adapters that
turn coffea NanoEvents of each format into format-independent ``EventObjects``.

Formats (HLF.md, "Where each input format has the information"):
  cms2012  CMS 2012 Open Data NanoAOD-like (AOD2NanoAODOutreachTool): CSV ``Jet_btag``; no PF
           information, except in sparkad's generated stand-ins, which add ``PF_n*`` counts and
           ``*_pfRelIso03_chg/_neu/_pho`` components (and optionally a PFCands collection).
  nanoaod  modern NanoAOD (``Jet_btagDeepFlavB``; v15: ``PFMET_*``, ``Jet_btagUParTAK4B``).
  pfnano   NanoAOD plus a ``PFCands`` collection: isolation components and counts from PF candidates.
  delphes  Delphes trees: EFlow collections, ``Jet.BTag`` bit, ``MissingET``; no run/lumi ids.
"""
from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from sparkad.extract.hlf import EventObjects
from sparkad.extract.kinematics import ELECTRON_MASS, MUON_MASS, cone_sum

FORMATS = ("cms2012", "nanoaod", "pfnano", "delphes")
ISO_CONE = 0.3
PDG_CHARGED_HADRON, PDG_NEUTRAL_HADRON, PDG_PHOTON = 211, 130, 22

_LEPTON_FIELDS = ("pt", "eta", "phi", "mass", "charge", "pfRelIso03_all")
_JET_FIELDS = ("pt", "eta", "phi", "mass")
_PF_SUMMARY = ("PF_nChargedHadron", "PF_nNeutralHadron", "PF_nPhoton")
_PFCANDS = ("PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_pdgId")


def default_treename(keys) -> str | None:
    names = {k.split(";")[0] for k in keys}
    for t in ("Events", "Delphes"):
        if t in names:
            return t
    return None


def detect_format(treename: str, branches) -> str:
    """Guess the input format from the tree name and branch names (raise ValueError if unknown)."""
    b = set(branches)
    if treename == "Delphes" or "Jet/Jet.PT" in b or "Jet.PT" in b:
        return "delphes"
    if "Jet_btag" in b and not any(x in b for x in ("Jet_btagDeepFlavB", "Jet_btagUParTAK4B")):
        return "cms2012"
    if "PFCands_pdgId" in b:
        return "pfnano"
    if any(x.startswith("Jet_btag") for x in b) or "PFMET_pt" in b or "MET_pt" in b:
        return "nanoaod"
    raise ValueError("cannot detect the input format (no Jet_btag*, MET_pt, PFMET_pt or Delphes branches)")


@dataclass(frozen=True)
class FormatInfo:
    """What one file provides: format, b-tag and MET branches, capabilities, missing required branches."""

    name: str
    btag_branch: str | None
    met_prefix: str
    capabilities: frozenset
    missing_branches: tuple
    iso_source: str  # stored | pfcands | eflow | chg_only | none
    pf_source: str  # summary | pfcands | eflow | none


def branch_type_problem(tree, info: FormatInfo) -> str | None:
    """Why the required branches of a NanoAOD-like tree have the wrong shape or type (a collection
    field stored flat, MET stored per object, pT as integers), or None. Checked before processing so
    that the message names the branch, not a numba typing error deep inside a chunk."""
    if info.name == "delphes":
        return None
    import numpy as np
    import uproot

    colls = {f"{c}_{f}": (f != "charge") for c in ("Muon", "Electron") for f in _LEPTON_FIELDS}
    colls.update({f"Jet_{f}": True for f in _JET_FIELDS})
    if info.btag_branch:
        colls[info.btag_branch] = True
    flat = {f"{info.met_prefix}_pt": True, f"{info.met_prefix}_phi": True,
            "run": False, "luminosityBlock": False, "event": False, "nMuon": False, "nElectron": False, "nJet": False}
    for names, jagged in ((colls, True), (flat, False)):
        for name, floating in names.items():
            if name not in tree:
                continue  # reported as missing elsewhere
            interp = tree[name].interpretation
            is_jagged = isinstance(interp, uproot.AsJagged)
            if is_jagged != jagged:
                shape = "one value per object (jagged)" if jagged else "one value per event"
                return f"branch {name} has the wrong shape (expected {shape}, found {interp})"
            dtype = getattr(interp.content if is_jagged else interp, "to_dtype", None)
            if dtype is None or dtype.kind not in "biuf":
                return f"branch {name} is not numeric ({interp})"
            if floating and not np.issubdtype(dtype, np.floating):
                return f"branch {name} has type {dtype.name}, expected floating point"
            if not floating and not np.issubdtype(dtype, np.integer):
                return f"branch {name} has type {dtype.name}, expected an integer type"
    return None


def _delphes_branch(b: set, coll: str, field: str) -> bool:
    return f"{coll}/{coll}.{field}" in b or f"{coll}.{field}" in b


def describe(fmt: str, branches, btag_conf: dict) -> FormatInfo:
    """Inspect branch names for the given format: capabilities and missing required branches."""
    b = set(branches)
    if fmt == "delphes":
        required = [f"{c}.{f}" for c in ("Muon", "Electron") for f in ("PT", "Eta", "Phi", "Charge")]
        required += [f"Jet.{f}" for f in ("PT", "Eta", "Phi", "Mass", "BTag")] + ["MissingET.MET", "MissingET.Phi"]
        missing = tuple(r for r in required if not _delphes_branch(b, *r.split(".")))
        eflow = all(_delphes_branch(b, c, f) for c, f in
                    (("EFlowTrack", "PT"), ("EFlowTrack", "PID"), ("EFlowNeutralHadron", "ET"), ("EFlowPhoton", "ET")))
        caps = {"iso_ch", "iso_neu_pho", "pf_counts"} if eflow else set()
        if _delphes_branch(b, "Photon", "PT"):
            caps.add("photons")
        return FormatInfo("delphes", None, "MissingET", frozenset(caps), missing,
                          "eflow" if eflow else "none", "eflow" if eflow else "none")

    btag_branch = None
    if fmt == "cms2012":
        btag_branch = "Jet_" + btag_conf["cms2012"]["branch"]
    else:
        for key in ("nanoaod", "nanoaod_v15"):
            cand = "Jet_" + btag_conf[key]["branch"]
            if cand in b:
                btag_branch = cand
                break
        if btag_branch is None:
            btag_branch = "Jet_" + btag_conf["nanoaod"]["branch"]
    met_prefix = "PFMET" if ("PFMET_pt" in b and "MET_pt" not in b) else "MET"
    required = ["run", "luminosityBlock", "event", "nMuon", "nElectron", "nJet"]
    required += [f"{c}_{f}" for c in ("Muon", "Electron") for f in _LEPTON_FIELDS]
    required += [f"Jet_{f}" for f in _JET_FIELDS] + [btag_branch, f"{met_prefix}_pt", f"{met_prefix}_phi"]
    missing = tuple(r for r in required if r not in b)

    stored = all(f"{c}_pfRelIso03_{k}" in b for c in ("Muon", "Electron") for k in ("chg", "neu", "pho"))
    pfcands = all(x in b for x in _PFCANDS)
    chg = all(f"{c}_pfRelIso03_chg" in b for c in ("Muon", "Electron"))
    iso_source = "stored" if stored else "pfcands" if pfcands else "chg_only" if chg else "none"
    pf_source = "summary" if all(x in b for x in _PF_SUMMARY) else "pfcands" if pfcands else "none"
    caps = set()
    if iso_source in ("stored", "pfcands", "chg_only"):
        caps.add("iso_ch")
    if iso_source in ("stored", "pfcands"):
        caps.add("iso_neu_pho")
    if pf_source != "none":
        caps.add("pf_counts")
    if "Photon_pt" in b and "Photon_eta" in b:
        caps.add("photons")
    return FormatInfo(fmt, btag_branch, met_prefix, frozenset(caps), missing, iso_source, pf_source)


#: the inputs each capability needs, per format family, for refusal messages
NEEDED_INPUTS = {
    "iso_ch": "Muon/Electron_pfRelIso03_chg, or a PFCands collection (PFNano), or Delphes EFlow collections",
    "iso_neu_pho": "Muon/Electron_pfRelIso03_neu and _pho, or a PFCands collection (PFNano), or Delphes EFlow collections",
    "pf_counts": "PF_nChargedHadron/PF_nNeutralHadron/PF_nPhoton, or PFCands_pdgId (PFNano), or Delphes EFlow collections",
    "photons": "a Photon collection (Photon_pt/eta/phi)",
}


def build_objects(events, info: FormatInfo, btag_conf: dict) -> tuple[EventObjects, dict]:
    """EventObjects and the event ids (run, luminosityBlock, event as int64 numpy) of a NanoEvents chunk."""
    if info.name == "delphes":
        return _delphes_objects(events, info, btag_conf)
    return _nano_objects(events, info, btag_conf)


def _leptons_nano(coll, prefix: str, info: FormatInfo, pf):
    rec = {f: coll[f] for f in ("pt", "eta", "phi", "mass", "charge")}
    iso_all = coll["pfRelIso03_all"]
    if info.iso_source == "stored":
        ch, neu, pho = coll["pfRelIso03_chg"], coll["pfRelIso03_neu"], coll["pfRelIso03_pho"]
        rec.update(iso=ak.where(iso_all < 0, iso_all, ch + neu + pho), iso_ch=ch, iso_neu=neu, iso_pho=pho)
    elif info.iso_source == "pfcands":
        ch, neu, pho = (cone_sum(coll.eta, coll.phi, *pf[k], cone=ISO_CONE) / coll.pt for k in ("ch", "neu", "pho"))
        rec.update(iso=ch + neu + pho, iso_ch=ch, iso_neu=neu, iso_pho=pho)
    elif info.iso_source == "chg_only":
        rec.update(iso=iso_all, iso_ch=coll["pfRelIso03_chg"])
    else:  # components unavailable: the fields are absent and the features come out NaN
        rec.update(iso=iso_all)
    return ak.zip(rec, with_name=None)


def _pf_split(cands):
    pid = abs(cands.pdgId)
    out = {}
    for key, code in (("ch", PDG_CHARGED_HADRON), ("neu", PDG_NEUTRAL_HADRON), ("pho", PDG_PHOTON)):
        c = cands[pid == code]
        out[key] = (c.pt, c.eta, c.phi)
    return out


def _nano_objects(events, info: FormatInfo, btag_conf: dict):
    pf = _pf_split(events.PFCands) if "pfcands" in (info.iso_source, info.pf_source) else None
    muons = _leptons_nano(events.Muon, "Muon", info, pf)
    electrons = _leptons_nano(events.Electron, "Electron", info, pf)
    jet = events.Jet
    wp_key = "cms2012" if info.name == "cms2012" else (
        "nanoaod_v15" if info.btag_branch == "Jet_" + btag_conf["nanoaod_v15"]["branch"] else "nanoaod")
    jets = ak.zip({"pt": jet.pt, "eta": jet.eta, "phi": jet.phi, "mass": jet.mass,
                   "btag": jet[info.btag_branch[len("Jet_"):]] > btag_conf[wp_key]["wp"]}, with_name=None)
    met = events[info.met_prefix]
    photons = None
    if "photons" in info.capabilities:
        photons = ak.zip({"pt": events.Photon.pt, "eta": events.Photon.eta, "phi": events.Photon.phi}, with_name=None)
    pf_counts = None
    if info.pf_source == "summary":
        pf_counts = {"n_ch": ak.to_numpy(events.PF.nChargedHadron), "n_neu": ak.to_numpy(events.PF.nNeutralHadron),
                     "n_photon": ak.to_numpy(events.PF.nPhoton)}
    elif info.pf_source == "pfcands":
        pf_counts = {"n_ch": ak.to_numpy(ak.num(pf["ch"][0], axis=1)), "n_neu": ak.to_numpy(ak.num(pf["neu"][0], axis=1)),
                     "n_photon": ak.to_numpy(ak.num(pf["pho"][0], axis=1))}
    obj = EventObjects(muons=muons, electrons=electrons, jets=jets,
                       met_pt=ak.to_numpy(met.pt).astype(np.float64), met_phi=ak.to_numpy(met.phi).astype(np.float64),
                       photons=photons, pf_counts=pf_counts, capabilities=info.capabilities)
    ids = {"run": ak.to_numpy(events.run).astype(np.int64),
           "luminosityBlock": ak.to_numpy(events.luminosityBlock).astype(np.int64),
           "event": ak.to_numpy(events.event).astype(np.int64)}
    return obj, ids


def _delphes_objects(events, info: FormatInfo, btag_conf: dict):
    n = len(events)
    has_eflow = info.iso_source == "eflow"
    if has_eflow:
        trk = events.EFlowTrack
        trk = trk[(abs(trk.PID) != 11) & (abs(trk.PID) != 13)]  # charged hadrons: tracks that are not leptons
        neu, pho = events.EFlowNeutralHadron, events.EFlowPhoton
        cands = {"ch": (trk.PT, trk.Eta, trk.Phi), "neu": (neu.ET, neu.Eta, neu.Phi), "pho": (pho.ET, pho.Eta, pho.Phi)}

    def leptons(coll, mass):
        rec = {"pt": coll.PT, "eta": coll.Eta, "phi": coll.Phi, "mass": ak.ones_like(coll.PT) * mass,
               "charge": coll.Charge}
        if has_eflow:
            ch, ne, ph = (cone_sum(coll.Eta, coll.Phi, *cands[k], cone=ISO_CONE) / coll.PT for k in ("ch", "neu", "pho"))
            rec.update(iso=ch + ne + ph, iso_ch=ch, iso_neu=ne, iso_pho=ph)
        else:
            rec.update(iso=coll.SumPt / coll.PT)
        return ak.zip(rec, with_name=None)

    bit = int(btag_conf["delphes"].get("bit", 0))
    jet = events.Jet
    jets = ak.zip({"pt": jet.PT, "eta": jet.Eta, "phi": jet.Phi, "mass": jet.Mass,
                   "btag": (jet.BTag & (1 << bit)) != 0}, with_name=None)
    met = events.MissingET
    photons = None
    if "photons" in info.capabilities:
        photons = ak.zip({"pt": events.Photon.PT, "eta": events.Photon.Eta, "phi": events.Photon.Phi}, with_name=None)
    pf_counts = None
    if has_eflow:
        pf_counts = {"n_ch": ak.to_numpy(ak.num(events.EFlowTrack, axis=1)),
                     "n_neu": ak.to_numpy(ak.num(events.EFlowNeutralHadron, axis=1)),
                     "n_photon": ak.to_numpy(ak.num(events.EFlowPhoton, axis=1))}
    obj = EventObjects(muons=leptons(events.Muon, MUON_MASS), electrons=leptons(events.Electron, ELECTRON_MASS),
                       jets=jets, met_pt=_flat(met.MET), met_phi=_flat(met.Phi),
                       photons=photons, pf_counts=pf_counts, capabilities=info.capabilities)
    start = int(events.metadata.get("entrystart", 0)) if hasattr(events, "metadata") and events.metadata else 0
    ids = {"run": np.ones(n, np.int64), "luminosityBlock": np.ones(n, np.int64),
           "event": np.arange(start, start + n, dtype=np.int64)}
    return obj, ids


def _flat(x) -> np.ndarray:
    """A per-event scalar as float64 numpy (Delphes MissingET is a length-1 collection in some schemas)."""
    if x.ndim > 1:
        x = ak.firsts(x, axis=1)
    return ak.to_numpy(x).astype(np.float64)


