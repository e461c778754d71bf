"""Attack models: attribute head, decoder, discriminator, perceptual networks, Keras h5 reader."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.fast_init import fast_init

from invfeat.attacks.perceptual import threat_model_allowed
from invfeat.models.attribute_head import AttributeHead, block_widths
from invfeat.models.decoder import Decoder, upsampling_plan
from invfeat.models.discriminator import Discriminator
from invfeat.models.perceptual import (
    CAFFE_MEAN_BGR,
    KerasResNet50,
    SurrogateNet,
    make_perceptual,
    resnet50_layers,
)

KEY = jax.random.key(0, impl="rbg")  # compiles far faster than threefry on CPU

# ---- attribute head ------------------------------------------------------------------------


def test_block_widths_shrink_geometrically_to_the_class_count():
    assert block_widths(2048, 2, 1) == (2,)
    assert block_widths(2048, 2, 2) == (64,)[:1] + (2,)  # 2048 * (2/2048)**(1/2) = 64
    assert block_widths(1000, 10, 2) == (100, 10)
    with pytest.raises(ValueError, match="block_num"):
        block_widths(16, 2, 0)


def test_attribute_head_logits_per_attribute_and_dropout():
    head = AttributeHead(num_classes=(2, 4, 9), block_num=2, dropout_rate=0.5)
    features = jax.random.normal(KEY, (6, 32))
    variables = fast_init(head.init, features)
    logits = jax.jit(head.apply)(variables, features)
    assert [x.shape for x in logits] == [(6, 2), (6, 4), (6, 9)]
    train = jax.jit(
        lambda rng: head.apply(
            variables, features, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
        )[0][0]
    )
    assert not np.allclose(train(jax.random.key(1)), train(jax.random.key(2)))  # dropout is on
    assert variables["params"]["attr2_dense0"]["kernel"].shape == (32, 16)  # int(32*(9/32)**.5)


# ---- decoder -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, plan", [((64, 32), (8, 4, 3)), ((128, 64), (8, 4, 4)), ((384, 128), (12, 4, 5))]
)
def test_upsampling_plan(size, plan):
    assert upsampling_plan(*size) == plan


def test_upsampling_plan_rejects_unreachable_sizes():
    assert upsampling_plan(30, 20) == (8, 5, 2)  # decoded at 32x20, centre-cropped
    with pytest.raises(ValueError, match="36x6"):
        upsampling_plan(36, 6)  # halving 6 once leaves 3 < 4
    with pytest.raises(ValueError, match="7x5"):
        upsampling_plan(7, 5)


def test_decoder_output_shape_and_range():
    decoder = Decoder(64, 32, dense_units=16, smallest_channels=8, base_filters=4)
    features = 10.0 * jax.random.normal(KEY, (2, 24))
    variables = jax.jit(decoder.init)(KEY, features)
    apply = jax.jit(lambda v, f: decoder.apply(v, f, train=True, mutable=["batch_stats"])[0])
    images = apply(variables, features)
    assert images.shape == (2, 64, 32, 3)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert float(images.max() - images.min()) > 0.0


def test_decoder_shape_128x64_without_allocating():
    decoder = Decoder(128, 64)
    features = jax.ShapeDtypeStruct((2, 24), jnp.float32)
    variables = jax.eval_shape(decoder.init, KEY, features)
    assert variables["params"]["Dense_1"]["kernel"].shape == (256, 8 * 4 * 128)
    filters = [variables["params"][f"UpBlock_{i}"]["Conv_0"]["kernel"].shape[-1] for i in range(4)]
    assert filters == [128, 64, 32, 16]
    out = jax.eval_shape(lambda v, f: decoder.apply(v, f), variables, features)
    assert out.shape == (2, 128, 64, 3)


def test_published_size_shapes_without_allocating():
    decoder, discriminator = Decoder(384, 128), Discriminator(spectral_norm=True)
    features = jax.ShapeDtypeStruct((2, 2048), jnp.float32)
    images = jax.ShapeDtypeStruct((2, 384, 128, 3), jnp.float32)
    variables = jax.eval_shape(decoder.init, KEY, features)
    assert variables["params"]["Dense_1"]["kernel"].shape == (256, 12 * 4 * 128)
    filters = [variables["params"][f"UpBlock_{i}"]["Conv_1"]["kernel"].shape[-1] for i in range(5)]
    assert filters == [256, 128, 64, 32, 16]
    out = jax.eval_shape(lambda v, f: decoder.apply(v, f), variables, features)
    assert out.shape == (2, 384, 128, 3)
    d_variables = jax.eval_shape(discriminator.init, KEY, images, features)
    assert d_variables["params"]["DownBlock_4"]["Conv_0"]["kernel"].shape[-1] == 32 * 2**4
    logits = jax.eval_shape(
        lambda v, x, f: discriminator.apply(v, x, f), d_variables, images, features
    )
    assert logits.shape == (2,)


# ---- discriminator -------------------------------------------------------------------------


def _scale_conv_kernels(params, factor):
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x * factor if "Conv" in jax.tree_util.keystr(path) and x.ndim == 4 else x,
        params,
    )


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_discriminator_spectral_norm(spectral_norm):
    disc = Discriminator(base_filters=4, spectral_norm=spectral_norm)
    images = jax.random.uniform(KEY, (2, 32, 16, 3))
    features = jax.random.normal(KEY, (2, 8))
    variables = fast_init(disc.init, images, features)
    apply = jax.jit(lambda v: disc.apply(v, images, features))
    logits = apply(variables)
    assert logits.shape == (2,)
    # Spectral norm makes D invariant to scaling its conv kernels; without it, D changes.
    scaled = {**variables, "params": _scale_conv_kernels(variables["params"], 10.0)}
    assert np.allclose(apply(scaled), logits, rtol=1e-4, atol=1e-5) == spectral_norm
    if spectral_norm:
        stats = variables["batch_stats"]["DownBlock_0"]["SpectralNorm_0"]
        assert set(stats) == {"Conv_0/kernel/u", "Conv_0/kernel/sigma"}
        train = jax.jit(
            lambda v: disc.apply(v, images, features, train=True, mutable=["batch_stats"])[1]
        )
        u_before = stats["Conv_0/kernel/u"]
        u_after = train(variables)["batch_stats"]["DownBlock_0"]["SpectralNorm_0"][
            "Conv_0/kernel/u"
        ]
        assert not np.allclose(u_before, u_after)  # power iteration advanced in training mode
    else:
        assert "batch_stats" not in variables


@pytest.mark.parametrize("comparison, factor", [("concatenation", 2), ("absolute_difference", 1)])
def test_discriminator_comparison(comparison, factor):
    disc = Discriminator(base_filters=4, comparison=comparison)
    images = jax.ShapeDtypeStruct((2, 32, 16, 3), jnp.float32)
    features = jax.ShapeDtypeStruct((2, 8), jnp.float32)
    variables = jax.eval_shape(disc.init, KEY, images, features)
    assert variables["params"]["Dense_1"]["kernel"].shape == (factor * 4 * 2, 1)


def test_discriminator_rejects_unknown_comparison():
    with pytest.raises(ValueError, match="comparison"):
        Discriminator(comparison="dot").init(KEY, jnp.zeros((1, 16, 8, 3)), jnp.zeros((1, 4)))


# ---- perceptual networks -------------------------------------------------------------------


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


def test_white_box_is_labelled_outside_the_threat_model():
    perceptual = make_perceptual(
        "white-box", victim_features_fn=lambda v, x: x.mean((1, 2)) * v, victim_variables=2.0
    )
    assert threat_model_allowed(perceptual) is False
    assert "threat model" in perceptual.description
    (out,) = perceptual.features(perceptual.variables, jnp.ones((2, 4, 4, 3)))
    np.testing.assert_allclose(out, 2.0)


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


# ---- Keras .h5 weights ---------------------------------------------------------------------


def _keras_layers(rng, up_to_block1=True):
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


def _write_keras_h5(path, layers, full_model=False):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        root.attrs["layer_names"] = [name.encode() for name in [*layers, "conv1_pad"]]
        for name, weights in layers.items():
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{w}".encode() for w in weights]
            for w, array in weights.items():
                group.create_dataset(f"{name}/{w}", data=array)
        root.create_group("conv1_pad").attrs["weight_names"] = []


@pytest.mark.parametrize("full_model", [False, True])
def test_keras_h5_maps_by_layer_name(tmp_path, full_model):
    layers = _keras_layers(np.random.default_rng(0))
    path = tmp_path / "resnet50.h5"
    _write_keras_h5(path, layers, full_model)
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


def test_keras_conv1_forward_matches_a_numpy_reference(tmp_path):
    layers = _keras_layers(np.random.default_rng(1), up_to_block1=False)
    path = tmp_path / "conv1.h5"
    _write_keras_h5(path, layers)
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


def test_keras_h5_errors_name_the_problem(tmp_path):
    layers = _keras_layers(np.random.default_rng(0))
    del layers["conv2_block1_0_conv"]
    path = tmp_path / "partial.h5"
    _write_keras_h5(path, layers)
    with pytest.raises(KeyError, match="conv2_block1_0_conv"):
        make_perceptual("resnet50-imagenet", weights_path=path, output_layer="conv2_block1_out")
    legacy = tmp_path / "legacy.h5"
    _write_keras_h5(legacy, {"conv1": {"kernel:0": np.zeros((7, 7, 3, 64), np.float32)},
                             "bn_conv1": {"gamma:0": np.ones(64, np.float32)}})  # fmt: skip
    with pytest.raises(ValueError, match="legacy"):
        make_perceptual("resnet50-imagenet", weights_path=legacy)
    wrong = _keras_layers(np.random.default_rng(0), up_to_block1=False)
    wrong["conv1_conv"]["kernel:0"] = np.zeros((3, 3, 3, 64), np.float32)
    _write_keras_h5(tmp_path / "wrong.h5", wrong)
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
