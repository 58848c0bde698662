"""Dense networks described as data, exported from Keras (sparkad.train.keras_nets) to plain numpy
for scoring. The exported form needs neither TensorFlow nor training code, loads in milliseconds
and runs anywhere (Spark executors, Dask workers): one matrix product per layer, in the fixed
summation order of ``sparkad.model.dense``."""
from __future__ import annotations

import numpy as np

from sparkad.model import libm
from sparkad.model.conv import avgpool2, conv2d_same, upsample2
from sparkad.model.dense import dense

#: a network is a list of layer specs: {"units", "activation", "batchnorm", "dropout", "spectral_norm"};
#: exported, a list of ops: dense, affine, activations, and for images conv2d, avgpool2, upsample2, reshape
ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid")
LEAKY_SLOPE = 0.2


def fold(layers: list[dict]) -> list[dict]:
    """The same network with each batch-norm affine folded into the dense layer before it
    (w·scale, b·scale + shift): one pass over the activations less per layer when scoring."""
    out: list[dict] = []
    for op in layers:
        if op["op"] == "affine" and out and out[-1]["op"] == "dense":
            d = out[-1]
            out[-1] = {"op": "dense", "w": (d["w"] * op["scale"]).astype(np.float32),
                       "b": (d["b"] * op["scale"] + op["shift"]).astype(np.float32)}
        else:
            out.append(op)
    return out


def forward(layers: list[dict], x: np.ndarray) -> np.ndarray:
    """Apply exported layers to a float32 batch (in place where the intermediate is ours). Dense layers
    multiply in one fixed order (``dense``): the output is the same bits on any CPU, at any BLAS thread
    count and whatever batch the rows arrive in."""
    h = np.asarray(x, np.float32)
    own = False
    for op in layers:
        kind = op["op"]
        if kind == "dense":
            h = dense(h, op["w"], op["b"])
            own = True
        elif kind == "affine":
            h = h * op["scale"] if not own else np.multiply(h, op["scale"], out=h)
            h += op["shift"]
            own = True
        elif kind == "leaky_relu":
            slope = np.float32(op["slope"])
            h = np.maximum(h, h * slope) if 0 <= slope <= 1 else np.where(h > 0, h, h * slope)
            own = True
        elif kind == "relu":
            h = np.maximum(h, 0, out=h) if own else np.maximum(h, 0)
            own = True
        elif kind == "sigmoid":
            # the C library's float64 exp: numpy's float32 and (on AVX-512 CPUs) float64 exp round
            # differently per SIMD level
            h = (1.0 / (1.0 + libm.exp(-h.astype(np.float64)))).astype(np.float32)
            own = True
        elif kind == "linear":
            pass
        elif kind == "conv2d":
            h = conv2d_same(h, op["w"], op["b"])
            own = True
        elif kind == "avgpool2":
            h = avgpool2(h)
            own = True
        elif kind == "upsample2":
            h = upsample2(h)
            own = True
        elif kind == "reshape":  # to (events, *shape); Keras Flatten is shape [-1]
            h = h.reshape((h.shape[0], *op["shape"]))
        else:
            raise ValueError(f"unknown exported op {kind!r}")
    return h


def pack(nets: dict[str, list[dict]]) -> tuple[dict, dict[str, np.ndarray]]:
    """Split exported networks into a JSON-able structure and a flat dict of arrays (for npz)."""
    spec, arrays = {}, {}
    for name, layers in nets.items():
        spec[name] = []
        for i, op in enumerate(layers):
            entry = {}
            for k, v in op.items():
                if isinstance(v, np.ndarray):
                    key = f"{name}/{i}/{k}"
                    arrays[key] = v
                    entry[k] = {"array": key}
                else:
                    entry[k] = v
            spec[name].append(entry)
    return spec, arrays


def unpack(spec: dict, arrays) -> dict[str, list[dict]]:
    return {name: [{k: (arrays[v["array"]] if isinstance(v, dict) else v) for k, v in op.items()} for op in layers]
            for name, layers in spec.items()}
