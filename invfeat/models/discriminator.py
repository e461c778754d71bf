"""The conditional discriminator of the GAN attack: (image, feature) -> one least-squares logit."""

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from invfeat.models.decoder import upsampling_plan
from invfeat.models.initializers import kernel_initializer

Comparison = Literal["concatenation", "absolute_difference"]
COMPARISONS: tuple[str, ...] = ("concatenation", "absolute_difference")


class DownBlock(nn.Module):
    """ReLU, conv3x3, ReLU, conv3x3, avg-pool /2; plus the input through a 1x1 conv, avg-pooled.

    With `spectral_norm` every conv is wrapped in flax's SpectralNorm, whose power-iteration
    state (u, sigma) lives in the "batch_stats" collection and is updated when `train` is true.
    """

    filters: int
    spectral_norm: bool = False
    kernel_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool) -> jax.Array:
        init = kernel_initializer(self.kernel_init)

        def conv(kernel: int, y: jax.Array) -> jax.Array:
            layer = nn.Conv(self.filters, (kernel, kernel), padding="SAME", kernel_init=init)
            if self.spectral_norm:
                return nn.SpectralNorm(layer)(y, update_stats=train)
            return layer(y)

        pool = lambda y: nn.avg_pool(y, (2, 2), strides=(2, 2))
        y = conv(3, nn.relu(x_BHWC))
        y = pool(conv(3, nn.relu(y)))
        return y + pool(conv(1, x_BHWC))


class Discriminator(nn.Module):
    """k DownBlocks (filters base_filters * 2**i), global average pooling, the condition through a
    Dense layer of the same width, compared by concatenation or absolute difference, Dense(1).

    k follows the decoder's plan for the input size, so the two mirror each other.
    """

    base_filters: int = 32
    spectral_norm: bool = False
    comparison: Comparison = "concatenation"
    min_side: int = 4
    kernel_init: str = "lecun_normal"  # a name of KERNEL_INITIALIZERS (Keras: "glorot_uniform")

    @nn.compact
    def __call__(
        self, images_BHWC: jax.Array, condition_BD: jax.Array, train: bool = False
    ) -> jax.Array:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"comparison must be one of {COMPARISONS}, got {self.comparison!r}")
        _, _, k = upsampling_plan(images_BHWC.shape[1], images_BHWC.shape[2], self.min_side)
        x = images_BHWC
        for i in range(k):
            x = DownBlock(self.base_filters * 2**i, self.spectral_norm, self.kernel_init)(x, train)
        embedding_BE = jnp.mean(x, axis=(1, 2))
        init = kernel_initializer(self.kernel_init)
        condition_BE = nn.Dense(embedding_BE.shape[-1], kernel_init=init)(condition_BD)
        if self.comparison == "concatenation":
            joint = jnp.concatenate([embedding_BE, condition_BE], axis=-1)
        else:
            joint = jnp.abs(embedding_BE - condition_BE)
        return nn.Dense(1, kernel_init=init)(joint)[:, 0]
