"""VAE (seeds/001 sec. 4.1): per-feature likelihoods against scipy.stats, TensorFlow and numpy give the
same numbers (and finite gradients far in the tails), the numpy scorer equals the Keras model and an
independent per-feature computation, training lowers the loss on generated events, a model directory
scores identically in a fresh process without TensorFlow, checkpoints restore the same step, and a
broken likelihood configuration is a one-line ConfigError."""
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from sparkad.core.errors import ConfigError
from sparkad.model import vae_likelihoods as L

B = L.NumpyBackend()


# -- the six families against scipy.stats -------------------------------------------------------
def test_activations_as_in_the_paper():
    x = np.array([-3.0, -0.5, 0.0, 0.7, 4.0])
    np.testing.assert_allclose(L.p_isrlu(B, x), 1.005 + np.where(x >= 0, x, x / np.sqrt(1 + x * x)))
    assert L.p_isrlu(B, np.array([-1e9]))[0] > 0  # strictly positive (eq. 4.1)
    np.testing.assert_allclose(L.ctanh(B, x), 0.5 * (1 + 0.999 * np.tanh(x)))
    assert L.p_isrlu(B, np.array([L.p_isrlu_inverse(1.0)]))[0] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(L.log_ndtr(B, np.array([-40.0, -20.5, -19.5, -3.0, 0.0, 2.0, 9.0])),
                               stats.norm.logcdf([-40.0, -20.5, -19.5, -3.0, 0.0, 2.0, 9.0]), rtol=1e-10)


def test_family_likelihoods_against_scipy():
    rng = np.random.default_rng(5)
    mu, sigma = rng.normal(3, 1, 50), rng.uniform(0.2, 2, 50)
    # clipped log-normal + δ (eq. 4.6): below 1e-4 the δ fraction, above (1 - frac) · log-normal
    x = np.r_[np.exp(rng.normal(3, 1, 45)), 0.0, 0.0, 5e-5, 1e-4, 2e-4]
    frac = rng.uniform(0.01, 0.99, 50)
    want = np.where(x < 1e-4, -np.log(frac), -np.log1p(-frac) - stats.lognorm.logpdf(x, s=sigma, scale=np.exp(mu)))
    np.testing.assert_allclose(L.nll_lognormal_delta(B, x, mu, sigma, frac), want, rtol=1e-10)
    # Gaussian (eq. 4.7) and truncated Gaussian on x > 0 (eq. 4.8, exact normalisation)
    g = rng.normal(0, 30, 50)
    m, s = rng.normal(10, 20, 50), rng.uniform(1, 40, 50)
    np.testing.assert_allclose(L.nll_gaussian(B, g, m, s), -stats.norm.logpdf(g, m, s), rtol=1e-10)
    t = np.abs(g)
    np.testing.assert_allclose(L.nll_truncated_gaussian(B, t, m, s),
                               -stats.truncnorm.logpdf(t, -m / s, np.inf, loc=m, scale=s), rtol=1e-9)
    # discrete truncated Gaussian (eqs. 4.9, 4.10), normalised over n = 0, 1, 2, … (exactly)
    n = rng.integers(0, 8, 50).astype(float)
    mu_n, s_n = rng.normal(2, 2, 50), rng.uniform(0.5, 3, 50)  # (far tails: below)
    upper = n - 0.5 > mu_n  # difference of survival functions there (no cancellation in scipy either)
    p = np.where(upper, stats.norm.sf(n - 0.5, mu_n, s_n) - stats.norm.sf(n + 0.5, mu_n, s_n),
                 stats.norm.cdf(n + 0.5, mu_n, s_n) - stats.norm.cdf(n - 0.5, mu_n, s_n)) / stats.norm.sf(-0.5, mu_n, s_n)
    np.testing.assert_allclose(L.nll_discrete_truncated_gaussian(B, n, mu_n, s_n, np.zeros(50)), -np.log(p), rtol=1e-8)
    grid = np.arange(0, 400.0)
    for mm, ss in ((0.3, 0.7), (-2.0, 1.5), (6.0, 4.0)):
        total = np.exp(-L.nll_discrete_truncated_gaussian(B, grid, mm, ss, np.zeros_like(grid))).sum()
        assert total == pytest.approx(1.0, abs=1e-10)
    # the overflow bin of a one-hot count is censored: P(N ≥ n)
    tail = stats.norm.sf(n - 0.5, mu_n, s_n) / stats.norm.sf(-0.5, mu_n, s_n)
    np.testing.assert_allclose(L.nll_discrete_truncated_gaussian(B, n, mu_n, s_n, np.ones(50)), -np.log(tail), rtol=1e-8, atol=1e-12)
    # far tails stay finite and exact (anomalies live there): n = 8 for μ = 0, σ = 0.01
    far = L.nll_discrete_truncated_gaussian(B, np.array([8.0]), np.array([0.0]), np.array([0.01]), np.zeros(1))[0]
    exact = -(stats.norm.logsf(7.5 / 0.01) + np.log1p(-np.exp(stats.norm.logsf(8.5 / 0.01) - stats.norm.logsf(750.0)))
              - stats.norm.logcdf(0.5 / 0.01))
    assert np.isfinite(far) and far == pytest.approx(exact, rel=1e-10)
    # Poisson (eq. 4.12), and its censored overflow bin P(N ≥ n)
    k = rng.integers(0, 60, 50).astype(float)
    lam = rng.uniform(0.5, 50, 50)
    np.testing.assert_allclose(L.nll_poisson(B, k, lam), -stats.poisson.logpmf(k, lam), rtol=1e-10)
    np.testing.assert_allclose(L.nll_poisson(B, k, lam, np.ones(50)), -stats.poisson.logsf(k - 1, lam), rtol=1e-8, atol=1e-12)
    # binomial (eq. 4.11): p for the upper category
    top, pp = rng.integers(0, 2, 50).astype(float), rng.uniform(0.01, 0.99, 50)
    np.testing.assert_allclose(L.nll_binomial(B, top, pp), -stats.bernoulli.logpmf(top, pp), rtol=1e-12)


def test_kl_is_the_gaussian_divergence():
    from scipy import integrate
    mz, sz, mp, sp = np.array([[0.7, -1.0]]), np.array([[0.4, 2.0]]), np.array([0.2, 0.5]), np.array([1.3, 0.8])
    want = 0.0
    for j in range(2):
        q, p = stats.norm(mz[0, j], sz[0, j]), stats.norm(mp[j], sp[j])
        want += integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), -30, 30, points=[mz[0, j]])[0]
    assert L.kl_gaussians(B, mz, sz, mp, sp)[0] == pytest.approx(want, rel=1e-7)


def test_tensorflow_formulas_equal_numpy_with_finite_gradients():
    import tensorflow as tf

    from sparkad.train.vae import TF
    x = np.array([0.0, 3e-5, 1e-3, 40.0, 1e4])
    n = np.array([0.0, 1.0, 3.0, 8.0, 500.0])
    over = np.array([0.0, 0.0, 1.0, 1.0, 0.0])
    params = tf.Variable(np.array([-50.0, -0.3, 0.0, 2.0, 300.0]))  # raw decoder outputs, also far off
    with tf.GradientTape() as tape:
        mu, sig = params * 3.0, L.p_isrlu(TF, params)
        frac = L.ctanh(TF, params)
        parts = {"ln": L.nll_lognormal_delta(TF, x, mu, sig, frac), "g": L.nll_gaussian(TF, x, mu, sig),
                 "tg": L.nll_truncated_gaussian(TF, x, mu, sig),
                 "dtg": L.nll_discrete_truncated_gaussian(TF, n, mu, sig, over),
                 "p": L.nll_poisson(TF, n, sig, over), "b": L.nll_binomial(TF, over, frac)}
        total = tf.add_n([tf.reduce_sum(v) for v in parts.values()])
    grad = tape.gradient(total, params).numpy()
    assert np.all(np.isfinite(grad)), grad
    p = params.numpy()
    mu, sig, frac = p * 3.0, L.p_isrlu(B, p), L.ctanh(B, p)
    want = {"ln": L.nll_lognormal_delta(B, x, mu, sig, frac), "g": L.nll_gaussian(B, x, mu, sig),
            "tg": L.nll_truncated_gaussian(B, x, mu, sig), "dtg": L.nll_discrete_truncated_gaussian(B, n, mu, sig, over),
            "p": L.nll_poisson(B, n, sig, over), "b": L.nll_binomial(B, over, frac)}
    for k, v in parts.items():
        assert np.all(np.isfinite(v.numpy())), k
        np.testing.assert_allclose(v.numpy(), want[k], rtol=1e-9, err_msg=k)


# -- the model --------------------------------------------------------------------------------
FEATURES = ["ST", "met_par", "MT", "NJ", "n_mu", "lep_charge", "n_ch", "n_x", "lep_iso_ch"]
DISCRETE = {"n_mu": [0, 1, 2], "lep_charge": [-1, 1], "n_x": [0, 1, 2, 3]}


def _synthetic(n=600, seed=0):
    """Every family, scaled and one-hot counts with overflow bins (n_mu up to 4, n_x up to 6)."""
    from sparkad.model.preprocessing import Preprocessor
    rng = np.random.default_rng(seed)
    cols = [np.exp(rng.normal(5, 0.5, n)), rng.normal(0, 30, n), np.abs(rng.normal(60, 25, n)),
            rng.poisson(1.5, n), rng.poisson(0.8, n), rng.choice([-1, 1], n), rng.poisson(40, n),
            rng.poisson(1.2, n), np.where(rng.random(n) < 0.3, 0.0, np.exp(rng.normal(-4, 1, n)))]
    raw = np.stack(cols, 1).astype(np.float64)
    pre = Preprocessor.fit(raw, FEATURES, discrete=DISCRETE)
    return raw, pre


def _model(pre, **cfg):
    from sparkad.train.vae import VAE
    return VAE(pre.n_inputs, {"preprocessing": pre.to_dict(), "likelihoods": {"n_x": "poisson"}, **cfg}, 3)


def _by_hand(nets, raw, pre):
    """Per-event NLL from the exported networks with scipy.stats, one feature at a time."""
    from sparkad.model.networks import forward
    x = pre.transform(raw)
    p = nets[L.PARAMS_NET][0]
    h = forward(nets["encoder"], x)
    d = forward(nets["decoder"], forward(nets["enc_mu"], h))
    a1, a2, a3 = (forward(nets[k], d).astype(np.float64) for k in ("dec_alpha1", "dec_alpha2", "dec_alpha3"))
    isr = lambda t: 1.005 + np.where(t >= 0, t, t / np.sqrt(1 + t * t))  # noqa: E731
    ct = lambda t: 0.5 * (1 + 0.999 * np.tanh(t))  # noqa: E731
    total, i2, i3 = np.zeros(len(raw)), 0, 0
    # decoder units are grouped by family, in the order of L.FAMILIES (stable within a family)
    order = sorted(range(len(p["families"])), key=lambda j: L.FAMILIES.index(p["families"][j]))
    for i, j in enumerate(order):
        f, fam = p["features"][j], p["families"][j]
        v = raw[:, j]
        if f in pre.discrete:
            cats = pre.discrete[f]
            top = v >= cats[-1]
            v = np.minimum(v, cats[-1])
            med, scl = 0.0, 1.0
        else:
            top = np.zeros(len(v), bool)
            med, scl = pre.median[f], pre.scale[f]
        if fam == "lognormal_delta":
            mu, s, fr = np.log(scl) + a1[:, i], isr(a2[:, i2]), ct(a3[:, i3])
            i2, i3 = i2 + 1, i3 + 1
            total += np.where(v < 1e-4, -np.log(fr), -np.log1p(-fr) - stats.lognorm.logpdf(np.maximum(v, 1e-4), s=s, scale=np.exp(mu)))
        elif fam == "binomial":
            total += -stats.bernoulli.logpmf(top.astype(int), ct(a1[:, i]))
        elif fam == "poisson":
            lam = max(med, 1.0) * isr(a1[:, i])
            total += np.where(top, -stats.poisson.logsf(v - 1, lam), -stats.poisson.logpmf(v, lam))
        else:
            if fam == "discrete_truncated_gaussian":
                scl = 1.0  # counts: widths in counts
            mu, s = med + scl * a1[:, i], scl * isr(a2[:, i2])
            i2 += 1
            if fam == "gaussian":
                total += -stats.norm.logpdf(v, mu, s)
            elif fam == "truncated_gaussian":
                total += -stats.truncnorm.logpdf(v, -mu / s, np.inf, loc=mu, scale=s)
            else:
                norm = stats.norm.sf(-0.5, mu, s)
                pn = np.where(top, stats.norm.sf(v - 0.5, mu, s), stats.norm.cdf(v + 0.5, mu, s) - stats.norm.cdf(v - 0.5, mu, s))
                total += -np.log(pn / norm)
    return total


def test_numpy_scorer_equals_keras_and_scipy_by_hand():
    import tensorflow as tf
    raw, pre = _synthetic()
    m = _model(pre)
    assert m.layout.families == ["lognormal_delta", "gaussian", "truncated_gaussian", "discrete_truncated_gaussian",
                                 "discrete_truncated_gaussian", "binomial", "poisson", "poisson", "lognormal_delta"]
    x = pre.transform(raw)
    for _ in range(3):
        m.train_step(tf.constant(x[:200]), tf.ones(200), 200)
    nets = m.export()
    got = L.score_vae(nets, x)
    keras_terms = {k: v.numpy() for k, v in m.validation_losses(tf.constant(x)).items()}
    np.testing.assert_allclose(got["nll"], keras_terms["nll"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got["kl"], keras_terms["kl"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras_terms["loss"], keras_terms["nll"] + 0.3 * keras_terms["kl"], rtol=1e-12)
    np.testing.assert_allclose(got["nll"], _by_hand(nets, raw, pre), rtol=1e-7)
    np.testing.assert_array_equal(L.score_vae(nets, x)["nll"], got["nll"])  # deterministic
    with pytest.MonkeyPatch.context() as mp:  # large batches are scored in chunks, with the same result
        mp.setattr(L, "CHUNK", 128)
        np.testing.assert_allclose(L.score_vae(nets, x)["nll"], got["nll"], rtol=1e-6)
        chunked = {k: v.numpy() for k, v in m.validation_losses(tf.constant(x)).items()}
        np.testing.assert_allclose(chunked["loss"], keras_terms["loss"], rtol=1e-6)
    feats, per = L.feature_nll_numpy(nets, x)
    assert feats == FEATURES and np.allclose(per.sum(1), got["nll"])
    # export → pack → unpack (what networks.npz holds) scores the same; forward never runs on the parameters
    from sparkad.model.networks import pack, unpack
    spec, arrays = pack(nets)
    again = unpack(json.loads(json.dumps(spec)), arrays)
    np.testing.assert_array_equal(L.score_vae(again, x)["kl"], got["kl"])
    assert m.score_names == ("nll", "kl")


def test_checkpoint_state_restores_the_same_step():
    import tensorflow as tf
    raw, pre = _synthetic(200)
    m = _model(pre)
    for opt, variables in m.optimizers().values():
        opt.build(variables)
    state = m.state_variables() + [v for opt, _ in m.optimizers().values() for v in opt.variables]
    assert any(v is m.noise.state for v in state) and any(v is m.prior_mu for v in state)
    x = tf.constant(pre.transform(raw))
    m.train_step(x, tf.ones(200), 200)
    saved = [v.numpy() for v in state]
    first = m.train_step(x, tf.ones(200), 200)["loss"].numpy()
    after = [v.numpy() for v in m.trainable_variables()]
    for v, s in zip(state, saved):
        v.assign(s)
    again = m.train_step(x, tf.ones(200), 200)["loss"].numpy()
    assert first == again  # the same ε draws, weights and optimizer slots
    for a, b in zip(after, m.trainable_variables()):
        np.testing.assert_array_equal(a, b.numpy())
    assert m.prior_mu.numpy().any()  # the prior is learned


def test_defaults_cover_the_named_feature_sets():
    from sparkad.core.config import load_conf
    sets = load_conf("features")
    for name in ("vae21", "alad24", "cms2012"):
        assert set(sets[name]) <= set(L.DEFAULT_LIKELIHOODS), name
    fams = [L.DEFAULT_LIKELIHOODS[f] for f in sets["vae21"]]
    # seeds/001 sec. 4.1: 10 log-normal + δ, 2 Gaussian, 1 truncated, 4 discrete truncated, 2 binomial, 2 Poisson;
    # output heads α1 / α2 / α3 of 21 / 17 / 10 nodes (figure 3)
    assert [fams.count(f) for f in L.FAMILIES] == [10, 2, 1, 4, 2, 2]
    assert sum(f in L.USES_ALPHA2 for f in fams) == 17 and sum(f in L.USES_ALPHA3 for f in fams) == 10


@pytest.mark.parametrize("likelihoods, message", [
    ({"ST": "lognormal"}, r"vae.likelihoods.ST: unknown family 'lognormal' \(families: lognormal_delta"),
    ({"HT": "gaussian"}, r"feature\(s\) HT not among the model's features"),
    ({"n_mu": "binomial"}, r"binomial needs a feature one-hot encoded in exactly two categories, n_mu has 3"),
    ({"NJ": "binomial"}, r"NJ is continuous"),
    ({"lep_charge": "poisson"}, r"poisson needs non-negative integer categories"),
    (["ST"], r"vae.likelihoods must be a mapping"),
])
def test_broken_likelihood_config_is_a_one_line_error(likelihoods, message):
    _, pre = _synthetic(50)
    if isinstance(likelihoods, dict):
        likelihoods = {"n_x": "poisson", **likelihoods}
    with pytest.raises(ConfigError, match=message) as e:
        L.build_layout(pre.to_dict(), pre.n_inputs, likelihoods)
    assert "\n" not in str(e.value)


def test_unknown_feature_and_bad_model_config():
    from sparkad.train.vae import VAE
    _, pre = _synthetic(50)
    d = pre.to_dict()
    with pytest.raises(ConfigError, match=r"no likelihood family for feature\(s\) n_x; set model.likelihoods"):
        L.build_layout(d, pre.n_inputs)
    with pytest.raises(ConfigError, match="lacks 'preprocessing'"):
        VAE(pre.n_inputs, {}, 1)
    with pytest.raises(ConfigError, match="unknown model key.*betta"):
        VAE(pre.n_inputs, {"preprocessing": d, "betta": 0.3}, 1)
    with pytest.raises(ConfigError, match="gives 15 inputs, the model was built for 14"):
        VAE(14, {"preprocessing": d, "likelihoods": {"n_x": "poisson"}}, 1)


# -- through the public training and scoring API ------------------------------------------------
@pytest.fixture(scope="module")
def vae_api():
    """The public API for kind "vae". Until "vae" is registered in sparkad.train.models / SCORERS and the
    loop passes model_cfg["preprocessing"], shims make the same calls work; afterwards they are unused."""
    import sparkad.train.models as models
    import sparkad.model.scores as scoring
    import sparkad.train.loop as training
    from sparkad.train.vae import VAE
    mp = pytest.MonkeyPatch()
    if "vae" not in models.MODELS:
        fitted, real_pre = {}, training.Preprocessor

        class Recording(real_pre):
            @classmethod
            def fit(cls, *a, **k):
                fitted["pre"] = real_pre.fit(*a, **k)
                return fitted["pre"]

        real = models.make_model

        def make_model(kind, n_inputs, config, seed):
            if kind == "vae":
                return VAE(n_inputs, {"preprocessing": fitted["pre"].to_dict(), **config}, seed)
            return real(kind, n_inputs, config, seed)

        mp.setattr(training, "Preprocessor", Recording)
        mp.setattr(models, "make_model", make_model)
        mp.setitem(scoring.SCORERS, "vae", L.score_vae)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def trained_vae(vae_api, generated_hlf, tmp_path_factory):
    import yaml

    from sparkad.train.api import train_from_config
    d = tmp_path_factory.mktemp("vae")
    cfg = d / "train.yaml"
    cfg.write_text(yaml.safe_dump({"cocktail": {"background": ["wjets", "dyjets"]},
                                   "training": {"threads": 1, "checkpoint_every": 50},
                                   "models": {"vae": {"model": {"beta": 0.3, "latent": 4}}}}))
    out = d / "model"
    doc = train_from_config("vae", generated_hlf, out, config_file=cfg, epochs=8, batch_size=100, progress=False)
    return out, doc


def test_vae_trains_on_generated_events(trained_vae, generated_hlf):
    import pandas as pd

    from sparkad.evaluate.metrics import auc
    from sparkad.model.directory import Scorer
    out, doc = trained_vae
    hist = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(hist) == 8 and doc["kind"] == "vae" and doc["score_names"] == ["nll", "kl", "mahalanobis", "pca", "iforest"]
    # the mean validation loss of 1.6k training events can be dominated by a few events far in the tails of an
    # over-confident decoder: its best epoch (what early stopping keeps watching) is well below the first
    assert min(h["val_loss"] for h in hist) < hist[0]["val_loss"] - 10
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 10
    assert min(h["val_nll"] for h in hist) < hist[0]["val_nll"] and "train_kl" in hist[-1] and "val_kl" in hist[-1]
    assert doc["thresholds"]["nll"]["1000ppm"]["value"] is not None
    df = pd.read_parquet(generated_hlf)
    s = Scorer(out)
    sm = s.score_frame(df[df.dataset.isin(["wjets", "dyjets"])])["nll"]
    tt = s.score_frame(df[df.dataset == "ttbar"])["nll"]
    assert np.all(np.isfinite(sm)) and auc(sm, tt) > 0.7  # tt̄ is not in the W+Z cocktail


def test_vae_scores_identical_in_a_fresh_process(trained_vae, tmp_path):
    from sparkad.model.directory import Scorer
    out, _ = trained_vae
    s = Scorer(out)
    x = np.abs(np.random.default_rng(0).normal(size=(400, len(s.features))) * 30 + 20)
    np.save(tmp_path / "x.npy", x)
    here = s.score(x)
    code = ("import sys, numpy as np; import sparkad.model.scores as sc\n"
            "if 'vae' not in sc.SCORERS:\n"  # registered for real: nothing to do
            "    from sparkad.model.vae_likelihoods import score_vae; sc.SCORERS['vae'] = score_vae\n"
            f"from sparkad.model.directory import Scorer; r = Scorer({str(out)!r}).score(np.load({str(tmp_path / 'x.npy')!r}))\n"
            f"np.savez({str(tmp_path / 'y.npz')!r}, **r); print('tensorflow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"  # scoring needs no TensorFlow
    y = np.load(tmp_path / "y.npz")
    for k in ("nll", "kl"):
        assert np.all(np.isfinite(here[k]))
        np.testing.assert_array_equal(y[k], here[k])
