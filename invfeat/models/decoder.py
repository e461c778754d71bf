"""The reconstruction decoder: a feature vector -> an RGB image in [0, 1]."""

import flax.linen as nn
import jax
import jax.numpy as jnp


def upsampling_plan(height: int, width: int, min_side: int = 4) -> tuple[int, int, int]:
    """(h0, w0, k): the smallest map h0 x w0 that k doublings take to height x width.

    k is the largest count for which both sides divide by 2**k and the smaller side of the map
    stays at least `min_side` (384x128 -> 12x4 and 5 blocks, as published; 64x32 -> 8x4 and 3).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    k = 0
    while (
        height % 2 ** (k + 1) == 0
        and width % 2 ** (k + 1) == 0
        and min(height, width) // 2 ** (k + 1) >= min_side
    ):
        k += 1
    if k == 0:
        raise ValueError(
            f"image size {height}x{width} cannot be reached by doubling a map whose smaller side "
            f"is at least {min_side}: use sizes divisible by 2 * {min_side} (e.g. 64x32)"
        )
    return height // 2**k, width // 2**k, k


def upsample2_BHWC(x_BHWC: jax.Array) -> jax.Array:
    """Nearest-neighbour up-sampling by 2 along height and width."""
    return jnp.repeat(jnp.repeat(x_BHWC, 2, axis=1), 2, axis=2)


class UpBlock(nn.Module):
    """BN, ReLU, up x2, conv3x3, BN, ReLU, conv3x3; plus the up-sampled input through a 1x1 conv."""

    filters: int
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool) -> jax.Array:
        norm = lambda: nn.BatchNorm(
            use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon
        )
        y = upsample2_BHWC(nn.relu(norm()(x_BHWC)))
        y = nn.Conv(self.filters, (3, 3), padding="SAME")(y)
        y = nn.Conv(self.filters, (3, 3), padding="SAME")(nn.relu(norm()(y)))
        shortcut = nn.Conv(self.filters, (1, 1))(upsample2_BHWC(x_BHWC))
        return y + shortcut


class Decoder(nn.Module):
    """Dense -> ReLU -> Dense -> ReLU -> reshape to the smallest map -> k UpBlocks -> RGB.

    Filters are base_filters * 2**(k-1-i) for block i, shrinking towards the output; the output is
    (tanh + 1) / 2, so images come out in [0, 1], shaped [B, image_height, image_width, 3].
    """

    image_height: int
    image_width: int
    dense_units: int = 256
    smallest_channels: int = 128
    base_filters: int = 16
    min_side: int = 4

    @nn.compact
    def __call__(self, features_BD: jax.Array, train: bool = False) -> jax.Array:
        h0, w0, k = upsampling_plan(self.image_height, self.image_width, self.min_side)
        x = nn.relu(nn.Dense(self.dense_units)(features_BD))
        x = nn.relu(nn.Dense(h0 * w0 * self.smallest_channels)(x))
        x = x.reshape(x.shape[0], h0, w0, self.smallest_channels)
        for i in range(k):
            x = UpBlock(self.base_filters * 2 ** (k - 1 - i))(x, train)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3)(x)
        x = nn.Conv(3, (3, 3), padding="SAME")(nn.relu(x))
        return (jnp.tanh(x) + 1.0) / 2.0
