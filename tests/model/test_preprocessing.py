"""The compiled pre-processing kernel equals its definition, written here with numpy one feature at a
time (standardise in the input's precision and round to float32; one-hot of np.searchsorted's
category, clipped to the first and last), bit for bit, for float32, float64 and integer inputs with
NaN, ±inf, values between and outside the categories."""
import numpy as np
import pytest

from sparkad.core.errors import SparkadError
from sparkad.model.preprocessing import Preprocessor


def reference(pre, x):
    cols = []
    for i, f in enumerate(pre.features):
        v = x[:, i]
        if f in pre.discrete:
            cats = np.asarray(pre.discrete[f], dtype=np.float64)
            idx = np.clip(np.searchsorted(cats, v, side="right") - 1, 0, len(cats) - 1)
            onehot = np.zeros((len(v), len(cats)), np.float32)
            onehot[np.arange(len(v)), idx] = 1.0
            cols.append(onehot)
        else:
            cols.append(((v - pre.median[f]) / pre.scale[f]).astype(np.float32)[:, None])
    return np.concatenate(cols, axis=1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_transform_equals_its_definition(dtype):
    rng = np.random.default_rng(3)
    n = 20000
    x = np.column_stack([rng.normal(3, 2, n), rng.integers(-2, 12, n), rng.choice([-1.0, 1.0], n),
                         rng.lognormal(0, 2, n), rng.integers(0, 3, n)])
    pre = Preprocessor.fit(x, ["MET", "n_mu", "lep_charge", "HT", "n_ele"])
    assert pre.n_inputs == 1 + 9 + 2 + 1 + 9
    if dtype is np.int64:
        x = np.round(x).astype(np.int64)
    else:
        x[::97, 1] = np.nan
        x[::89, 0] = np.nan
        x[::83, 3] = np.inf
        x[::79, 3] = -np.inf
        x[5, 1], x[6, 1], x[7, 2], x[8, 4] = 3.5, -np.inf, 0.0, 1e9
        x = x.astype(dtype)
    got = pre.transform(x)
    assert got.dtype == np.float32 and got.shape == (n, pre.n_inputs)
    np.testing.assert_array_equal(got, reference(pre, x))
    assert (got[:, 1:10].sum(axis=1) == 1).all()  # one category per event, NaN included
    np.testing.assert_array_equal(pre.transform(x[123:456]), got[123:456])  # per event: any batch


def test_transform_refuses_a_wrong_shape():
    pre = Preprocessor.fit(np.ones((10, 2)), ["a", "b"])
    with pytest.raises(SparkadError, match="expects 2 features"):
        pre.transform(np.ones((4, 3)))
