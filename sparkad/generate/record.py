"""Truth-level event record: a batch of events as fixed "slots" (one column per particle role).

A process fills slots (a lepton from the W, the b from t -> Wb, the i-th ISR parton, ...) of preallocated
(n_events, n_slots) arrays, so different events may put different particles in the same slot (W -> e nu
in one event, W -> c s in the next); unfilled slots stay invalid with zero momentum. The processes'
numba event loops write the rows of the events they generate (`rows`), so the components of a
data-like mix fill one shared batch in their interleaved order without a merge step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# GenPart status codes (2012 Pythia-6 convention): 3 = hard-process documentation line,
# 2 = decayed, 1 = stable final state
ST_HARD, ST_DECAYED, ST_FINAL = 3, 2, 1


@dataclass
class Batch:
    """Truth arrays: (n, S[, 4]) for final-state slots, (n, G[, 4]) for GenPart.

    env: hadronic energy (GeV) in a dR < 0.3 cone around a slot (leptons from heavy-flavour decays);
    jet_link: slot index of the jet containing the particle (-1: none); gen_link: its GenPart slot.
    pf: PF candidate multiplicities of the hard scatter and underlying event counted from the particles
    (the Pythia engine); -1 (the parametric processes): the detector models them from the partons."""
    p4: np.ndarray
    pdg: np.ndarray
    valid: np.ndarray
    env: np.ndarray
    jet_link: np.ndarray
    gen_link: np.ndarray
    gp4: np.ndarray
    gpdg: np.ndarray
    gstatus: np.ndarray
    gvalid: np.ndarray
    process: np.ndarray
    is_signal: np.ndarray
    pf: np.ndarray  # (n, 3) particle-level PF multiplicities (charged hadrons, neutral hadrons, photons); -1: modelled
    env3: np.ndarray  # (n, S, 3) charged / neutral / photon parts of env (particle-level engines), else (0, 0, 3)


    @property
    def n(self):
        return self.p4.shape[0]

    @property
    def arrays(self):
        """The tuple the numba process kernels fill."""
        return (self.p4, self.pdg, self.valid, self.env, self.jet_link, self.gen_link,
                self.gp4, self.gpdg, self.gstatus, self.gvalid)


def allocate(n: int, n_slots: int, n_gen: int, env_parts: bool = False) -> Batch:
    """An empty batch: every slot invalid, zero momentum, no links; env_parts: room for the charged /
    neutral / photon split of env (particle-level engines)."""
    return Batch(
        p4=np.zeros((n, n_slots, 4)), pdg=np.zeros((n, n_slots), np.int32),
        valid=np.zeros((n, n_slots), bool), env=np.zeros((n, n_slots)),
        jet_link=np.full((n, n_slots), -1, np.int32), gen_link=np.full((n, n_slots), -1, np.int32),
        gp4=np.zeros((n, n_gen, 4)), gpdg=np.zeros((n, n_gen), np.int32),
        gstatus=np.zeros((n, n_gen), np.int32), gvalid=np.zeros((n, n_gen), bool),
        process=np.zeros(n, np.int32), is_signal=np.zeros(n, bool), pf=np.full((n, 3), -1.0),
        env3=np.zeros((n, n_slots, 3) if env_parts else (0, 0, 3)))
