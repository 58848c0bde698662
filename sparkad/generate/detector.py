"""Parametrised CMS-like detector response (2012 conditions by default), fully vectorised.

Input: a truth Batch (slots of particles). Output: reconstructed collections written directly as flat
per-collection buffers (`Packed`: counts + float32/int32/bool field arrays) by one numba event loop
(`_reco`) drawing from the numpy Generator; no per-event Python, no padded intermediates.

Model (all numbers are `DETECTOR_DEFAULTS`, overridable per preset under `detector:`):
- pile-up: mu per event (MC: Gamma around `pileup_mu`; data-like: from the lumi-section profile);
  PV_npvs = 1 + Poisson(vertex_eff * mu).
- muons: |eta| < 2.4, pT > 3, efficiency 0.96 (0.85 below 10 GeV); sigma(pT)/pT = 1% + 0.01%/GeV
  (x1.5 for |eta| > 1.2); a fraction `nonpf_muon_frac` are non-PF muons with isolation -999.
- electrons: |eta| < 2.5, pT > 5, efficiency 0.92 barrel / 0.85 endcap (0.7 below 15 GeV, x0.5 in
  the 1.444-1.566 crack); sigma(E)/E = 2.8%/sqrt(E) + 0.8% + 0.12/E.
- isolation (dR < 0.3, absolute GeV): charged = UE (zero with p 0.45, else Gamma) + nearby jets;
  neutral and photon = pile-up-dependent Gamma + nearby jets; heavy-flavour leptons add the hadronic
  remnant of their jet (60/12/28% charged/neutral/photon). Relative = sum / lepton pT.
  With `particle_isolation` (the Pythia engine) the charged / neutral / photon sums are the particles'
  own in the cone (`Batch.env3`, underlying event included), plus the pile-up terms.
- jets: every quark/gluon/hadronic-tau slot, and (lepton_jets) every prompt lepton, gives a PF jet;
  sigma(pT)/pT = sqrt(N^2/pT^2 + S^2/pT + C^2), N = 3 + 0.1 npv, S = 1.0, C = 0.05; |eta| < 4.7, pT >
  jet_pt_min; pile-up jets Poisson(pu_jet_rate * npv); CSV b-tag discriminant in [0, 1] with medium WP
  0.679 passed with probability 0.70 (b), 0.20 (c), 0.015 (light); as in the real files, jets without a
  b-tag computation hold CSV = -10 (outside the tracker, |eta| >= 2.4) or -1 (no usable tracks: 2% + 8%
  exp(-(pT - 15)/15), four times that for pile-up jets).
- taus: hadronic taus reconstructed with eff 0.6 (pT > 18, |eta| < 2.3); jets fake tau candidates
  with p 0.12 (mostly failing isolation).
- photons: pi0-rich jet fragments (p 0.3 for jets above 20 GeV), non-isolated.
- MET: vector sum of neutrinos minus the mismeasurement of jets and leptons plus unclustered noise
  sigma = met_stoch * sqrt(sum E_T^uncl), with sum E_T^uncl ~ Gamma(mean 60 + 22 npv) GeV; covariance
  and significance from the same resolutions.
- PF candidate multiplicities: Poisson(UE + per-vertex pile-up + per-jet log(pT) terms) (normal
  approximation for means >= 100); for a batch with particle-level counts (`Batch.pf`, the Pythia
  engine) those counts plus Poisson(per-vertex pile-up).
- triggers: HLT_IsoMu24(_eta2p1) from reconstructed isolated muons (eff 0.94), mu+tau cross trigger.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from sparkad.generate.kinematics import s_mass, s_poisson, s_poisson_exact, s_ptetaphim, s_wrap
from sparkad.generate.record import Batch

DETECTOR_DEFAULTS = {
    "pileup_mu": 21.0,          # mean interactions per crossing (MC)
    "pileup_mu_sd": 5.0,
    "vertex_eff": 0.7,
    "nonpf_muon_frac": 0.01,
    "jet_pt_min": 15.0,
    "lepton_jets": True,
    "pu_jet_rate": 0.025,
    "btag_eff_b": 0.70,
    "btag_eff_c": 0.20,
    "btag_eff_light": 0.015,
    "btag_wp": 0.679,
    "btag_notrack": 0.02,       # CSV = -1 (no usable tracks): this + 0.08 exp(-(pT - 15)/15), x4 for pile-up jets
    "tau_eff": 0.6,
    "tau_fake_prob": 0.12,
    "met_stoch": 0.55,
    "trigger_eff": 0.94,
    "pf_ue_charged": 30.0, "pf_pu_charged": 14.0,
    "pf_ue_neutral": 8.0, "pf_pu_neutral": 4.0,
    "pf_ue_photon": 25.0, "pf_pu_photon": 12.0,
    # isolation from the particle-level cone sums of every lepton (`Batch.env3`, the Pythia engine: the
    # visible particles in dR < 0.3, underlying event included) instead of the UE + nearby-parton model
    "particle_isolation": False,
}
_PKEYS = [k for k in DETECTOR_DEFAULTS if k not in ("pileup_mu", "pileup_mu_sd")]
(_VERTEX_EFF, _NONPF, _JET_PT_MIN, _LEPTON_JETS, _PU_JET_RATE, _EFF_B, _EFF_C, _EFF_L, _WP, _NOTRACK, _TAU_EFF,
 _TAU_FAKE, _MET_STOCH, _TRIG_EFF, _UE_CH, _PU_CH, _UE_NEU, _PU_NEU, _UE_PHO, _PU_PHO, _PISO) = range(len(_PKEYS))

FAULT_CODES = {"none": 0, "hot_cells": 1, "dead_muon_sector": 2, "jes_shift": 3}
N_PU_JETS = 4

# field layout of the kernel's output buffers (float32 / int32 / bool rows per collection)
MU_F = ("pt", "eta", "phi", "mass", "pfRelIso03_all", "pfRelIso04_all", "dxy", "dxyErr", "dz", "dzErr",
        "pfRelIso03_chg", "pfRelIso03_neu", "pfRelIso03_pho")
EL_F = ("pt", "eta", "phi", "mass", "pfRelIso03_all", "dxy", "dxyErr", "dz", "dzErr",
        "pfRelIso03_chg", "pfRelIso03_neu", "pfRelIso03_pho")
LEP_I = ("charge", "jetIdx", "genPartIdx")
MU_B = ("tightId", "softId")
EL_B = ("cutBasedId", "pfId")
TAU_F = ("pt", "eta", "phi", "mass", "relIso_all", "idIsoRaw")
TAU_I = ("charge", "decayMode", "jetIdx", "genPartIdx")
TAU_B = ("idDecayMode", "idIsoVLoose", "idIsoLoose", "idIsoMedium", "idIsoTight", "idAntiEleLoose",
         "idAntiEleMedium", "idAntiEleTight", "idAntiMuLoose", "idAntiMuMedium", "idAntiMuTight")
PH_F = ("pt", "eta", "phi", "mass", "pfRelIso03_all")
PH_I = ("charge", "jetIdx", "genPartIdx")
JET_F = ("pt", "eta", "phi", "mass", "btag")
JET_B = ("puId",)
GEN_F = ("pt", "eta", "phi", "mass")
GEN_I = ("pdgId", "status")
EV_F = ("PV_x", "PV_y", "PV_z", "MET_pt", "MET_phi", "MET_sumet", "MET_significance", "MET_CovXX",
        "MET_CovXY", "MET_CovYY")
EV_I = ("PV_npvs", "PF_nChargedHadron", "PF_nNeutralHadron", "PF_nPhoton", "Truth_fault")
EV_B = ("HLT_IsoMu24_eta2p1", "HLT_IsoMu24", "HLT_IsoMu17_eta2p1_LooseIsoPFTau20", "_trigger_ok")


@dataclass
class Packed:
    """A jagged collection as counts + flat field arrays (row-major over events)."""
    counts: np.ndarray
    fields: dict = field(default_factory=dict)

    def select(self, idx: np.ndarray) -> "Packed":
        """The events idx (in that order)."""
        offsets = np.zeros(len(self.counts) + 1, np.int64)
        np.cumsum(self.counts, out=offsets[1:])
        counts = self.counts[idx]
        starts = offsets[:-1][idx]
        out_starts = np.cumsum(counts) - counts
        flat = np.repeat(starts - out_starts, counts) + np.arange(int(counts.sum()))
        return Packed(counts, {k: v[flat] for k, v in self.fields.items()})


class _Coll:
    """Output buffers of one collection (capacity `cap` objects)."""

    def __init__(self, n, cap, f, i=(), b=()):
        self.names = (f, i, b)
        self.counts = np.zeros(n, np.int64)
        self.F = np.empty((max(len(f), 1), cap), np.float32)
        self.I = np.empty((max(len(i), 1), cap), np.int32)
        self.B = np.empty((max(len(b), 1), cap), np.bool_)

    @property
    def args(self):
        return self.counts, self.F, self.I, self.B

    def packed(self):
        tot = int(self.counts.sum())
        f, i, b = self.names
        fields = {k: self.F[r, :tot] for r, k in enumerate(f)}
        fields.update({k: self.I[r, :tot] for r, k in enumerate(i)})
        fields.update({k: self.B[r, :tot] for r, k in enumerate(b)})
        return Packed(self.counts, fields)


@njit(cache=True, inline="always")
def _sort_desc(idx, key, k):
    """Stable insertion sort of idx[:k] by descending key[idx]."""
    for a in range(1, k):
        v = idx[a]
        kv = key[v]
        b = a - 1
        while b >= 0 and key[idx[b]] < kv:
            idx[b + 1] = idx[b]
            b -= 1
        idx[b + 1] = v


@njit(cache=True)
def _reco(rng, p4, pdg, valid, env, jet_link, gen_link, gp4, gpdg, gstatus, gvalid, pf_truth, env3, mu, P, is_data,
          jes, jes_flag, dms_mask, dms_box, hot_mask, hot_par,
          evf, evi, evb, muo, ele, tau, pho, jet, gen):
    n, S = pdg.shape
    G = gvalid.shape[1]
    H = hot_mask.shape[1]
    J = S + N_PU_JETS + H
    wp = P[_WP]
    mu_cnt, mu_F, mu_I, mu_B = muo
    el_cnt, el_F, el_I, el_B = ele
    ta_cnt, ta_F, ta_I, ta_B = tau
    ph_cnt, ph_F, ph_I, ph_B = pho
    je_cnt, je_F, je_I, je_B = jet
    ge_cnt, ge_F, ge_I, ge_B = gen
    # per-event scratch
    pt = np.empty(S)
    eta = np.empty(S)
    phi = np.empty(S)
    m = np.empty(S)
    apdg = np.empty(S, np.int64)
    is_part = np.empty(S, np.bool_)
    is_lep = np.empty(S, np.bool_)
    mu_reco = np.empty(S, np.bool_)
    e_reco = np.empty(S, np.bool_)
    lost = np.empty(S, np.bool_)
    nonpf = np.empty(S, np.bool_)
    lep_jet = np.empty(S, np.bool_)
    lpt = np.empty(S)
    leta = np.empty(S)
    lphi = np.empty(S)
    iso = np.empty((S, 3))
    rel = np.empty((S, 4), np.float32)
    rel04 = np.empty(S, np.float32)
    sig_j = np.empty(S)
    jsrc = np.empty(S, np.bool_)
    J_ok = np.empty(J, np.bool_)
    J_pt = np.empty(J)
    J_eta = np.empty(J)
    J_phi = np.empty(J)
    J_mass = np.empty(J)
    J_btag = np.empty(J)
    J_puid = np.empty(J, np.bool_)
    jrank = np.empty(J, np.int64)
    order = np.empty(J, np.int64)
    t_ok = np.empty(S, np.bool_)
    t_true = np.empty(S, np.bool_)
    t_pt = np.empty(S)
    gpos = np.empty(G, np.int64)
    gsrc = np.empty(G, np.int64)  # the slot holding the same particle as GenPart g (-1: none)
    pmu = 0
    pel = 0
    pta = 0
    pph = 0
    pje = 0
    pge = 0
    for i in range(n):
        fault = 0
        npv = 1 + s_poisson_exact(rng, P[_VERTEX_EFF] * mu[i])
        fnpv = float(npv)
        k = 0
        for g in range(G):
            gpos[g] = k if gvalid[i, g] else -1
            k += gvalid[i, g]
            gsrc[g] = -1
        for s in range(S):
            if valid[i, s]:
                e0, e1, e2, e3 = p4[i, s, 0], p4[i, s, 1], p4[i, s, 2], p4[i, s, 3]
                pt[s], eta[s], phi[s], m[s] = s_ptetaphim(e0, e1, e2, e3)
                gl = gen_link[i, s]
                if (gl >= 0 and gp4[i, gl, 0] == e0 and gp4[i, gl, 1] == e1 and gp4[i, gl, 2] == e2
                        and gp4[i, gl, 3] == e3):
                    gsrc[gl] = s  # its GenPart entry reuses these kinematics
                a = abs(pdg[i, s])
            else:
                pt[s] = 0.0
                eta[s] = 0.0
                phi[s] = 0.0
                m[s] = 0.0
                a = 0
            apdg[s] = a
            is_part[s] = (1 <= a <= 5) or a == 21
            is_lep[s] = a == 11 or a == 13

        # ------------------------------------------------------------ leptons
        for s in range(S):
            mu_reco[s] = False
            e_reco[s] = False
            lost[s] = False
            nonpf[s] = False
            lep_jet[s] = False
            if not is_lep[s]:
                continue
            ae = abs(eta[s])
            r = rng.random()
            if apdg[s] == 13:
                eff = 0.85 if pt[s] < 10 else 0.96
                if not (ae < 2.4 and pt[s] > 3.0 and r < eff):
                    continue
                res = (0.01 + 1e-4 * pt[s]) * (1.5 if ae > 1.2 else 1.0)
            else:
                eff = 0.70 if pt[s] < 15 else (0.92 if ae < 1.479 else 0.85)
                if 1.4442 < ae < 1.566:
                    eff *= 0.5
                if not (ae < 2.5 and pt[s] > 5.0 and r < eff):
                    continue
                en = max(pt[s] * math.cosh(eta[s]), 1.0)
                res = math.sqrt(0.028 ** 2 / en + 0.008 ** 2 + (0.12 / en) ** 2)
            lpt[s] = pt[s] * max(1.0 + res * rng.standard_normal(), 0.05)
            leta[s] = eta[s] + 1e-3 * rng.standard_normal()
            lphi[s] = s_wrap(phi[s] + 1e-3 * rng.standard_normal())
            if apdg[s] == 13:
                # dead muon-chamber sector: muons in the sector are lost (their momentum becomes MET)
                for d in range(dms_mask.shape[1]):
                    if (dms_mask[i, d] and dms_box[d, 0] <= lphi[s] < dms_box[d, 1]
                            and dms_box[d, 2] <= leta[s] < dms_box[d, 3]):
                        lost[s] = True
                if lost[s]:
                    fault = 2
                    continue
                mu_reco[s] = True
            else:
                e_reco[s] = True
            # isolation: activity of nearby partons and the heavy-flavour jet remnant in the cone
            piso = P[_PISO] > 0
            extra = env[i, s] if (piso or jet_link[i, s] >= 0) else 0.0
            for j in range(S):
                if not piso and (is_part[j] or apdg[j] == 15) and j != jet_link[i, s]:
                    dphi = s_wrap(phi[s] - phi[j])
                    dr = math.sqrt((eta[s] - eta[j]) ** 2 + dphi * dphi)
                    if dr < 0.8:
                        extra += 0.9 * math.exp(-(dr / 0.36) ** 2) * pt[j]
            if piso:  # the particles' own charged / neutral / photon cone sums (underlying event included)
                ch = 0.01 * fnpv * rng.random() + env3[i, s, 0]
                neu = env3[i, s, 1]
                ph = env3[i, s, 2]
            else:
                g0 = rng.standard_gamma(6.0)
                g1 = rng.standard_gamma(1.2)
                g2 = rng.standard_gamma(2.8)
                gs = g0 + g1 + g2
                ue = 0.0
                if rng.random() < 0.55:
                    ue = rng.gamma(1.2, 0.6)
                ch = ue + 0.01 * fnpv * rng.random() + extra * g0 / gs
                neu = extra * g1 / gs
                ph = extra * g2 / gs
            if rng.random() < min(0.25 + 0.02 * fnpv, 0.9):
                neu += rng.standard_exponential() * (0.5 + 0.05 * fnpv)
            if rng.random() < min(0.35 + 0.025 * fnpv, 0.95):
                ph += rng.standard_exponential() * (0.6 + 0.07 * fnpv)
            iso[s, 0] = ch
            iso[s, 1] = neu
            iso[s, 2] = ph
            safe = max(lpt[s], 1e-3)
            rel[s, 0] = np.float32(ch / safe)
            rel[s, 1] = np.float32(neu / safe)
            rel[s, 2] = np.float32(ph / safe)
            rel[s, 3] = rel[s, 0] + rel[s, 1] + rel[s, 2]  # float32 sum, as a reader adds them
            ring = rng.standard_exponential() * (0.4 + 0.1 * fnpv) + 0.15 * extra
            rel04[s] = np.float32((ch + neu + ph + ring) / safe)
            if mu_reco[s] and rng.random() < (5.0 if pt[s] < 10 else 1.0) * P[_NONPF]:
                nonpf[s] = True
                rel[s, 0] = rel[s, 1] = rel[s, 2] = rel[s, 3] = rel04[s] = -999.0
            lep_jet[s] = P[_LEPTON_JETS] > 0 and jet_link[i, s] < 0 and not nonpf[s]

        # ------------------------------------------------------------ jets
        if jes_flag[i]:
            fault = 3
        for s in range(S):
            J_ok[s] = False
            jsrc[s] = is_part[s] or apdg[s] == 15 or lep_jet[s]
            if not jsrc[s]:
                continue
            if lep_jet[s]:
                tj = lpt[s] + iso[s, 0] + iso[s, 1] + iso[s, 2]
                sig_j[s] = 0.03
            else:
                tj = pt[s]
                tm = max(tj, 1.0)
                sig_j[s] = math.sqrt(((3.0 + 0.1 * fnpv) / tm) ** 2 + 1.0 / tm + 0.05 ** 2)
            jpt = tj * max(1.0 + sig_j[s] * rng.standard_normal(), 0.05) * jes[i]
            jeta = (leta[s] if lep_jet[s] else eta[s]) + rng.normal(0.0, 0.02)
            jphi = s_wrap((lphi[s] if lep_jet[s] else phi[s]) + rng.normal(0.0, 0.02))
            if lep_jet[s]:
                jm = jpt * 0.02
            elif apdg[s] == 15:
                jm = min(min(m[s] + 0.3 * rng.random(), jpt * 0.3), 0.5 * jpt)
            else:
                jm = min(jpt * 0.12 * rng.lognormal(0.0, 0.3) * (1.2 if apdg[s] == 5 else 1.0), 0.5 * jpt)
            J_pt[s] = jpt
            J_eta[s] = jeta
            J_phi[s] = jphi
            J_mass[s] = jm
            ok = abs(jeta) < 4.7 and jpt > P[_JET_PT_MIN]
            J_ok[s] = ok
            if not ok:
                continue
            J_puid[s] = rng.random() < (0.98 if abs(jeta) < 2.5 else 0.9)
            if abs(jeta) >= 2.4:
                J_btag[s] = -10.0  # outside the tracker: no b-tag computation
                continue
            if rng.random() < P[_NOTRACK] + 0.08 * math.exp(-(jpt - 15.0) / 15.0):
                J_btag[s] = -1.0  # no usable tracks
                continue
            a = apdg[s]
            if lep_jet[s]:
                eff = 0.01
            elif a == 15:
                eff = 0.02
            elif a == 5:
                eff = P[_EFF_B]
            elif a == 4:
                eff = P[_EFF_C]
            else:
                eff = P[_EFF_L]
            # CSV shapes: power-law approximations of Beta distributions (fast inverse-CDF sampling):
            # tagged b ~ u^(1/2.5) near 1, tagged other ~ 1 - (1-u)^(1/1.5); untagged b/c ~ u^(1/2),
            # light ~ 1-(1-u)^(1/3.5)
            u = rng.random()
            if rng.random() < eff:
                J_btag[s] = wp + (1.0 - wp) * (u ** 0.4 if a == 5 else 1.0 - (1.0 - u) ** (1 / 1.5))
            else:
                J_btag[s] = wp * (u ** 0.5 if (a == 5 or a == 4) else 1.0 - (1.0 - u) ** (1 / 3.5))
        # pile-up jets and hot-cell jets as extra columns
        k_pu = min(rng.poisson(P[_PU_JET_RATE] * fnpv), N_PU_JETS)
        for c in range(S, J):
            J_ok[c] = False
        for c in range(S, S + k_pu):
            J_ok[c] = True
            J_pt[c] = P[_JET_PT_MIN] * (1.0 - rng.random()) ** (1.0 / (1.0 - 4.5)) * jes[i]
            J_eta[c] = rng.uniform(-4.7, 4.7)
            J_phi[c] = rng.uniform(-math.pi, math.pi)
            J_puid[c] = rng.random() < 0.2
        hotx = 0.0
        hoty = 0.0
        for h in range(H):
            c = S + N_PU_JETS + h
            if hot_mask[i, h] and rng.random() < hot_par[h, 0]:
                J_ok[c] = True
                J_pt[c] = 30.0 + rng.exponential(hot_par[h, 1])
                J_eta[c] = rng.uniform(hot_par[h, 2], hot_par[h, 3])
                J_phi[c] = rng.uniform(hot_par[h, 4], hot_par[h, 5])
                J_puid[c] = rng.random() < 0.3
                hotx += J_pt[c] * math.cos(J_phi[c])
                hoty += J_pt[c] * math.sin(J_phi[c])
                fault = 1
        for c in range(S, J):
            if J_ok[c]:
                J_mass[c] = 0.1 * J_pt[c]
                if abs(J_eta[c]) >= 2.4:
                    J_btag[c] = -10.0
                elif rng.random() < 4.0 * P[_NOTRACK] + 0.08 * math.exp(-(J_pt[c] - 15.0) / 15.0):
                    J_btag[c] = -1.0
                else:
                    J_btag[c] = wp * (1.0 - (1.0 - rng.random()) ** 0.25)
        k = 0
        for c in range(J):
            jrank[c] = -1
            if J_ok[c]:
                order[k] = c
                k += 1
        _sort_desc(order, J_pt, k)
        for r in range(k):
            c = order[r]
            jrank[c] = r
            je_F[0, pje] = J_pt[c]
            je_F[1, pje] = J_eta[c]
            je_F[2, pje] = J_phi[c]
            je_F[3, pje] = J_mass[c]
            je_F[4, pje] = J_btag[c]
            je_B[0, pje] = J_puid[c]
            pje += 1
        je_cnt[i] = k

        # ------------------------------------------------------------ muons and electrons
        for flav in range(2):
            k = 0
            for s in range(S):
                if (mu_reco[s] if flav == 0 else e_reco[s]):
                    order[k] = s
                    k += 1
            _sort_desc(order, lpt, k)
            for r in range(k):
                s = order[r]
                prompt = jet_link[i, s] < 0
                if prompt:
                    dxy = rng.normal(0.0, 0.002)
                    dz = rng.normal(0.0, 0.005)
                    jidx = jrank[s] if lep_jet[s] else -1
                else:
                    dxy = rng.exponential(0.02) * (-1.0 if rng.random() < 0.5 else 1.0)
                    dz = rng.normal(0.0, 0.03)
                    jidx = jrank[jet_link[i, s]]
                gl = gen_link[i, s]
                gidx = -1 if (is_data or gl < 0) else gpos[gl]
                u_id = rng.random()
                q = -1 if pdg[i, s] > 0 else 1
                if flav == 0:
                    F, I, B, p = mu_F, mu_I, mu_B, pmu
                else:
                    F, I, B, p = el_F, el_I, el_B, pel
                F[0, p] = lpt[s]
                F[1, p] = leta[s]
                F[2, p] = lphi[s]
                F[3, p] = s_mass(pdg[i, s])
                F[4, p] = rel[s, 3]
                o = 5
                if flav == 0:
                    F[5, p] = rel04[s]
                    o = 6
                F[o, p] = dxy
                F[o + 1, p] = 0.0008 + rng.exponential(0.001)
                F[o + 2, p] = dz
                F[o + 3, p] = 0.002 + rng.exponential(0.002)
                F[o + 4, p] = rel[s, 0]
                F[o + 5, p] = rel[s, 1]
                F[o + 6, p] = rel[s, 2]
                I[0, p] = q
                I[1, p] = jidx
                I[2, p] = gidx
                if flav == 0:
                    B[0, p] = u_id < (0.97 if prompt else 0.85) and not nonpf[s]
                    B[1, p] = rng.random() < 0.99
                    pmu += 1
                else:
                    B[0, p] = u_id < (0.88 if prompt else 0.35)
                    B[1, p] = rng.random() < 0.97
                    pel += 1
            if flav == 0:
                mu_cnt[i] = k
            else:
                el_cnt[i] = k

        # ------------------------------------------------------------ taus
        k = 0
        has_tau = False
        for s in range(S):
            t_true[s] = apdg[s] == 15 and pt[s] > 18 and abs(eta[s]) < 2.3 and rng.random() < P[_TAU_EFF]
            t_ok[s] = t_true[s] or (is_part[s] and J_ok[s] and J_pt[s] > 20 and abs(J_eta[s]) < 2.3
                                    and rng.random() < P[_TAU_FAKE])
            if t_ok[s]:
                if t_true[s]:
                    t_pt[s] = max(pt[s] * (1.0 + 0.08 * rng.standard_normal()), 1.0)
                else:
                    t_pt[s] = max(J_pt[s] * rng.beta(5.0, 2.5), 1.0)
                order[k] = s
                k += 1
        _sort_desc(order, t_pt, k)
        for r in range(k):
            s = order[r]
            tt = t_true[s]
            du = rng.random()
            dmode = 0 if du < 0.3 else (1 if du < 0.8 else 10)
            if dmode == 0:
                tm = 0.13957
            else:
                tm = min(max(rng.normal(0.77 if dmode == 1 else 1.2, 0.15), 0.13957), 1.7)
            raw = rng.exponential(1.0) if tt else rng.exponential(6.0)
            p = pta
            ta_F[0, p] = t_pt[s]
            ta_F[1, p] = eta[s] + rng.normal(0.0, 0.01) if tt else J_eta[s]
            ta_F[2, p] = s_wrap(phi[s] + rng.normal(0.0, 0.01)) if tt else J_phi[s]
            ta_F[3, p] = tm
            ta_F[4, p] = raw / t_pt[s]
            ta_F[5, p] = raw
            ta_I[0, p] = (-1 if pdg[i, s] > 0 else 1) if tt else (1 if rng.random() < 0.5 else -1)
            ta_I[1, p] = dmode
            ta_I[2, p] = jrank[s]
            gl = gen_link[i, s]
            ta_I[3, p] = gpos[gl] if (tt and not is_data and gl >= 0) else -1
            ta_B[0, p] = rng.random() < (0.95 if tt else 0.6)
            ta_B[1, p] = raw < 4.0
            ta_B[2, p] = raw < 2.0
            ta_B[3, p] = raw < 1.0
            ta_B[4, p] = raw < 0.8
            # anti-lepton discriminators are nested
            ta_B[5, p] = rng.random() < 0.97
            ta_B[6, p] = ta_B[5, p] and rng.random() < 0.9
            ta_B[7, p] = ta_B[6, p] and rng.random() < 0.8
            ta_B[8, p] = rng.random() < 0.99
            ta_B[9, p] = ta_B[8, p] and rng.random() < 0.98
            ta_B[10, p] = ta_B[9, p] and rng.random() < 0.96
            if t_pt[s] > 20 and raw < 2.0:
                has_tau = True
            pta += 1
        ta_cnt[i] = k

        # ------------------------------------------------------------ photons (pi0-rich fragments)
        k = 0
        for s in range(S):
            t_ok[s] = False
            if is_part[s] and J_ok[s] and J_pt[s] > 20 and rng.random() < 0.3:
                t_pt[s] = J_pt[s] * rng.beta(1.2, 5.0)
                if t_pt[s] > 10.0:
                    t_ok[s] = True
                    order[k] = s
                    k += 1
        _sort_desc(order, t_pt, k)
        for r in range(k):
            s = order[r]
            p = pph
            ph_F[0, p] = t_pt[s]
            ph_F[1, p] = J_eta[s] + rng.normal(0.0, 0.05)
            ph_F[2, p] = s_wrap(J_phi[s] + rng.normal(0.0, 0.05))
            ph_F[3, p] = 0.0
            ph_F[4, p] = (J_pt[s] - t_pt[s]) * rng.uniform(0.2, 0.8) / max(t_pt[s], 1.0)
            ph_I[0, p] = 0
            ph_I[1, p] = jrank[s]
            ph_I[2, p] = -1
            pph += 1
        ph_cnt[i] = k

        # ------------------------------------------------------------ MET
        metx = -hotx
        mety = -hoty
        sumet = 0.0
        covxx = 0.0
        covyy = 0.0
        covxy = 0.0
        jet_ch = 0.0
        jet_all = 0.0
        for s in range(S):
            a = apdg[s]
            if valid[i, s] and (a == 12 or a == 14 or a == 16):
                metx += p4[i, s, 1]
                mety += p4[i, s, 2]
            mis = 0.0
            if J_ok[s] and not lep_jet[s]:
                mis += J_pt[s] - pt[s]
                sj2 = (sig_j[s] * J_pt[s]) ** 2
                cj = math.cos(J_phi[s])
                sjn = math.sin(J_phi[s])
                covxx += sj2 * cj * cj
                covyy += sj2 * sjn * sjn
                covxy += sj2 * cj * sjn
            if mu_reco[s] or e_reco[s]:
                mis += lpt[s] - pt[s]
                if not lep_jet[s]:
                    sumet += lpt[s]
            if mis != 0.0:
                metx -= mis * math.cos(phi[s])
                mety -= mis * math.sin(phi[s])
            if lost[s]:
                metx += lpt[s] * math.cos(lphi[s])
                mety += lpt[s] * math.sin(lphi[s])
            if is_part[s] or a == 15:  # PF multiplicities from the visible partons
                w = 2.0 + 5.0 * math.log1p(pt[s] / 10.0)
                jet_all += w
                if abs(eta[s]) < 2.5:
                    jet_ch += w
        for c in range(J):
            if J_ok[c] and abs(J_eta[c]) < 5:
                sumet += J_pt[c]
        uncl = rng.gamma(4.0, (60.0 + 22.0 * fnpv) / 4.0)
        sig_u = P[_MET_STOCH] * math.sqrt(uncl)
        metx += sig_u * rng.standard_normal()
        mety += sig_u * rng.standard_normal()
        covxx += sig_u * sig_u
        covyy += sig_u * sig_u
        det = covxx * covyy - covxy * covxy
        evf[0, i] = rng.normal(0.0704, 0.0015)
        evf[1, i] = rng.normal(0.0624, 0.0015)
        evf[2, i] = rng.normal(0.4, 5.0)
        evf[3, i] = math.hypot(metx, mety)
        evf[4, i] = math.atan2(mety, metx)
        evf[5, i] = sumet + uncl
        evf[6, i] = (covyy * metx * metx - 2 * covxy * metx * mety + covxx * mety * mety) / det
        evf[7, i] = covxx
        evf[8, i] = covxy
        evf[9, i] = covyy

        # ------------------------------------------------------------ triggers
        trig_ok = rng.random() < P[_TRIG_EFF]
        h24 = False
        h24e = False
        h17 = False
        for s in range(S):
            if mu_reco[s] and 0.0 <= rel[s, 3] < 0.15:
                ae = abs(leta[s])
                if lpt[s] > 24 and ae < 2.4:
                    h24 = True
                    if ae < 2.1:
                        h24e = True
                if lpt[s] > 17 and ae < 2.1:
                    h17 = True
        evb[0, i] = h24e and trig_ok
        evb[1, i] = h24 and trig_ok
        evb[2, i] = h17 and has_tau and trig_ok
        evb[3, i] = trig_ok

        # ------------------------------------------------------------ PF multiplicities, event ints
        evi[0, i] = npv
        if pf_truth[i, 0] >= 0:  # counted from the generated particles; pile-up added
            evi[1, i] = int(pf_truth[i, 0]) + s_poisson(rng, P[_PU_CH] * fnpv)
            evi[2, i] = int(pf_truth[i, 1]) + s_poisson(rng, P[_PU_NEU] * fnpv)
            evi[3, i] = int(pf_truth[i, 2]) + s_poisson(rng, P[_PU_PHO] * fnpv)
        else:
            evi[1, i] = s_poisson(rng, P[_UE_CH] + P[_PU_CH] * fnpv + jet_ch)
            evi[2, i] = s_poisson(rng, P[_UE_NEU] + P[_PU_NEU] * fnpv + 0.25 * jet_all)
            evi[3, i] = s_poisson(rng, P[_UE_PHO] + P[_PU_PHO] * fnpv + 0.8 * jet_all)
        evi[4, i] = fault

        # ------------------------------------------------------------ GenPart (document order)
        if not is_data:
            k = 0
            for g in range(G):
                if gvalid[i, g]:
                    s = gsrc[g]
                    if s >= 0:
                        ge_F[0, pge], ge_F[1, pge], ge_F[2, pge], ge_F[3, pge] = pt[s], eta[s], phi[s], m[s]
                    else:
                        ge_F[0, pge], ge_F[1, pge], ge_F[2, pge], ge_F[3, pge] = s_ptetaphim(
                            gp4[i, g, 0], gp4[i, g, 1], gp4[i, g, 2], gp4[i, g, 3])
                    ge_I[0, pge] = gpdg[i, g]
                    ge_I[1, pge] = gstatus[i, g]
                    pge += 1
                    k += 1
            ge_cnt[i] = k


def _fault_masks(faults):
    out = {}
    for kind, mask, spec in faults or ():
        out.setdefault(kind, []).append((mask, spec))
    return out


def simulate(batch: Batch, rng, params: dict, mu: np.ndarray, is_data: bool,
             faults=None, pf_candidates: bool = False) -> dict:
    """Reconstruct a truth batch. `faults`: list of (kind, event mask, spec dict).
    Returns a dict of event-level arrays and `Packed` collections."""
    Pd = {**DETECTOR_DEFAULTS, **(params or {})}
    P = np.array([float(Pd[k]) for k in _PKEYS])
    n, S = batch.pdg.shape
    if Pd["particle_isolation"] and batch.env3.shape[:2] != (n, S):
        raise ValueError("detector: particle_isolation needs a batch with particle-level cone sums (engine pythia)")
    G = batch.gvalid.shape[1]
    fm = _fault_masks(faults)
    jes = np.ones(n)
    jes_flag = np.zeros(n, bool)
    for emask, spec in fm.get("jes_shift", ()):
        jes = np.where(emask, jes * (1.0 + float(spec.get("shift", 0.05))), jes)
        jes_flag |= emask
    dms = fm.get("dead_muon_sector", ())
    dms_mask = np.zeros((n, len(dms)), bool)
    dms_box = np.zeros((len(dms), 4))
    for d, (emask, spec) in enumerate(dms):
        dms_mask[:, d] = emask
        dms_box[d] = [*spec.get("phi", [0.0, np.pi / 6]), *spec.get("eta", [-2.4, 2.4])]
    hot = fm.get("hot_cells", ())
    hot_mask = np.zeros((n, len(hot)), bool)
    hot_par = np.zeros((len(hot), 6))
    for h, (emask, spec) in enumerate(hot):
        hot_mask[:, h] = emask
        hot_par[h] = [float(spec.get("rate", 0.5)), float(spec.get("pt_scale", 40.0)),
                      *spec.get("eta", [1.5, 2.0]), *spec.get("phi", [0.5, 1.0])]
    J = S + N_PU_JETS + len(hot)
    # capacities: at most one object per slot (np.empty: pages past the filled part are never touched)
    colls = {"Muon": _Coll(n, n * S, MU_F, LEP_I, MU_B), "Electron": _Coll(n, n * S, EL_F, LEP_I, EL_B),
             "Tau": _Coll(n, n * S, TAU_F, TAU_I, TAU_B), "Photon": _Coll(n, n * S, PH_F, PH_I),
             "Jet": _Coll(n, n * J, JET_F, (), JET_B), "GenPart": _Coll(n, 0 if is_data else n * G, GEN_F, GEN_I)}
    evf = np.empty((len(EV_F), n), np.float32)
    evi = np.empty((len(EV_I), n), np.int32)
    evb = np.empty((len(EV_B), n), np.bool_)
    _reco(rng, batch.p4, batch.pdg, batch.valid, batch.env, batch.jet_link, batch.gen_link, batch.gp4,
          batch.gpdg, batch.gstatus, batch.gvalid, np.ascontiguousarray(batch.pf, np.float64), batch.env3, np.asarray(mu, np.float64), P, bool(is_data),
          jes, jes_flag, dms_mask, dms_box, hot_mask, hot_par, evf, evi, evb,
          *(colls[c].args for c in ("Muon", "Electron", "Tau", "Photon", "Jet", "GenPart")))
    out = {k: evf[r] for r, k in enumerate(EV_F)}
    out.update({k: evi[r] for r, k in enumerate(EV_I)})
    out.update({k: evb[r] for r, k in enumerate(EV_B)})
    for name, c in colls.items():
        out[name] = None if (name == "GenPart" and is_data) else c.packed()
    out["_mu"] = mu
    if pf_candidates:
        from sparkad.generate.pfcands import make_pfcands
        make_pfcands(out, rng, out["PF_nChargedHadron"], out["PF_nNeutralHadron"], out["PF_nPhoton"])
    return out
