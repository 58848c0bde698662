"""Numba kernels behind ``sparkad.hlf``: one pass over flat (offsets, content) arrays per quantity.

awkward's high-level operations cost several passes and temporary arrays per feature; these
loops compute the same definitions (HLF.md) in one pass, so extraction runs near the I/O rate.
Each kernel takes the events to process as an index array, so nothing is copied to subset events.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

TWO_PI = 2.0 * math.pi


@nb.njit(cache=True, inline="always")
def _dphi(a, b):
    d = (a - b + math.pi) % TWO_PI
    if d < 0:
        d += TWO_PI
    return d - math.pi


@nb.njit(cache=True)
def choose_lepton(mu_off, mu_pt, mu_eta, mu_iso, el_off, el_pt, el_eta, el_iso, pt_min, iso_max, eta_max):
    """Per event: is there a lepton passing pT / +Iso / +|η| (cumulative), and the highest-pT one.

    Returns (pass_pt, pass_iso, pass_eta, index into the muon or electron content or -1, is_ele).
    A negative isolation (e.g. -999 for non-PF 2012 muons) never passes. Ties go to the muon.
    """
    n = len(mu_off) - 1
    pass_pt = np.zeros(n, np.bool_)
    pass_iso = np.zeros(n, np.bool_)
    pass_eta = np.zeros(n, np.bool_)
    which = np.full(n, -1, np.int64)
    is_ele = np.zeros(n, np.int8)
    for i in range(n):
        best = -1.0
        for c in range(2):
            off, pt, eta, iso = (mu_off, mu_pt, mu_eta, mu_iso) if c == 0 else (el_off, el_pt, el_eta, el_iso)
            for j in range(off[i], off[i + 1]):
                if not pt[j] > pt_min:
                    continue
                pass_pt[i] = True
                if not (iso[j] >= 0 and iso[j] < iso_max):
                    continue
                pass_iso[i] = True
                if not abs(eta[j]) < eta_max:
                    continue
                pass_eta[i] = True
                if pt[j] > best:
                    best = pt[j]
                    which[i] = j
                    is_ele[i] = c
    return pass_pt, pass_iso, pass_eta, which, is_ele


@nb.njit(cache=True)
def jet_sums(off, pt, eta, phi, mass, btag, events, lep_eta, lep_phi, pt_min, eta_max, dr_min):
    """NJ, NB, HT and MJ of jets with pT > pt_min, |η| < eta_max and ΔR(jet, lepton) ≥ dr_min.

    ``events`` are the event indices to process; lep_eta / lep_phi are per event (NaN: no lepton).
    """
    m = len(events)
    nj = np.zeros(m, np.int32)
    nb_ = np.zeros(m, np.int32)
    ht = np.zeros(m, np.float64)
    mj = np.zeros(m, np.float64)
    for k in range(m):
        i = events[k]
        le, lp = lep_eta[i], lep_phi[i]
        check_dr = dr_min > 0 and not math.isnan(le)
        px = py = pz = e = 0.0
        for j in range(off[i], off[i + 1]):
            p = np.float64(pt[j])
            h = np.float64(eta[j])
            if not (p > pt_min and abs(h) < eta_max):
                continue
            f = np.float64(phi[j])
            if check_dr:
                de = h - le
                dp = _dphi(f, lp)
                if math.sqrt(de * de + dp * dp) < dr_min:
                    continue
            nj[k] += 1
            if btag[j]:
                nb_[k] += 1
            ht[k] += p
            pzj = p * math.sinh(h)
            ms = np.float64(mass[j])
            px += p * math.cos(f)
            py += p * math.sin(f)
            pz += pzj
            e += math.sqrt(p * p + pzj * pzj + ms * ms)
        m2 = e * e - px * px - py * py - pz * pz
        mj[k] = math.sqrt(m2) if m2 > 0 else 0.0
    return nj, nb_, ht, mj


@nb.njit(cache=True)
def vector_sum(off, pt, eta, phi, mass, events):
    """Number, |vector Σ pT| and invariant mass of all objects of each listed event."""
    m = len(events)
    n = np.zeros(m, np.int32)
    ptot = np.zeros(m, np.float64)
    mtot = np.zeros(m, np.float64)
    for k in range(m):
        i = events[k]
        px = py = pz = e = 0.0
        for j in range(off[i], off[i + 1]):
            p = np.float64(pt[j])
            f = np.float64(phi[j])
            pzj = p * math.sinh(np.float64(eta[j]))
            ms = np.float64(mass[j])
            px += p * math.cos(f)
            py += p * math.sin(f)
            pz += pzj
            e += math.sqrt(p * p + pzj * pzj + ms * ms)
        n[k] = off[i + 1] - off[i]
        ptot[k] = math.sqrt(px * px + py * py)
        m2 = e * e - px * px - py * py - pz * pz
        mtot[k] = math.sqrt(m2) if m2 > 0 else 0.0
    return n, ptot, mtot


@nb.njit(cache=True)
def scalar_sum(off, pt, eta, events, pt_min, eta_max):
    """Σ pT of objects with pT > pt_min and |η| < eta_max, per listed event."""
    m = len(events)
    out = np.zeros(m, np.float64)
    for k in range(m):
        i = events[k]
        for j in range(off[i], off[i + 1]):
            if pt[j] > pt_min and abs(eta[j]) < eta_max:
                out[k] += pt[j]
    return out
