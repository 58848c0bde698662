"""The Keras 3 side of the dense networks of sparkad.model.networks: building them for training and
exporting their inference-time layers to the numpy form that scoring runs."""
from __future__ import annotations

import numpy as np

from sparkad.model.networks import LEAKY_SLOPE


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


def export_sequential(model) -> list[dict]:
    """A keras.Sequential of Dense / Conv2D (with their activations), pooling, up-sampling, Flatten and
    Reshape layers as the numpy ops of sparkad.model.networks (the jet VAE, the CWoLa classifier)."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            op = "conv2d" if isinstance(layer, keras.layers.Conv2D) else "dense"
            out.append({"op": op, "w": np.asarray(layer.kernel.numpy(), np.float32),
                        "b": np.asarray(layer.bias.numpy(), np.float32)})
            act = layer.activation.__name__
            if act != "linear":
                out.append({"op": act})
        elif isinstance(layer, keras.layers.AveragePooling2D):
            out.append({"op": "avgpool2"})
        elif isinstance(layer, keras.layers.UpSampling2D):
            out.append({"op": "upsample2"})
        elif isinstance(layer, keras.layers.Flatten):
            out.append({"op": "reshape", "shape": [-1]})
        elif isinstance(layer, keras.layers.Reshape):
            out.append({"op": "reshape", "shape": [int(s) for s in layer.target_shape]})
        else:
            raise TypeError(f"cannot export layer {layer.name} ({type(layer).__name__})")
    return out
