"""sparkad.model.libm is the C library's log / exp / log1p / expm1 (what Python's math module calls),
value by value, whatever numpy's SIMD dispatch would have done, with numpy's results at the edges."""
import math

import numpy as np
import pytest

from sparkad.model import libm


def _math(fn, x):
    out = []
    for v in x:
        try:
            out.append(fn(v))
        except ValueError:  # math raises where numpy (and the C library) return -inf / NaN
            out.append(-math.inf if v == 0 or (fn is math.log1p and v == -1) else math.nan)
        except OverflowError:
            out.append(math.inf)
    return np.array(out)


@pytest.mark.parametrize("name,domain", [("log", "positive"), ("log1p", "above -1"), ("exp", "any"),
                                         ("expm1", "any")])
def test_each_function_is_the_c_library_value_by_value(name, domain):
    rng = np.random.default_rng(11)
    x = rng.normal(0, 30, 20000)
    if domain == "positive":
        x = np.abs(x) * rng.lognormal(0, 20, len(x))
    elif domain == "above -1":
        x = np.abs(x) - 0.999
    edges = np.array([0.0, -0.0, 1.0, -1.0, 709.8, 710.0, -745.2, -746.0, 1e-320, np.inf, -np.inf, np.nan])
    x = np.concatenate([x, edges])
    with np.errstate(all="ignore"):
        got, want_np = getattr(libm, name)(x), getattr(np, name)(x)
    np.testing.assert_array_equal(got, _math(getattr(math, name), x))
    finite = np.isfinite(want_np)  # numpy agrees to the last bits, and on every special value
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want_np))
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want_np)], want_np[~finite & ~np.isnan(want_np)])
    np.testing.assert_allclose(got[finite], want_np[finite], rtol=4e-16, atol=0)
    assert libm.exp(np.zeros((2, 3))).shape == (2, 3) and libm.log(1.0) == 0.0
