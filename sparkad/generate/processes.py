"""Physics processes: one function per process, each filling the rows of a truth-level `Batch`.

Every function has the signature ``f(rng, batch, rows, ctx, **params)`` and documents its model in its
docstring; the work is done by a numba event loop (`_k_<process>`) drawing from the numpy Generator
`rng`, so the same seed gives the same events. The models are deliberately simple but keep the
correlations that matter for the high-level features: resonance masses (Breit-Wigner), two-body decay
kinematics (hence the Jacobian edge of the W transverse mass), boson recoil against initial-state
radiation (ISR) partons, top decay chains, heavy-flavour semileptonic decays inside jets (non-isolated
leptons), tau decays.

Common production model ("system + ISR"): k ISR partons with P(k) ~ r^k (Berends scaling, mean set
per process, growing slowly with sqrt(s)), pT ~ pT^-3 above 20 GeV, eta ~ N(0, 1.8), flavour 70% g,
25% light quarks, 3% c, 2% b. The produced system recoils against them (plus a Gaussian intrinsic
kT of 4 GeV per component); its rapidity is Gaussian with width 0.42 ln(sqrt(s)/M).

Taus are decayed in the collinear approximation: 17.8% e nu nu, 17.4% mu nu nu (lepton momentum
fraction from the V-A spectrum), 64.8% hadronic (visible fraction ~ Beta(1.6, 1.4)); the slot keeps
pdg +-15 for a hadronic tau (its visible part) and a neutrino slot carries the invisible momentum.

Slots 0-3 of every process hold the ISR partons; `SHAPES` gives each process's (slots, GenPart slots).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from sparkad.generate.kinematics import G_TOP, G_W, G_Z, M_TOP, M_W, M_Z, s_boost, s_breit_wigner, s_geometric, s_mass, s_p4, s_power_law, s_rapidity, s_tau_lepton_fraction, s_two_body
from sparkad.generate.record import ST_DECAYED, ST_FINAL, ST_HARD, Batch, allocate


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
# (final-state slots, GenPart slots) per process
SHAPES = {"wjets": (7, 3), "dyjets": (8, 3), "ttbar": (12, 10), "qcd": (8, 3),
          "a4l": (8, 7), "lq_btau": (10, 6), "h0_tautau": (8, 3), "hpm_taunu": (7, 3)}

BR_W_LEP = 0.1086  # per lepton flavour
BR_W_HAD = 1.0 - 3 * BR_W_LEP
_PI = math.pi
_TT_DECAYS = {"inclusive": 0, "leptonic": 1, "semileptonic": 2, "dileptonic": 3}
# QCD heavy-flavour lepton kinematics given the generator-level lepton filter (see qcd()): Beta(a, b)
# shapes of z = p_lepton / p_quark, of the neutrino's share of the rest, (1 - z) x Beta(QCD_NU), and
# of the fraction of the remaining jet (B/D decay hadrons + fragmentation) inside the dR < 0.3 cone.
# Moments of a toy: Peterson fragmentation (eps_b 0.006, eps_c 0.05), B -> X_c l nu (D -> X_s l nu)
# three-body decay boosted to the hadron momentum, half of the fragmentation remnant inside the cone,
# weighted by z^3.5 (a quark spectrum ~ pT^-4.5 seen through a lepton-pT threshold).
QCD_Z_B, QCD_Z_C = (6.6, 7.2), (6.1, 7.6)
QCD_NU = (1.3, 5.0)
QCD_CONE_B, QCD_CONE_C = (12.0, 1.1), (12.0, 0.6)
# ... except in a fraction QCD_WIDE of decays, where the recoiling hadrons are soft and wide (a 3-d
# version of the toy with the B/D decay opening angles and fragmentation pT: 3-5% of filtered
# leptons keep less than half of the rest of the jet in the cone); isolated non-prompt leptons.
QCD_WIDE, QCD_CONE_WIDE = 0.06, (1.2, 2.5)
# ISR parton spectrum above 20 GeV: dN/dpT ~ pT^-ISR_INDEX (1 - 2 pT / sqrt_s)^ISR_XT_POWER, tuned to the
# leading-jet pT of Pythia 8 W + jets at 8 TeV (docs/generator.md: fractions of leading jets > 40 GeV
# above 100 / 200 / 400 GeV: Pythia 0.124 / 0.013 / 6.5e-4, this 0.100 / 0.012 / 7.0e-4). It was pT^-3
# without the x_T factor (0.143 / 0.035 / 8.7e-3, 2.2e-3 above 800 GeV): 13x too many W events above
# 400 GeV, which outnumbered tt̄ in the anomaly tail of the top re-discovery
ISR_INDEX, ISR_XT_POWER = 2.8, 24.0


def _isr_mean(ctx: Context, base: float) -> float:
    return float(base * (1.0 + 0.3 * np.log(ctx.sqrt_s / 8000.0)))


# ------------------------------------------------------------------------- record-filling kernels

@njit(cache=True, inline="always")
def _add(rec, i, s, p, pdg, gen):
    P4, PDG, VALID, GEN = rec[0], rec[1], rec[2], rec[5]
    P4[i, s, 0] = p[0]
    P4[i, s, 1] = p[1]
    P4[i, s, 2] = p[2]
    P4[i, s, 3] = p[3]
    PDG[i, s] = pdg
    VALID[i, s] = True
    GEN[i, s] = gen


@njit(cache=True, inline="always")
def _add_gen(rec, i, g, p, pdg, status):
    GP4, GPDG, GST, GVALID = rec[6], rec[7], rec[8], rec[9]
    GP4[i, g, 0] = p[0]
    GP4[i, g, 1] = p[1]
    GP4[i, g, 2] = p[2]
    GP4[i, g, 3] = p[3]
    GPDG[i, g] = pdg
    GST[i, g] = status
    GVALID[i, g] = True


@njit(cache=True, inline="always")
def _status(pdg):
    a = abs(pdg)
    if a == 15:
        return ST_DECAYED
    if 11 <= a <= 16:
        return ST_FINAL
    return ST_HARD


@njit(cache=True, inline="always")
def _decay_pair(rng, rec, i, parent, pdg_a, pdg_b, sa, sb, ga, gb):
    """Two-body decay of `parent` into pdg_a (slot sa, GenPart ga) and pdg_b (slot sb, GenPart gb)."""
    a, b = s_two_body(rng, parent[0], parent[1], parent[2], parent[3], s_mass(pdg_a), s_mass(pdg_b))
    _add_gen(rec, i, ga, a, pdg_a, _status(pdg_a))
    _add_gen(rec, i, gb, b, pdg_b, _status(pdg_b))
    _add(rec, i, sa, a, pdg_a, ga)
    _add(rec, i, sb, b, pdg_b, gb)


@njit(cache=True, inline="always")
def _w_decay_polarised(rng, w, b, pdg_down, pdg_up, f_long, f_left):
    """W from t -> W b decayed with its helicity fractions (F0 = f_long, F- = f_left, F+ the rest):
    the down-type fermion (charged lepton, or d / s quark) makes the angle theta* with the W direction
    in the top rest frame, dGamma/dcos ~ 3/4 F0 sin^2 + 3/8 F- (1 - cos)^2 + 3/8 F+ (1 + cos)^2.
    Returns the lab four-vectors (down, up)."""
    mw2 = w[0] * w[0] - w[1] * w[1] - w[2] * w[2] - w[3] * w[3]
    mw = math.sqrt(mw2) if mw2 > 0 else 1.0
    bx, by, bz = w[1] / w[0], w[2] / w[0], w[3] / w[0]
    # the W direction in the top frame is opposite to the b direction in the W frame
    bw = s_boost(b[0], b[1], b[2], b[3], -bx, -by, -bz)
    nb = math.sqrt(bw[1] * bw[1] + bw[2] * bw[2] + bw[3] * bw[3])
    ax, ay, az = -bw[1] / nb, -bw[2] / nb, -bw[3] / nb
    f_right = max(1.0 - f_long - f_left, 0.0)
    fmax = 0.75 * f_long + 1.5 * max(f_left, f_right)
    while True:
        c = rng.uniform(-1.0, 1.0)
        f = 0.75 * f_long * (1 - c * c) + 0.375 * f_left * (1 - c) ** 2 + 0.375 * f_right * (1 + c) ** 2
        if rng.random() * fmax < f:
            break
    sn = math.sqrt(max(1.0 - c * c, 0.0))
    ph = rng.uniform(-_PI, _PI)
    # orthonormal basis (u, v) perpendicular to the axis
    if abs(az) < 0.9:
        ux, uy, uz = ay, -ax, 0.0
    else:
        ux, uy, uz = 0.0, az, -ay
    nu = math.sqrt(ux * ux + uy * uy + uz * uz)
    ux, uy, uz = ux / nu, uy / nu, uz / nu
    vx, vy, vz = ay * uz - az * uy, az * ux - ax * uz, ax * uy - ay * ux
    m1, m2 = s_mass(pdg_down), s_mass(pdg_up)
    arg = (mw2 - (m1 + m2) ** 2) * (mw2 - (m1 - m2) ** 2)
    pstar = math.sqrt(max(arg, 0.0)) / (2.0 * mw)
    cu, cv = sn * math.cos(ph), sn * math.sin(ph)
    dx = pstar * (c * ax + cu * ux + cv * vx)
    dy = pstar * (c * ay + cu * uy + cv * vy)
    dz = pstar * (c * az + cu * uz + cv * vz)
    down = s_boost(math.sqrt(pstar * pstar + m1 * m1), dx, dy, dz, bx, by, bz)
    up = s_boost(math.sqrt(pstar * pstar + m2 * m2), -dx, -dy, -dz, bx, by, bz)
    return down, up


@njit(cache=True, inline="always")
def _tau_decay(rng, rec, i, s, nu_slot):
    """Decay the tau in slot s (if it is one): visible part stays in s, neutrinos go to nu_slot."""
    P4, PDG = rec[0], rec[1]
    pdg = PDG[i, s]
    if abs(pdg) != 15:
        return
    u = rng.random()
    sign = 1 if pdg > 0 else -1
    if u < 0.352:
        x = max(s_tau_lepton_fraction(rng), 0.02)
        PDG[i, s] = (11 if u < 0.178 else 13) * sign
    else:
        x = rng.beta(1.6, 1.4) * 0.97 + 0.03
    inv = (P4[i, s, 0] * (1 - x), P4[i, s, 1] * (1 - x), P4[i, s, 2] * (1 - x), P4[i, s, 3] * (1 - x))
    for c in range(4):
        P4[i, s, c] *= x
    _add(rec, i, nu_slot, inv, -16 * sign, -1)


@njit(cache=True, inline="always")
def _isr_pt(rng, pt_min, sqrt_s):
    while True:
        pt = s_power_law(rng, pt_min, ISR_INDEX)
        xt = 2.0 * pt / sqrt_s
        if xt < 1.0 and rng.random() < (1.0 - xt) ** ISR_XT_POWER:
            return pt


@njit(cache=True, inline="always")
def _isr(rng, rec, i, mean, kmax, pt_min, sqrt_s):
    """ISR partons in slots 0..k-1; returns their summed (px, py). Parton pT: dN/dpT ~ pT^-ISR_INDEX
    (1 - x_T)^ISR_XT_POWER, x_T = 2 pT / sqrt_s (the steepening of the parton luminosities)."""
    k = s_geometric(rng, mean, kmax)
    sx = 0.0
    sy = 0.0
    for j in range(k):
        pt = _isr_pt(rng, pt_min, sqrt_s)
        eta = min(max(rng.normal(0.0, 1.8), -4.9), 4.9)
        phi = rng.uniform(-_PI, _PI)
        u = rng.random()
        if u < 0.70:
            pdg = 21
        elif u < 0.95:
            pdg = 1 + int(rng.random() * 3.0)
        elif u < 0.98:
            pdg = 4
        else:
            pdg = 5
        if pdg != 21 and rng.random() < 0.5:
            pdg = -pdg
        p = s_p4(pt, eta, phi, 0.0)
        _add(rec, i, j, p, pdg, -1)
        sx += p[1]
        sy += p[2]
    return sx, sy


@njit(cache=True, inline="always")
def _system(rng, sqrt_s, mass, rx, ry):
    """Four-vector of a produced system of given mass balancing the ISR recoil."""
    px = -rx + rng.normal(0.0, 4.0)
    py = -ry + rng.normal(0.0, 4.0)
    y = s_rapidity(rng, sqrt_s, mass)
    mt = math.sqrt(px * px + py * py + mass * mass)
    return mt * math.cosh(y), px, py, mt * math.sinh(y)


@njit(cache=True, inline="always")
def _w_decay_pdgs(rng, charge, leptonic, flavours):
    """W+ -> l+ nu or u dbar / c sbar (equal), W- conjugate."""
    fl = flavours[int(rng.random() * flavours.size)]
    cs = rng.random() < 0.5
    if leptonic:
        return -charge * fl, charge * (fl + 1)
    return charge * (4 if cs else 2), -charge * (3 if cs else 1)


# ------------------------------------------------------------------------------- SM processes

@njit(cache=True)
def _k_wjets(rng, rec, rows, sqrt_s, isr_mean, w_plus_fraction, flavours):
    for i in rows:
        rx, ry = _isr(rng, rec, i, isr_mean, 4, 20.0, sqrt_s)
        m = s_breit_wigner(rng, M_W, G_W, 40.0, 200.0)
        w = _system(rng, sqrt_s, m, rx, ry)
        charge = 1 if rng.random() < w_plus_fraction else -1
        a, b = _w_decay_pdgs(rng, charge, True, flavours)
        _add_gen(rec, i, 0, w, 24 * charge, ST_HARD)
        _decay_pair(rng, rec, i, w, a, b, 4, 5, 1, 2)
        _tau_decay(rng, rec, i, 4, 6)


def wjets(rng, batch, rows, ctx: Context, isr_mean=0.45, w_plus_fraction=0.58, flavours=(11, 13, 15)):
    """W -> l nu + jets (l = e, mu, tau equally; tau decayed).

    m_W ~ Breit-Wigner(80.385, 2.085) in [40, 200]; W+ fraction 0.58 (LHC charge asymmetry);
    isotropic decay in the W rest frame, so the lepton-neutrino transverse mass has its Jacobian
    edge at m_W; W pT from the recoil against ISR partons (mean number 0.45 above 20 GeV at 8 TeV)."""
    _k_wjets(rng, batch.arrays, rows, float(ctx.sqrt_s), _isr_mean(ctx, isr_mean), float(w_plus_fraction),
             np.asarray(flavours, np.int64))


@njit(cache=True)
def _k_dyjets(rng, rec, rows, sqrt_s, isr_mean, m_min, m_max, photon_fraction, continuum_index, flavours):
    e = 1.0 - continuum_index  # continuum dN/dm ~ m^-index, sampled by inverting its CDF
    lo = m_min ** e
    hi = m_max ** e
    ref = math.log(1.0 + M_Z / 20.0) ** 2
    for i in rows:
        if rng.random() < photon_fraction:
            u = rng.random()
            m = (lo + u * (hi - lo)) ** (1.0 / e)
        else:
            m = s_breit_wigner(rng, M_Z, G_Z, m_min, m_max)
        # ISR above 20 GeV: ~ alpha_s ln^2(m / pT) for m >> 20 GeV, ~ (m / pT)^2 for m << 20 GeV
        rx, ry = _isr(rng, rec, i, isr_mean * math.log(1.0 + m / 20.0) ** 2 / ref, 4, 20.0, sqrt_s)
        z = _system(rng, sqrt_s, m, rx, ry)
        fl = flavours[int(rng.random() * flavours.size)]
        _add_gen(rec, i, 0, z, 23, ST_HARD)
        _decay_pair(rng, rec, i, z, fl, -fl, 4, 5, 1, 2)
        _tau_decay(rng, rec, i, 4, 6)
        _tau_decay(rng, rec, i, 5, 7)


def dyjets(rng, batch, rows, ctx: Context, isr_mean=0.40, m_min=50.0, m_max=250.0, photon_fraction=0.08,
           continuum_index=2.0, flavours=(11, 13, 15)):
    """Z/gamma* -> l l + jets (l = e, mu, tau equally; tau decayed).

    m_ll from a Breit-Wigner(91.19, 2.495) (fraction 1 - photon_fraction) plus a gamma* continuum
    dN/dm ~ m^-continuum_index, both in [m_min, m_max]; isotropic decay; Z pT from ISR recoil.
    The defaults describe an m_ll > 50 GeV sample. An inclusive sample (seeds/001: Pythia with
    sqrt(s-hat) > 10 GeV) takes m_min = 10 with the Drell-Yan continuum, which below the Z is
    dsigma/dm ~ m^-3 x (q qbar luminosity, ~ m^-0.5), i.e. continuum_index ~ 3.5, carrying ~ 78% of
    the cross section (LO: sigma(10 < m < 50) / sigma(m > 10) ~ 0.78 at 13 TeV).
    ISR: isr_mean is the mean number of partons above 20 GeV at m_ll = m_Z; for other masses it scales
    as ln^2(1 + m/20 GeV) (Sudakov double logarithm for m >> 20 GeV, (m/pT)^2 suppression for
    m << 20 GeV), so that a 15 GeV gamma* rarely recoils against a 20+ GeV jet."""
    if float(continuum_index) == 1.0 or not 0 < float(m_min) < float(m_max):
        raise ValueError("dyjets: need 0 < m_min < m_max and continuum_index != 1")
    _k_dyjets(rng, batch.arrays, rows, float(ctx.sqrt_s), _isr_mean(ctx, isr_mean), float(m_min), float(m_max),
              float(photon_fraction), float(continuum_index), np.asarray(flavours, np.int64))


@njit(cache=True)
def _k_ttbar(rng, rec, rows, sqrt_s, isr_mean, decay, tail, f_long, f_left):
    pl = 3 * BR_W_LEP
    semi = 2 * pl * (1 - pl)
    di = pl * pl
    lep_flavours = np.array([11, 13, 15])
    for i in rows:
        rx, ry = _isr(rng, rec, i, isr_mean, 4, 20.0, sqrt_s)
        mt1 = s_breit_wigner(rng, M_TOP, G_TOP, 150.0, 195.0)
        mt2 = s_breit_wigner(rng, M_TOP, G_TOP, 150.0, 195.0)
        mtt = mt1 + mt2 + rng.exponential(tail)
        tt = _system(rng, sqrt_s, mtt, rx, ry)
        t, tb = s_two_body(rng, tt[0], tt[1], tt[2], tt[3], mt1, mt2)
        _add_gen(rec, i, 0, t, 6, ST_HARD)
        _add_gen(rec, i, 1, tb, -6, ST_HARD)
        if decay == 0:
            lep1 = rng.random() < pl
            lep2 = rng.random() < pl
        else:
            if decay == 2:
                is_di = False
            elif decay == 3:
                is_di = True
            else:
                is_di = rng.random() < di / (semi + di)
            first = rng.random() < 0.5
            lep1 = is_di or first
            lep2 = is_di or not first
        for j in range(2):
            top = t if j == 0 else tb
            sign = 1 if j == 0 else -1
            leptonic = lep1 if j == 0 else lep2
            mw = s_breit_wigner(rng, M_W, G_W, 50.0, 110.0)
            w, b = s_two_body(rng, top[0], top[1], top[2], top[3], mw, 4.8)
            _add_gen(rec, i, 2 + 4 * j, w, 24 * sign, ST_HARD)
            _add_gen(rec, i, 3 + 4 * j, b, 5 * sign, ST_HARD)
            _add(rec, i, 4 + 3 * j, b, 5 * sign, 3 + 4 * j)
            pa, pb = _w_decay_pdgs(rng, sign, leptonic, lep_flavours)
            # pa: charged lepton or up-type quark; pb: neutrino or down-type antiquark
            if leptonic:
                fa, fb = _w_decay_polarised(rng, w, b, pa, pb, f_long, f_left)
            else:
                fb, fa = _w_decay_polarised(rng, w, b, pb, pa, f_long, f_left)
            _add_gen(rec, i, 4 + 4 * j, fa, pa, _status(pa))
            _add_gen(rec, i, 5 + 4 * j, fb, pb, _status(pb))
            _add(rec, i, 5 + 3 * j, fa, pa, 4 + 4 * j)
            _add(rec, i, 6 + 3 * j, fb, pb, 5 + 4 * j)
            _tau_decay(rng, rec, i, 5 + 3 * j, 10 + j)


def ttbar(rng, batch, rows, ctx: Context, isr_mean=0.6, decay="leptonic", w_helicity=(0.70, 0.30)):
    """t tbar -> W+ b W- bbar with the W decays chosen by `decay`.

    decay: "inclusive" (W BRs), "leptonic" (>= 1 leptonic W: semi- + di-leptonic, BR 0.543),
    "semileptonic" (exactly one) or "dileptonic" (both). m_t ~ BW(172.5, 1.41) and m_W ~ BW on shell;
    m_ttbar = m_t + m_tbar + an exponential tail (scale 90 GeV x (sqrt(s)/8 TeV)^0.3); the pair system
    recoils against ISR (mean 0.6 partons); isotropic t -> W b (unpolarised tops). The W bosons
    carry the V-A helicity fractions w_helicity = (F0, F-) = (0.70, 0.30) (SM at NNLO: 0.687, 0.311,
    F+ ~ 0.0017): the charged lepton (down-type quark) is emitted preferentially against the W
    direction, so it is softer than in an isotropic decay. Hence 4+ partons, two of them b quarks,
    in semileptonic events."""
    if decay not in _TT_DECAYS:
        raise ValueError(f"ttbar: unknown decay mode {decay!r}")
    f_long, f_left = (float(x) for x in w_helicity)
    if f_long < 0 or f_left < 0 or f_long + f_left > 1:
        raise ValueError(f"ttbar: bad W helicity fractions {w_helicity!r}")
    _k_ttbar(rng, batch.arrays, rows, float(ctx.sqrt_s), _isr_mean(ctx, isr_mean), _TT_DECAYS[decay],
             float(90.0 * (ctx.sqrt_s / 8000.0) ** 0.3), f_long, f_left)


def ttbar_branching(decay: str) -> float:
    pl = 3 * BR_W_LEP
    return {"inclusive": 1.0, "leptonic": 1 - (1 - pl) ** 2, "semileptonic": 2 * pl * (1 - pl),
            "dileptonic": pl * pl}[decay]


@njit(cache=True)
def _k_qcd(rng, rec, rows, sqrt_s, lepton_pt_min, lepton_eta_max, lepton_index, isr_mean, b_fraction, mu_fraction,
           force_lepton, force_pt_min, force_eta_max):
    ENV, JET = rec[3], rec[4]
    for i in rows:
        _isr(rng, rec, i, isr_mean, 4, 20.0, sqrt_s)
        is_b = rng.random() < b_fraction
        lpt = s_power_law(rng, lepton_pt_min, lepton_index)
        z = rng.beta(QCD_Z_B[0], QCD_Z_B[1]) if is_b else rng.beta(QCD_Z_C[0], QCD_Z_C[1])
        z = min(max(z, 0.05), 0.97)
        qpt = lpt / z
        qeta = min(max(rng.normal(0.0, 1.6), -2.6), 2.6)
        qphi = rng.uniform(-_PI, _PI)
        qflav = (5 if is_b else 4) * (1 if rng.random() < 0.5 else -1)
        spread = min(0.25, 2.0 / qpt)
        leta = qeta + rng.standard_normal() * spread
        lphi = qphi + rng.standard_normal() * spread
        while abs(leta) >= lepton_eta_max:  # generator filter in |eta| (the direction is drawn again)
            qeta = min(max(rng.normal(0.0, 1.6), -2.6), 2.6)
            leta = qeta + rng.standard_normal() * spread
        lflav = 13 if rng.random() < mu_fraction else 11
        if force_lepton:
            # trigger bias (see qcd()): the lepton kinematics are redrawn until inside the trigger
            # acceptance, which is the conditional distribution given acceptance
            while lpt <= force_pt_min or abs(leta) >= min(force_eta_max, lepton_eta_max):
                lpt = s_power_law(rng, max(lepton_pt_min, force_pt_min), lepton_index)
                qpt = lpt / z
                spread = min(0.25, 2.0 / qpt)
                qeta = min(max(rng.normal(0.0, 1.6), -2.6), 2.6)
                leta = qeta + rng.standard_normal() * spread
            lflav = 13
        # b -> c l- nu-bar: lepton charge follows the quark charge sign (b: -1/3 -> l-) ; c -> s l+ nu
        qs = 1 if qflav > 0 else -1
        lsign = qs if abs(qflav) == 5 else -qs
        lpdg = lflav * lsign
        lp4 = s_p4(lpt, leta, lphi, s_mass(lpdg))
        znu = (1.0 - z) * rng.beta(QCD_NU[0], QCD_NU[1])
        nup4 = s_p4(znu * qpt, qeta + rng.standard_normal() * spread, qphi + rng.standard_normal() * spread, 0.0)
        qp4 = s_p4(qpt, qeta, qphi, s_mass(qflav))
        jet_vis = (qp4[0] - nup4[0], qp4[1] - nup4[1], qp4[2] - nup4[2], qp4[3] - nup4[3])
        remnant = max(qpt * (1.0 - z - znu), 0.0)
        _add_gen(rec, i, 0, qp4, qflav, ST_HARD)
        _add(rec, i, 4, jet_vis, qflav, 0)
        _add_gen(rec, i, 1, lp4, lpdg, ST_FINAL)
        _add(rec, i, 5, lp4, lpdg, 1)
        if rng.random() < QCD_WIDE:
            # wide-angle decay: the hadronic recoil of the (forward-emitted) lepton is soft and
            # mostly leaves the cone (source of the isolated tail of non-prompt leptons)
            cone = rng.beta(QCD_CONE_WIDE[0], QCD_CONE_WIDE[1])
        else:
            cone = rng.beta(QCD_CONE_B[0], QCD_CONE_B[1]) if is_b else rng.beta(QCD_CONE_C[0], QCD_CONE_C[1])
        ENV[i, 5] = remnant * cone
        JET[i, 5] = 4
        _add(rec, i, 6, nup4, -lsign * (lflav + 1), -1)
        # recoil parton
        if rng.random() < 0.5:
            rflav = -qflav
        elif rng.random() < 0.6:
            rflav = 21
        else:
            rflav = (1 + int(rng.random() * 3.0)) * (1 if rng.random() < 0.5 else -1)
        rpt = qpt * min(max(rng.normal(1.0, 0.15), 0.3), 2.0)
        reta = min(max(rng.normal(0.0, 1.6), -4.7), 4.7)
        rphi = qphi + _PI + rng.normal(0.0, 0.15)
        rphi = (rphi + _PI) % (2.0 * _PI) - _PI
        rp4 = s_p4(rpt, reta, rphi, s_mass(rflav))
        _add_gen(rec, i, 2, rp4, rflav, ST_HARD)
        _add(rec, i, 7, rp4, rflav, 2)


def qcd(rng, batch, rows, ctx: Context, lepton_pt_min=15.0, lepton_eta_max=None, lepton_index=4.0, isr_mean=0.5,
        b_fraction=0.6, mu_fraction=0.5, force_muon=None):
    """QCD multijet with a lepton (e or mu, 50/50) from a semileptonic heavy-flavour decay.

    Generator-level lepton filter (pT > lepton_pt_min and, if set, |eta| < lepton_eta_max, as in
    lepton-enriched QCD samples; the sample's filter_eff is the fraction of the QCD cross section
    that passes it): the lepton pT is drawn from pT^-4 above the threshold and the parent b
    (fraction b_fraction) or c quark momentum is p_q = p_l / z. Because the quark spectrum is steep,
    the filter selects hard fragmentation and decays: z, the neutrino's share (1 - z) x Beta(1.3, 5)
    and the fraction of the remaining hadrons (B/D decay products + fragmentation) inside the
    lepton's dR < 0.3 isolation cone are drawn from Beta shapes fitted to a fragmentation x decay
    toy (QCD_Z_B/C: mean 0.48 (b), 0.45 (c); in-cone fraction 0.86 (b), 0.77 (c)). Hence mostly
    non-isolated leptons: ~10% of filtered events have an e or mu with pT > 23 GeV and relative
    isolation < 0.45 (seeds/001 Table 1: 9.6%). The lepton lies within dR ~ 2 GeV/p_q of the quark.
    A recoiling parton (the partner anti-quark half of the time) balances the quark in the
    transverse plane, plus ISR.

    force_muon: {"pt_min": p, "eta_max": e} (set by a data-like sample's trigger) biases the sample to
    a muon with pT > p and |eta| < e: the muon kinematics are drawn from their distribution
    conditional on that acceptance. The sample then represents the fraction
    `qcd_trigger_acceptance(...)` of the filtered cross section (config.py applies it)."""
    fm = force_muon or {}
    eta_max = 99.0 if lepton_eta_max is None else float(lepton_eta_max)
    if eta_max < 0.5:
        raise ValueError(f"qcd: lepton_eta_max must be >= 0.5, got {lepton_eta_max!r}")
    _k_qcd(rng, batch.arrays, rows, float(ctx.sqrt_s), float(lepton_pt_min), eta_max, float(lepton_index),
           _isr_mean(ctx, isr_mean), float(b_fraction), float(mu_fraction), bool(force_muon),
           float(fm.get("pt_min", 0.0)), float(fm.get("eta_max", 99.0)))


def qcd_trigger_acceptance(params: dict, n: int = 400_000, seed: int = 97) -> float:
    """Fraction of the (lepton-filtered) qcd process that force_muon keeps: P(muon) x P(pT > pt_min)
    (analytic, power law) x P(|eta| < eta_max | pT > pt_min) (Monte Carlo with the process's own
    eta model, n draws: 1/sqrt(n) precision). 1 without force_muon."""
    fm = params.get("force_muon")
    if not fm:
        return 1.0
    rng = np.random.default_rng(seed)
    lpt_min = float(params.get("lepton_pt_min", 15.0))
    index = float(params.get("lepton_index", 4.0))
    pt_min, eta_max = float(fm.get("pt_min", 0.0)), float(fm.get("eta_max", 99.0))
    lo = max(pt_min, lpt_min)
    p_pt = (lo / lpt_min) ** (1.0 - index)
    lpt = lo * (1.0 - rng.random(n)) ** (1.0 / (1.0 - index))
    b = rng.random(n) < float(params.get("b_fraction", 0.6))
    z = np.clip(np.where(b, rng.beta(*QCD_Z_B, n), rng.beta(*QCD_Z_C, n)), 0.05, 0.97)
    spread = np.minimum(0.25, 2.0 * z / lpt)
    eta = np.clip(rng.normal(0.0, 1.6, n), -2.6, 2.6) + rng.standard_normal(n) * spread
    lep_eta_max = params.get("lepton_eta_max")
    lep_eta_max = 99.0 if lep_eta_max is None else float(lep_eta_max)
    p_eta = float(np.mean(np.abs(eta) < min(eta_max, lep_eta_max)) / np.mean(np.abs(eta) < lep_eta_max))
    return float(params.get("mu_fraction", 0.5)) * p_pt * p_eta


# ------------------------------------------------------------------------------ BSM benchmarks

@njit(cache=True)
def _k_a4l(rng, rec, rows, sqrt_s, mass, isr_mean):
    for i in rows:
        rx, ry = _isr(rng, rec, i, isr_mean, 4, 20.0, sqrt_s)
        a = _system(rng, sqrt_s, mass, rx, ry)
        _add_gen(rec, i, 0, a, 36, ST_HARD)
        m1 = mass * (0.15 + 0.75 * rng.beta(2.5, 1.5))
        m2 = max((mass - m1) * rng.beta(2.0, 1.2), 1.0)
        m2 = min(m2, mass - m1 - 1e-3)
        z1, z2 = s_two_body(rng, a[0], a[1], a[2], a[3], m1, m2)
        for j in range(2):
            z = z1 if j == 0 else z2
            _add_gen(rec, i, 1 + 3 * j, z, 23, ST_HARD)
            fl = 11 if rng.random() < 0.5 else 13
            _decay_pair(rng, rec, i, z, fl, -fl, 4 + 2 * j, 5 + 2 * j, 2 + 3 * j, 3 + 3 * j)


def a4l(rng, batch, rows, ctx: Context, mass=50.0, isr_mean=0.5):
    """A -> Z* Z* -> 4l (seeds/001): a neutral scalar of `mass` (50 GeV) from gluon fusion,
    decaying to two off-shell Z bosons, each forced to e+e- or mu+mu- (50/50 per pair).
    m(Z1*) = mass (0.15 + 0.75 Beta(2.5, 1.5)), m(Z2*) = (mass - m1) Beta(2, 1.2) (>= 1 GeV);
    isotropic decays; A pT from ISR recoil."""
    _k_a4l(rng, batch.arrays, rows, float(ctx.sqrt_s), float(mass), _isr_mean(ctx, isr_mean))


@njit(cache=True)
def _k_lq_btau(rng, rec, rows, sqrt_s, mass, isr_mean, tail):
    for i in rows:
        rx, ry = _isr(rng, rec, i, isr_mean, 4, 20.0, sqrt_s)
        mpair = 2 * mass + rng.exponential(tail)
        pair = _system(rng, sqrt_s, mpair, rx, ry)
        l1, l2 = s_two_body(rng, pair[0], pair[1], pair[2], pair[3], mass, mass)
        for j in range(2):
            lq = l1 if j == 0 else l2
            sign = 1 if j == 0 else -1
            _add_gen(rec, i, 3 * j, lq, 42 * sign, ST_HARD)
            _decay_pair(rng, rec, i, lq, 5 * sign, 15 * sign, 4 + 2 * j, 5 + 2 * j, 1 + 3 * j, 2 + 3 * j)
            _tau_decay(rng, rec, i, 5 + 2 * j, 8 + j)


def lq_btau(rng, batch, rows, ctx: Context, mass=80.0, isr_mean=0.5):
    """Leptoquark pair production, LQ -> b tau (seeds/001, m_LQ = 80 GeV).

    m(LQ LQbar) = 2 m_LQ + exponential tail (scale 60 GeV x (sqrt(s)/13 TeV)^0.3); each LQ decays
    isotropically to b tau; taus decayed (hadronic 65%). Signature: two b jets, tau objects,
    leptons from tau decays, MET."""
    _k_lq_btau(rng, batch.arrays, rows, float(ctx.sqrt_s), float(mass), _isr_mean(ctx, isr_mean),
               float(60.0 * (ctx.sqrt_s / 13000.0) ** 0.3))


@njit(cache=True)
def _k_h0_tautau(rng, rec, rows, sqrt_s, mass, isr_mean):
    for i in rows:
        rx, ry = _isr(rng, rec, i, isr_mean, 4, 20.0, sqrt_s)
        h = _system(rng, sqrt_s, mass, rx, ry)
        _add_gen(rec, i, 0, h, 35, ST_HARD)
        _decay_pair(rng, rec, i, h, 15, -15, 4, 5, 1, 2)
        _tau_decay(rng, rec, i, 4, 6)
        _tau_decay(rng, rec, i, 5, 7)


def h0_tautau(rng, batch, rows, ctx: Context, mass=60.0, isr_mean=0.5):
    """Neutral scalar h0 (60 GeV) from gluon fusion -> tau+ tau- (seeds/001); taus decayed;
    h0 pT from ISR recoil."""
    _k_h0_tautau(rng, batch.arrays, rows, float(ctx.sqrt_s), float(mass), _isr_mean(ctx, isr_mean))


@njit(cache=True)
def _k_hpm_taunu(rng, rec, rows, sqrt_s, mass, isr_mean):
    for i in rows:
        rx, ry = _isr(rng, rec, i, isr_mean, 4, 20.0, sqrt_s)
        h = _system(rng, sqrt_s, mass, rx, ry)
        charge = 1 if rng.random() < 0.5 else -1
        _add_gen(rec, i, 0, h, 37 * charge, ST_HARD)
        _decay_pair(rng, rec, i, h, -15 * charge, 16 * charge, 4, 5, 1, 2)
        _tau_decay(rng, rec, i, 4, 6)


def hpm_taunu(rng, batch, rows, ctx: Context, mass=60.0, isr_mean=0.45):
    """Charged scalar h+- (60 GeV) from q qbar' annihilation -> tau nu (seeds/001); equal charges;
    taus decayed; h+- pT from ISR recoil."""
    _k_hpm_taunu(rng, batch.arrays, rows, float(ctx.sqrt_s), float(mass), _isr_mean(ctx, isr_mean))


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
    if process == "qcd":
        return qcd_trigger_acceptance(params)
    return 1.0


def fill(process: str, rng, batch: Batch, rows: np.ndarray, ctx: Context, params: dict | None = None):
    """Generate len(rows) events of `process` into those rows of `batch`."""
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; known: {', '.join(PROCESSES)}")
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    PROCESSES[process](rng, batch, rows, ctx, **(params or {}))
    batch.process[rows] = PROCESS_IDS[process]
    batch.is_signal[rows] = process in SIGNALS


def generate_truth(process: str, rng, n: int, ctx: Context, params: dict | None = None) -> Batch:
    """n events of one process as a fresh batch."""
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; known: {', '.join(PROCESSES)}")
    batch = allocate(n, *SHAPES[process])
    fill(process, rng, batch, np.arange(n), ctx, params)
    return batch
