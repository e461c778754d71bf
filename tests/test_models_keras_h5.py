"""Keras .h5 weight files (invfeat/models/keras_h5.py), read through the perceptual network that
needs them: weights map by Keras layer name (from a `save_weights` file or a full-model save), a
file with the top layers loads, and a missing layer, a legacy or misfitting file, a file of another
network and an unreadable file are each refused by naming the problem."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.keras_files import keras_layers, write_keras_h5

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


@pytest.mark.parametrize("full_model", [False, True])
def test_keras_h5_maps_by_layer_name(tmp_path, full_model):
    layers = keras_layers(np.random.default_rng(0))
    path = tmp_path / "resnet50.h5"
    write_keras_h5(path, layers, full_model)
    perceptual = make_perceptual(
        "resnet50-imagenet", weights_path=path, output_layer="conv2_block1_out"
    )
    params, stats = perceptual.variables["params"], perceptual.variables["batch_stats"]
    np.testing.assert_array_equal(
        params["conv2_block1_2_conv"]["kernel"], layers["conv2_block1_2_conv"]["kernel:0"]
    )
    np.testing.assert_array_equal(
        params["conv2_block1_0_bn"]["scale"], layers["conv2_block1_0_bn"]["gamma:0"]
    )
    np.testing.assert_array_equal(params["conv1_bn"]["bias"], layers["conv1_bn"]["beta:0"])
    np.testing.assert_array_equal(stats["conv1_bn"]["var"], layers["conv1_bn"]["moving_variance:0"])
    if not full_model:
        (out,) = jax.jit(perceptual.features)(perceptual.variables, jnp.full((1, 32, 16, 3), 0.5))
        assert out.shape == (1, 8, 4, 256) and np.isfinite(out).all()


def test_keras_h5_errors_name_the_problem(tmp_path):
    layers = keras_layers(np.random.default_rng(0))
    del layers["conv2_block1_0_conv"]
    path = tmp_path / "partial.h5"
    write_keras_h5(path, layers)
    with pytest.raises(KeyError, match="conv2_block1_0_conv"):
        make_perceptual("resnet50-imagenet", weights_path=path, output_layer="conv2_block1_out")
    legacy = tmp_path / "legacy.h5"
    write_keras_h5(legacy, {"conv1": {"kernel:0": np.zeros((7, 7, 3, 64), np.float32)},
                            "bn_conv1": {"gamma:0": np.ones(64, np.float32)}})  # fmt: skip
    with pytest.raises(ValueError, match="legacy"):
        make_perceptual("resnet50-imagenet", weights_path=legacy)
    wrong = keras_layers(np.random.default_rng(0), up_to_block1=False)
    wrong["conv1_conv"]["kernel:0"] = np.zeros((3, 3, 3, 64), np.float32)
    write_keras_h5(tmp_path / "wrong.h5", wrong)
    with pytest.raises(ValueError, match=r"conv1_conv.*\(3, 3, 3, 64\)"):
        make_perceptual(
            "resnet50-imagenet", weights_path=tmp_path / "wrong.h5", output_layer="conv1_relu"
        )


def test_unreadable_keras_file_is_named(tmp_path):
    pytest.importorskip("h5py")
    path = tmp_path / "resnet50_notop.h5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(OSError, match="resnet50_notop.h5: not a readable HDF5 file"):
        make_perceptual("resnet50-imagenet", weights_path=path)
