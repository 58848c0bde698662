"""Optional PFNano-style PF candidate collection, consistent with the PF summaries and the isolation.

Per event: every PF lepton (pdgId -11*q / -13*q), for each PF lepton and each type (charged hadron 211*q,
neutral hadron 130, photon 22) a few candidates inside its dR < 0.3 cone carrying that isolation
component, and the rest of PF_nChargedHadron / PF_nNeutralHadron / PF_nPhoton as soft candidates
outside every lepton cone. Cones may overlap, so the isolation branches are recomputed from the
candidates at the end: an extractor computing Iso from PFCands gets exactly the stored values
(up to float32 rounding of the angles). Costs ~1 kB/event: meant for small realistic files.
"""
from __future__ import annotations

import numpy as np

from sparkad.generate import kinematics as kin
from sparkad.generate.detector import Packed

TYPES = (("chg", 211, 0.13957), ("neu", 130, 0.0), ("pho", 22, 0.0))
CONE = 0.3


def _lepton_table(out):
    parts = []
    for coll, pdg in (("Muon", 13), ("Electron", 11)):
        p = out[coll]
        ev = np.repeat(np.arange(len(p.counts)), p.counts)
        parts.append((coll, ev, p.fields, pdg))
    return parts


def make_pfcands(out: dict, rng, n_ch, n_neu, n_pho):
    n = len(n_ch)
    totals = {"chg": np.asarray(n_ch, np.int64).copy(), "neu": np.asarray(n_neu, np.int64).copy(),
              "pho": np.asarray(n_pho, np.int64).copy()}
    # PF leptons, flat
    ev_l, pt_l, eta_l, phi_l, q_l, pdg_l, rel = [], [], [], [], [], [], {t: [] for t, _, _ in TYPES}
    for coll, ev, f, pdg in _lepton_table(out):
        pf = f["pfRelIso03_all"] != -999.0
        ev_l.append(ev[pf]); pt_l.append(f["pt"][pf]); eta_l.append(f["eta"][pf]); phi_l.append(f["phi"][pf])
        q_l.append(f["charge"][pf]); pdg_l.append(np.full(pf.sum(), pdg))
        for t, _, _ in TYPES:
            rel[t].append(f[f"pfRelIso03_{t}"][pf].astype(np.float64))
    ev_l, pt_l, eta_l, phi_l = map(np.concatenate, (ev_l, pt_l, eta_l, phi_l))
    q_l, pdg_l = np.concatenate(q_l), np.concatenate(pdg_l)
    rel = {t: np.concatenate(v) for t, v in rel.items()}
    # float32-rounded lepton directions, as a reader sees them
    eta32, phi32 = eta_l.astype(np.float32).astype(np.float64), phi_l.astype(np.float32).astype(np.float64)

    cands = {"ev": [ev_l], "pt": [pt_l], "eta": [eta_l], "phi": [phi_l], "pdg": [-pdg_l * q_l],
             "q": [q_l], "m": [np.where(pdg_l == 13, 0.10566, 0.000511)]}
    incone = {"ev": [], "pt": [], "eta": [], "phi": [], "type": []}
    for ti, (t, pdg, mass) in enumerate(TYPES):
        s_abs = rel[t] * pt_l
        k = np.where(s_abs > 0, 1 + np.minimum(rng.poisson(s_abs / 1.0), 19), 0)
        owner = np.repeat(np.arange(len(k)), k)
        w = rng.standard_exponential(owner.size)
        wsum = np.bincount(owner, weights=w, minlength=len(k))
        cpt = s_abs[owner] * w / wsum[owner]
        r = 0.28 * np.sqrt(rng.random(owner.size))
        a = rng.uniform(-np.pi, np.pi, owner.size)
        incone["ev"].append(ev_l[owner]); incone["pt"].append(cpt)
        incone["eta"].append(eta32[owner] + r * np.cos(a))
        incone["phi"].append(kin.wrap_phi(phi32[owner] + r * np.sin(a)))
        incone["type"].append(np.full(owner.size, ti))
        totals[t] = np.maximum(totals[t], np.bincount(ev_l[owner], minlength=n))
    ic = {k: np.concatenate(v) for k, v in incone.items()}

    # soft candidates outside every lepton cone
    lmax = int(np.bincount(ev_l, minlength=n).max()) if ev_l.size else 0
    lep_eta = np.full((n, max(lmax, 1)), 99.0)
    lep_phi = np.zeros((n, max(lmax, 1)))
    if ev_l.size:
        order = np.argsort(ev_l, kind="stable")
        slot = np.arange(ev_l.size) - np.searchsorted(ev_l[order], ev_l[order])
        lep_eta[ev_l[order], slot] = eta32[order]
        lep_phi[ev_l[order], slot] = phi32[order]
    out_ev, out_type = [], []
    for ti, (t, _, _) in enumerate(TYPES):
        n_in = np.bincount(ic["ev"][ic["type"] == ti], minlength=n)
        n_out = totals[t] - n_in
        out_ev.append(np.repeat(np.arange(n), n_out)); out_type.append(np.full(n_out.sum(), ti))
    oe, ot = np.concatenate(out_ev), np.concatenate(out_type)
    opt = 0.3 + rng.exponential(np.array([0.9, 1.5, 0.8])[ot])
    oeta = rng.uniform(-1, 1, oe.size) * np.array([2.5, 3.0, 3.0])[ot]
    ophi = rng.uniform(-np.pi, np.pi, oe.size)
    todo = np.arange(oe.size)
    for _ in range(30):
        if not todo.size or not ev_l.size:
            break
        e = oe[todo]
        dr2 = (oeta[todo, None] - lep_eta[e]) ** 2 + kin.delta_phi(ophi[todo, None], lep_phi[e]) ** 2
        bad = (dr2 < (CONE + 0.02) ** 2).any(axis=1)
        todo = todo[bad]
        oeta[todo] = rng.uniform(-1, 1, todo.size) * np.array([2.5, 3.0, 3.0])[ot[todo]]
        ophi[todo] = rng.uniform(-np.pi, np.pi, todo.size)

    for ti, (t, pdg, mass) in enumerate(TYPES):
        sel_i, sel_o = ic["type"] == ti, ot == ti
        ni, no = sel_i.sum(), sel_o.sum()
        qq = np.where(rng.random(ni + no) < 0.5, 1, -1) if pdg == 211 else np.zeros(ni + no, np.int64)
        cands["ev"] += [ic["ev"][sel_i], oe[sel_o]]
        cands["pt"] += [ic["pt"][sel_i], opt[sel_o]]
        cands["eta"] += [ic["eta"][sel_i], oeta[sel_o]]
        cands["phi"] += [ic["phi"][sel_i], ophi[sel_o]]
        cands["q"].append(qq)
        cands["pdg"].append(pdg * np.where(qq != 0, qq, 1))
        cands["m"].append(np.full(ni + no, mass))
    c = {k: np.concatenate(v) for k, v in cands.items()}
    order = np.argsort(c["ev"], kind="stable")
    counts = np.bincount(c["ev"], minlength=n)
    fields = {"pt": c["pt"][order], "eta": c["eta"][order], "phi": c["phi"][order], "mass": c["m"][order],
              "charge": c["q"][order], "pdgId": c["pdg"][order]}
    out["PFCands"] = Packed(counts, fields)
    out["PF_nChargedHadron"] = totals["chg"].astype(np.int32)
    out["PF_nNeutralHadron"] = totals["neu"].astype(np.int32)
    out["PF_nPhoton"] = totals["pho"].astype(np.int32)
    _recompute_isolation(out, ic)


def _recompute_isolation(out, ic):
    """Isolation components = sum of in-cone candidate pT (as float32 a reader sees) / lepton pT."""
    ce = ic["ev"]
    c_eta = ic["eta"].astype(np.float32).astype(np.float64)
    c_phi = ic["phi"].astype(np.float32).astype(np.float64)
    c_pt = ic["pt"].astype(np.float32).astype(np.float64)
    c_order = np.argsort(ce, kind="stable")
    n = len(out["Muon"].counts)
    starts = np.searchsorted(ce[c_order], np.arange(n + 1))
    for coll in ("Muon", "Electron"):
        p = out[coll]
        f = p.fields
        ev = np.repeat(np.arange(n), p.counts)
        pf = f["pfRelIso03_all"] != -999.0
        idx = np.flatnonzero(pf)
        if not idx.size:
            continue
        # pairs (lepton, in-cone candidate of the same event)
        nc = starts[ev[idx] + 1] - starts[ev[idx]]
        lep_of_pair = np.repeat(idx, nc)
        first = np.repeat(starts[ev[idx]], nc)
        within = np.arange(nc.sum()) - np.repeat(np.cumsum(nc) - nc, nc)
        cand = c_order[first + within]
        l_eta = f["eta"].astype(np.float32).astype(np.float64)[lep_of_pair]
        l_phi = f["phi"].astype(np.float32).astype(np.float64)[lep_of_pair]
        dr2 = (c_eta[cand] - l_eta) ** 2 + kin.delta_phi(c_phi[cand], l_phi) ** 2
        inside = dr2 < CONE ** 2
        lpt = f["pt"].astype(np.float32).astype(np.float64)
        tot = np.zeros(len(pf), np.float32)
        for ti, (t, _, _) in enumerate(TYPES):
            m = inside & (ic["type"][cand] == ti)
            s = np.bincount(lep_of_pair[m], weights=c_pt[cand][m], minlength=len(pf))
            relt = (s / np.maximum(lpt, 1e-3)).astype(np.float32)
            f[f"pfRelIso03_{t}"] = np.where(pf, relt, f[f"pfRelIso03_{t}"]).astype(np.float32)
            tot = tot + np.where(pf, relt, 0).astype(np.float32)
        f["pfRelIso03_all"] = np.where(pf, tot, f["pfRelIso03_all"]).astype(np.float32)
