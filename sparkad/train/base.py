"""What every trainable model provides to the one training loop (sparkad.train.loop)."""
from __future__ import annotations

import numpy as np


class Detector:
    """A trainable anomaly detector.

    Subclasses build their Keras networks in ``__init__`` and implement ``train_step`` (one
    optimisation step on a replica's batch; runs inside ``strategy.run`` and ``tf.function``) and
    ``export`` (numpy networks for ``sparkad.model.scores``). Optional: ``after_step`` (e.g.
    EMA updates), ``ema_variables``.
    """

    kind = ""
    score_names: tuple = ()

    def __init__(self, n_inputs: int, config: dict, seed: int):
        self.n_inputs = n_inputs
        self.config = config
        self.seed = seed

    # -- training -------------------------------------------------------------------------
    def optimizers(self) -> dict:
        """name → (keras optimizer, list of variables it updates)."""
        raise NotImplementedError

    def train_step(self, x, w, global_batch: int) -> dict:
        raise NotImplementedError

    def after_step(self):
        """Called (inside the distributed step) after the gradients were applied."""
        return None

    def state_variables(self) -> list:
        """Every variable whose value a checkpoint must hold (weights, BN statistics, RNG states, EMA)."""
        out, seen = [], set()
        for net in self.networks().values():
            for v in net.variables:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        for v in self.extra_variables():
            out.append(v)
        return out

    def networks(self) -> dict:
        raise NotImplementedError

    def extra_variables(self) -> list:
        return []

    def export(self) -> dict:
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def weighted_mean(per_event, w, global_batch: int):
        import tensorflow as tf
        return tf.nn.compute_average_loss(per_event * w, global_batch_size=global_batch)

    def scores_numpy(self, x: np.ndarray) -> dict:
        from sparkad.model.scores import SCORERS
        return SCORERS[self.kind](self.export(), x)
