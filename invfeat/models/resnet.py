"""ResNet backbone in flax.linen, laid out like FastReID's (torchvision v1.5: stride on the 3x3).

Module and parameter names mirror the PyTorch state dict (conv1, bn1, layer1_0/conv1, ...,
layer1_0/downsample_conv, layer1_0/downsample_bn) so that `invfeat.models.fastreid` maps a
checkpoint by name. Padding is explicit, as in PyTorch, so both frameworks agree bit for bit
up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Blocks per stage of the standard depths.
STAGE_SIZES: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}
BOTTLENECK_DEPTHS = frozenset({50, 101})

# PyTorch BatchNorm2d defaults: momentum 0.1 (flax: 0.9), eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
# The stem's 3x3/2 max-pool: "pad" is torchvision's (padding 1); "ceil" is FastReID's since
# v1.0 (no padding, ceil_mode=True): windows start one pixel later, so weights trained with one
# give other features under the other.
STEM_POOLS = ("pad", "ceil")


def conv(features: int, kernel: int, stride: int = 1, *, name: str, dtype: Any) -> nn.Conv:
    """A bias-free conv with PyTorch's symmetric padding (kernel // 2) and He-normal init."""
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
        name=name,
    )


def stem_max_pool(x_BHWC: jax.Array, mode: str = "pad") -> jax.Array:
    """3x3 max-pool of stride 2, as PyTorch's MaxPool2d(3, 2, padding=1) ("pad") or
    MaxPool2d(3, 2, ceil_mode=True) ("ceil": a last, partial window where the size is even)."""
    if mode == "pad":
        padding = ((1, 1), (1, 1))
    elif mode == "ceil":
        padding = tuple((0, (size + 1) % 2) for size in x_BHWC.shape[1:3])
    else:
        raise ValueError(f"stem_pool must be one of {STEM_POOLS}, got {mode!r}")
    return nn.max_pool(x_BHWC, (3, 3), strides=(2, 2), padding=padding)


def batch_norm(train: bool, *, name: str, dtype: Any, zero_scale: bool = False) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        dtype=dtype,
        param_dtype=jnp.float32,
        scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
        name=name,
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); output channels = planes."""

    planes: int
    stride: int = 1
    dtype: Any = jnp.float32
    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = conv(self.planes, 3, self.stride, name="conv1", dtype=self.dtype)(x)
        out = nn.relu(batch_norm(train, name="bn1", dtype=self.dtype)(out))
        out = conv(self.planes, 3, name="conv2", dtype=self.dtype)(out)
        out = batch_norm(train, name="bn2", dtype=self.dtype, zero_scale=True)(out)
        return nn.relu(out + shortcut(self, x, self.planes * self.expansion, train))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 x4 (ResNet-50/101); output channels = 4 * planes."""

    planes: int
    stride: int = 1
    dtype: Any = jnp.float32
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = conv(self.planes, 1, name="conv1", dtype=self.dtype)(x)
        out = nn.relu(batch_norm(train, name="bn1", dtype=self.dtype)(out))
        out = conv(self.planes, 3, self.stride, name="conv2", dtype=self.dtype)(out)
        out = nn.relu(batch_norm(train, name="bn2", dtype=self.dtype)(out))
        out = conv(self.planes * 4, 1, name="conv3", dtype=self.dtype)(out)
        out = batch_norm(train, name="bn3", dtype=self.dtype, zero_scale=True)(out)
        return nn.relu(out + shortcut(self, x, self.planes * self.expansion, train))


def shortcut(block: nn.Module, x: jax.Array, out_channels: int, train: bool) -> jax.Array:
    """Identity, or a strided 1x1 conv + BN when the shape changes (PyTorch's `downsample`)."""
    if block.stride == 1 and x.shape[-1] == out_channels:
        return x
    x = conv(out_channels, 1, block.stride, name="downsample_conv", dtype=block.dtype)(x)
    return batch_norm(train, name="downsample_bn", dtype=block.dtype)(x)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and four stages; returns the last feature map.

    `width` is the stem's channel count (64 for the standard nets); stage k has width * 2**k
    planes. `last_stride` 1 keeps the last stage at 1/16 of the input (re-ID convention).
    `stem_pool` chooses the stem's max-pool (see `STEM_POOLS`; "ceil" for FastReID weights).
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    bottleneck: bool = False
    width: int = 64
    last_stride: int = 1
    stem_pool: str = "pad"
    dtype: Any = jnp.float32

    @property
    def out_channels(self) -> int:
        return self.width * 8 * (4 if self.bottleneck else 1)

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool) -> jax.Array:
        block_cls = Bottleneck if self.bottleneck else BasicBlock
        x = conv(self.width, 7, 2, name="conv1", dtype=self.dtype)(x_BHWC.astype(self.dtype))
        x = nn.relu(batch_norm(train, name="bn1", dtype=self.dtype)(x))
        x = stem_max_pool(x, self.stem_pool)
        for stage, num_blocks in enumerate(self.stage_sizes):
            stage_stride = 1 if stage == 0 else (self.last_stride if stage == 3 else 2)
            for index in range(num_blocks):
                x = block_cls(
                    planes=self.width * 2**stage,
                    stride=stage_stride if index == 0 else 1,
                    dtype=self.dtype,
                    name=f"layer{stage + 1}_{index}",
                )(x, train)
        return x


def resnet(depth: int, **kwargs: Any) -> ResNet:
    """A ResNet of a standard depth (18, 34, 50, 101); kwargs go to `ResNet`."""
    if depth not in STAGE_SIZES:
        raise ValueError(f"depth must be one of {sorted(STAGE_SIZES)}, got {depth}")
    return ResNet(stage_sizes=STAGE_SIZES[depth], bottleneck=depth in BOTTLENECK_DEPTHS, **kwargs)
