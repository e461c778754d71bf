"""The decoder (invfeat/models/decoder.py): the upsampling plan of every image size (sizes that do
not divide by its doublings included), output shapes and range, and the discriminator taking the
decoder's images at the published and at odd sizes."""

import jax
import jax.numpy as jnp
import pytest

from invfeat.models.decoder import Decoder, upsampling_plan
from invfeat.models.discriminator import Discriminator

KEY = jax.random.key(0, impl="rbg")  # compiles far faster than threefry on CPU


@pytest.mark.parametrize(
    "size, plan", [((64, 32), (8, 4, 3)), ((128, 64), (8, 4, 4)), ((384, 128), (12, 4, 5))]
)
def test_upsampling_plan(size, plan):
    assert upsampling_plan(*size) == plan


@pytest.mark.parametrize(
    "size, plan",
    [
        ((384, 128), (12, 4, 5)),  # the published size: unchanged
        ((64, 32), (8, 4, 3)),  # the demo's: unchanged
        ((256, 128), (8, 4, 5)),
        ((96, 48), (12, 6, 3)),
        ((130, 66), (9, 5, 4)),  # not (65, 33, 1): one block after a 274560-unit Dense layer
        ((250, 126), (16, 8, 4)),  # not (125, 63, 1): a Dense layer of 258M weights
    ],
)
def test_upsampling_plan_of_sizes_that_do_not_divide(size, plan):
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


def test_decoder_and_discriminator_at_an_odd_size():
    decoder = Decoder(130, 66, dense_units=8, smallest_channels=4, base_filters=2)
    features = jax.random.normal(jax.random.key(0), (2, 6))
    variables = decoder.init(jax.random.key(1), features)
    images = decoder.apply(variables, features)
    assert images.shape == (2, 130, 66, 3)
    dense = variables["params"]["Dense_1"]["kernel"]
    assert dense.shape == (8, 9 * 5 * 4)
    discriminator = Discriminator(base_filters=2)
    d_variables = discriminator.init(jax.random.key(2), images, features)
    assert discriminator.apply(d_variables, images, features).shape == (2,)
