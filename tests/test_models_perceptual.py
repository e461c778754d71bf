"""The perceptual networks (invfeat/models/perceptual.py): the surrogate's features and
activations, networks chosen by name with clear errors, Keras' ResNet-50 at full depth and its
first layers against a numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.fast_init import fast_init
from helpers.keras_files import keras_layers, write_keras_h5

from invfeat.attacks.perceptual import threat_model_allowed
from invfeat.models.perceptual import (
    CAFFE_MEAN_BGR,
    KerasResNet50,
    SurrogateNet,
    make_perceptual,
    resnet50_layers,
)

KEY = jax.random.key(0, impl="rbg")  # compiles far faster than threefry on CPU


def test_surrogate_features_and_activations():
    net = SurrogateNet(feature_dim=12, widths=(4, 8, 16))
    images = jax.random.uniform(KEY, (2, 32, 16, 3))
    variables = fast_init(net.init, images)
    features, stages = jax.jit(net.apply)(variables, images)
    assert features.shape == (2, 12)
    assert [s.shape for s in stages] == [(2, 16, 8, 4), (2, 8, 4, 8), (2, 4, 2, 16)]
    perceptual = make_perceptual("victim-surrogate", model=net, variables=variables, stages=2)
    activations = jax.eval_shape(perceptual.features, perceptual.variables, images)
    assert [a.shape for a in activations] == [s.shape for s in stages[:2]]
    assert threat_model_allowed(perceptual)


def test_unknown_perceptual_name_and_missing_weights_are_clear(tmp_path):
    with pytest.raises(ValueError, match="victim-surrogate"):
        make_perceptual("vgg16")
    missing = tmp_path / "resnet50_notop.h5"
    with pytest.raises(FileNotFoundError, match="resnet50_notop.h5"):
        make_perceptual("resnet50-imagenet", weights_path=missing)


def test_resnet50_full_depth_matches_keras_parameter_count():
    variables = jax.eval_shape(
        KerasResNet50("conv5_block3_out").init, KEY, jnp.zeros((1, 224, 224, 3))
    )
    assert sum(x.size for x in jax.tree.leaves(variables)) == 23_587_712  # Keras' notop ResNet50
    assert resnet50_layers()[-1] == "conv5_block3_out"


def test_keras_conv1_forward_matches_a_numpy_reference(tmp_path):
    layers = keras_layers(np.random.default_rng(1), up_to_block1=False)
    path = tmp_path / "conv1.h5"
    write_keras_h5(path, layers)
    perceptual = make_perceptual("resnet50-imagenet", weights_path=path, output_layer="conv1_relu")
    images = np.random.default_rng(2).random((1, 12, 8, 3), dtype=np.float32)
    (out,) = perceptual.features(perceptual.variables, images)
    # Keras "caffe" preprocessing, zero padding 3, 7x7 stride-2 valid conv, inference BN, ReLU.
    x = np.pad(
        images[..., ::-1] * 255.0 - np.float32(CAFFE_MEAN_BGR), ((0, 0), (3, 3), (3, 3), (0, 0))
    )
    w, b = layers["conv1_conv"]["kernel:0"], layers["conv1_conv"]["bias:0"]
    rows = [
        [np.einsum("hwc,hwco->o", x[0, i : i + 7, j : j + 7], w) for j in range(0, 8, 2)]
        for i in range(0, 12, 2)
    ]
    y = np.array(rows) + b
    bn = layers["conv1_bn"]
    y = (y - bn["moving_mean:0"]) / np.sqrt(bn["moving_variance:0"] + 1.001e-5) * bn[
        "gamma:0"
    ] + bn["beta:0"]
    np.testing.assert_allclose(out[0], np.maximum(y, 0), rtol=2e-4, atol=2e-2)
