"""The discriminator (invfeat/models/discriminator.py): spectral norm (scale-invariant, power
iteration advancing in training), how images and features are compared, unknown comparisons."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.fast_init import fast_init

from invfeat.models.discriminator import Discriminator

KEY = jax.random.key(0, impl="rbg")  # compiles far faster than threefry on CPU


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
