"""Image layers of the exported networks (the per-jet convolutional VAE): a stride-1 'same' convolution as
an im2col gather followed by the fixed-order dense product of ``sparkad.model.dense`` (so convolutions are
the same bits on any CPU and thread count, like the dense layers), 2 × 2 average pooling and 2 × 2
nearest-neighbour up-sampling. Tensors are (events, height, width, channels) float32, Keras' layout."""
from __future__ import annotations

import numpy as np

from sparkad.model.dense import dense

#: events per im2col block: a 32 × 32 × 16 input with a 3 × 3 kernel is ~0.6 MB per event
BLOCK = 128


def conv2d_same(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Keras Conv2D(padding="same", strides=1) with an odd kernel: w (kh, kw, c_in, c_out), b (c_out,)."""
    n, h, wd, c = x.shape
    kh, kw, cin, cout = w.shape
    if cin != c or kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"conv2d: input has {c} channels, kernel {w.shape} (odd sizes, matching channels needed)")
    ph, pw = kh // 2, kw // 2
    wmat = np.ascontiguousarray(w.reshape(kh * kw * cin, cout), np.float32)
    out = np.empty((n, h, wd, cout), np.float32)
    for s in range(0, n, BLOCK):
        xb = np.pad(x[s:s + BLOCK], ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        # (m, h, w, c, kh, kw) windows -> rows of (kh, kw, c), the kernel's own order
        win = np.lib.stride_tricks.sliding_window_view(xb, (kh, kw), axis=(1, 2))
        cols = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(-1, kh * kw * cin)
        out[s:s + BLOCK] = dense(cols, wmat, b.astype(np.float32)).reshape(-1, h, wd, cout)
    return out


def avgpool2(x: np.ndarray) -> np.ndarray:
    """2 × 2 average pooling, stride 2 (even height and width): ((a + b) + (c + d)) * 0.25 in float32."""
    n, h, w, c = x.shape
    v = x.reshape(n, h // 2, 2, w // 2, 2, c)
    return ((v[:, :, 0, :, 0] + v[:, :, 0, :, 1]) + (v[:, :, 1, :, 0] + v[:, :, 1, :, 1])) * np.float32(0.25)


def upsample2(x: np.ndarray) -> np.ndarray:
    """2 × 2 nearest-neighbour up-sampling (Keras UpSampling2D(2))."""
    return np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
