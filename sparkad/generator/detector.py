"""Parametrised CMS-like detector response (2012 conditions by default), fully vectorised.

Input: a truth Batch (slots of particles). Output: reconstructed collections as padded (n, K)
arrays plus masks, packed into flat per-collection arrays (`Packed`) for the layout writer.

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
- jets: every quark/gluon/hadronic-tau slot, and (lepton_jets) every prompt lepton, gives a PF jet;
  sigma(pT)/pT = sqrt(N^2/pT^2 + S^2/pT + C^2), N = 3 + 0.1 npv, S = 1.0, C = 0.05; |eta| < 4.7, pT >
  jet_pt_min; pile-up jets Poisson(pu_jet_rate * npv); CSV b-tag discriminant in [0, 1] with medium WP
  0.679 passed with probability 0.70 (b), 0.20 (c), 0.015 (light), 0 outside |eta| 2.4.
- taus: hadronic taus reconstructed with eff 0.6 (pT > 18, |eta| < 2.3); jets fake tau candidates
  with p 0.12 (mostly failing isolation).
- photons: pi0-rich jet fragments (p 0.3 for jets above 20 GeV), non-isolated.
- MET: vector sum of neutrinos minus the mismeasurement of jets and leptons plus unclustered noise
  sigma = met_stoch * sqrt(sum E_T^uncl), with sum E_T^uncl ~ Gamma(mean 60 + 22 npv) GeV; covariance
  and significance from the same resolutions.
- PF candidate multiplicities: Poisson(UE + per-vertex pile-up + per-jet log(pT) terms).
- triggers: HLT_IsoMu24(_eta2p1) from reconstructed isolated muons (eff 0.94), mu+tau cross trigger.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import kinematics as kin
from .record import Batch

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
    "tau_eff": 0.6,
    "tau_fake_prob": 0.12,
    "met_stoch": 0.55,
    "trigger_eff": 0.94,
    "pf_ue_charged": 30.0, "pf_pu_charged": 14.0,
    "pf_ue_neutral": 8.0, "pf_pu_neutral": 4.0,
    "pf_ue_photon": 25.0, "pf_pu_photon": 12.0,
}

FAULT_CODES = {"none": 0, "hot_cells": 1, "dead_muon_sector": 2, "jes_shift": 3}
N_PU_JETS = 4


@dataclass
class Packed:
    """A jagged collection as counts + flat field arrays (row-major over events)."""
    counts: np.ndarray
    fields: dict = field(default_factory=dict)


def pack(mask, fields: dict, sort_key):
    """Select masked columns per event, sort by -sort_key; returns (Packed, rank) where rank[i, k]
    is the position of column k in event i's sorted collection (-1 when not selected)."""
    n, k = mask.shape
    key = np.where(mask, -sort_key, np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    smask = np.take_along_axis(mask, order, axis=1)
    rank = np.empty((n, k), dtype=np.int64)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(k), (n, k)), axis=1)
    rank = np.where(mask, rank, -1)
    out = {name: np.take_along_axis(arr, order, axis=1)[smask] for name, arr in fields.items()}
    return Packed(mask.sum(axis=1).astype(np.int64), out), rank


def _lookup(rank, cols):
    """rank[i, cols[i, j]] with cols = -1 giving -1."""
    safe = np.where(cols >= 0, cols, 0)
    return np.where(cols >= 0, np.take_along_axis(rank, safe, axis=1), -1)


def _fault_masks(faults, n):
    out = {}
    for kind, mask, spec in faults or ():
        out.setdefault(kind, []).append((mask, spec))
    return out


def simulate(batch: Batch, rng, params: dict, mu: np.ndarray, is_data: bool,
             faults=None, pf_candidates: bool = False) -> dict:
    """Reconstruct a truth batch. `faults`: list of (kind, event mask, spec dict).
    Returns a dict of event-level arrays and `Packed` collections."""
    P = {**DETECTOR_DEFAULTS, **(params or {})}
    n, s = batch.pdg.shape
    fm = _fault_masks(faults, n)
    truth_fault = np.zeros(n, dtype=np.int32)

    npv = 1 + rng.poisson(P["vertex_eff"] * mu)
    pt, eta, phi, m = kin.ptetaphim(batch.p4)
    apdg = np.abs(batch.pdg)
    valid = batch.valid
    is_e = valid & (apdg == 11)
    is_mu = valid & (apdg == 13)
    is_tauh = valid & (apdg == 15)
    is_nu = valid & ((apdg == 12) | (apdg == 14) | (apdg == 16))
    is_part = valid & (((apdg >= 1) & (apdg <= 5)) | (apdg == 21))
    hf = batch.jet_link >= 0
    npv2 = npv[:, None].astype(np.float64)

    # ------------------------------------------------------------------ leptons
    aeta = np.abs(eta)
    r = rng.random((n, s))
    mu_eff = np.where(pt < 10, 0.85, 0.96)
    mu_reco = is_mu & (aeta < 2.4) & (pt > 3.0) & (r < mu_eff)
    crack = (aeta > 1.4442) & (aeta < 1.566)
    e_eff = np.where(pt < 15, 0.70, np.where(aeta < 1.479, 0.92, 0.85)) * np.where(crack, 0.5, 1.0)
    e_reco = is_e & (aeta < 2.5) & (pt > 5.0) & (r < e_eff)
    energy = pt * np.cosh(eta)
    mu_res = (0.01 + 1e-4 * pt) * np.where(aeta > 1.2, 1.5, 1.0)
    e_res = np.sqrt(0.028 ** 2 / np.maximum(energy, 1.0) + 0.008 ** 2 + (0.12 / np.maximum(energy, 1.0)) ** 2)
    g = rng.standard_normal((n, s))
    lep_pt = pt * np.maximum(1.0 + np.where(is_mu, mu_res, e_res) * g, 0.05)
    lep_eta = eta + rng.normal(0.0, 1e-3, (n, s))
    lep_phi = kin.wrap_phi(phi + rng.normal(0.0, 1e-3, (n, s)))

    # dead muon-chamber sector: muons in the sector are lost (their momentum becomes MET)
    lost_mu = np.zeros((n, s), bool)
    for emask, spec in fm.get("dead_muon_sector", ()):
        p0, p1 = spec.get("phi", [0.0, np.pi / 6])
        e0, e1 = spec.get("eta", [-2.4, 2.4])
        in_sector = (lep_phi >= p0) & (lep_phi < p1) & (lep_eta >= e0) & (lep_eta < e1)
        lost = mu_reco & in_sector & emask[:, None]
        lost_mu |= lost
        truth_fault[lost.any(axis=1)] = FAULT_CODES["dead_muon_sector"]
    mu_reco &= ~lost_mu
    lep_reco = mu_reco | e_reco

    # activity of nearby partons in the lepton cone (restricted to columns that can hold leptons)
    lcols = np.flatnonzero((is_e | is_mu).any(axis=0))
    jcols = np.flatnonzero((is_part | is_tauh).any(axis=0))
    near = np.zeros((n, s))
    if lcols.size and jcols.size:
        deta = eta[:, lcols, None] - eta[:, None, jcols]
        dphi = kin.delta_phi(phi[:, lcols, None], phi[:, None, jcols])
        dr = np.sqrt(deta * deta + dphi * dphi)
        own = batch.jet_link[:, lcols, None] == jcols[None, None, :]
        w = np.where((dr < 0.5) & ~own, 0.5 * np.exp(-(dr / 0.2) ** 2), 0.0)
        jpt = np.where((is_part | is_tauh)[:, jcols], pt[:, jcols], 0.0)
        near[:, lcols] = np.sum(w * jpt[:, None, :], axis=2)
    extra = near + np.where(hf, batch.env, 0.0)
    nl = lcols.size
    npvl = npv[:, None].astype(np.float64)

    def lep_cols(values, fill=0.0):
        full = np.full((n, s), fill, dtype=values.dtype)
        full[:, lcols] = values
        return full

    ex = extra[:, lcols]
    frac = rng.dirichlet([6.0, 1.2, 2.8], (n, nl)) if nl else np.zeros((n, 0, 3))
    iso_ch = lep_cols((rng.random((n, nl)) < 0.55) * rng.gamma(1.2, 0.6, (n, nl))
                      + 0.01 * npvl * rng.random((n, nl)) + ex * frac[..., 0])
    p_neu = np.minimum(0.25 + 0.02 * npvl, 0.9)
    iso_neu = lep_cols((rng.random((n, nl)) < p_neu) * rng.standard_exponential((n, nl)) * (0.5 + 0.05 * npvl)
                       + ex * frac[..., 1])
    p_pho = np.minimum(0.35 + 0.025 * npvl, 0.95)
    iso_pho = lep_cols((rng.random((n, nl)) < p_pho) * rng.standard_exponential((n, nl)) * (0.6 + 0.07 * npvl)
                       + ex * frac[..., 2])
    safe_pt = np.maximum(lep_pt, 1e-3)
    rel_ch = (iso_ch / safe_pt).astype(np.float32)
    rel_neu = (iso_neu / safe_pt).astype(np.float32)
    rel_pho = (iso_pho / safe_pt).astype(np.float32)
    rel_all = rel_ch + rel_neu + rel_pho  # float32 sum: equals the components' sum exactly
    ring = lep_cols(rng.standard_exponential((n, nl)) * (0.4 + 0.1 * npvl)) + 0.15 * extra
    rel04 = ((iso_ch + iso_neu + iso_pho + ring) / safe_pt).astype(np.float32)
    nonpf = mu_reco & (rng.random((n, s)) < np.where(pt < 10, 5.0, 1.0) * P["nonpf_muon_frac"])
    for arr in (rel_ch, rel_neu, rel_pho, rel_all, rel04):
        arr[nonpf] = -999.0

    # generator matching
    if is_data or batch.gvalid.shape[1] == 0:
        gen_idx = np.full((n, s), -1, dtype=np.int64)
    else:
        gpos = np.cumsum(batch.gvalid, axis=1) - 1
        gl = batch.gen_link
        safe = np.where(gl >= 0, gl, 0)
        ok = (gl >= 0) & np.take_along_axis(batch.gvalid, safe, axis=1)
        gen_idx = np.where(ok, np.take_along_axis(gpos, safe, axis=1), -1)

    # ------------------------------------------------------------------ jets
    lep_jet = P["lepton_jets"] & lep_reco & ~hf & ~nonpf
    jet_src = is_part | is_tauh | lep_jet
    jes = np.ones(n)
    for emask, spec in fm.get("jes_shift", ()):
        jes = np.where(emask, jes * (1.0 + float(spec.get("shift", 0.05))), jes)
        truth_fault[emask] = FAULT_CODES["jes_shift"]
    true_jpt = np.where(lep_jet, lep_pt + (iso_ch + iso_neu + iso_pho), pt)
    sig_j = np.sqrt(((3.0 + 0.1 * npv2) / np.maximum(true_jpt, 1.0)) ** 2
                    + 1.0 / np.maximum(true_jpt, 1.0) + 0.05 ** 2)
    sig_j = np.where(lep_jet, 0.03, sig_j)
    jpt = true_jpt * np.maximum(1.0 + sig_j * rng.standard_normal((n, s)), 0.05) * jes[:, None]
    jeta = np.where(lep_jet, lep_eta, eta) + rng.normal(0.0, 0.02, (n, s))
    jphi = kin.wrap_phi(np.where(lep_jet, lep_phi, phi) + rng.normal(0.0, 0.02, (n, s)))
    jmass = jpt * 0.12 * rng.lognormal(0.0, 0.3, (n, s)) * np.where(apdg == 5, 1.2, 1.0)
    jmass = np.where(is_tauh, np.minimum(m + 0.3 * rng.random((n, s)), jpt * 0.3), jmass)
    jmass = np.where(lep_jet, jpt * 0.02, np.minimum(jmass, 0.5 * jpt))
    jet_ok = jet_src & (np.abs(jeta) < 4.7) & (jpt > P["jet_pt_min"])
    flav_eff = np.where(apdg == 5, P["btag_eff_b"], np.where(apdg == 4, P["btag_eff_c"], P["btag_eff_light"]))
    flav_eff = np.where(lep_jet, 0.01, np.where(is_tauh, 0.02, flav_eff))
    flav_eff = np.where(np.abs(jeta) < 2.4, flav_eff, 0.0)
    wp = P["btag_wp"]
    tagged = rng.random((n, s)) < flav_eff
    isb = apdg == 5
    # CSV shapes: power-law approximations of Beta distributions (fast inverse-CDF sampling):
    # tagged b ~ u^(1/2.5) near 1, tagged other ~ 1 - (1-u)^(1/1.5); untagged b/c ~ u^(1/2), light ~ 1-(1-u)^(1/3.5)
    u_hi, u_lo = rng.random((n, s)), rng.random((n, s))
    hi = wp + (1.0 - wp) * np.where(isb, u_hi ** 0.4, 1.0 - (1.0 - u_hi) ** (1 / 1.5))
    lo = wp * np.where(isb | (apdg == 4), u_lo ** 0.5, 1.0 - (1.0 - u_lo) ** (1 / 3.5))
    btag = np.where(tagged, hi, lo)
    puid = rng.random((n, s)) < np.where(np.abs(jeta) < 2.5, 0.98, 0.9)

    # pile-up jets and hot-cell jets as extra columns
    k_pu = np.minimum(rng.poisson(P["pu_jet_rate"] * npv), N_PU_JETS)
    pu_ok = np.arange(N_PU_JETS)[None, :] < k_pu[:, None]
    pu_pt = kin.power_law(rng, n * N_PU_JETS, P["jet_pt_min"], 4.5).reshape(n, N_PU_JETS) * jes[:, None]
    pu_eta = rng.uniform(-4.7, 4.7, (n, N_PU_JETS))
    pu_phi = rng.uniform(-np.pi, np.pi, (n, N_PU_JETS))
    hot = fm.get("hot_cells", ())
    h = len(hot)
    hot_ok = np.zeros((n, h), bool)
    hot_pt = np.zeros((n, h))
    hot_eta = np.zeros((n, h))
    hot_phi = np.zeros((n, h))
    for i, (emask, spec) in enumerate(hot):
        e0, e1 = spec.get("eta", [1.5, 2.0])
        p0, p1 = spec.get("phi", [0.5, 1.0])
        fire = emask & (rng.random(n) < float(spec.get("rate", 0.5)))
        hot_ok[:, i] = fire
        hot_pt[:, i] = 30.0 + rng.exponential(float(spec.get("pt_scale", 40.0)), n)
        hot_eta[:, i] = rng.uniform(e0, e1, n)
        hot_phi[:, i] = rng.uniform(p0, p1, n)
        truth_fault[fire] = FAULT_CODES["hot_cells"]
    x = N_PU_JETS + h
    J_ok = np.concatenate([jet_ok, pu_ok, hot_ok], axis=1)
    J_pt = np.concatenate([jpt, pu_pt, hot_pt], axis=1)
    J_eta = np.concatenate([jeta, pu_eta, hot_eta], axis=1)
    J_phi = np.concatenate([jphi, pu_phi, hot_phi], axis=1)
    J_mass = np.concatenate([jmass, J_pt[:, s:] * 0.1], axis=1)
    J_btag = np.concatenate([btag, wp * (1.0 - (1.0 - rng.random((n, x))) ** 0.25)], axis=1)
    J_puid = np.concatenate([puid, rng.random((n, x)) < np.where(np.arange(x) < N_PU_JETS, 0.2, 0.3)], axis=1)
    jets, jrank = pack(J_ok, {"pt": J_pt, "eta": J_eta, "phi": J_phi, "mass": J_mass,
                              "puId": J_puid, "btag": J_btag}, J_pt)

    # ------------------------------------------------------------------ lepton collections
    lep_jet_col = np.where(hf, batch.jet_link, np.where(lep_jet, np.arange(s)[None, :], -1))
    lep_jidx = _lookup(jrank, lep_jet_col)
    charge = -np.sign(batch.pdg).astype(np.int32)
    prompt = ~hf
    dxy = np.where(prompt, rng.normal(0.0, 0.002, (n, s)),
                   rng.exponential(0.02, (n, s)) * np.where(rng.random((n, s)) < 0.5, -1, 1))
    dz = np.where(prompt, rng.normal(0.0, 0.005, (n, s)), rng.normal(0.0, 0.03, (n, s)))
    dxyerr = 0.0008 + rng.exponential(0.001, (n, s))
    dzerr = 0.002 + rng.exponential(0.002, (n, s))
    u_id = rng.random((n, s))
    common = {"pt": lep_pt, "eta": lep_eta, "phi": lep_phi, "mass": kin.mass_of(batch.pdg),
              "charge": charge, "pfRelIso03_all": rel_all}
    tail = {"dxy": dxy, "dxyErr": dxyerr, "dz": dz, "dzErr": dzerr, "jetIdx": lep_jidx,
            "genPartIdx": gen_idx, "pfRelIso03_chg": rel_ch, "pfRelIso03_neu": rel_neu,
            "pfRelIso03_pho": rel_pho}
    muons, _ = pack(mu_reco, {**common, "pfRelIso04_all": rel04,
                              "tightId": (u_id < np.where(prompt, 0.97, 0.85)) & ~nonpf,
                              "softId": rng.random((n, s)) < 0.99, **tail}, lep_pt)
    electrons, _ = pack(e_reco, {**common, **tail,
                                 "cutBasedId": u_id < np.where(prompt, 0.88, 0.35),
                                 "pfId": rng.random((n, s)) < 0.97}, lep_pt)

    # ------------------------------------------------------------------ taus
    tau_true = is_tauh & (pt > 18) & (np.abs(eta) < 2.3) & (rng.random((n, s)) < P["tau_eff"])
    fake = is_part & jet_ok & (jpt > 20) & (np.abs(jeta) < 2.3) & (rng.random((n, s)) < P["tau_fake_prob"])
    fake &= ~tau_true
    tau_ok = tau_true | fake
    dm_u = rng.random((n, s))
    dmode = np.where(dm_u < 0.3, 0, np.where(dm_u < 0.8, 1, 10)).astype(np.int32)
    tmass = np.where(dmode == 0, 0.13957, np.where(dmode == 1, rng.normal(0.77, 0.15, (n, s)),
                                                  rng.normal(1.2, 0.15, (n, s))))
    tmass = np.clip(tmass, 0.13957, 1.7)
    tpt = np.where(tau_true, pt * (1.0 + 0.08 * rng.standard_normal((n, s))), jpt * rng.beta(5.0, 2.5, (n, s)))
    tpt = np.maximum(tpt, 1.0)
    teta = np.where(tau_true, eta + rng.normal(0, 0.01, (n, s)), jeta)
    tphi = np.where(tau_true, kin.wrap_phi(phi + rng.normal(0, 0.01, (n, s))), jphi)
    tcharge = np.where(tau_true, -np.sign(batch.pdg), np.where(rng.random((n, s)) < 0.5, 1, -1)).astype(np.int32)
    raw = np.where(tau_true, rng.exponential(1.0, (n, s)), rng.exponential(6.0, (n, s)))
    tau_fields = {
        "pt": tpt, "eta": teta, "phi": tphi, "mass": tmass, "charge": tcharge, "decayMode": dmode,
        "relIso_all": raw / tpt, "jetIdx": _lookup(jrank, np.where(tau_ok, np.arange(s)[None, :], -1)),
        "genPartIdx": np.where(tau_true, gen_idx, -1), "idDecayMode": rng.random((n, s)) < np.where(tau_true, 0.95, 0.6),
        "idIsoRaw": raw, "idIsoVLoose": raw < 4.0, "idIsoLoose": raw < 2.0, "idIsoMedium": raw < 1.0,
        "idIsoTight": raw < 0.8,
        "idAntiEleLoose": rng.random((n, s)) < 0.97, "idAntiEleMedium": rng.random((n, s)) < 0.9,
        "idAntiEleTight": rng.random((n, s)) < 0.8, "idAntiMuLoose": rng.random((n, s)) < 0.99,
        "idAntiMuMedium": rng.random((n, s)) < 0.98, "idAntiMuTight": rng.random((n, s)) < 0.96,
    }
    # anti-lepton discriminators are nested
    tau_fields["idAntiEleMedium"] &= tau_fields["idAntiEleLoose"]
    tau_fields["idAntiEleTight"] &= tau_fields["idAntiEleMedium"]
    tau_fields["idAntiMuMedium"] &= tau_fields["idAntiMuLoose"]
    tau_fields["idAntiMuTight"] &= tau_fields["idAntiMuMedium"]
    taus, _ = pack(tau_ok, tau_fields, tpt)

    # ------------------------------------------------------------------ photons (pi0-rich fragments)
    ph_ok = is_part & jet_ok & (jpt > 20) & (rng.random((n, s)) < 0.3)
    ph_pt = jpt * rng.beta(1.2, 5.0, (n, s))
    ph_ok &= ph_pt > 10.0
    photons, _ = pack(ph_ok, {
        "pt": ph_pt, "eta": jeta + rng.normal(0, 0.05, (n, s)),
        "phi": kin.wrap_phi(jphi + rng.normal(0, 0.05, (n, s))), "mass": np.zeros((n, s)),
        "charge": np.zeros((n, s), np.int32),
        "pfRelIso03_all": (jpt - ph_pt) * rng.uniform(0.2, 0.8, (n, s)) / np.maximum(ph_pt, 1.0),
        "jetIdx": _lookup(jrank, np.where(ph_ok, np.arange(s)[None, :], -1)),
        "genPartIdx": np.full((n, s), -1)}, ph_pt)

    # ------------------------------------------------------------------ MET
    cphi, sphi = np.cos(phi), np.sin(phi)
    nux = np.sum(np.where(is_nu, batch.p4[..., 1], 0.0), axis=1)
    nuy = np.sum(np.where(is_nu, batch.p4[..., 2], 0.0), axis=1)
    jmis = np.where(jet_ok & ~lep_jet, jpt - pt, 0.0)
    lmis = np.where(lep_reco, lep_pt - pt, 0.0)
    metx = nux - np.sum((jmis + lmis) * cphi, axis=1)
    mety = nuy - np.sum((jmis + lmis) * sphi, axis=1)
    lostx = np.sum(np.where(lost_mu, lep_pt * np.cos(lep_phi), 0.0), axis=1)
    losty = np.sum(np.where(lost_mu, lep_pt * np.sin(lep_phi), 0.0), axis=1)
    metx += lostx
    mety += losty
    hotx = np.sum(np.where(hot_ok, hot_pt * np.cos(hot_phi), 0.0), axis=1)
    hoty = np.sum(np.where(hot_ok, hot_pt * np.sin(hot_phi), 0.0), axis=1)
    metx -= hotx
    mety -= hoty
    uncl = rng.gamma(4.0, (60.0 + 22.0 * npv) / 4.0)
    sig_u = P["met_stoch"] * np.sqrt(uncl)
    metx += sig_u * rng.standard_normal(n)
    mety += sig_u * rng.standard_normal(n)
    sj2 = np.where(J_ok[:, :s] & ~lep_jet, (sig_j * jpt) ** 2, 0.0)
    covxx = sig_u ** 2 + np.sum(sj2 * np.cos(jphi) ** 2, axis=1)
    covyy = sig_u ** 2 + np.sum(sj2 * np.sin(jphi) ** 2, axis=1)
    covxy = np.sum(sj2 * np.cos(jphi) * np.sin(jphi), axis=1)
    det = covxx * covyy - covxy ** 2
    signif = (covyy * metx ** 2 - 2 * covxy * metx * mety + covxx * mety ** 2) / det
    sumet = uncl + np.sum(np.where(J_ok & (np.abs(J_eta) < 5), J_pt, 0.0), axis=1) \
        + np.sum(np.where(lep_reco & ~lep_jet, lep_pt, 0.0), axis=1)

    # ------------------------------------------------------------------ triggers
    iso_ok = (rel_all >= 0) & (rel_all < 0.15)
    mu_trig = mu_reco & iso_ok
    trig_eff = rng.random(n) < P["trigger_eff"]
    hlt_24 = (mu_trig & (lep_pt > 24) & (np.abs(lep_eta) < 2.4)).any(axis=1) & trig_eff
    hlt_24e = (mu_trig & (lep_pt > 24) & (np.abs(lep_eta) < 2.1)).any(axis=1) & trig_eff
    has_tau = (tau_ok & (tpt > 20) & tau_fields["idIsoLoose"]).any(axis=1)
    hlt_mutau = (mu_trig & (lep_pt > 17) & (np.abs(lep_eta) < 2.1)).any(axis=1) & has_tau & trig_eff

    # ------------------------------------------------------------------ PF multiplicities
    vis_part = (is_part | is_tauh)
    jl = np.where(vis_part, np.log1p(pt / 10.0), 0.0)
    central = np.abs(eta) < 2.5
    jet_ch = np.sum(np.where(central, 2.0 + 5.0 * jl, 0.0) * vis_part, axis=1)
    jet_all = np.sum((2.0 + 5.0 * jl) * vis_part, axis=1)
    n_ch = rng.poisson(P["pf_ue_charged"] + P["pf_pu_charged"] * npv + jet_ch)
    n_neu = rng.poisson(P["pf_ue_neutral"] + P["pf_pu_neutral"] * npv + 0.25 * jet_all)
    n_pho = rng.poisson(P["pf_ue_photon"] + P["pf_pu_photon"] * npv + 0.8 * jet_all)

    # ------------------------------------------------------------------ GenPart
    if is_data:
        gen = None
    else:
        gpt, geta, gphi, gm = kin.ptetaphim(batch.gp4)
        gen, _ = pack(batch.gvalid, {"pt": gpt, "eta": geta, "phi": gphi, "mass": gm,
                                     "pdgId": batch.gpdg, "status": batch.gstatus},
                      -np.broadcast_to(np.arange(batch.gvalid.shape[1]), batch.gvalid.shape).astype(float))

    out = {
        "PV_npvs": npv.astype(np.int32),
        "PV_x": rng.normal(0.0704, 0.0015, n), "PV_y": rng.normal(0.0624, 0.0015, n),
        "PV_z": rng.normal(0.4, 5.0, n),
        "HLT_IsoMu24_eta2p1": hlt_24e, "HLT_IsoMu24": hlt_24, "HLT_IsoMu17_eta2p1_LooseIsoPFTau20": hlt_mutau,
        "Muon": muons, "Electron": electrons, "Tau": taus, "Photon": photons, "Jet": jets, "GenPart": gen,
        "MET_pt": np.hypot(metx, mety), "MET_phi": np.arctan2(mety, metx), "MET_sumet": sumet,
        "MET_significance": signif, "MET_CovXX": covxx, "MET_CovXY": covxy, "MET_CovYY": covyy,
        "PF_nChargedHadron": n_ch.astype(np.int32), "PF_nNeutralHadron": n_neu.astype(np.int32),
        "PF_nPhoton": n_pho.astype(np.int32),
        "Truth_fault": truth_fault,
        "_mu": mu,
    }
    if pf_candidates:
        from .pfcands import make_pfcands
        make_pfcands(out, rng, n_ch, n_neu, n_pho)
    return out
