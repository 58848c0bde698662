"""Truth-level event record: a batch of events as fixed "slots" (one column per particle role).

A process fills slots (a lepton from the W, the b from t -> Wb, the i-th ISR parton, ...); each slot
holds per-event four-vectors, PDG ids and a validity mask, so different events may put different
particles in the same slot (W -> e nu in one event, W -> c s in the next). `finalize()` stacks the
slots into (n_events, n_slots) arrays for the detector simulation; `pad_and_merge` interleaves the
records of several processes into one batch (data-like mixes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kinematics as kin

# GenPart status codes (2012 Pythia-6 convention): 3 = hard-process documentation line,
# 2 = decayed, 1 = stable final state
ST_HARD, ST_DECAYED, ST_FINAL = 3, 2, 1


class EventRecord:
    def __init__(self, n: int, process_id: int = 0, is_signal: bool = False):
        self.n = n
        self.process_id = process_id
        self.is_signal = is_signal
        self._p4, self._pdg, self._valid, self._env, self._jet, self._gen = [], [], [], [], [], []
        self._gp4, self._gpdg, self._gst, self._gvalid = [], [], [], []

    # ---- reconstructable / visible particles -------------------------------------------------
    def add(self, p4, pdg, valid=True, env=0.0, jet_link=-1, gen=-1) -> int:
        """Add a final-state slot. env: hadronic energy (GeV) in a dR<0.3 cone around it (for
        leptons from heavy-flavour decays); jet_link: slot index of the jet containing it;
        gen: GenPart slot it matches."""
        n = self.n
        self._p4.append(np.asarray(p4, dtype=np.float64).reshape(n, 4))
        self._pdg.append(np.broadcast_to(np.asarray(pdg, dtype=np.int64), (n,)).copy())
        self._valid.append(np.broadcast_to(np.asarray(valid, dtype=bool), (n,)).copy())
        self._env.append(np.broadcast_to(np.asarray(env, dtype=np.float64), (n,)).copy())
        self._jet.append(np.broadcast_to(np.asarray(jet_link, dtype=np.int64), (n,)).copy())
        self._gen.append(np.broadcast_to(np.asarray(gen, dtype=np.int64), (n,)).copy())
        return len(self._p4) - 1

    def slot(self, i):
        return self._p4[i], self._pdg[i], self._valid[i]

    def set_slot(self, i, p4=None, pdg=None, valid=None):
        if p4 is not None:
            self._p4[i] = p4
        if pdg is not None:
            self._pdg[i] = pdg
        if valid is not None:
            self._valid[i] = valid

    @property
    def n_slots(self):
        return len(self._p4)

    # ---- generator record --------------------------------------------------------------------
    def add_gen(self, p4, pdg, status, valid=True) -> int:
        n = self.n
        self._gp4.append(np.asarray(p4, dtype=np.float64).reshape(n, 4))
        self._gpdg.append(np.broadcast_to(np.asarray(pdg, dtype=np.int64), (n,)).copy())
        self._gst.append(np.broadcast_to(np.asarray(status, dtype=np.int64), (n,)).copy())
        self._gvalid.append(np.broadcast_to(np.asarray(valid, dtype=bool), (n,)).copy())
        return len(self._gp4) - 1

    # ---- tau decays --------------------------------------------------------------------------
    def decay_taus(self, rng):
        """Decay every tau slot in the collinear approximation: 17.8% e nu nu, 17.4% mu nu nu
        (lepton momentum fraction from the V-A spectrum), 64.8% hadronic (visible fraction
        ~ Beta(1.6, 1.4)); the slot keeps pdg +-15 for a hadronic tau (visible part) and a new
        neutrino slot carries the invisible momentum."""
        for i in range(self.n_slots):
            pdg, valid = self._pdg[i], self._valid[i]
            is_tau = valid & (np.abs(pdg) == 15)
            if not is_tau.any():
                continue
            u = rng.random(self.n)
            x_lep = kin.tau_lepton_fraction(rng, self.n)
            x_had = rng.beta(1.6, 1.4, self.n) * 0.97 + 0.03
            to_e = is_tau & (u < 0.178)
            to_mu = is_tau & (u >= 0.178) & (u < 0.352)
            had = is_tau & (u >= 0.352)
            x = np.where(had, x_had, np.maximum(x_lep, 0.02))
            x = np.where(is_tau, x, 1.0)
            p4 = self._p4[i]
            vis = p4 * x[:, None]
            inv = p4 - vis
            sign = np.sign(pdg)
            newpdg = np.where(to_e, 11 * sign, np.where(to_mu, 13 * sign, pdg))
            self._p4[i] = vis
            self._pdg[i] = newpdg
            self.add(inv, -16 * sign, valid=is_tau)

    # ---- output ------------------------------------------------------------------------------
    def finalize(self) -> "Batch":
        s = self.n_slots
        g = len(self._gp4)
        n = self.n
        b = Batch(
            p4=np.stack(self._p4, axis=1) if s else np.zeros((n, 0, 4)),
            pdg=np.stack(self._pdg, axis=1) if s else np.zeros((n, 0), np.int64),
            valid=np.stack(self._valid, axis=1) if s else np.zeros((n, 0), bool),
            env=np.stack(self._env, axis=1) if s else np.zeros((n, 0)),
            jet_link=np.stack(self._jet, axis=1) if s else np.zeros((n, 0), np.int64),
            gen_link=np.stack(self._gen, axis=1) if s else np.zeros((n, 0), np.int64),
            gp4=np.stack(self._gp4, axis=1) if g else np.zeros((n, 0, 4)),
            gpdg=np.stack(self._gpdg, axis=1) if g else np.zeros((n, 0), np.int64),
            gstatus=np.stack(self._gst, axis=1) if g else np.zeros((n, 0), np.int64),
            gvalid=np.stack(self._gvalid, axis=1) if g else np.zeros((n, 0), bool),
            process=np.full(n, self.process_id, dtype=np.int32),
            is_signal=np.full(n, self.is_signal, dtype=bool),
        )
        # zero out invalid slots so they never leak momentum into sums
        b.p4[~b.valid] = 0.0
        b.gp4[~b.gvalid] = 0.0
        return b


@dataclass
class Batch:
    """Stacked truth arrays: (n, S[, 4]) for final-state slots, (n, G[, 4]) for GenPart."""
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

    @property
    def n(self):
        return self.p4.shape[0]


_SLOT_FIELDS = ("p4", "pdg", "valid", "env", "jet_link", "gen_link")
_GEN_FIELDS = ("gp4", "gpdg", "gstatus", "gvalid")
_FILL = {"pdg": 0, "valid": False, "env": 0.0, "jet_link": -1, "gen_link": -1, "p4": 0.0,
         "gp4": 0.0, "gpdg": 0, "gstatus": 0, "gvalid": False}


def pad_and_merge(batches: list[Batch], order: np.ndarray) -> Batch:
    """Merge batches into one of len(order): event i takes the next unused event of
    batches[order[i]]. Slot axes are padded with invalid slots to the widest batch."""
    n = len(order)
    if len(batches) == 1:
        return batches[0]
    s = max(b.p4.shape[1] for b in batches)
    g = max(b.gp4.shape[1] for b in batches)
    out = {}
    for f in _SLOT_FIELDS + _GEN_FIELDS:
        width = s if f in _SLOT_FIELDS else g
        ref = getattr(batches[0], f)
        shape = (n, width) + ref.shape[2:]
        arr = np.full(shape, _FILL[f], dtype=ref.dtype)
        for c, b in enumerate(batches):
            pos = np.flatnonzero(order == c)
            src = getattr(b, f)
            arr[pos, : src.shape[1]] = src[: len(pos)]
        out[f] = arr
    for f in ("process", "is_signal"):
        ref = getattr(batches[0], f)
        arr = np.zeros(n, dtype=ref.dtype)
        for c, b in enumerate(batches):
            pos = np.flatnonzero(order == c)
            arr[pos] = getattr(b, f)[: len(pos)]
        out[f] = arr
    return Batch(**out)
