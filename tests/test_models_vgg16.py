"""The vgg16-imagenet perceptual network (invfeat/models/perceptual.py): Keras' VGG16 up to
block2_pool (the published scripts' alternative to ResNet-50) read from a fake Keras .h5 file,
its first layer against a numpy reference, clear refusals, and a study asking for its weights
before it starts."""

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.keras_files import vgg16_keras_layers, write_keras_h5

from experiments.configs import get_study
from experiments.study import with_paths
from invfeat.attacks.configs import gan_config
from invfeat.attacks.perceptual import resolve_perceptual, threat_model_allowed
from invfeat.models.keras_h5 import KerasWeightsError
from invfeat.models.perceptual import CAFFE_MEAN_BGR, KerasVGG16, make_perceptual, vgg16_layers
from invfeat.study.run import StudyInputsError, run_study

VGG_WEIGHTLESS = ("input_1", "block1_pool", "block2_pool")


def _vgg16_file(tmp_path, blocks=2, name="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"):
    layers = vgg16_keras_layers(np.random.default_rng(1), blocks)
    path = tmp_path / name
    write_keras_h5(path, layers, weightless=VGG_WEIGHTLESS)
    return path, layers


def test_vgg16_at_block2_pool_has_a_quarter_of_the_size_and_128_channels(tmp_path):
    path, _ = _vgg16_file(tmp_path)
    perceptual = make_perceptual("vgg16-imagenet", weights_path=path)
    assert perceptual.name == "vgg16-imagenet" and threat_model_allowed(perceptual)
    assert "block2_pool" in perceptual.description
    images = np.random.default_rng(2).random((2, 16, 8, 3), dtype=np.float32)
    (out,) = jax.jit(perceptual.features)(perceptual.variables, images)
    assert out.shape == (2, 4, 2, 128)
    # block2_pool is the 2x2 max of block2_conv2
    conv = make_perceptual("vgg16-imagenet", weights_path=path, output_layer="block2_conv2")
    (before,) = conv.features(conv.variables, images)
    pooled = np.asarray(before).reshape(2, 4, 2, 2, 2, 128).max(axis=(2, 4))
    np.testing.assert_allclose(out, pooled, rtol=1e-5, atol=1e-4)


def test_vgg16_block1_conv1_matches_a_numpy_reference(tmp_path):
    path, layers = _vgg16_file(tmp_path, blocks=1)
    perceptual = make_perceptual("vgg16-imagenet", weights_path=path, output_layer="block1_conv1")
    images = np.random.default_rng(3).random((1, 6, 5, 3), dtype=np.float32)
    (out,) = perceptual.features(perceptual.variables, images)
    # Keras' vgg16 preprocess_input ("caffe": x 255, RGB -> BGR, minus the BGR mean), zero
    # padding 1 ("same"), 3x3 stride-1 conv with bias, ReLU.
    x = np.pad(
        images[..., ::-1] * 255.0 - np.float32(CAFFE_MEAN_BGR), ((0, 0), (1, 1), (1, 1), (0, 0))
    )
    w, b = layers["block1_conv1"]["kernel:0"], layers["block1_conv1"]["bias:0"]
    y = np.array(
        [
            [np.einsum("hwc,hwco->o", x[0, i : i + 3, j : j + 3], w) for j in range(5)]
            for i in range(6)
        ]
    )
    assert out.shape == (1, 6, 5, 64)
    np.testing.assert_allclose(out[0], np.maximum(y + b, 0), rtol=2e-4, atol=2e-2)


def test_vgg16_full_depth_matches_keras_parameter_count():
    variables = jax.eval_shape(
        KerasVGG16("block5_pool").init, jax.random.key(0), jnp.zeros((1, 64, 64, 3))
    )
    assert sum(x.size for x in jax.tree.leaves(variables)) == 14_714_688  # Keras' notop VGG16
    assert vgg16_layers()[:6] == (
        *("block1_conv1", "block1_conv2", "block1_pool"),
        *("block2_conv1", "block2_conv2", "block2_pool"),
    )


def test_missing_file_layer_or_weights_are_refused_clearly(tmp_path):
    missing = tmp_path / "my_vgg16.h5"
    with pytest.raises(FileNotFoundError, match="my_vgg16.h5.*vgg16_weights_tf_dim_ordering"):
        make_perceptual("vgg16-imagenet", weights_path=missing)
    block1_only, _ = _vgg16_file(tmp_path, blocks=1, name="block1.h5")
    with pytest.raises(KerasWeightsError, match=r"block1.h5: 2 of the 4 layers .*block2_conv1"):
        make_perceptual("vgg16-imagenet", weights_path=block1_only)
    with pytest.raises(ValueError, match="unknown VGG16 layer 'conv2_block3_out'.*block2_pool"):
        make_perceptual("vgg16-imagenet", weights_path=block1_only, output_layer="conv2_block3_out")
    config = gan_config(perceptual="vgg16-imagenet", perceptual_layer="block2_pool")
    with pytest.raises(ValueError, match="perceptual_weights.*vgg16_weights_tf_dim_ordering"):
        resolve_perceptual(config, None, lambda: None)
    path, _ = _vgg16_file(tmp_path)
    given = dataclasses.replace(config, perceptual_weights=str(path))
    network, surrogate = resolve_perceptual(given, None, lambda: None)
    assert network.name == "vgg16-imagenet" and surrogate is None


def _vgg16_study(tmp_path, weights):
    features = tmp_path / "features"
    features.mkdir()
    for split in ("train", "query", "gallery"):
        (features / f"{split}.npz").write_bytes(b"")
    args = argparse.Namespace(
        victim_features=features, victim_weights=None, perceptual_weights=None
    )
    config = with_paths(get_study("paper-market-bot"), args)
    gan = dataclasses.replace(
        config.gan,
        perceptual="vgg16-imagenet",
        perceptual_layer="block2_pool",
        perceptual_weights=weights,
    )
    return dataclasses.replace(config, gan=gan)


def test_a_study_needing_vgg16_weights_asks_for_them_before_it_starts(tmp_path):
    with pytest.raises(StudyInputsError, match="vgg16-imagenet perceptual network needs its Keras"):
        run_study(_vgg16_study(tmp_path, None), tmp_path / "run", data_dir=tmp_path / "data")
    assert not (tmp_path / "run").exists()


def test_a_study_with_vgg16_weights_lacking_a_layer_is_refused_before_it_starts(tmp_path):
    block1_only, _ = _vgg16_file(tmp_path, blocks=1, name="block1.h5")
    config = _vgg16_study(tmp_path, str(block1_only))
    with pytest.raises(KerasWeightsError, match="block1.h5"):
        run_study(config, tmp_path / "run", data_dir=tmp_path / "data")
    assert not (tmp_path / "run").exists()


def test_each_keras_network_defaults_to_its_published_layer():
    from invfeat.attacks.configs import gan_config

    assert gan_config(perceptual="vgg16-imagenet").perceptual_layer == "block2_pool"
    assert gan_config(perceptual="resnet50-imagenet").perceptual_layer == "conv2_block3_out"
    chosen = gan_config(perceptual="vgg16-imagenet", perceptual_layer="block1_pool")
    assert chosen.perceptual_layer == "block1_pool"
