"""The reconstruction decoder: a feature vector -> an RGB image in [0, 1]."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from invfeat.models.initializers import kernel_initializer


def upsampling_plan(height: int, width: int, min_side: int = 4) -> tuple[int, int, int]:
    """(h0, w0, k): the smallest map h0 x w0 whose k doublings cover height x width.

    k is the largest count for which the smaller side halved k times stays at least `min_side`;
    h0 and w0 round up, so a size that does not divide by 2**k is decoded a little larger and
    centre-cropped (384x128 -> 12x4 and 5 blocks, as published; 64x32 -> 8x4 and 3; 130x66 ->
    9x5 and 4, cropped from 144x80).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    k = 0
    while min(height, width) // 2 ** (k + 1) >= min_side:
        k += 1
    if k == 0:
        raise ValueError(
            f"image size {height}x{width} cannot be reached by doubling a map whose smaller side "
            f"is at least {min_side}: the smaller side must be at least {2 * min_side}"
        )
    return -(-height // 2**k), -(-width // 2**k), k


def upsample2_BHWC(x_BHWC: jax.Array) -> jax.Array:
    """Nearest-neighbour up-sampling by 2 along height and width."""
    return jnp.repeat(jnp.repeat(x_BHWC, 2, axis=1), 2, axis=2)


class UpBlock(nn.Module):
    """BN, ReLU, up x2, conv3x3, BN, ReLU, conv3x3; plus the up-sampled input through a 1x1 conv."""

    filters: int
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    kernel_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool) -> jax.Array:
        init = kernel_initializer(self.kernel_init)
        norm = lambda: nn.BatchNorm(
            use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon
        )
        y = upsample2_BHWC(nn.relu(norm()(x_BHWC)))
        y = nn.Conv(self.filters, (3, 3), padding="SAME", kernel_init=init)(y)
        y = nn.Conv(self.filters, (3, 3), padding="SAME", kernel_init=init)(nn.relu(norm()(y)))
        shortcut = nn.Conv(self.filters, (1, 1), kernel_init=init)(upsample2_BHWC(x_BHWC))
        return y + shortcut


class Decoder(nn.Module):
    """Dense -> ReLU -> Dense -> ReLU -> reshape to the smallest map -> k UpBlocks -> RGB.

    A size that does not divide by 2**k is decoded to the plan's larger map and centre-cropped.

    Filters are base_filters * 2**(k-1-i) for block i, shrinking towards the output; the output is
    (tanh + 1) / 2, so images come out in [0, 1], shaped [B, image_height, image_width, 3].
    """

    image_height: int
    image_width: int
    dense_units: int = 256
    smallest_channels: int = 128
    base_filters: int = 16
    min_side: int = 4
    kernel_init: str = "lecun_normal"  # a name of KERNEL_INITIALIZERS (Keras: "glorot_uniform")

    @nn.compact
    def __call__(self, features_BD: jax.Array, train: bool = False) -> jax.Array:
        h0, w0, k = upsampling_plan(self.image_height, self.image_width, self.min_side)
        init = kernel_initializer(self.kernel_init)
        x = nn.relu(nn.Dense(self.dense_units, kernel_init=init)(features_BD))
        x = nn.relu(nn.Dense(h0 * w0 * self.smallest_channels, kernel_init=init)(x))
        x = x.reshape(x.shape[0], h0, w0, self.smallest_channels)
        for i in range(k):
            x = UpBlock(self.base_filters * 2 ** (k - 1 - i), kernel_init=self.kernel_init)(
                x, train
            )
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3)(x)
        x = nn.Conv(3, (3, 3), padding="SAME", kernel_init=init)(nn.relu(x))
        top = (x.shape[1] - self.image_height) // 2
        left = (x.shape[2] - self.image_width) // 2
        x = x[:, top : top + self.image_height, left : left + self.image_width]
        return (jnp.tanh(x) + 1.0) / 2.0
