"""Dijet features of ../shared/spec/HLF.md ("Dijet features", seeds/004 and the LHC Olympics convention)
as pure functions on flat (offsets, content) arrays: the two leading large-R jets, their kinematics and
substructure, the pair variables, the LHC Olympics mass-ordered features and each jet's leading
constituents (pT, Δη, Δφ to the jet axis) from which jet images are built on the fly.

Inputs are NanoAOD-style: ``FatJet_{pt,eta,phi,mass}`` (+ ``msoftdrop``, ``tau1..3``: capability
"substructure") and the PFNano link table ``FatJetPFCands_{jetIdx,pFCandsIdx}`` into ``PFCands_{pt,eta,
phi}`` (capability "constituents"). Nothing here knows about files or engines.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

TWO_PI = 2.0 * math.pi

#: per-jet quantities stored for jet 1 and jet 2 (the two highest-pT jets passing the jet cut)
JET_FIELDS = ("pt", "eta", "phi", "mass", "msd", "tau21", "tau32", "ncons")
#: feature -> capabilities it needs beyond the FatJet four-momenta
FEATURE_REQUIRES: dict[str, tuple[str, ...]] = {
    "mjj": (), "deta": (),
    **{f"j{k}_{f}": (("substructure",) if f in ("msd", "tau21", "tau32") else
                     ("constituents",) if f == "ncons" else ()) for k in (1, 2) for f in JET_FIELDS},
    "mJ1": (), "dmJ": (), "tau21_J1": ("substructure",), "tau21_J2": ("substructure",),
}
KNOWN_FEATURES = tuple(FEATURE_REQUIRES)
#: features that are NaN by definition for some events (tau_N = 0 -> ratio undefined: HLF.md)
NAN_BY_DEFINITION = frozenset(f for f in KNOWN_FEATURES if "tau" in f)
CAPABILITIES = {
    "substructure": "soft-drop mass and N-subjettiness of the large-R jets (FatJet_msoftdrop, FatJet_tau1..3)",
    "constituents": "the large-R jets' constituents (FatJetPFCands_jetIdx/pFCandsIdx and PFCands_pt/eta/phi)",
}
NEEDED_INPUTS = {
    "substructure": "FatJet_msoftdrop and FatJet_tau1, FatJet_tau2, FatJet_tau3",
    "constituents": "FatJetPFCands_jetIdx, FatJetPFCands_pFCandsIdx and PFCands_pt, PFCands_eta, PFCands_phi (PFNano)",
}
REQUIRED_BRANCHES = ("run", "luminosityBlock", "event", "nFatJet", "FatJet_pt", "FatJet_eta", "FatJet_phi",
                     "FatJet_mass")
SUBSTRUCTURE_BRANCHES = ("FatJet_msoftdrop", "FatJet_tau1", "FatJet_tau2", "FatJet_tau3")
CONSTITUENT_BRANCHES = ("FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx", "PFCands_pt", "PFCands_eta", "PFCands_phi")


def capabilities(branches) -> tuple[frozenset, tuple]:
    """(capabilities, missing required branches) of a file with these branch names."""
    b = set(branches)
    caps = set()
    if all(x in b for x in SUBSTRUCTURE_BRANCHES):
        caps.add("substructure")
    if all(x in b for x in CONSTITUENT_BRANCHES):
        caps.add("constituents")
    return frozenset(caps), tuple(x for x in REQUIRED_BRANCHES if x not in b)


@nb.njit(cache=True)
def leading_pair(off, pt, eta, pt_min, eta_max):
    """Flat indices of the two highest-pT jets with pT > pt_min and |eta| < eta_max per event (-1 where
    the event has fewer), and the number of such jets."""
    n = len(off) - 1
    i1 = np.full(n, -1, np.int64)
    i2 = np.full(n, -1, np.int64)
    njet = np.zeros(n, np.int64)
    for e in range(n):
        b1, b2 = -1, -1
        for q in range(off[e], off[e + 1]):
            if not (pt[q] > pt_min and abs(eta[q]) < eta_max):
                continue
            njet[e] += 1
            if b1 < 0 or pt[q] > pt[b1]:
                b2, b1 = b1, q
            elif b2 < 0 or pt[q] > pt[b2]:
                b2 = q
        i1[e], i2[e] = b1, b2
    return i1, i2, njet


def four_vector(pt, eta, phi, mass):
    """(E, px, py, pz) in float64 of (pt, eta, phi, mass)."""
    pt, eta, phi, mass = (np.asarray(x, np.float64) for x in (pt, eta, phi, mass))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.sqrt(px * px + py * py + pz * pz + mass * mass), px, py, pz


def invariant_mass(a, b) -> np.ndarray:
    """Invariant mass of the sums of two (E, px, py, pz) four-vectors."""
    e, x, y, z = (a[k] + b[k] for k in range(4))
    return np.sqrt(np.maximum(e * e - x * x - y * y - z * z, 0.0))


def ratio(num, den) -> np.ndarray:
    """num / den with NaN where den is 0 (tau_N = 0: the ratio is undefined, never a silent zero)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


def pair_features(j1: dict, j2: dict) -> dict:
    """mjj, deta and the LHC Olympics mass-ordered features of two jets given as dicts of arrays
    (pt, eta, phi, mass, and where present tau21)."""
    m1, m2 = np.asarray(j1["mass"], np.float64), np.asarray(j2["mass"], np.float64)
    out = {"mjj": invariant_mass(four_vector(j1["pt"], j1["eta"], j1["phi"], m1),
                                 four_vector(j2["pt"], j2["eta"], j2["phi"], m2)),
           "deta": np.abs(np.asarray(j1["eta"], np.float64) - np.asarray(j2["eta"], np.float64))}
    light_is_1 = m1 <= m2
    out["mJ1"] = np.where(light_is_1, m1, m2)
    out["dmJ"] = np.abs(m2 - m1)
    if "tau21" in j1:
        out["tau21_J1"] = np.where(light_is_1, j1["tau21"], j2["tau21"])
        out["tau21_J2"] = np.where(light_is_1, j2["tau21"], j1["tau21"])
    return out


@nb.njit(cache=True)
def _wrap(d):
    while d >= math.pi:
        d -= TWO_PI
    while d < -math.pi:
        d += TWO_PI
    return d


@nb.njit(cache=True)
def leading_constituents(events, jet_local, jet_eta, jet_phi, link_off, link_jet, link_cand, cand_off, cand_pt,
                         cand_eta, cand_phi, k):
    """The k highest-pT constituents of one jet per listed event, relative to the jet axis: (pt, deta,
    dphi) as (n, k) float32 arrays, zero-padded, and the jet's constituent count. events: event index per
    row; jet_local: the jet's index within its event; jet_eta/phi: its axis. A link to a candidate
    outside the event's PFCands is an error (ValueError)."""
    n = len(events)
    opt = np.zeros((n, k), np.float32)
    odeta = np.zeros((n, k), np.float32)
    odphi = np.zeros((n, k), np.float32)
    count = np.zeros(n, np.int64)
    for r in range(n):
        e = events[r]
        m = 0
        for q in range(link_off[e], link_off[e + 1]):
            if link_jet[q] == jet_local[r]:
                m += 1
        idx = np.empty(m, np.int64)
        pts = np.empty(m, np.float64)
        m = 0
        ncand = cand_off[e + 1] - cand_off[e]
        for q in range(link_off[e], link_off[e + 1]):
            if link_jet[q] == jet_local[r]:
                c = link_cand[q]
                if c < 0 or c >= ncand:
                    raise ValueError("FatJetPFCands_pFCandsIdx points outside the event's PFCands")
                idx[m] = cand_off[e] + c
                pts[m] = cand_pt[cand_off[e] + c]
                m += 1
        count[r] = m
        order = np.argsort(-pts, kind="mergesort")
        for j in range(min(m, k)):
            c = idx[order[j]]
            opt[r, j] = cand_pt[c]
            odeta[r, j] = cand_eta[c] - jet_eta[r]
            odphi[r, j] = _wrap(cand_phi[c] - jet_phi[r])
    return opt, odeta, odphi, count


def read_dijet_report(hlf_dir) -> dict:
    """The extraction report of a dijet HLF folder (local or s3://); one clear line when the folder is not a
    complete extraction, or not a dijet one."""
    import json

    from sparkad.core import storage
    from sparkad.core.errors import SparkadError

    rpath = storage.join(storage.location(hlf_dir), "_report.json")
    if not storage.is_file(rpath):
        raise SparkadError(f"{hlf_dir}: no _report.json — not an HLF folder, or its extraction did not complete")
    report = json.loads(storage.read_bytes(rpath).decode())
    if report.get("analysis") != "dijet":
        raise SparkadError(f"{hlf_dir}: not a dijet extraction (run `sparkad extract --analysis dijet`)")
    return report
