"""ALAD (Adversarially Learned Anomaly Detection) exactly as seeds/000 Table 2.

E: x → 64 → 64 → 16 (LeakyReLU 0.2, linear output); G: z → 64 → 64 → x (ReLU, linear output);
Dxz: x-branch Dense 128 + BatchNorm + LeakyReLU, z-branch Dense 128 + LeakyReLU + Dropout 0.5,
concatenated → Dense 128 + LeakyReLU + Dropout 0.5 → 1 (logit); Dxx(x, x') and Dzz(z, z'): the
concatenation → Dense 128 + LeakyReLU + Dropout 0.2 → 1 (logit). Spectral normalisation on the
discriminators' dense layers, Xavier init, zero biases, Adam(1e-5, β1 = 0.5), batch 50. An
exponential moving average (decay 0.999) of E, G and Dxx weights is kept and used for scoring.
Encoder layers are chained in order (the authors' public code wires the second encoder layer to
the input, and scores a batch into a wrong slice; neither bug is reproduced here).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from sparkad.train import keras_nets as nets
from sparkad.train.base import Detector


def _bce(logits, label: float):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits)[:, 0]


class ALAD(Detector):
    kind = "alad"
    score_names = ("l1", "l2", "features", "logits")  # the headline score first: L1 (seeds/000 Fig. 4)

    def __init__(self, n_inputs: int, config: dict, seed: int):
        super().__init__(n_inputs, config, seed)
        self.latent = latent = config.get("latent", 16)
        lr = config.get("learning_rate", 1e-5) * config.get("lr_scale", 1.0)
        sn = bool(config.get("spectral_norm", True))
        self.encoder = nets.build("encoder", n_inputs, [
            {"units": 64, "activation": "leaky_relu"}, {"units": 64, "activation": "leaky_relu"},
            {"units": latent, "activation": "linear"}], seed)
        self.generator = nets.build("generator", latent, [
            {"units": 64, "activation": "relu"}, {"units": 64, "activation": "relu"},
            {"units": n_inputs, "activation": "linear"}], seed + 10)
        self.dxz_x = nets.build("dxz_x", n_inputs, [
            {"units": 128, "activation": "leaky_relu", "batchnorm": True, "spectral_norm": sn}], seed + 20)
        self.dxz_z = nets.build("dxz_z", latent, [
            {"units": 128, "activation": "leaky_relu", "dropout": 0.5, "spectral_norm": sn}], seed + 30)
        self.dxz_out = nets.build("dxz_out", 256, [
            {"units": 128, "activation": "leaky_relu", "dropout": 0.5, "spectral_norm": sn},
            {"units": 1, "activation": "linear", "spectral_norm": sn}], seed + 40)
        self.dxx_hidden = nets.build("dxx_hidden", 2 * n_inputs, [
            {"units": 128, "activation": "leaky_relu", "dropout": 0.2, "spectral_norm": sn}], seed + 50)
        self.dxx_out = nets.build("dxx_out", 128, [{"units": 1, "activation": "linear", "spectral_norm": sn}], seed + 60)
        self.dzz = nets.build("dzz", 2 * latent, [
            {"units": 128, "activation": "leaky_relu", "dropout": 0.2, "spectral_norm": sn},
            {"units": 1, "activation": "linear", "spectral_norm": sn}], seed + 70)
        beta1 = config.get("beta_1", 0.5)
        self.opt_d = keras.optimizers.Adam(learning_rate=lr, beta_1=beta1)
        self.opt_g = keras.optimizers.Adam(learning_rate=lr, beta_1=beta1)
        self.opt_e = keras.optimizers.Adam(learning_rate=lr, beta_1=beta1)
        self.noise = tf.random.Generator.from_seed(seed)
        self.ema_decay = float(config.get("ema_decay", 0.999))
        self._ema_nets = ("encoder", "generator", "dxx_hidden", "dxx_out")
        self.ema = {name: [tf.Variable(v.numpy(), trainable=False, name=f"ema_{name}_{i}")
                           for i, v in enumerate(self._ema_sources(name))] for name in self._ema_nets}

    def _ema_sources(self, name):
        # every float variable the scorer reads: weights and batch-norm statistics (not RNG states)
        return [v for v in getattr(self, name).variables if "float" in str(v.dtype)]

    def networks(self):
        return {k: getattr(self, k) for k in ("encoder", "generator", "dxz_x", "dxz_z", "dxz_out",
                                              "dxx_hidden", "dxx_out", "dzz")}

    def extra_variables(self):
        return [self.noise.state] + [v for vs in self.ema.values() for v in vs]

    def optimizers(self):
        disc = []
        for n in ("dxz_x", "dxz_z", "dxz_out", "dxx_hidden", "dxx_out", "dzz"):
            disc += getattr(self, n).trainable_variables
        return {"discriminators": (self.opt_d, disc), "generator": (self.opt_g, self.generator.trainable_variables),
                "encoder": (self.opt_e, self.encoder.trainable_variables)}

    def _dxz(self, x, z, training):
        h = tf.concat([self.dxz_x(x, training=training), self.dxz_z(z, training=training)], axis=1)
        return self.dxz_out(h, training=training)

    def _dxx(self, x, x2, training):
        return self.dxx_out(self.dxx_hidden(tf.concat([x, x2], axis=1), training=training), training=training)

    def train_step(self, x, w, global_batch):
        z = self.noise.normal([tf.shape(x)[0], self.latent])
        groups = self.optimizers()
        mean = lambda l: self.weighted_mean(l, w, global_batch)  # noqa: E731
        with tf.GradientTape(persistent=True) as tape:
            z_gen = self.encoder(x, training=True)
            x_gen = self.generator(z, training=True)
            rec_x = self.generator(z_gen, training=True)
            rec_z = self.encoder(x_gen, training=True)
            l_enc, l_gen = self._dxz(x, z_gen, True), self._dxz(x_gen, z, True)
            x_real, x_fake = self._dxx(x, x, True), self._dxx(x, rec_x, True)
            z_real = self.dzz(tf.concat([z, z], axis=1), training=True)
            z_fake = self.dzz(tf.concat([z, rec_z], axis=1), training=True)
            loss_dxz = mean(_bce(l_enc, 1.0) + _bce(l_gen, 0.0))
            loss_dxx = mean(_bce(x_real, 1.0) + _bce(x_fake, 0.0))
            loss_dzz = mean(_bce(z_real, 1.0) + _bce(z_fake, 0.0))
            loss_d = loss_dxz + loss_dxx + loss_dzz
            cycle = mean(_bce(x_real, 0.0) + _bce(x_fake, 1.0) + _bce(z_real, 0.0) + _bce(z_fake, 1.0))
            loss_g = mean(_bce(l_gen, 1.0)) + cycle
            loss_e = mean(_bce(l_enc, 0.0)) + cycle
        for (opt, variables), loss in ((groups["discriminators"], loss_d), (groups["generator"], loss_g),
                                       (groups["encoder"], loss_e)):
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        del tape
        return {"loss_d": loss_d, "loss_g": loss_g, "loss_e": loss_e, "loss_dxx": loss_dxx}

    def after_step(self):
        d = self.ema_decay
        for name in self._ema_nets:
            for e, v in zip(self.ema[name], self._ema_sources(name)):
                e.assign(d * e + (1.0 - d) * tf.cast(v, e.dtype))

    def validation_losses(self, x):
        rec = self.generator(self.encoder(x))
        return {"l1": tf.reduce_sum(tf.abs(x - rec), axis=1)}

    def export(self):
        """Exported E, G, Dxx with the EMA weights (the live weights are left untouched)."""
        out = {}
        for name in self._ema_nets:
            net = getattr(self, name)
            live = [v.numpy() for v in self._ema_sources(name)]
            for v, e in zip(self._ema_sources(name), self.ema[name]):
                v.assign(e.numpy())
            out[name] = nets.export(net)
            for v, val in zip(self._ema_sources(name), live):
                v.assign(val)
        return out
