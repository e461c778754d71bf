"""The victim re-ID model (invfeat/models/reid.py, resnet.py): shapes, dtypes, BNNeck, GeM, last
stride, a few training steps; integer pixels refused, inference by default."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from invfeat import losses
from invfeat.models.perceptual import SurrogateNet
from invfeat.models.reid import (
    CONFIGS,
    GeM,
    ReIDModel,
    get_config,
    init_variables,
    make_features_fn,
)
from invfeat.models.resnet import ResNet, resnet, stem_max_pool

TINY = get_config("cpu-tiny")


@pytest.fixture(scope="module")
def tiny():
    model = TINY.build(num_classes=4)
    # rbg keys: the threefry init of ~30 tensors takes ~20 s to compile on a busy CPU.
    variables = init_variables(model, jax.random.key(0, impl="rbg"), TINY.image_size)
    images = jax.random.uniform(jax.random.key(1), (8, *TINY.image_size, 3))
    return model, variables, images


def test_outputs_shapes_and_float32_params(tiny):
    model, variables, images = tiny
    out = model.apply(variables, images, train=False)
    assert out["features"].shape == (8, TINY.feature_dim) == (8, 64)
    assert out["global"].shape == (8, 64) and out["logits"].shape == (8, 4)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    assert "bias" not in variables["params"]["classifier"]
    feats = make_features_fn(model)(variables, images)
    np.testing.assert_array_equal(feats, out["features"])


def test_bfloat16_compute_keeps_float32_params_and_outputs(tiny):
    _, variables, images = tiny
    model_bf16 = TINY.build(num_classes=4, dtype=jnp.bfloat16)
    out = model_bf16.apply(variables, images, train=False)
    assert out["features"].dtype == jnp.float32
    ref = TINY.build(num_classes=4).apply(variables, images, train=False)["features"]
    cos = jnp.sum(out["features"] * ref, -1) / (
        jnp.linalg.norm(out["features"], axis=-1) * jnp.linalg.norm(ref, axis=-1)
    )
    assert float(cos.min()) > 0.98


def test_training_steps_decrease_loss_and_leave_bnneck_bias_frozen(tiny):
    model, variables, images = tiny
    labels = jnp.array([0, 0, 1, 1, 2, 2, 3, 3])
    tx = optax.adam(3e-3)

    def loss_fn(params, batch_stats):
        out, upd = model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        loss = losses.cross_entropy(out["logits"], labels, 0.1)
        return loss + losses.batch_hard_triplet(out["global"], labels), upd["batch_stats"]

    @jax.jit
    def step(params, batch_stats, opt_state):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss, grads

    params, stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)
    history = []
    for _ in range(8):
        params, new_stats, opt_state, loss, grads = step(params, stats, opt_state)
        history.append(float(loss))
    assert history[-1] < 0.7 * history[0], history
    assert not np.allclose(new_stats["backbone"]["bn1"]["mean"], stats["backbone"]["bn1"]["mean"])
    np.testing.assert_array_equal(grads["bottleneck"]["bias"], 0.0)
    np.testing.assert_array_equal(params["bottleneck"]["bias"], 0.0)


def test_last_stride_one_keeps_a_sixteenth_of_the_input():
    x = jnp.zeros((1, 64, 32, 3))
    for last_stride, expected in ((1, (4, 2)), (2, (2, 1))):
        net = ResNet(stage_sizes=(1, 1, 1, 1), width=4, last_stride=last_stride)
        v = jax.eval_shape(lambda net=net: net.init(jax.random.key(0), x, train=False))
        out = jax.eval_shape(lambda v, net=net: net.apply(v, x, train=False), v)
        assert out.shape[1:3] == expected


def test_backbone_size_equals_the_plain_model_on_resized_images(tiny):
    model, variables, images = tiny
    upsampled = dataclasses.replace(TINY, backbone_size=(48, 24)).build(num_classes=4)
    out = upsampled.apply(variables, images, train=False)["features"]
    resized = jax.image.resize(images, (8, 48, 24, 3), "linear")
    np.testing.assert_allclose(
        out, model.apply(variables, resized, train=False)["features"], rtol=1e-4, atol=1e-5
    )
    assert CONFIGS["cpu-small"].build().backbone_size == (96, 48)


@pytest.mark.parametrize("height, width", [(16, 8), (17, 9)])
def test_stem_max_pool_matches_pytorch_in_both_modes(height, width):
    """The "ceil" mode is FastReID's stem (MaxPool2d(3, 2, ceil_mode=True)), which loaded FastReID
    weights need; "pad" is torchvision's (padding 1). Same shape at even sizes, other values."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(2, height, width, 3)).astype(np.float32)
    x_t = torch.from_numpy(x).permute(0, 3, 1, 2)
    for mode, pool_t in (
        ("ceil", torch.nn.MaxPool2d(3, 2, ceil_mode=True)),
        ("pad", torch.nn.MaxPool2d(3, 2, padding=1)),
    ):
        expected = pool_t(x_t).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(stem_max_pool(jnp.asarray(x), mode), expected)
    with pytest.raises(ValueError, match="stem_pool"):
        stem_max_pool(jnp.asarray(x), "floor")


def test_gem_pooling_interpolates_mean_and_max():
    x = jax.random.uniform(jax.random.key(2), (2, 3, 5, 4)) + 0.1
    gem = GeM()
    v = gem.init(jax.random.key(0), x)
    assert v["params"]["p"].shape == (1,)
    mean = gem.apply({"params": {"p": jnp.array([1.0])}}, x)
    np.testing.assert_allclose(mean, x.mean(axis=(1, 2)), rtol=1e-5)
    big = gem.apply({"params": {"p": jnp.array([60.0])}}, x)
    np.testing.assert_allclose(big, x.max(axis=(1, 2)), rtol=0.05)


def test_gem_and_bottleneck_model_shapes_without_compiling():
    model = ReIDModel(stage_sizes=(1, 1, 1, 1), bottleneck=True, width=4, pooling="gem")
    x = jnp.zeros((2, 32, 16, 3))
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    out = jax.eval_shape(lambda v: model.apply(v, x, train=False), v)
    assert out["features"].shape == (2, 128) and "logits" not in out
    assert "p" in v["params"]["pool"]


def test_resnet50_config_is_the_fastreid_size():
    config = CONFIGS["resnet50"]
    model = config.build(num_classes=751)
    v = jax.eval_shape(lambda: init_variables(model, jax.random.key(0), config.image_size))
    backbone = sum(x.size for x in jax.tree.leaves(v["params"]["backbone"]))
    assert config.feature_dim == 2048 and config.image_size == (256, 128)
    assert backbone == 23_508_032  # torchvision resnet50 without fc
    assert resnet(50).out_channels == 2048 and resnet(18).out_channels == 512


def test_bad_inputs_raise_clear_errors(tiny):
    model, variables, _ = tiny
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        model.apply(variables, jnp.zeros((2, 32, 16)), train=False)
    with pytest.raises(ValueError, match="unknown victim config"):
        get_config("nope")
    with pytest.raises(ValueError, match="depth"):
        resnet(20)


def test_image_models_refuse_integer_pixels_and_reid_defaults_to_inference():
    images_u8 = jnp.zeros((1, 32, 16, 3), jnp.uint8)
    model = ReIDModel(stage_sizes=(1, 1, 1, 1), width=4)
    with pytest.raises(TypeError, match="float RGB in \\[0, 1\\], got dtype uint8"):
        jax.eval_shape(model.init, jax.random.key(0), images_u8)
    with pytest.raises(TypeError, match="got dtype uint8"):
        jax.eval_shape(SurrogateNet(feature_dim=4, widths=(4,)).init, jax.random.key(0), images_u8)
    variables = jax.eval_shape(model.init, jax.random.key(0), images_u8.astype(jnp.float32))
    out = jax.eval_shape(model.apply, variables, images_u8.astype(jnp.bfloat16))  # train=False
    assert out["features"].shape == (1, 32) and out["features"].dtype == jnp.float32
