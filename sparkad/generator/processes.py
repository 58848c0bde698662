"""Physics processes: one function per process, each returning a truth-level EventRecord.

Every function has the signature ``f(rng, n, ctx, **params) -> EventRecord`` and documents its model in
its docstring. The models are deliberately simple but keep the correlations that matter for the
high-level features: resonance masses (Breit-Wigner), two-body decay kinematics (hence the Jacobian
edge of the W transverse mass), boson recoil against initial-state radiation (ISR) partons, top
decay chains, heavy-flavour semileptonic decays inside jets (non-isolated leptons), tau decays.

Common production model ("system + ISR"): k ISR partons with P(k) ~ r^k (Berends scaling, mean set
per process, growing slowly with sqrt(s)), pT ~ pT^-3 above 20 GeV, eta ~ N(0, 1.8), flavour 70% g,
25% light quarks, 3% c, 2% b. The produced system recoils against them (plus a Gaussian intrinsic
kT of 4 GeV per component); its rapidity is Gaussian with width 0.42 ln(sqrt(s)/M).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kinematics as kin
from .record import ST_DECAYED, ST_FINAL, ST_HARD, EventRecord


@dataclass(frozen=True)
class Context:
    sqrt_s: float = 8000.0  # GeV


# Stable integer ids written to Truth_process
PROCESS_IDS = {
    "wjets": 1, "dyjets": 2, "ttbar": 3, "qcd": 4,
    "a4l": 101, "lq_btau": 102, "h0_tautau": 103, "hpm_taunu": 104,
}
LABELS = {"wjets": "W", "dyjets": "Z", "ttbar": "ttbar", "qcd": "QCD",
          "a4l": "A4l", "lq_btau": "LQ", "h0_tautau": "h0", "hpm_taunu": "hpm"}
SIGNALS = {"a4l", "lq_btau", "h0_tautau", "hpm_taunu"}

BR_W_LEP = 0.1086  # per lepton flavour
BR_W_HAD = 1.0 - 3 * BR_W_LEP


def _isr_mean(ctx: Context, base: float) -> float:
    return base * (1.0 + 0.3 * np.log(ctx.sqrt_s / 8000.0))


def _isr(rec: EventRecord, rng, ctx: Context, mean: float, kmax: int = 4, pt_min: float = 20.0):
    """Add ISR parton slots; returns their summed transverse momentum (n, 2)."""
    n = rec.n
    k = kin.geometric(rng, n, _isr_mean(ctx, mean), kmax)
    sum_xy = np.zeros((n, 2))
    for i in range(kmax):
        valid = k > i
        pt = kin.power_law(rng, n, pt_min, 3.0)
        eta = np.clip(rng.normal(0.0, 1.8, n), -4.9, 4.9)
        phi = rng.uniform(-np.pi, np.pi, n)
        u = rng.random(n)
        light = rng.integers(1, 4, n)
        pdg = np.where(u < 0.70, 21, np.where(u < 0.95, light, np.where(u < 0.98, 4, 5)))
        pdg = pdg * np.where((pdg != 21) & (rng.random(n) < 0.5), -1, 1)
        p4 = kin.p4_ptetaphim(pt, eta, phi, 0.0)
        rec.add(p4, pdg, valid=valid)
        sum_xy += np.where(valid[:, None], p4[:, 1:3], 0.0)
    return sum_xy


def _system(rng, ctx: Context, mass, recoil_xy):
    """Four-vector of a produced system of given mass balancing the ISR recoil."""
    n = len(mass)
    pxy = -recoil_xy + rng.normal(0.0, 4.0, (n, 2))
    pt = np.hypot(pxy[:, 0], pxy[:, 1])
    phi = np.arctan2(pxy[:, 1], pxy[:, 0])
    y = kin.sample_rapidity(rng, n, ctx.sqrt_s, mass)
    return kin.p4_ptyphim(pt, y, phi, mass)


def _status(pdg):
    a = np.abs(pdg)
    return np.where(a == 15, ST_DECAYED, np.where((a >= 11) & (a <= 16), ST_FINAL, ST_HARD))


def _decay_pair(rec, rng, parent, pdg_a, pdg_b, with_gen=True):
    """Two-body decay of `parent` into pdg_a, pdg_b; adds GenPart + final-state slots."""
    a, b = kin.two_body_decay(rng, parent, kin.mass_of(pdg_a), kin.mass_of(pdg_b))
    ga = rec.add_gen(a, pdg_a, _status(pdg_a)) if with_gen else -1
    gb = rec.add_gen(b, pdg_b, _status(pdg_b)) if with_gen else -1
    rec.add(a, pdg_a, gen=ga)
    rec.add(b, pdg_b, gen=gb)
    return a, b


def _w_decay_pdgs(rng, n, charge, leptonic, flavours=(11, 13, 15)):
    """PDG ids of W decay products: W+ -> l+ nu or u dbar / c sbar (equal), W- conjugate."""
    fl = rng.choice(np.asarray(flavours), n)
    cs = rng.random(n) < 0.5
    up = np.where(cs, 4, 2)
    down = np.where(cs, 3, 1)
    a = np.where(leptonic, -charge * fl, charge * up)
    b = np.where(leptonic, charge * (fl + 1), -charge * down)
    return a, b


# ------------------------------------------------------------------------------- SM processes

def wjets(rng, n, ctx: Context, isr_mean=0.45, w_plus_fraction=0.58, flavours=(11, 13, 15)):
    """W -> l nu + jets (l = e, mu, tau equally; tau decayed).

    m_W ~ Breit-Wigner(80.385, 2.085) in [40, 200]; W+ fraction 0.58 (LHC charge asymmetry);
    isotropic decay in the W rest frame, so the lepton-neutrino transverse mass has its Jacobian
    edge at m_W; W pT from the recoil against ISR partons (mean number 0.45 above 20 GeV at 8 TeV)."""
    rec = EventRecord(n, PROCESS_IDS["wjets"])
    recoil = _isr(rec, rng, ctx, isr_mean)
    m = kin.breit_wigner(rng, n, kin.M_W, kin.G_W, 40.0, 200.0)
    w = _system(rng, ctx, m, recoil)
    charge = np.where(rng.random(n) < w_plus_fraction, 1, -1)
    a, b = _w_decay_pdgs(rng, n, charge, np.ones(n, bool), flavours)
    rec.add_gen(w, 24 * charge, ST_HARD)
    _decay_pair(rec, rng, w, a, b)
    rec.decay_taus(rng)
    return rec


def dyjets(rng, n, ctx: Context, isr_mean=0.40, m_min=50.0, m_max=250.0, photon_fraction=0.08,
           flavours=(11, 13, 15)):
    """Z/gamma* -> l l + jets (l = e, mu, tau equally; tau decayed).

    m_ll from a Breit-Wigner(91.19, 2.495) (fraction 1 - photon_fraction) plus a gamma* continuum
    ~ 1/m^2, both in [m_min, m_max]; isotropic decay; Z pT from ISR recoil."""
    rec = EventRecord(n, PROCESS_IDS["dyjets"])
    recoil = _isr(rec, rng, ctx, isr_mean)
    m_bw = kin.breit_wigner(rng, n, kin.M_Z, kin.G_Z, m_min, m_max)
    u = rng.random(n)
    m_cont = 1.0 / (1.0 / m_min - u * (1.0 / m_min - 1.0 / m_max))
    m = np.where(rng.random(n) < photon_fraction, m_cont, m_bw)
    z = _system(rng, ctx, m, recoil)
    fl = rng.choice(np.asarray(flavours), n)
    rec.add_gen(z, 23, ST_HARD)
    _decay_pair(rec, rng, z, fl, -fl)
    rec.decay_taus(rng)
    return rec


def ttbar(rng, n, ctx: Context, isr_mean=0.6, decay="leptonic"):
    """t tbar -> W+ b W- bbar with the W decays chosen by `decay`.

    decay: "inclusive" (W BRs), "leptonic" (>= 1 leptonic W: semi- + di-leptonic, BR 0.543),
    "semileptonic" (exactly one) or "dileptonic" (both). m_t ~ BW(172.5, 1.41) and m_W ~ BW on shell;
    m_ttbar = m_t + m_tbar + an exponential tail (scale 90 GeV x (sqrt(s)/8 TeV)^0.3); the pair system
    recoils against ISR (mean 0.6 partons); isotropic t -> W b and W decays. Hence 4+ partons, two
    of them b quarks, in semileptonic events."""
    rec = EventRecord(n, PROCESS_IDS["ttbar"])
    recoil = _isr(rec, rng, ctx, isr_mean)
    mt1 = kin.breit_wigner(rng, n, kin.M_TOP, kin.G_TOP, 150.0, 195.0)
    mt2 = kin.breit_wigner(rng, n, kin.M_TOP, kin.G_TOP, 150.0, 195.0)
    mtt = mt1 + mt2 + rng.exponential(90.0 * (ctx.sqrt_s / 8000.0) ** 0.3, n)
    tt = _system(rng, ctx, mtt, recoil)
    t, tb = kin.two_body_decay(rng, tt, mt1, mt2)
    rec.add_gen(t, 6, ST_HARD)
    rec.add_gen(tb, -6, ST_HARD)
    pl = 3 * BR_W_LEP
    if decay == "inclusive":
        lep1, lep2 = rng.random(n) < pl, rng.random(n) < pl
    elif decay in ("leptonic", "semileptonic", "dileptonic"):
        semi = 2 * pl * (1 - pl)
        di = pl * pl
        if decay == "semileptonic":
            is_di = np.zeros(n, bool)
        elif decay == "dileptonic":
            is_di = np.ones(n, bool)
        else:
            is_di = rng.random(n) < di / (semi + di)
        first = rng.random(n) < 0.5
        lep1 = is_di | first
        lep2 = is_di | ~first
    else:
        raise ValueError(f"ttbar: unknown decay mode {decay!r}")
    for top, sign, leptonic in ((t, 1, lep1), (tb, -1, lep2)):
        mw = kin.breit_wigner(rng, n, kin.M_W, kin.G_W, 50.0, 110.0)
        w, b = kin.two_body_decay(rng, top, mw, kin.MASS[5])
        rec.add_gen(w, 24 * sign, ST_HARD)
        gb = rec.add_gen(b, 5 * sign, ST_HARD)
        rec.add(b, 5 * sign, gen=gb)
        pa, pb = _w_decay_pdgs(rng, n, np.full(n, sign), leptonic)
        _decay_pair(rec, rng, w, pa, pb)
    rec.decay_taus(rng)
    return rec


def ttbar_branching(decay: str) -> float:
    pl = 3 * BR_W_LEP
    return {"inclusive": 1.0, "leptonic": 1 - (1 - pl) ** 2, "semileptonic": 2 * pl * (1 - pl),
            "dileptonic": pl * pl}[decay]


def qcd(rng, n, ctx: Context, lepton_pt_min=15.0, lepton_index=4.0, isr_mean=0.5, b_fraction=0.6):
    """QCD multijet with a lepton (e or mu, 50/50) from a semileptonic heavy-flavour decay.

    Generator-level lepton filter (pT > lepton_pt_min, as in mu-enriched QCD samples): the lepton pT
    is drawn from pT^-4 above the threshold and the parent b (fraction b_fraction) or c quark momentum
    is p_q = p_l / z with z ~ Beta(2.5, 2) (b) or Beta(2, 2.5) (c); the neutrino takes a fraction
    ~ (1 - z) Beta(2, 3); the lepton lies within dR ~ 2 GeV/p_q of the quark. The rest of the quark's
    jet is hadronic activity inside the lepton isolation cone (a fraction ~ Beta(5, 2) of it), hence
    non-isolated leptons. A recoiling parton (the partner anti-quark half of the time) balances the
    quark in the transverse plane, plus ISR."""
    rec = EventRecord(n, PROCESS_IDS["qcd"])
    _isr(rec, rng, ctx, isr_mean)
    is_b = rng.random(n) < b_fraction
    lpt = kin.power_law(rng, n, lepton_pt_min, lepton_index)
    z = np.where(is_b, rng.beta(2.5, 2.0, n), rng.beta(2.0, 2.5, n))
    z = np.clip(z, 0.05, 0.97)
    qpt = lpt / z
    qeta = np.clip(rng.normal(0.0, 1.6, n), -2.6, 2.6)
    qphi = rng.uniform(-np.pi, np.pi, n)
    qflav = np.where(is_b, 5, 4) * np.where(rng.random(n) < 0.5, 1, -1)
    spread = np.minimum(0.25, 2.0 / qpt)
    leta = qeta + rng.normal(0.0, 1.0, n) * spread
    lphi = qphi + rng.normal(0.0, 1.0, n) * spread
    lflav = np.where(rng.random(n) < 0.5, 11, 13)
    # b -> c l- nu-bar: lepton charge follows the quark charge sign (b: -1/3 -> l-) ; c -> s l+ nu
    lsign = np.where(np.abs(qflav) == 5, np.sign(qflav), -np.sign(qflav))
    lpdg = lflav * lsign
    lp4 = kin.p4_ptetaphim(lpt, leta, lphi, kin.mass_of(lpdg))
    znu = (1.0 - z) * rng.beta(2.0, 3.0, n)
    nup4 = kin.p4_ptetaphim(znu * qpt, qeta + rng.normal(0, 1, n) * spread,
                            qphi + rng.normal(0, 1, n) * spread, 0.0)
    qp4 = kin.p4_ptetaphim(qpt, qeta, qphi, kin.mass_of(qflav))
    jet_vis = qp4 - nup4  # the heavy-flavour jet (includes the lepton, as PF jets do)
    remnant = np.maximum(qpt * (1.0 - z - znu), 0.0)
    env = remnant * rng.beta(5.0, 2.0, n)
    gq = rec.add_gen(qp4, qflav, ST_HARD)
    jslot = rec.add(jet_vis, qflav, gen=gq)
    gl = rec.add_gen(lp4, lpdg, ST_FINAL)
    rec.add(lp4, lpdg, env=env, jet_link=jslot, gen=gl)
    rec.add(nup4, -lsign * (lflav + 1), gen=-1)
    # recoil parton
    partner = rng.random(n) < 0.5
    light = rng.integers(1, 4, n) * np.where(rng.random(n) < 0.5, 1, -1)
    rflav = np.where(partner, -qflav, np.where(rng.random(n) < 0.6, 21, light))
    rpt = qpt * np.clip(rng.normal(1.0, 0.15, n), 0.3, 2.0)
    reta = np.clip(rng.normal(0.0, 1.6, n), -4.7, 4.7)
    rphi = kin.wrap_phi(qphi + np.pi + rng.normal(0.0, 0.15, n))
    rp4 = kin.p4_ptetaphim(rpt, reta, rphi, kin.mass_of(rflav))
    gr = rec.add_gen(rp4, rflav, ST_HARD)
    rec.add(rp4, rflav, gen=gr)
    return rec


# ------------------------------------------------------------------------------ BSM benchmarks

def a4l(rng, n, ctx: Context, mass=50.0, isr_mean=0.5):
    """A -> Z* Z* -> 4l (seeds/001): a neutral scalar of `mass` (50 GeV) from gluon fusion,
    decaying to two off-shell Z bosons, each forced to e+e- or mu+mu- (50/50 per pair).
    m(Z1*) = mass (0.15 + 0.75 Beta(2.5, 1.5)), m(Z2*) = (mass - m1) Beta(2, 1.2) (>= 1 GeV);
    isotropic decays; A pT from ISR recoil."""
    rec = EventRecord(n, PROCESS_IDS["a4l"], is_signal=True)
    recoil = _isr(rec, rng, ctx, isr_mean)
    a = _system(rng, ctx, np.full(n, float(mass)), recoil)
    rec.add_gen(a, 36, ST_HARD)
    m1 = mass * (0.15 + 0.75 * rng.beta(2.5, 1.5, n))
    m2 = np.maximum((mass - m1) * rng.beta(2.0, 1.2, n), 1.0)
    m2 = np.minimum(m2, mass - m1 - 1e-3)
    z1, z2 = kin.two_body_decay(rng, a, m1, m2)
    for z in (z1, z2):
        rec.add_gen(z, 23, ST_HARD)
        fl = np.where(rng.random(n) < 0.5, 11, 13)
        _decay_pair(rec, rng, z, fl, -fl)
    return rec


def lq_btau(rng, n, ctx: Context, mass=80.0, isr_mean=0.5):
    """Leptoquark pair production, LQ -> b tau (seeds/001, m_LQ = 80 GeV).

    m(LQ LQbar) = 2 m_LQ + exponential tail (scale 60 GeV x (sqrt(s)/13 TeV)^0.3); each LQ decays
    isotropically to b tau; taus decayed (hadronic 65%). Signature: two b jets, tau objects,
    leptons from tau decays, MET."""
    rec = EventRecord(n, PROCESS_IDS["lq_btau"], is_signal=True)
    recoil = _isr(rec, rng, ctx, isr_mean)
    mpair = 2 * mass + rng.exponential(60.0 * (ctx.sqrt_s / 13000.0) ** 0.3, n)
    pair = _system(rng, ctx, mpair, recoil)
    l1, l2 = kin.two_body_decay(rng, pair, mass, mass)
    for lq, sign in ((l1, 1), (l2, -1)):
        rec.add_gen(lq, 42 * sign, ST_HARD)
        _decay_pair(rec, rng, lq, np.full(n, 5 * sign), np.full(n, 15 * sign))
    rec.decay_taus(rng)
    return rec


def h0_tautau(rng, n, ctx: Context, mass=60.0, isr_mean=0.5):
    """Neutral scalar h0 (60 GeV) from gluon fusion -> tau+ tau- (seeds/001); taus decayed;
    h0 pT from ISR recoil."""
    rec = EventRecord(n, PROCESS_IDS["h0_tautau"], is_signal=True)
    recoil = _isr(rec, rng, ctx, isr_mean)
    h = _system(rng, ctx, np.full(n, float(mass)), recoil)
    rec.add_gen(h, 35, ST_HARD)
    _decay_pair(rec, rng, h, np.full(n, 15), np.full(n, -15))
    rec.decay_taus(rng)
    return rec


def hpm_taunu(rng, n, ctx: Context, mass=60.0, isr_mean=0.45):
    """Charged scalar h+- (60 GeV) from q qbar' annihilation -> tau nu (seeds/001); equal charges;
    taus decayed; h+- pT from ISR recoil."""
    rec = EventRecord(n, PROCESS_IDS["hpm_taunu"], is_signal=True)
    recoil = _isr(rec, rng, ctx, isr_mean)
    h = _system(rng, ctx, np.full(n, float(mass)), recoil)
    charge = np.where(rng.random(n) < 0.5, 1, -1)
    rec.add_gen(h, 37 * charge, ST_HARD)
    _decay_pair(rec, rng, h, -15 * charge, 16 * charge)
    rec.decay_taus(rng)
    return rec


PROCESSES = {
    "wjets": wjets, "dyjets": dyjets, "ttbar": ttbar, "qcd": qcd,
    "a4l": a4l, "lq_btau": lq_btau, "h0_tautau": h0_tautau, "hpm_taunu": hpm_taunu,
}


def branching_fraction(process: str, params: dict) -> float:
    """Fraction of the process cross section that the generated sample represents."""
    if process == "ttbar":
        return ttbar_branching(params.get("decay", "leptonic"))
    if process in ("wjets", "dyjets"):
        fl = params.get("flavours", (11, 13, 15))
        return len(fl) / 3.0
    return 1.0


def generate_truth(process: str, rng, n: int, ctx: Context, params: dict | None = None):
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; known: {', '.join(PROCESSES)}")
    return PROCESSES[process](rng, n, ctx, **(params or {})).finalize()
