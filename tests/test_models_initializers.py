"""Kernel initialisers by name: the attribute head, the decoder and the discriminator start from
Keras' glorot_uniform (the published scripts') or Flax's lecun_normal, biases zero in both."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from invfeat.models.attribute_head import AttributeHead
from invfeat.models.decoder import Decoder
from invfeat.models.discriminator import Discriminator
from invfeat.models.initializers import kernel_initializer


def _kernels(variables):
    flat = flax.traverse_util.flatten_dict(variables["params"])
    kernels = {k: np.asarray(v) for k, v in flat.items() if k[-1] == "kernel" and v.size >= 2048}
    biases = [np.asarray(v) for k, v in flat.items() if k[-1] == "bias"]
    return kernels, biases


def _models():
    key = jax.random.key(0)
    yield (
        "head",
        lambda init: AttributeHead((2, 3), block_num=2, kernel_init=init).init(
            key, jnp.zeros((2, 256))
        ),
    )
    yield "decoder", lambda init: Decoder(32, 16, kernel_init=init).init(key, jnp.zeros((2, 64)))
    yield (
        "discriminator",
        lambda init: Discriminator(kernel_init=init).init(
            key, jnp.zeros((2, 32, 16, 3)), jnp.zeros((2, 64))
        ),
    )


@pytest.mark.parametrize(
    "name,init", list(_models()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_kernels_follow_the_named_initialiser(name, init):
    """glorot_uniform: uniform within sqrt(6 / (fan_in + fan_out)); lecun_normal: standard
    deviation 1 / sqrt(fan_in) (a truncated normal rescaled to it); fans count the receptive
    field."""
    glorot, biases = _kernels(init("glorot_uniform"))
    lecun, _ = _kernels(init("lecun_normal"))
    assert glorot and all(not b.any() for b in biases)
    for path, kernel in glorot.items():
        receptive = int(np.prod(kernel.shape[:-2]))
        fan_in, fan_out = receptive * kernel.shape[-2], receptive * kernel.shape[-1]
        limit = np.sqrt(6 / (fan_in + fan_out))
        assert np.abs(kernel).max() <= limit, path
        assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.1), path
        assert lecun[path].std() == pytest.approx(1 / np.sqrt(fan_in), rel=0.1), path


def test_an_unknown_initialiser_is_refused():
    with pytest.raises(ValueError, match="unknown kernel initialiser 'he'.*glorot_uniform"):
        kernel_initializer("he")
