"""Keras .h5 weight files for tests: the Keras-named weights of the first ResNet-50 or VGG16
layers, and the file Keras' `save_weights` (or a full-model save) would write with them."""

import numpy as np
import pytest


def keras_layers(rng, up_to_block1=True):
    """Keras-named weights of conv1 and conv2_block1, Keras shapes, random values."""
    conv = lambda k, cin, cout: {"kernel:0": rng.normal(size=(k, k, cin, cout)).astype(np.float32) * 0.1,
                                 "bias:0": rng.normal(size=cout).astype(np.float32)}  # fmt: skip
    bn = lambda c: {
        "gamma:0": rng.uniform(0.5, 1.5, c).astype(np.float32),
        "beta:0": rng.normal(size=c).astype(np.float32),
        "moving_mean:0": rng.normal(size=c).astype(np.float32),
        "moving_variance:0": rng.uniform(0.5, 2.0, c).astype(np.float32),
    }
    layers = {"conv1_conv": conv(7, 3, 64), "conv1_bn": bn(64)}
    if up_to_block1:
        for i, (k, cin, cout) in enumerate([(1, 64, 256), (1, 64, 64), (3, 64, 64), (1, 64, 256)]):
            layers[f"conv2_block1_{i}_conv"] = conv(k, cin, cout)
            layers[f"conv2_block1_{i}_bn"] = bn(cout)
    layers["probs"] = conv(1, 2, 2)  # a layer the truncated network does not use
    return layers


def vgg16_keras_layers(rng, blocks=2):
    """Keras-named weights of the convolutions of VGG16's first `blocks` blocks (1 or 2), Keras
    shapes, random values."""
    shapes = {"block1_conv1": (3, 64), "block1_conv2": (64, 64)}
    shapes |= {"block2_conv1": (64, 128), "block2_conv2": (128, 128)} if blocks == 2 else {}
    return {
        name: {
            "kernel:0": rng.normal(size=(3, 3, cin, cout)).astype(np.float32) * 0.05,
            "bias:0": rng.normal(size=cout).astype(np.float32),
        }
        for name, (cin, cout) in shapes.items()
    }


def write_keras_h5(path, layers, full_model=False, weightless=("conv1_pad",)):
    """`layers` as Keras writes them (plus the `weightless` layers, e.g. ResNet-50's conv1_pad or
    VGG16's block1_pool); under model_weights/ as in a full-model save. Skips the test where h5py
    is not installed."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        root.attrs["layer_names"] = [name.encode() for name in [*layers, *weightless]]
        for name, weights in layers.items():
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{w}".encode() for w in weights]
            for w, array in weights.items():
                group.create_dataset(f"{name}/{w}", data=array)
        for name in weightless:
            root.create_group(name).attrs["weight_names"] = []
