"""Dense networks described as data, built in Keras 3 for training and exported to plain numpy
for scoring. The exported form needs neither TensorFlow nor training code, loads in milliseconds
and runs anywhere (Spark executors, Dask workers): one matrix product per layer, in the fixed
summation order of ``sparkad.models.dense``."""
from __future__ import annotations

import numpy as np

from .dense import dense

#: a network is a list of layer specs: {"units", "activation", "batchnorm", "dropout", "spectral_norm"}
ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid")
LEAKY_SLOPE = 0.2


def build(name: str, input_dim: int, layers: list[dict], seed: int):
    """A keras.Sequential: Dense (optionally spectrally normalised) → BatchNorm → activation → Dropout."""
    import keras

    model = keras.Sequential(name=name)
    model.add(keras.Input(shape=(input_dim,)))
    for i, spec in enumerate(layers):
        dense = keras.layers.Dense(spec["units"], kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i),
                                   bias_initializer="zeros", name=f"{name}_dense{i}")
        if spec.get("spectral_norm"):
            dense = keras.layers.SpectralNormalization(dense, name=f"{name}_sn{i}")
        model.add(dense)
        if spec.get("batchnorm"):
            model.add(keras.layers.BatchNormalization(name=f"{name}_bn{i}"))
        act = spec.get("activation", "linear")
        if act == "leaky_relu":
            model.add(keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_act{i}"))
        elif act in ("relu", "sigmoid"):
            model.add(keras.layers.Activation(act, name=f"{name}_act{i}"))
        if spec.get("dropout"):
            model.add(keras.layers.Dropout(spec["dropout"], seed=seed + 100 + i, name=f"{name}_drop{i}"))
    # Keras draws the spectral-norm power-iteration vector without a seed: make it reproducible
    rng = np.random.default_rng(seed + 7919)
    for layer in model.layers:
        if isinstance(layer, keras.layers.SpectralNormalization):
            u = layer.vector_u
            u.assign(np.clip(rng.normal(0.0, 0.02, size=tuple(u.shape)), -0.04, 0.04).astype(np.float32))
    return model


def export(model) -> list[dict]:
    """Inference-time layers of a network built by ``build`` as numpy arrays (dropout dropped)."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.SpectralNormalization):
            layer = layer.layer  # its kernel variable holds the normalised weights
        if isinstance(layer, keras.layers.Dense):
            out.append({"op": "dense", "w": np.asarray(layer.kernel.numpy(), np.float32),
                        "b": np.asarray(layer.bias.numpy(), np.float32)})
        elif isinstance(layer, keras.layers.BatchNormalization):
            scale = layer.gamma.numpy() / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
            shift = layer.beta.numpy() - layer.moving_mean.numpy() * scale
            out.append({"op": "affine", "scale": scale.astype(np.float32), "shift": shift.astype(np.float32)})
        elif isinstance(layer, keras.layers.LeakyReLU):
            out.append({"op": "leaky_relu", "slope": float(layer.negative_slope)})
        elif isinstance(layer, keras.layers.Activation):
            out.append({"op": layer.activation.__name__})
        elif isinstance(layer, keras.layers.Dropout):
            continue
        else:
            raise TypeError(f"cannot export layer {layer.name} ({type(layer).__name__})")
    return out


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
            # float64 exp: numpy's float32 exp rounds differently per SIMD level, its float64 one does not
            h = (1.0 / (1.0 + np.exp(-h.astype(np.float64)))).astype(np.float32)
            own = True
        elif kind == "linear":
            pass
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
