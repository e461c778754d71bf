"""Keras .h5 weight files (invfeat/models/keras_h5.py), read through the perceptual network that
needs them: a `save_weights` file with the top layers loads, and a file of another network is
refused by naming its layers."""

from __future__ import annotations

import numpy as np
import pytest

from invfeat.models.keras_h5 import KerasWeightsError
from invfeat.models.perceptual import make_perceptual


def _write_h5(path, layers):
    """A Keras 2 `save_weights` file: root attrs layer_names, per layer weight_names."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layers]
        for name, weights in layers.items():
            group = f.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{w}".encode() for w in weights]
            for w, array in weights.items():
                group.create_dataset(f"{name}/{w}", data=array)
    return path


def _conv1_layers(rng):
    ones = np.ones(64, np.float32)
    return {
        "conv1_conv": {
            "kernel:0": rng.normal(0, 0.1, (7, 7, 3, 64)).astype(np.float32),
            "bias:0": np.zeros(64, np.float32),
        },
        "conv1_bn": {
            "gamma:0": ones,
            "beta:0": 0 * ones,
            "moving_mean:0": 0 * ones,
            "moving_variance:0": ones,
        },
    }


def test_keras_top_file_loads_and_another_network_is_refused_by_its_layers(tmp_path):
    rng = np.random.default_rng(0)
    top = _conv1_layers(rng) | {
        "avg_pool": {},
        "predictions": {"kernel:0": np.zeros((2048, 1000), np.float32)},  # include_top=True
    }
    path = _write_h5(tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5", top)
    perceptual = make_perceptual("resnet50-imagenet", weights_path=path, output_layer="conv1_relu")
    np.testing.assert_array_equal(
        perceptual.variables["params"]["conv1_conv"]["kernel"], top["conv1_conv"]["kernel:0"]
    )
    vgg = {f"block1_conv{i}": {"kernel:0": np.zeros((3, 3, 3, 64), np.float32)} for i in (1, 2)}
    path = _write_h5(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", vgg)
    expected = (
        r"vgg16.*: 2 of the 2 layers .* \(conv1_bn, conv1_conv\); "
        r"the file has the layers block1_conv1, block1_conv2: weights of another network\?"
    )
    with pytest.raises(ValueError, match=expected) as error:
        make_perceptual("resnet50-imagenet", weights_path=path, output_layer="conv1_relu")
    assert isinstance(error.value, KerasWeightsError) and isinstance(error.value, KeyError)
    assert not str(error.value).startswith("'")
