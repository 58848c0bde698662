"""Kinematic helpers on numpy / awkward arrays for the isolation cone sums (no engine, no I/O); the
per-event HLF kernels are in extract/kernels.py.

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
