"""Kinematics and sampling for the generator: scalar numba kernels called inside the event loops of
processes.py and detector.py (four-vectors as (E, px, py, pz) floats), plus the two vectorised
angle helpers the PF-candidate builder uses.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

M_W, G_W = 80.385, 2.085
M_Z, G_Z = 91.1876, 2.4952
M_TOP, G_TOP = 172.5, 1.41


def delta_phi(a, b):
    d = a - b
    return (d + np.pi) % (2.0 * np.pi) - np.pi


def wrap_phi(phi):
    return (phi + np.pi) % (2.0 * np.pi) - np.pi


# ---------------------------------------------------------------- scalar kernels for numba event loops
# The event loops (processes.py, detector.py) draw from the numpy Generator passed into the jitted code,
# so a given seed gives the same stream in every process and on every run.

_PI = math.pi


@njit(cache=True, inline="always")
def s_mass(pdg):
    a = abs(pdg)
    if a == 11:
        return 0.000511
    if a == 13:
        return 0.10566
    if a == 15:
        return 1.77686
    if a == 4:
        return 1.5
    if a == 5:
        return 4.8
    return 0.0


@njit(cache=True, inline="always")
def s_wrap(phi):
    if -_PI <= phi < _PI:
        return phi
    return (phi + _PI) % (2.0 * _PI) - _PI


@njit(cache=True, inline="always")
def s_p4(pt, eta, phi, m):
    px = pt * math.cos(phi)
    py = pt * math.sin(phi)
    pz = pt * math.sinh(eta)
    return math.sqrt(px * px + py * py + pz * pz + m * m), px, py, pz


@njit(cache=True, inline="always")
def s_ptetaphim(e, px, py, pz):
    """(pt, eta, phi, m) of a four-vector; eta clamped to +-10 (0 for pt = 0).

    pt = sqrt(px^2 + py^2) and eta = sign(x) log(|x| + sqrt(x^2 + 1)), x = pz / pt: GeV-scale momenta
    need neither hypot's overflow guard nor asinh's relative precision at eta ~ 0 (absolute error
    ~1e-16), and the two cost a third of libm's hypot + asinh (the detector calls this per particle)."""
    pt = math.sqrt(px * px + py * py)
    eta = 0.0
    if pt > 0:
        x = pz / pt
        ax = abs(x)
        eta = min(math.log(ax + math.sqrt(ax * ax + 1.0)), 10.0)
        if x < 0:
            eta = -eta
    m2 = e * e - px * px - py * py - pz * pz
    return pt, eta, math.atan2(py, px), math.sqrt(m2) if m2 > 0 else 0.0


@njit(cache=True, inline="always")
def s_boost(e, px, py, pz, bx, by, bz):
    b2 = min(bx * bx + by * by + bz * bz, 1.0 - 1e-12)
    gamma = 1.0 / math.sqrt(1.0 - b2)
    bp = bx * px + by * py + bz * pz
    g2 = (gamma - 1.0) / b2 if b2 > 0 else 0.0
    f = g2 * bp + gamma * e
    return gamma * (e + bp), px + f * bx, py + f * by, pz + f * bz


@njit(cache=True, inline="always")
def s_two_body(rng, e, px, py, pz, m1, m2):
    """Isotropic two-body decay of (e, px, py, pz) into masses m1, m2: two lab-frame four-vectors."""
    m2p = e * e - px * px - py * py - pz * pz
    mp = max(math.sqrt(m2p) if m2p > 0 else 0.0, m1 + m2)
    arg = (mp * mp - (m1 + m2) ** 2) * (mp * mp - (m1 - m2) ** 2)
    pstar = math.sqrt(max(arg, 0.0)) / (2.0 * mp)
    ct = rng.uniform(-1.0, 1.0)
    st = math.sqrt(max(1.0 - ct * ct, 0.0))
    ph = rng.uniform(-_PI, _PI)
    dx, dy, dz = st * math.cos(ph) * pstar, st * math.sin(ph) * pstar, ct * pstar
    e1 = math.sqrt(pstar * pstar + m1 * m1)
    e2 = math.sqrt(pstar * pstar + m2 * m2)
    bx, by, bz = px / e, py / e, pz / e
    a = s_boost(e1, dx, dy, dz, bx, by, bz)
    b = s_boost(e2, -dx, -dy, -dz, bx, by, bz)
    return a, b


@njit(cache=True, inline="always")
def s_breit_wigner(rng, m0, width, lo, hi):
    a = math.atan(2.0 * (lo - m0) / width)
    b = math.atan(2.0 * (hi - m0) / width)
    return m0 + 0.5 * width * math.tan(rng.uniform(a, b))


@njit(cache=True, inline="always")
def s_power_law(rng, xmin, index):
    return xmin * (1.0 - rng.random()) ** (1.0 / (1.0 - index))


@njit(cache=True, inline="always")
def s_geometric(rng, mean, kmax):
    if mean <= 0:
        return 0
    r = mean / (1.0 + mean)
    k = math.floor(math.log1p(-rng.random()) / math.log(r))
    return int(min(k, kmax))


@njit(cache=True, inline="always")
def s_rapidity(rng, sqrt_s, mass):
    ymax = math.log(sqrt_s / max(mass, 1.0))
    y = rng.standard_normal() * 0.42 * ymax
    return min(max(y, -(ymax - 0.2)), ymax - 0.2)


# numpy's Stirling-series coefficients for log Gamma (numpy/random/src/distributions/distributions.c)
_LOGGAM_A = (8.333333333333333e-02, -2.777777777777778e-03, 7.936507936507937e-04, -5.952380952380952e-04,
             8.417508417508418e-04, -1.917526917526918e-03, 6.410256410256410e-03, -2.955065359477124e-02,
             1.796443723688307e-01, -1.39243221690590e+00)
_LOG_2PI = 1.8378770664093453


@njit(cache=True, inline="always")
def s_loggam(x):
    """log Gamma(x), numpy's `random_loggam` (numba's port builds its coefficient list on every call)."""
    if x == 1.0 or x == 2.0:
        return 0.0
    n = int(7 - x) if x < 7.0 else 0
    x0 = x + n
    x2 = (1.0 / x0) * (1.0 / x0)
    gl0 = _LOGGAM_A[9]
    for k in range(9):
        gl0 *= x2
        gl0 += _LOGGAM_A[8 - k]
    gl = gl0 / x0 + 0.5 * _LOG_2PI + (x0 - 0.5) * math.log(x0) - x0
    for _ in range(n):
        gl -= math.log(x0 - 1.0)
        x0 -= 1.0
    return gl


@njit(cache=True, inline="always")
def s_poisson_exact(rng, lam):
    """Exact Poisson deviate: numpy's algorithms and draws (multiplication below 10, Hoermann's PTRS
    transformed rejection above), so a seed gives what `rng.poisson` gives, at about half the cost."""
    if not lam >= 10.0:  # NaN too: numba's sampler returns 0 where the rejection loop would never end
        return rng.poisson(lam)
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = int(math.floor((2 * a / us + b) * u + lam + 0.43))
        if us >= 0.07 and v <= vr:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b)
                <= -lam + k * loglam - s_loggam(k + 1.0)):
            return k


@njit(cache=True, inline="always")
def s_poisson(rng, lam):
    """Poisson deviate; for lam >= 100 the normal approximation with continuity correction (the
    relative difference in any moment is < 1/sqrt(lam); 5x faster than the exact sampler)."""
    if lam < 100.0:
        return s_poisson_exact(rng, lam)
    return max(int(math.floor(lam + math.sqrt(lam) * rng.standard_normal() + 0.5)), 0)


@njit(cache=True, inline="always")
def s_tau_lepton_fraction(rng):
    while True:
        x = rng.random()
        if rng.random() * (5.0 / 3.0) < (5 - 9 * x * x + 4 * x ** 3) / 3.0:
            return x
