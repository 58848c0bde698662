"""Anomaly-detection models: Keras 3 definitions for training (ae, alad, vae) and numpy scorers."""
from __future__ import annotations

from sparkad.core.errors import ConfigError

MODELS = ("ae", "alad", "vae")


def make_model(kind: str, n_inputs: int, config: dict, seed: int):
    """Instantiate a trainable model (imports TensorFlow)."""
    if kind == "ae":
        from sparkad.train.ae import AutoEncoder
        return AutoEncoder(n_inputs, config, seed)
    if kind == "alad":
        from sparkad.train.alad import ALAD
        return ALAD(n_inputs, config, seed)
    if kind == "vae":
        from sparkad.train.vae import VAE
        return VAE(n_inputs, config, seed)
    raise ConfigError(f"unknown model {kind!r} (models: {', '.join(MODELS)})")
