"""Pure kinematic helpers on numpy / awkward arrays (no engine, no I/O).

Conventions of ../shared/spec/HLF.md: GeV, radians, Δφ wrapped into [-π, π).
"""
from __future__ import annotations

import awkward as ak
import numpy as np

MUON_MASS = 0.1056584
ELECTRON_MASS = 0.000511


def delta_phi(phi1, phi2):
    """phi1 - phi2 wrapped into [-π, π)."""
    return (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi


def delta_r(eta1, phi1, eta2, phi2):
    """ΔR = sqrt(Δη² + Δφ²) with Δφ wrapped."""
    return np.sqrt((eta1 - eta2) ** 2 + delta_phi(phi1, phi2) ** 2)


def system_pt_mass(pt, eta, phi, mass):
    """|vector Σ pT| and invariant mass of all objects of each event (jagged inputs).

    Empty events give (0, 0): an event without objects has no momentum and no mass,
    which is a measured zero, not a missing value.
    """
    # float64 throughout: E² − p² cancels, float32 angles would leave ~1e-3 GeV of fake mass
    pt, eta, phi, mass = (ak.values_astype(x, np.float64) for x in (pt, eta, phi, mass))
    px = ak.to_numpy(ak.sum(pt * np.cos(phi), axis=1))
    py = ak.to_numpy(ak.sum(pt * np.sin(phi), axis=1))
    pz = pt * np.sinh(eta)
    e = ak.to_numpy(ak.sum(np.sqrt(pt**2 + pz**2 + mass**2), axis=1))
    pz = ak.to_numpy(ak.sum(pz, axis=1))
    m2 = e**2 - px**2 - py**2 - pz**2
    return np.hypot(px, py), np.sqrt(np.clip(m2, 0.0, None))


def transverse_mass(lep_pt, met, dphi):
    """MT = sqrt(2 pT^ℓ MET (1 − cos Δφ)) — with the square root (HLF.md)."""
    return np.sqrt(np.clip(2.0 * lep_pt * met * (1.0 - np.cos(dphi)), 0.0, None))


def met_projections(met, met_phi, lep_phi):
    """Signed components of p_T^miss parallel and perpendicular to the lepton direction."""
    dphi = delta_phi(met_phi, lep_phi)
    return met * np.cos(dphi), met * np.sin(dphi)


def cone_sum(lep_eta, lep_phi, cand_pt, cand_eta, cand_phi, cone: float = 0.3):
    """Σ pT of candidates within ΔR < cone of each lepton (jagged leptons × jagged candidates)."""
    pairs_l, pairs_c = ak.unzip(
        ak.cartesian(
            [ak.zip({"eta": lep_eta, "phi": lep_phi}),
             ak.zip({"pt": cand_pt, "eta": cand_eta, "phi": cand_phi})],
            axis=1,
            nested=True,
        )
    )
    dr = delta_r(pairs_l.eta, pairs_l.phi, pairs_c.eta, pairs_c.phi)
    return ak.sum(ak.where(dr < cone, pairs_c.pt, 0.0), axis=2)
