"""The VAE's per-feature likelihoods (seeds/001 sec. 4.1, eqs. 4.1–4.12) and its numpy scorer.

Written once, for two array back-ends: numpy + scipy.special (scoring: no TensorFlow) and
TensorFlow (training, ``sparkad.train.vae``). Every formula below takes a back-end ``B`` (an
object with ``log``, ``erfc``, ``where``, ...), so the scores of a trained model and the loss it
was trained with are the same expressions. The likelihood part runs in float64 in both back-ends
(the networks themselves run in float32): the tails of the discrete truncated Gaussian and of the
log-normal are evaluated in log space and stay finite and ordered far beyond the SM core, where
anomalies live.

Input convention (see docs/vae.md): the networks consume the pre-processed input matrix
(one-hot discrete + median/std-scaled continuous features, ``sparkad.model.preprocessing``); the
likelihood of each feature is evaluated on its *physical* value, recovered exactly from that matrix
(continuous: ``median + std · z``; one-hot: the category's value; the overflow bin of a one-hot
count is a censored observation ``n ≥ last``). Decoder outputs are expressed relative to fixed
per-feature constants of the pre-processing (``loc``, ``scale``), a reparametrisation that leaves
the likelihood families of the paper unchanged but gives every feature an O(1) starting point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sparkad.core.errors import ConfigError
from sparkad.model import libm

FAMILIES = ("lognormal_delta", "gaussian", "truncated_gaussian", "discrete_truncated_gaussian", "binomial", "poisson")
#: families with a width α2 (p-ISRLu head) and with a δ fraction α3 (clipped-tanh head), as in figure 3
USES_ALPHA2 = ("lognormal_delta", "gaussian", "truncated_gaussian", "discrete_truncated_gaussian")
USES_ALPHA3 = ("lognormal_delta",)
COUNT_FAMILIES = ("discrete_truncated_gaussian", "poisson")

#: default family per feature. vae21: exactly seeds/001 sec. 4.1. The alad24 / cms2012 features that
#: vae21 lacks follow the paper's families for the analogous quantities (marked "by analogy").
DEFAULT_LIKELIHOODS = {
    # clipped log-normal + δ at zero (eq. 4.6)
    "ST": "lognormal_delta", "MJ": "lognormal_delta", "mu_pt_tot": "lognormal_delta", "mu_mass": "lognormal_delta",
    "ele_pt_tot": "lognormal_delta", "ele_mass": "lognormal_delta", "lep_pt": "lognormal_delta",
    "lep_iso_ch": "lognormal_delta", "lep_iso_neu": "lognormal_delta", "lep_iso_gamma": "lognormal_delta",
    "HT": "lognormal_delta",        # by analogy: ST without leptons and photons
    "MET": "lognormal_delta",       # by analogy: a transverse momentum, like p_T^µ, p_T^e, p_T^ℓ
    "lep_iso": "lognormal_delta",   # by analogy: the sum of the three isolation components
    # Gaussian (eq. 4.7)
    "met_par": "gaussian", "met_perp": "gaussian",
    "lep_eta": "gaussian",          # by analogy: a signed, bell-shaped quantity
    # truncated Gaussian (eq. 4.8)
    "MT": "truncated_gaussian",
    # discrete truncated Gaussian (eqs. 4.9, 4.10)
    "n_mu": "discrete_truncated_gaussian", "n_ele": "discrete_truncated_gaussian",
    "NB": "discrete_truncated_gaussian", "NJ": "discrete_truncated_gaussian",
    # binomial (eq. 4.11)
    "lep_is_ele": "binomial", "lep_charge": "binomial",
    # Poisson (eq. 4.12)
    "n_ch": "poisson", "n_neu": "poisson",
    "n_photon": "poisson",          # by analogy: a PF-candidate multiplicity, like n_ch and n_neu
}

CLIP = 1e-4               # eq. 4.6: values below are the δ(x) component
ISRLU_EPS = 5e-3          # eq. 4.1
CTANH_SLOPE = 0.999       # eq. 4.2
LOG_2PI = math.log(2.0 * math.pi)
SQRT2 = math.sqrt(2.0)
_ASYMPTOTIC_BELOW = -20.0  # log Φ(x) from its asymptotic series below this (erfc underflows near -37)
_CENSOR_GAP = 1.0e3        # an open upper edge, in units of σ


# -- elementary functions (back-end generic) --------------------------------------------------
def p_isrlu(B, x):
    """eq. 4.1: 1 + 5·10⁻³ + Θ(x)·x + Θ(−x)·x/√(1+x²) — strictly positive, no exponential."""
    return (1.0 + ISRLU_EPS) + B.where(x >= 0, x, x / B.sqrt(1.0 + x * x))


def p_isrlu_inverse(y: float) -> float:
    """The argument at which p-ISRLu equals y (> 0.005): used to initialise a width at a chosen value."""
    t = y - 1.0 - ISRLU_EPS
    return t if t >= 0 else t / math.sqrt(1.0 - t * t)


def ctanh(B, x):
    """eq. 4.2: ½(1 + 0.999·tanh x), in (0.0005, 0.9995)."""
    return 0.5 * (1.0 + CTANH_SLOPE * B.tanh(x))


def log_ndtr(B, x):
    """log Φ(x) for the standard normal CDF, accurate and finite for every float64 x."""
    low, pos = x < _ASYMPTOTIC_BELOW, x > 0
    xl = B.where(low, x, _ASYMPTOTIC_BELOW - 1.0)     # each branch gets safe inputs: no inf/NaN
    xm = B.where(low | pos, -1.0, x)                  # gradients leak through tf.where otherwise
    xp = B.where(pos, x, 1.0)
    r = 1.0 / (xl * xl)  # Φ(x) = φ(x)/(−x) · (1 − 1/x² + 3/x⁴ − 15/x⁶ + 105/x⁸ …)
    series = 1.0 - r * (1.0 - 3.0 * r * (1.0 - 5.0 * r * (1.0 - 7.0 * r)))
    asym = -0.5 * xl * xl - B.log(-xl) - 0.5 * LOG_2PI + B.log(series)
    mid = B.log(0.5 * B.erfc(-xm / SQRT2))
    upper = B.log1p(-0.5 * B.erfc(xp / SQRT2))
    return B.where(low, asym, B.where(pos, upper, mid))


def log1mexp(B, d):
    """log(1 − eᵈ) for d < 0 (d is clamped just below zero)."""
    d = B.minimum(d, -1e-300)
    near = d > -math.log(2.0)
    dn = B.where(near, d, -0.5)
    df = B.where(near, -1.0, d)
    return B.where(near, B.log(-B.expm1(dn)), B.log1p(-B.exp(df)))


def log_ndtr_interval(B, a, b):
    """log(Φ(b) − Φ(a)) for a < b, computed in the tail where it is small (no cancellation)."""
    upper = a > 0  # both in the upper tail: Φ(b) − Φ(a) = Φ(−a) − Φ(−b)
    hi = B.where(upper, -a, b)
    lo = B.where(upper, -b, a)
    lhi = log_ndtr(B, hi)
    return lhi + log1mexp(B, log_ndtr(B, lo) - lhi)


# -- the six families: negative log-likelihoods on physical values ---------------------------
def nll_lognormal_delta(B, x, mu, sigma, frac):
    """eq. 4.6: x < 10⁻⁴ is the δ component (probability α3 = frac); otherwise (1 − α3) times the
    log-normal density with log-mean α1 = mu and log-width α2 = sigma."""
    zero = x < CLIP
    xs = B.where(zero, 1.0, x)
    lx = B.log(xs)
    t = (lx - mu) / sigma
    cont = -B.log(1.0 - frac) + lx + B.log(sigma) + 0.5 * LOG_2PI + 0.5 * t * t
    return B.where(zero, -B.log(frac), cont)


def nll_gaussian(B, x, mu, sigma):
    """eq. 4.7."""
    t = (x - mu) / sigma
    return B.log(sigma) + 0.5 * LOG_2PI + 0.5 * t * t


def nll_truncated_gaussian(B, x, mu, sigma):
    """eq. 4.8 with the exact normalisation over x > 0: the Gaussian divided by Φ(μ/σ).
    Negative x (only float rounding of a zero) is taken as 0."""
    x = B.maximum(x, 0.0)
    return nll_gaussian(B, x, mu, sigma) + log_ndtr(B, mu / sigma)


def nll_discrete_truncated_gaussian(B, n, mu, sigma, over):
    """eqs. 4.9–4.10 with the exact normalisation: P(n) = [Φ((n+½−μ)/σ) − Φ((n−½−μ)/σ)] / Φ((μ+½)/σ),
    which sums to one over n = 0, 1, 2, …; where ``over`` (an overflow bin) the censored P(N ≥ n)."""
    n = B.maximum(B.round(n), 0.0)
    a = (n - 0.5 - mu) / sigma
    b = B.where(over > 0.5, a + _CENSOR_GAP, a + 1.0 / sigma)
    return log_ndtr(B, (mu + 0.5) / sigma) - log_ndtr_interval(B, a, b)


def nll_poisson(B, n, mu, over=None):
    """eq. 4.12: −log(μⁿ e^−μ / Γ(n+1)); where ``over`` (an overflow bin) the censored P(N ≥ n)."""
    n = B.maximum(B.round(n), 0.0)
    pmf = mu - n * B.log(mu) + B.lgamma(n + 1.0)
    if over is None:
        return pmf
    tail = -B.log(B.maximum(B.igamma(B.maximum(n, 1.0), mu), 1e-300))  # P(N ≥ n) = P(n, μ) (regularised)
    return B.where((over > 0.5) & (n > 0.5), tail, B.where(over > 0.5, 0.0, pmf))


def nll_binomial(B, top, p):
    """eq. 4.11: probability p for the upper of the two categories (isEle = 1, charge = +1)."""
    return -B.where(top > 0.5, B.log(p), B.log(1.0 - p))


def kl_gaussians(B, mu_z, sigma_z, mu_p, sigma_p):
    """eq. 4.4 per event: Σ_j KL(N(μ_z, σ_z) ‖ N(μ_P, σ_P)) over the latent dimensions, in its exact
    analytic form ln(σ_P/σ_z) + (σ_z² + (μ_z − μ_P)²)/(2σ_P²) − ½."""
    t = (sigma_z * sigma_z + (mu_z - mu_p) * (mu_z - mu_p)) / (2.0 * sigma_p * sigma_p)
    return B.sum1(B.log(sigma_p) - B.log(sigma_z) + t - 0.5)


# -- the layout: which input columns make each feature, its family and its constants ---------
def family_order(families) -> list:
    """Feature indices grouped by family (in FAMILIES order, stable): the order of the decoder's
    output units and of the layout's columns, so that every family is a contiguous slice of α1, α2
    (the four families with a width come first) and α3."""
    return sorted(range(len(families)), key=lambda i: FAMILIES.index(families[i]))


@dataclass
class Layout:
    """``features``/``families`` in the model's feature order; every array column, and the decoder's
    α1 / α2 / α3 units, in ``family_order`` (``order[k]`` is the feature of column k)."""
    features: list
    families: list
    value_matrix: np.ndarray   # n_inputs × F: physical value = inputs @ value_matrix + value_offset
    value_offset: np.ndarray   # F
    top_matrix: np.ndarray     # n_inputs × F: 1 on the last one-hot column of a discrete feature
    loc: np.ndarray            # F: decoder location offset (continuous: median; log-normal: ln std)
    scale: np.ndarray          # F: decoder scale (Gaussians: std; Poisson: max(median, 1); counts, one-hot: 1)

    @property
    def order(self) -> list:
        return family_order(self.families)

    @property
    def n_alpha2(self) -> int:
        return sum(f in USES_ALPHA2 for f in self.families)

    @property
    def n_alpha3(self) -> int:
        return sum(f in USES_ALPHA3 for f in self.families)

    def groups(self) -> list:
        """[(family, (start, stop) of columns and α1, (start, stop) of α2, (start, stop) of α3, any overflow bin)]."""
        out, col, c2, c3 = [], 0, 0, 0
        fams = [self.families[i] for i in self.order]
        for fam in FAMILIES:
            n = fams.count(fam)
            if not n:
                continue
            n2, n3 = (n if fam in USES_ALPHA2 else 0), (n if fam in USES_ALPHA3 else 0)
            out.append((fam, (col, col + n), (c2, c2 + n2), (c3, c3 + n3), bool(self.top_matrix[:, col:col + n].any())))
            col, c2, c3 = col + n, c2 + n2, c3 + n3
        return out

    def params(self) -> dict:
        return {"features": list(self.features), "families": list(self.families),
                "value_matrix": self.value_matrix, "value_offset": self.value_offset,
                "top_matrix": self.top_matrix, "loc": self.loc, "scale": self.scale}

    @classmethod
    def from_params(cls, p: dict) -> "Layout":
        return cls(list(p["features"]), list(p["families"]), *(np.asarray(p[k], np.float64) for k in (
            "value_matrix", "value_offset", "top_matrix", "loc", "scale")))


def default_likelihoods(features) -> dict:
    return {f: DEFAULT_LIKELIHOODS[f] for f in features if f in DEFAULT_LIKELIHOODS}


def build_layout(preprocessing: dict, n_inputs: int, likelihoods=None) -> Layout:
    """The layout of a model on the features of ``preprocessing`` (``Preprocessor.to_dict()``), with
    ``likelihoods`` (feature → family) overriding ``DEFAULT_LIKELIHOODS``. Errors are one-line ConfigErrors."""
    try:
        features = list(preprocessing["features"])
        discrete = {k: [float(c) for c in v] for k, v in (preprocessing.get("discrete") or {}).items()}
        median, scale = dict(preprocessing.get("median") or {}), dict(preprocessing.get("scale") or {})
    except (TypeError, KeyError, ValueError) as e:
        raise ConfigError(f"vae: model config 'preprocessing' is not a Preprocessor.to_dict() mapping ({e})") from None
    if likelihoods is None:
        likelihoods = {}
    if not isinstance(likelihoods, dict):
        raise ConfigError(f"vae.likelihoods must be a mapping feature: family, got {type(likelihoods).__name__}")
    stray = [f for f in likelihoods if f not in features]
    if stray:
        raise ConfigError(f"vae.likelihoods: feature(s) {', '.join(map(str, stray))} not among the model's features "
                          f"({', '.join(features)})")
    bad = {f: fam for f, fam in likelihoods.items() if fam not in FAMILIES}
    if bad:
        f, fam = next(iter(bad.items()))
        raise ConfigError(f"vae.likelihoods.{f}: unknown family {fam!r} (families: {', '.join(FAMILIES)})")
    families = [likelihoods.get(f, DEFAULT_LIKELIHOODS.get(f)) for f in features]
    missing = [f for f, fam in zip(features, families) if fam is None]
    if missing:
        raise ConfigError(f"vae: no likelihood family for feature(s) {', '.join(missing)}; set "
                          f"model.likelihoods.<feature> to one of {', '.join(FAMILIES)}")
    width = sum(len(discrete[f]) if f in discrete else 1 for f in features)
    if width != n_inputs:
        raise ConfigError(f"vae: the pre-processing gives {width} inputs, the model was built for {n_inputs}")
    F = len(features)
    vm, vo, tm = np.zeros((n_inputs, F)), np.zeros(F), np.zeros((n_inputs, F))
    loc, sc = np.zeros(F), np.ones(F)
    col = 0
    for i, (f, fam) in enumerate(zip(features, families)):
        if f in discrete:
            cats = discrete[f]
            vm[col:col + len(cats), i] = cats
            tm[col + len(cats) - 1, i] = 1.0
            col += len(cats)
            if fam == "binomial" and len(cats) != 2:
                raise ConfigError(f"vae.likelihoods.{f}: binomial needs a feature one-hot encoded in exactly two "
                                  f"categories, {f} has {len(cats)}")
            if fam in COUNT_FAMILIES and any(c < 0 or c != int(c) for c in cats):
                raise ConfigError(f"vae.likelihoods.{f}: {fam} needs non-negative integer categories, "
                                  f"{f} has {cats}")
        else:
            if f not in median or f not in scale:
                raise ConfigError(f"vae: the pre-processing has no median/scale for continuous feature {f}")
            m, s = float(median[f]), float(scale[f])
            vm[col, i], vo[i] = s, m
            col += 1
            if fam == "binomial":
                raise ConfigError(f"vae.likelihoods.{f}: binomial needs a two-category one-hot (discrete) feature; "
                                  f"{f} is continuous in the pre-processing")
            if fam == "lognormal_delta":
                loc[i] = math.log(s)
            elif fam == "poisson":
                sc[i] = max(m, 1.0)
            elif fam == "discrete_truncated_gaussian":
                loc[i] = m  # widths in counts, as the paper (σ ≥ 0.005)
            else:
                loc[i], sc[i] = m, s
    order = family_order(families)
    return Layout(features, families, vm[:, order], vo[order], tm[:, order], loc[order], sc[order])


# -- the model's likelihood, given network outputs --------------------------------------------
def physical_values(B, layout: Layout, x):
    """(values, top-bin indicators), events × features, float64, from the pre-processed inputs."""
    xd = B.f64(x)
    return B.matmul(xd, layout.value_matrix) + layout.value_offset, B.matmul(xd, layout.top_matrix)


def feature_nll(B, layout: Layout, x, a1, a2=None, a3=None) -> list:
    """[(feature indices, events × len(indices) NLL)] per family; a1/a2/a3: the raw decoder heads
    (units in ``layout.order``)."""
    v, top = physical_values(B, layout, x)
    a1 = B.f64(a1)
    a2 = None if a2 is None else B.f64(a2)
    a3 = None if a3 is None else B.f64(a3)
    out, order = [], layout.order
    for fam, (c0, c1), (s2, e2), (s3, e3), has_top in layout.groups():
        xv, tv, p1 = v[:, c0:c1], top[:, c0:c1], a1[:, c0:c1]
        loc, sc = layout.loc[c0:c1], layout.scale[c0:c1]
        if fam == "lognormal_delta":
            nll = nll_lognormal_delta(B, xv, loc + p1, p_isrlu(B, a2[:, s2:e2]), ctanh(B, a3[:, s3:e3]))
        elif fam == "binomial":
            nll = nll_binomial(B, tv, ctanh(B, p1))
        elif fam == "poisson":
            nll = nll_poisson(B, xv, sc * p_isrlu(B, p1), tv if has_top else None)
        else:
            mu, sigma = loc + sc * p1, sc * p_isrlu(B, a2[:, s2:e2])
            if fam == "gaussian":
                nll = nll_gaussian(B, xv, mu, sigma)
            elif fam == "truncated_gaussian":
                nll = nll_truncated_gaussian(B, xv, mu, sigma)
            else:
                nll = nll_discrete_truncated_gaussian(B, xv, mu, sigma, tv)
        idx = order[c0:c1]
        out.append((idx, nll))
    return out


def reconstruction_nll(B, layout: Layout, x, a1, a2=None, a3=None):
    """Per-event −ln P(x | α1, α2, α3) (eq. 4.5, summed over features)."""
    total = None
    for _, nll in feature_nll(B, layout, x, a1, a2, a3):
        s = B.sum1(nll)
        total = s if total is None else total + s
    return total


# -- numpy back-end and the scorer ------------------------------------------------------------
class NumpyBackend:
    """numpy + scipy.special: the operations the formulas above use."""

    def __init__(self):
        from scipy import special
        self.erfc, self.lgamma, self.igamma = special.erfc, special.gammaln, special.gammainc

    sqrt = staticmethod(np.sqrt)  # exactly rounded (IEEE) at every SIMD level
    # the C library's, value by value: numpy's float64 ones take AVX-512 paths that round differently
    log, exp, log1p, expm1 = (staticmethod(f) for f in (libm.log, libm.exp, libm.log1p, libm.expm1))

    @staticmethod
    def tanh(x):
        """tanh through the C library's expm1: numpy's own tanh has SIMD variants that round differently
        per CPU level (X86_V2 against X86_V3: 56k of 200k float64 values differ)."""
        t = libm.expm1(-2.0 * np.abs(x))
        return np.copysign(-t / (t + 2.0), x)
    maximum, minimum, round = (staticmethod(f) for f in (np.maximum, np.minimum, np.round))

    @staticmethod
    def matmul(a, b):
        from sparkad.model.dense import dense  # fixed summation order: the same bits at any BLAS thread count
        return dense(a, b)

    @staticmethod
    def where(c, a, b):
        return np.where(c, a, b)

    @staticmethod
    def f64(t):
        return np.asarray(t, np.float64)

    @staticmethod
    def sum1(t):
        return np.sum(t, axis=1)


PARAMS_NET = "vae_params"  # the one-op "network" that carries the non-network arrays (never run by forward)


def _params(nets) -> dict:
    return nets[PARAMS_NET][0]


def _numpy_encoder(nets, x):
    from sparkad.model.networks import forward
    B = NumpyBackend()
    h = forward(nets["encoder"], x)
    return B, forward(nets["enc_mu"], h), p_isrlu(B, B.f64(forward(nets["enc_sigma"], h)))


def _numpy_heads(nets, x, z=None):
    from sparkad.model.networks import forward
    B, mu_z, sigma_z = _numpy_encoder(nets, x)
    d = forward(nets["decoder"], mu_z if z is None else z)
    heads = [forward(nets[k], d) if k in nets else None for k in ("dec_alpha1", "dec_alpha2", "dec_alpha3")]
    return B, mu_z, sigma_z, heads


CHUNK = 1 << 16  # events per pass: bounds the float64 intermediates (~20 per feature and event)


def score_vae(nets, x: np.ndarray, wanted=None) -> dict[str, np.ndarray]:
    """The two VAE scores of a pre-processed batch, deterministic (the decoder runs on z = μ_z):
    nll: −ln P(x | α(μ_z)), the reconstruction loss of eq. 4.5 per event;
    kl: D_KL(N(μ_z, σ_z) ‖ N(μ_P, σ_P)) of eq. 4.4 per event.
    ``wanted``: the names to compute (kl alone skips the decoder)."""
    x = np.asarray(x, np.float32)
    names = [k for k in ("nll", "kl") if wanted is None or k in wanted]
    if len(x) > CHUNK:
        parts = [score_vae(nets, x[i:i + CHUNK], names) for i in range(0, len(x), CHUNK)]
        return {k: np.concatenate([q[k] for q in parts]) for k in names}
    p = _params(nets)
    out = {}
    if "nll" in names:
        B, mu_z, sigma_z, heads = _numpy_heads(nets, x)
        out["nll"] = reconstruction_nll(B, Layout.from_params(p), x, *heads)
    else:  # the KL divergence alone needs only the encoder
        B, mu_z, sigma_z = _numpy_encoder(nets, x)
    if "kl" in names:
        out["kl"] = kl_gaussians(B, B.f64(mu_z), sigma_z, np.asarray(p["prior_mu"], np.float64),
                                 np.asarray(p["prior_sigma"], np.float64))
    return {k: out[k] for k in names}


def feature_nll_numpy(nets, x: np.ndarray) -> tuple[list, np.ndarray]:
    """(features, events × features NLL): each feature's share of the "nll" score (diagnostics)."""
    layout = Layout.from_params(_params(nets))
    x = np.asarray(x, np.float32)
    B, _, _, heads = _numpy_heads(nets, x)
    out = np.zeros((len(x), len(layout.features)))
    for idx, nll in feature_nll(B, layout, x, *heads):
        out[:, idx] = nll
    return layout.features, out
