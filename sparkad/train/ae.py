"""Plain autoencoder with MSE loss: the baseline of seeds/001 appendix A (VAE layout, 4-d latent)."""
from __future__ import annotations

import keras
import tensorflow as tf

from sparkad.train import keras_nets as nets
from sparkad.train.base import Detector


class AutoEncoder(Detector):
    kind = "ae"
    score_names = ("mse",)

    def __init__(self, n_inputs: int, config: dict, seed: int):
        super().__init__(n_inputs, config, seed)
        hidden, latent = config.get("hidden", [50, 50]), config.get("latent", 4)
        enc = [{"units": u, "activation": "relu"} for u in hidden] + [{"units": latent, "activation": "linear"}]
        dec = [{"units": u, "activation": "relu"} for u in reversed(hidden)] + [{"units": n_inputs, "activation": "linear"}]
        self.encoder = nets.build("encoder", n_inputs, enc, seed)
        self.decoder = nets.build("decoder", latent, dec, seed + 1000)
        self.opt = keras.optimizers.Adam(learning_rate=config.get("learning_rate", 1e-3))

    def networks(self):
        return {"encoder": self.encoder, "decoder": self.decoder}

    def optimizers(self):
        return {"ae": (self.opt, self.encoder.trainable_variables + self.decoder.trainable_variables)}

    def per_event_loss(self, x, training=False):
        rec = self.decoder(self.encoder(x, training=training), training=training)
        return tf.reduce_mean(tf.square(x - rec), axis=1)

    def train_step(self, x, w, global_batch):
        variables = self.optimizers()["ae"][1]
        with tf.GradientTape() as tape:
            loss = self.weighted_mean(self.per_event_loss(x, training=True), w, global_batch)
        self.opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss}

    def validation_losses(self, x):
        return {"loss": self.per_event_loss(x)}

    def export(self):
        return {"encoder": nets.export(self.encoder), "decoder": nets.export(self.decoder)}
