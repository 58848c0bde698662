"""Variational autoencoder with per-feature likelihoods, as seeds/001 section 4.1 (figure 3).

Encoder: inputs → 50 → 50 (ReLU) → μ_z (4, linear) and σ_z (4, p-ISRLu, eq. 4.1); z = μ_z + σ_z·ε.
Decoder: z → 50 → 50 (ReLU) → α1 (one per feature, linear), α2 (one per feature with a width,
p-ISRLu), α3 (one per log-normal + δ feature, clipped tanh, eq. 4.2): 21 / 17 / 10 for vae21, as
the paper's 48 output nodes. Learnable Gaussian prior N(μ_P, σ_P) (8 parameters for a 4-d latent;
σ_P through p-ISRLu so it stays positive). Loss = −ln P(x | α) + β·D_KL(q(z|x) ‖ prior), β = 0.3.

The networks consume the pre-processed input matrix; the likelihood of each feature is evaluated
on its physical value, recovered from that matrix with the fitted pre-processing, which the model
therefore receives in ``config["preprocessing"]`` (``Preprocessor.to_dict()``). The likelihood
family of each feature comes from ``config["likelihoods"]`` (feature → family) over the defaults
of ``vae_likelihoods.DEFAULT_LIKELIHOODS``. Formulas, numpy scorer: ``sparkad.model.vae_likelihoods``.
Scores (deterministic, decoder on z = μ_z): "nll" (Loss_reco of eq. 4.5) and "kl" (D_KL of eq. 4.4).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from sparkad.core.errors import ConfigError
from sparkad.train import keras_nets as nets
from sparkad.model import vae_likelihoods as L
from sparkad.train.base import Detector

CONFIG_KEYS = ("preprocessing", "likelihoods", "hidden", "latent", "beta", "learning_rate", "lr_scale")


class TFBackend:
    """TensorFlow versions of the operations used by the shared likelihood formulas."""

    log, log1p, exp, expm1 = (staticmethod(f) for f in (tf.math.log, tf.math.log1p, tf.math.exp, tf.math.expm1))
    sqrt, tanh, round = (staticmethod(f) for f in (tf.math.sqrt, tf.math.tanh, tf.math.round))
    erfc, lgamma, igamma = (staticmethod(f) for f in (tf.math.erfc, tf.math.lgamma, tf.math.igamma))

    @staticmethod
    def where(c, a, b):
        return tf.where(c, tf.convert_to_tensor(a, tf.float64), tf.convert_to_tensor(b, tf.float64))

    @staticmethod
    def maximum(a, b):
        return tf.maximum(tf.convert_to_tensor(a, tf.float64), tf.convert_to_tensor(b, tf.float64))

    @staticmethod
    def minimum(a, b):
        return tf.minimum(tf.convert_to_tensor(a, tf.float64), tf.convert_to_tensor(b, tf.float64))

    @staticmethod
    def matmul(a, b):
        return tf.linalg.matmul(a, tf.convert_to_tensor(b, tf.float64))

    @staticmethod
    def f64(t):
        return tf.cast(t, tf.float64)

    @staticmethod
    def sum1(t):
        return tf.reduce_sum(t, axis=1)


TF = TFBackend()


def _check_config(config: dict) -> dict:
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"vae: unknown model key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(CONFIG_KEYS)})")
    if "preprocessing" not in config:
        raise ConfigError("vae: the model config lacks 'preprocessing' (the fitted Preprocessor.to_dict()): its "
                          "likelihoods are evaluated on physical feature values")
    hidden = config.get("hidden", [50, 50])
    if not isinstance(hidden, (list, tuple)) or not hidden or not all(
            isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in hidden):
        raise ConfigError(f"vae.hidden must be a non-empty list of positive integers, got {hidden!r}")
    latent = config.get("latent", 4)
    if isinstance(latent, bool) or not isinstance(latent, int) or latent <= 0:
        raise ConfigError(f"vae.latent must be a positive integer, got {latent!r}")
    out = {"hidden": list(hidden), "latent": latent}
    for k, default in (("beta", 0.3), ("learning_rate", 1e-3), ("lr_scale", 1.0)):
        v = config.get(k, default)
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"vae.{k} must be a number, got {v!r}") from None
        if not np.isfinite(v) or v < 0 or (k != "beta" and v == 0):
            raise ConfigError(f"vae.{k} must be a {'non-negative' if k == 'beta' else 'positive'} number, got {v!r}")
        out[k] = v
    return out


class VAE(Detector):
    kind = "vae"
    score_names = ("nll", "kl")

    def __init__(self, n_inputs: int, config: dict, seed: int):
        super().__init__(n_inputs, config, seed)
        opts = _check_config(config)
        self.layout = L.build_layout(config["preprocessing"], n_inputs, config.get("likelihoods"))
        self.beta = opts["beta"]
        self.latent = latent = opts["latent"]
        hidden = opts["hidden"]
        relu = [{"units": u, "activation": "relu"} for u in hidden]
        self.encoder = nets.build("encoder", n_inputs, relu, seed)
        self.enc_mu = nets.build("enc_mu", hidden[-1], [{"units": latent, "activation": "linear"}], seed + 10)
        self.enc_sigma = nets.build("enc_sigma", hidden[-1], [{"units": latent, "activation": "linear"}], seed + 20)
        self.decoder = nets.build("decoder", latent, relu, seed + 30)
        self.heads = {"dec_alpha1": nets.build("dec_alpha1", hidden[-1],
                                               [{"units": len(self.layout.features), "activation": "linear"}], seed + 40)}
        for name, n, s in (("dec_alpha2", self.layout.n_alpha2, 50), ("dec_alpha3", self.layout.n_alpha3, 60)):
            if n:
                self.heads[name] = nets.build(name, hidden[-1], [{"units": n, "activation": "linear"}], seed + s)
        # learnable prior N(μ_P, σ_P), starting at N(0, 1)
        self.prior_mu = tf.Variable(tf.zeros([latent]), name="prior_mu")
        self.prior_sigma_raw = tf.Variable(tf.fill([latent], L.p_isrlu_inverse(1.0)), name="prior_sigma_raw")
        self.noise = tf.random.Generator.from_seed(seed)
        self.opt = keras.optimizers.Adam(learning_rate=opts["learning_rate"] * opts["lr_scale"])

    # -- Detector interface ---------------------------------------------------------------------
    def networks(self):
        return {"encoder": self.encoder, "enc_mu": self.enc_mu, "enc_sigma": self.enc_sigma,
                "decoder": self.decoder, **self.heads}

    def extra_variables(self):
        return [self.noise.state, self.prior_mu, self.prior_sigma_raw]

    def trainable_variables(self):
        out = []
        for net in self.networks().values():
            out += net.trainable_variables
        return out + [self.prior_mu, self.prior_sigma_raw]

    def optimizers(self):
        return {"vae": (self.opt, self.trainable_variables())}

    def prior(self):
        """(μ_P, σ_P) as float64 tensors."""
        return TF.f64(self.prior_mu), L.p_isrlu(TF, TF.f64(self.prior_sigma_raw))

    def encode(self, x, training=False):
        h = self.encoder(x, training=training)
        return self.enc_mu(h, training=training), L.p_isrlu(TF, TF.f64(self.enc_sigma(h, training=training)))

    def decode(self, z, training=False):
        d = self.decoder(z, training=training)
        return [self.heads[k](d, training=training) if k in self.heads else None
                for k in ("dec_alpha1", "dec_alpha2", "dec_alpha3")]

    def per_event_terms(self, x, sample: bool, training=False):
        """(nll, kl) per event, float64. sample: z = μ_z + σ_z·ε (training); otherwise z = μ_z (scores)."""
        x = tf.convert_to_tensor(x, tf.float32)
        mu_z, sigma_z = self.encode(x, training)
        z = mu_z
        if sample:
            z = mu_z + tf.cast(sigma_z, tf.float32) * self.noise.normal(tf.shape(mu_z))
        nll = L.reconstruction_nll(TF, self.layout, x, *self.decode(z, training))
        kl = L.kl_gaussians(TF, TF.f64(mu_z), sigma_z, *self.prior())
        return nll, kl

    def train_step(self, x, w, global_batch):
        variables = self.trainable_variables()
        mean = lambda t: self.weighted_mean(tf.cast(t, tf.float32), w, global_batch)  # noqa: E731
        with tf.GradientTape() as tape:
            nll, kl = self.per_event_terms(x, sample=True, training=True)
            loss = mean(nll + self.beta * kl)
        self.opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss, "nll": mean(nll), "kl": mean(kl)}

    def validation_losses(self, x):
        """Per-event total loss (monitored), nll and kl, deterministic (z = μ_z, as the scores)."""
        x = tf.convert_to_tensor(x, tf.float32)
        n = int(x.shape[0]) if x.shape[0] is not None else 0
        if tf.executing_eagerly() and n > L.CHUNK:  # bounded memory on large validation sets
            parts = [self.per_event_terms(x[i:i + L.CHUNK], sample=False) for i in range(0, n, L.CHUNK)]
            nll, kl = tf.concat([q[0] for q in parts], 0), tf.concat([q[1] for q in parts], 0)
        else:
            nll, kl = self.per_event_terms(x, sample=False)
        return {"loss": nll + self.beta * kl, "nll": nll, "kl": kl}

    def export(self):
        out = {name: nets.export(net) for name, net in self.networks().items()}
        B = L.NumpyBackend()
        prior_sigma = L.p_isrlu(B, self.prior_sigma_raw.numpy().astype(np.float64))
        out[L.PARAMS_NET] = [{"op": "params", **self.layout.params(), "latent": int(self.latent),
                              "beta": float(self.beta), "prior_mu": self.prior_mu.numpy().astype(np.float64),
                              "prior_sigma": np.asarray(prior_sigma, np.float64)}]
        return out

    def scores_numpy(self, x: np.ndarray) -> dict:
        return L.score_vae(self.export(), x)
