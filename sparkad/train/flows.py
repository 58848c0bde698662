"""A conditional masked autoregressive flow (MAF; Papamakarios et al. 2017) in TensorFlow, for the density
estimation of ANODE / CATHODE (seeds/003): p(x | m) of the features x given the conditioning m (mjj).

Each block is a MADE (masked dense ReLU layers; the conditioning reaches every hidden unit, unmasked) giving,
for every dimension d, a shift μ_d and a log-scale α_d that depend only on x_{<d} (in the block's order) and
m: u_d = (x_d − μ_d) exp(−α_d), log|det| = −Σ α_d (α bounded by a tanh to ±`ALPHA_MAX`). Blocks alternate the
dimension order (reversed), the base density is N(0, 1). `log_prob` is the density direction (training,
ANODE's likelihoods); `sample` inverts the blocks dimension by dimension (D passes per block). Written with
TensorFlow directly (TensorFlow Probability is not a dependency); training only — nothing here is scored by
the executors (CATHODE's anomaly score is a classifier, exported like the others).
"""
from __future__ import annotations

import math

import numpy as np

ALPHA_MAX = 5.0


def made_masks(dim: int, hidden: list[int], rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Masks of a MADE with inputs of degree 1..dim: (hidden masks [in, out] per layer, output mask [last, dim]);
    a hidden unit of degree k sees inputs of degree ≤ k, output d sees hidden units of degree < d."""
    deg_in = np.arange(1, dim + 1)
    degs = [deg_in]
    for h in hidden:
        lo = min(int(degs[-1].min()), dim - 1) if dim > 1 else 1
        degs.append(rng.integers(lo, max(dim, 2), size=h) if dim > 1 else np.ones(h, int))
    masks = [(degs[i + 1][None, :] >= degs[i][:, None]).astype(np.float32) for i in range(len(hidden))]
    out = (deg_in[None, :] > degs[-1][:, None]).astype(np.float32)
    return masks, out


class ConditionalMAF:
    """`blocks` MADEs of `hidden` units over `dim` features conditioned on `n_cond` numbers."""

    def __init__(self, dim: int, n_cond: int = 1, hidden=(64, 64), blocks: int = 5, seed: int = 0):
        import tensorflow as tf

        self.dim, self.n_cond, self.blocks = dim, n_cond, blocks
        rng = np.random.default_rng(seed)
        init = tf.keras.initializers.GlorotUniform(seed=seed)
        self.layers = []
        for b in range(blocks):
            masks, out_mask = made_masks(dim, list(hidden), rng)
            ws, bs, cs = [], [], []
            n_in = dim
            for i, (h, m) in enumerate(zip(hidden, masks)):
                ws.append(tf.Variable(init((n_in, h)), name=f"b{b}_w{i}"))
                bs.append(tf.Variable(tf.zeros(h), name=f"b{b}_b{i}"))
                cs.append(tf.Variable(init((n_cond, h)), name=f"b{b}_c{i}"))
                n_in = h
            w_out = tf.Variable(init((n_in, 2 * dim)) * 0.01, name=f"b{b}_wo")
            b_out = tf.Variable(tf.zeros(2 * dim), name=f"b{b}_bo")
            c_out = tf.Variable(tf.zeros((n_cond, 2 * dim)), name=f"b{b}_co")
            self.layers.append({"masks": [tf.constant(m) for m in masks], "out_mask": tf.constant(np.tile(out_mask, 2)),
                                "w": ws, "b": bs, "c": cs, "wo": w_out, "bo": b_out, "co": c_out})

    @property
    def variables(self):
        return [v for L in self.layers for v in (*L["w"], *L["b"], *L["c"], L["wo"], L["bo"], L["co"])]

    def _made(self, L, x, c):
        import tensorflow as tf

        h = x
        for m, w, b, wc in zip(L["masks"], L["w"], L["b"], L["c"]):
            h = tf.nn.relu(h @ (w * m) + b + c @ wc)
        o = h @ (L["wo"] * L["out_mask"]) + L["bo"] + c @ L["co"]
        mu, a = o[:, : self.dim], o[:, self.dim:]
        return mu, ALPHA_MAX * tf.tanh(a / ALPHA_MAX)

    def log_prob(self, x, c):
        """log p(x | c) per event (float32 tensors in, a tensor out)."""
        import tensorflow as tf

        logdet = tf.zeros(tf.shape(x)[0])
        u = x
        for b, L in enumerate(self.layers):
            if b % 2:
                u = u[:, ::-1]
            mu, a = self._made(L, u, c)
            u = (u - mu) * tf.exp(-a)
            logdet -= tf.reduce_sum(a, axis=1)
            if b % 2:
                u = u[:, ::-1]
        return -0.5 * tf.reduce_sum(u * u, axis=1) - 0.5 * self.dim * math.log(2 * math.pi) + logdet

    def sample(self, c, seed: int = 0) -> np.ndarray:
        """Events x ~ p(x | c) for each row of the conditioning c (numpy in and out)."""
        import tensorflow as tf

        c = tf.constant(np.asarray(c, np.float32).reshape(-1, self.n_cond))
        u = tf.constant(np.random.default_rng(seed).standard_normal((c.shape[0], self.dim)).astype(np.float32))
        for b in reversed(range(self.blocks)):
            L = self.layers[b]
            z = u[:, ::-1] if b % 2 else u
            x = tf.zeros_like(z)
            for d in range(self.dim):  # x_d needs x_<d: one pass per dimension
                mu, a = self._made(L, x, c)
                xd = z[:, d] * tf.exp(a[:, d]) + mu[:, d]
                x = tf.concat([x[:, :d], xd[:, None], x[:, d + 1:]], axis=1)
            u = x[:, ::-1] if b % 2 else x
        return u.numpy()


def fit_flow(x: np.ndarray, c: np.ndarray, *, hidden=(64, 64), blocks: int = 5, epochs: int = 100,
             batch_size: int = 256, learning_rate: float = 1e-3, patience: int = 10, validation_fraction: float = 0.2,
             seed: int = 0) -> tuple[ConditionalMAF, dict]:
    """Maximum likelihood on (x, c) with early stopping on a held-out fraction (the best epoch's weights kept)."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    rng = np.random.default_rng(seed)
    x, c = np.asarray(x, np.float32), np.asarray(c, np.float32).reshape(len(x), -1)
    order = rng.permutation(len(x))
    n_val = max(1, int(round(validation_fraction * len(x))))
    val, trn = order[:n_val], order[n_val:]
    flow = ConditionalMAF(x.shape[1], c.shape[1], hidden, blocks, seed)
    opt = tf.keras.optimizers.Adam(learning_rate)
    params = flow.variables

    @tf.function
    def step(xb, cb):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.log_prob(xb, cb))
        opt.apply_gradients(zip(tape.gradient(loss, params), params))
        return loss

    xv, cv = tf.constant(x[val]), tf.constant(c[val])
    best, best_vals, wait, history = np.inf, None, 0, []
    for epoch in range(epochs):
        perm = rng.permutation(trn)
        tot = [float(step(tf.constant(x[perm[s:s + batch_size]]), tf.constant(c[perm[s:s + batch_size]])))
               for s in range(0, len(perm), batch_size)]
        v = float(-tf.reduce_mean(flow.log_prob(xv, cv)))
        history.append({"epoch": epoch + 1, "train_nll": float(np.mean(tot)), "val_nll": v})
        if v < best - 1e-5:
            best, best_vals, wait = v, [p.numpy() for p in params], 0
        else:
            wait += 1
            if wait >= patience:
                break
    if best_vals is not None:
        for p, val_ in zip(params, best_vals):
            p.assign(val_)
    return flow, {"epochs": len(history), "best_val_nll": best, "per_epoch": history}
