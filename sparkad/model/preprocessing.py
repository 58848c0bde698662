"""Model input pre-processing (HLF.md, ALAD sec. 3): one-hot discrete features with an overflow bin;
continuous ones shifted to zero median and scaled to unit variance, as ALAD sec. 3 states. (An
inter-quartile scale, as HLF.md's "robust scaling" could be read, blows up features whose core is a
spike, e.g. mu_mass = m_μ for every single-muon event: Z→μμ events would land at ~10^3.)
Fitted on the training set, stored with the model as JSON, applied unchanged when scoring."""
from __future__ import annotations

from dataclasses import dataclass, field

import numba as nb
import numpy as np

from sparkad.core.errors import ConfigError, SparkadError

#: discrete features and their categories; values beyond the last go to the last bin (overflow)
DEFAULT_DISCRETE = {
    "lep_charge": [-1, 1],
    "lep_is_ele": [0, 1],
    "n_mu": list(range(9)),   # 0 … 7, and 8 = "8 or more"
    "n_ele": list(range(9)),
}


@dataclass
class Preprocessor:
    features: list[str]
    discrete: dict[str, list] = field(default_factory=dict)
    median: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, x: np.ndarray, features, discrete=None, weights=None) -> "Preprocessor":
        """Fit on the training matrix x (events × features, in ``features`` order)."""
        discrete = {k: list(v) for k, v in (DEFAULT_DISCRETE if discrete is None else discrete).items() if k in features}
        pre = cls(list(features), discrete)
        check_finite(x, features, "training set")
        for i, f in enumerate(features):
            if f in discrete:
                continue
            col = x[:, i].astype(np.float64)
            (q50,) = _quantiles(col, [0.5], weights)
            if weights is None:
                spread = float(np.std(col))
            else:
                w = np.asarray(weights, np.float64)
                spread = float(np.sqrt(np.average((col - np.average(col, weights=w)) ** 2, weights=w)))
            pre.median[f], pre.scale[f] = float(q50), spread if spread > 0 else 1.0
        return pre

    @property
    def n_inputs(self) -> int:
        return sum(len(self.discrete[f]) if f in self.discrete else 1 for f in self.features)

    @property
    def input_names(self) -> list[str]:
        out = []
        for f in self.features:
            if f in self.discrete:
                cats = self.discrete[f]
                out += [f"{f}={c}" for c in cats[:-1]] + [f"{f}>={cats[-1]}"]
            else:
                out.append(f)
        return out

    def transform(self, x: np.ndarray) -> np.ndarray:
        """events × features → events × n_inputs (float32), in one pass over the events (a compiled
        kernel): a continuous feature becomes (v − median) / scale, computed in the input's precision
        (float32 or float64; other dtypes as float64) and rounded to float32; a discrete one the one-hot
        of its category (the last category at and above it, values below the first in the first, NaN
        in the last: ``np.searchsorted`` order)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise SparkadError(f"pre-processing expects {len(self.features)} features ({', '.join(self.features)}), "
                               f"got an array of shape {x.shape}")
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        out = np.empty((len(x), self.n_inputs), np.float32)
        _transform(np.ascontiguousarray(x), *self._plan(x.dtype), out)
        return out

    def _plan(self, dtype):
        """Per feature: its first output column, its number of categories (0: continuous), where its
        categories start in one flat array; the medians and scales in the input's precision."""
        key = np.dtype(dtype).str
        cache = self.__dict__.setdefault("_plans", {})
        if key not in cache:
            col, ncat, cat0, cats = [], [], [], []
            c = 0
            for f in self.features:
                col.append(c)
                k = len(self.discrete[f]) if f in self.discrete else 0
                ncat.append(k)
                cat0.append(len(cats))
                cats += [float(v) for v in self.discrete.get(f, [])]
                c += max(k, 1)
            med = np.array([self.median.get(f, 0.0) for f in self.features], np.float64).astype(dtype)
            scale = np.array([self.scale.get(f, 1.0) for f in self.features], np.float64).astype(dtype)
            cache[key] = (np.array(col, np.int64), np.array(ncat, np.int64), np.array(cat0, np.int64),
                          np.array(cats, np.float64), med, scale)
        return cache[key]

    def to_dict(self) -> dict:
        return {"features": self.features, "discrete": self.discrete, "median": self.median, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessor":
        return cls(list(d["features"]), dict(d["discrete"]), dict(d["median"]), dict(d["scale"]))


@nb.njit(cache=True, nogil=True)
def _transform(x, col, ncat, cat0, cats, med, scale, out):  # pragma: no cover - compiled
    n, nf = x.shape
    for i in range(n):
        for f in range(nf):
            v = x[i, f]
            k = ncat[f]
            if k == 0:
                out[i, col[f]] = np.float32((v - med[f]) / scale[f])
            else:
                for c in range(k):
                    out[i, col[f] + c] = 0.0
                # the category of v: the last one <= v (the first if none is), NaN in the last
                idx = k - 1
                if not np.isnan(v):
                    idx = 0
                    for c in range(1, k):
                        if cats[cat0[f] + c] <= v:
                            idx = c
                out[i, col[f] + idx] = 1.0


def _quantiles(col, qs, weights=None):
    if weights is None:
        return np.quantile(col, qs)
    order = np.argsort(col, kind="stable")
    cw = np.cumsum(np.asarray(weights, np.float64)[order])
    cw /= cw[-1]
    return [col[order][min(np.searchsorted(cw, q), len(col) - 1)] for q in qs]


def check_finite(x: np.ndarray, features, where: str) -> None:
    """NaN/inf features are refused with the names of the offending features: they would train NaN
    weights, and NaN validation scores leave no thresholds. Checked for the training and the
    validation set before training starts."""
    bad = ~np.isfinite(x)
    if bad.any():
        counts = bad.sum(axis=0)
        cols = [f"{features[i]} ({int(n)} events)" for i, n in enumerate(counts) if n]
        hint = ("choose a feature set the input provides (NaN-filled features cannot be used for training)"
                if (counts == len(x)).any() else "remove or fix those events")
        raise ConfigError(f"{where}: non-finite values in {', '.join(cols)}; {hint}")
