"""The classic baselines (model/baselines.py) against scikit-learn and the textbook formulas on the
same events, and their scoring invariances (batch split, NaN inputs)."""
import numpy as np
import pytest

from sparkad.model.baselines import fit_baselines, fit_gaussian, score_baselines


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(5)
    n, d = 6000, 12
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    x = (rng.normal(size=(n, d)) @ mix).astype(np.float32)
    x[:, -3:] = rng.random((n, 3)) < 0.3  # one-hot-like inputs: a singular covariance direction is possible
    x[:, -1] = 1.0 - x[:, -2]  # exactly collinear: Σ is singular
    return x, rng.random(n) + 0.5


def test_iforest_equals_scikit_learn(sample):
    from sklearn.ensemble import IsolationForest

    x, w = sample
    got = score_baselines(fit_baselines(x, w, seed=7), x[:2000])["iforest"]
    ref = IsolationForest(n_estimators=100, max_samples=256, random_state=7).fit(x, sample_weight=w)
    np.testing.assert_allclose(got, np.log2(-ref.score_samples(x[:2000])), rtol=0, atol=1e-12)


def test_mahalanobis_and_pca_equal_their_definitions(sample):
    from sklearn.decomposition import PCA

    x, w = sample
    s = score_baselines(fit_baselines(x, np.ones(len(x)), seed=1), x[:1000])
    mu = x.astype(np.float64).mean(axis=0)
    cov = np.cov(x.T.astype(np.float64), bias=True)
    d = x[:1000] - mu
    maha = np.sqrt(np.einsum("ij,jk,ik->i", d, np.linalg.pinv(cov, rcond=1e-9, hermitian=True), d))
    np.testing.assert_allclose(s["mahalanobis"], maha, rtol=2e-4)
    pca = PCA(n_components=4).fit(x.astype(np.float64))
    rec = pca.inverse_transform(pca.transform(x[:1000].astype(np.float64)))
    np.testing.assert_allclose(s["pca"], np.mean((x[:1000] - rec) ** 2, axis=1), rtol=2e-3, atol=1e-6)
    # weights matter: the weighted mean is where the weights put it
    g = fit_gaussian(x, np.where(x[:, 0] > 0, 10.0, 0.1))
    assert g["mean"][0] > 0.5 * x[x[:, 0] > 0, 0].mean()


def test_scores_do_not_depend_on_the_batch_and_nan_gives_nan(sample):
    x, w = sample
    arrays = fit_baselines(x, w, seed=3)
    whole = score_baselines(arrays, x)
    parts = [score_baselines(arrays, x[i:i + 333]) for i in range(0, len(x), 333)]
    for k in whole:
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])
    bad = x[:10].copy()
    bad[3, 2] = np.nan
    s = score_baselines(arrays, bad)
    for k, v in s.items():
        assert np.isnan(v[3]) and np.isfinite(np.delete(v, 3)).all(), k


def test_outliers_score_higher(sample):
    x, w = sample
    arrays = fit_baselines(x, w, seed=3)
    far = x[:200] * 6.0
    near, out = score_baselines(arrays, x[:200]), score_baselines(arrays, far)
    for k in near:
        assert np.median(out[k]) > np.median(near[k]), k
