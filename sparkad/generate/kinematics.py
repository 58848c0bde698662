"""Vectorised relativistic kinematics and sampling helpers for the generator.

Four-vectors are float64 numpy arrays whose last axis is (E, px, py, pz); every function works on
whole batches of events at once (no per-event Python loops).
"""
from __future__ import annotations

import numpy as np

MASS = {11: 0.000511, 13: 0.10566, 15: 1.77686, 1: 0.0, 2: 0.0, 3: 0.0, 4: 1.5, 5: 4.8, 21: 0.0,
        22: 0.0, 12: 0.0, 14: 0.0, 16: 0.0}
M_W, G_W = 80.385, 2.085
M_Z, G_Z = 91.1876, 2.4952
M_TOP, G_TOP = 172.5, 1.41


def mass_of(pdg: np.ndarray) -> np.ndarray:
    """Rest mass for an array of PDG ids (0 for anything not in MASS)."""
    apdg = np.abs(pdg)
    out = np.zeros(apdg.shape, dtype=np.float64)
    for k, m in MASS.items():
        if m:
            out[apdg == k] = m
    return out


def p4_ptetaphim(pt, eta, phi, m):
    pt = np.asarray(pt, dtype=np.float64)
    px = pt * np.cos(phi)
    py = pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    e = np.sqrt(px * px + py * py + pz * pz + np.square(m))
    return np.stack([e, px, py, pz], axis=-1)


def p4_ptyphim(pt, y, phi, m):
    """Four-vector from transverse momentum, rapidity, azimuth and mass."""
    pt = np.asarray(pt, dtype=np.float64)
    mt = np.sqrt(pt * pt + np.square(m))
    return np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], axis=-1)


def pt_of(p4):
    return np.hypot(p4[..., 1], p4[..., 2])


def ptetaphim(p4):
    """(pt, eta, phi, mass) of four-vectors; eta is clipped to +-10 for zero-pt entries."""
    e, px, py, pz = p4[..., 0], p4[..., 1], p4[..., 2], p4[..., 3]
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), 0.0)
    eta = np.clip(eta, -10.0, 10.0)
    phi = np.arctan2(py, px)
    m2 = e * e - px * px - py * py - pz * pz
    m = np.sqrt(np.maximum(m2, 0.0))
    return pt, eta, phi, m


def inv_mass(p4):
    m2 = p4[..., 0] ** 2 - p4[..., 1] ** 2 - p4[..., 2] ** 2 - p4[..., 3] ** 2
    return np.sqrt(np.maximum(m2, 0.0))


def boost(p4, beta):
    """Lorentz-boost four-vectors p4 (..., 4) by velocity beta (..., 3)."""
    b2 = np.sum(beta * beta, axis=-1)
    b2 = np.minimum(b2, 1.0 - 1e-12)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(beta * p4[..., 1:], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g2 = np.where(b2 > 0, (gamma - 1.0) / np.where(b2 > 0, b2, 1.0), 0.0)
    p3 = p4[..., 1:] + (g2 * bp + gamma * p4[..., 0])[..., None] * beta
    e = gamma * (p4[..., 0] + bp)
    return np.concatenate([e[..., None], p3], axis=-1)


def two_body_decay(rng, parent, m1, m2, cos_theta=None):
    """Isotropic two-body decay of `parent` (n, 4) into masses m1, m2 (scalars or (n,)).

    Returns the two daughter four-vectors in the lab frame. Parent masses below m1+m2 are
    treated as m1+m2 (zero momentum in the rest frame)."""
    n = parent.shape[0]
    mp = inv_mass(parent)
    m1 = np.broadcast_to(np.asarray(m1, dtype=np.float64), (n,))
    m2 = np.broadcast_to(np.asarray(m2, dtype=np.float64), (n,))
    mp = np.maximum(mp, m1 + m2)
    arg = (mp * mp - (m1 + m2) ** 2) * (mp * mp - (m1 - m2) ** 2)
    pstar = np.sqrt(np.maximum(arg, 0.0)) / (2.0 * mp)
    ct = rng.uniform(-1.0, 1.0, n) if cos_theta is None else cos_theta
    st = np.sqrt(np.maximum(1.0 - ct * ct, 0.0))
    ph = rng.uniform(-np.pi, np.pi, n)
    d = np.stack([st * np.cos(ph), st * np.sin(ph), ct], axis=-1) * pstar[:, None]
    e1 = np.sqrt(pstar ** 2 + m1 ** 2)
    e2 = np.sqrt(pstar ** 2 + m2 ** 2)
    q1 = np.concatenate([e1[:, None], d], axis=-1)
    q2 = np.concatenate([e2[:, None], -d], axis=-1)
    beta = parent[:, 1:] / parent[:, 0:1]
    return boost(q1, beta), boost(q2, beta)


def breit_wigner(rng, n, m0, width, lo, hi):
    """Relativistic-ish (Cauchy) Breit-Wigner truncated to [lo, hi], sampled by inverse CDF."""
    a = np.arctan(2.0 * (lo - m0) / width)
    b = np.arctan(2.0 * (hi - m0) / width)
    return m0 + 0.5 * width * np.tan(rng.uniform(a, b, n))


def power_law(rng, n, xmin, index, xmax=None):
    """Sample pdf ~ x^-index on [xmin, xmax) (index > 1) by inverse CDF."""
    u = rng.random(n)
    k = 1.0 - index
    if xmax is None:
        return xmin * (1.0 - u) ** (1.0 / k)
    a, b = xmin ** k, xmax ** k
    return (a + u * (b - a)) ** (1.0 / k)


def geometric(rng, n, mean, kmax):
    """Number of emissions with P(k) ~ r^k (Berends-Giele-like scaling), capped at kmax."""
    if mean <= 0:
        return np.zeros(n, dtype=np.int64)
    r = mean / (1.0 + mean)
    u = rng.random(n)
    k = np.floor(np.log1p(-u) / np.log(r)).astype(np.int64)
    return np.minimum(k, kmax)


def rapidity_width(sqrt_s, mass):
    """Width of the (Gaussian) rapidity distribution of a system of `mass` at `sqrt_s`."""
    return 0.42 * np.log(sqrt_s / np.maximum(mass, 1.0))


def sample_rapidity(rng, n, sqrt_s, mass):
    ymax = np.log(sqrt_s / np.maximum(mass, 1.0))
    y = rng.normal(0.0, 1.0, n) * rapidity_width(sqrt_s, mass)
    return np.clip(y, -(ymax - 0.2), ymax - 0.2)


def delta_phi(a, b):
    d = a - b
    return (d + np.pi) % (2.0 * np.pi) - np.pi


def wrap_phi(phi):
    return (phi + np.pi) % (2.0 * np.pi) - np.pi


def tau_lepton_fraction(rng, n):
    """Momentum fraction of the charged lepton in tau -> l nu nu (massless, unpolarised):
    f(x) = (5 - 9x^2 + 4x^3)/3 on [0, 1]; sampled by vectorised rejection."""
    out = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        x = rng.random(todo.size)
        acc = rng.random(todo.size) * (5.0 / 3.0) < (5 - 9 * x * x + 4 * x ** 3) / 3.0
        out[todo[acc]] = x[acc]
        todo = todo[~acc]
    return out


# ---------------------------------------------------------------- scalar kernels for numba event loops
# The event loops (processes.py, detector.py) draw from the numpy Generator passed into the jitted code,
# so a given seed gives the same stream in every process and on every run.

import math  # noqa: E402

from numba import njit  # noqa: E402

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
