"""The victim, FastReID-style: ResNet, GAP/GeM pooling, BNNeck, bias-free classifier."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from invfeat.models.resnet import BN_EPSILON, BN_MOMENTUM, STAGE_SIZES, ResNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLINGS = ("avg", "gem")


class GeM(nn.Module):
    """Generalised-mean pooling over H, W with a learnable exponent p (FastReID's gempoolP)."""

    init_p: float = 3.0
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        p = self.param("p", nn.initializers.constant(self.init_p), (1,), jnp.float32)
        x = jnp.maximum(x_BHWC.astype(jnp.float32), self.eps) ** p
        return jnp.mean(x, axis=(1, 2)) ** (1.0 / p)


class BNNeck(nn.Module):
    """BatchNorm1d whose bias is frozen (kept for checkpoint parity, zero unless loaded)."""

    @nn.compact
    def __call__(self, x_BD: jax.Array, train: bool) -> jax.Array:
        bias = self.param("bias", nn.initializers.zeros, (x_BD.shape[-1],), jnp.float32)
        bn = nn.BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            use_bias=False,
            name="bn",
        )
        return bn(x_BD) + jax.lax.stop_gradient(bias)


class ReIDModel(nn.Module):
    """Float RGB images [B, H, W, 3] in [0, 1] -> {"features", "global", "logits"}.

    Normalises inside (and, with `backbone_size`, resizes bilinearly to what the backbone sees);
    integer pixels are refused. "features" is the BN-neck output [B, D] (what the API serves),
    "global" the pooled features before the neck [B, D], "logits" [B, C] (num_classes > 0 only).
    Parameters are float32; `dtype` is the backbone's compute dtype (bfloat16 on GPU); pooling,
    neck and classifier run in float32.
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    bottleneck: bool = False
    width: int = 64
    last_stride: int = 1
    stem_pool: str = "pad"  # "ceil" for FastReID weights (invfeat.models.resnet.STEM_POOLS)
    pooling: str = "avg"
    backbone_size: tuple[int, int] | None = None  # (H, W) to resize the input to; None: as is
    num_classes: int = 0
    dtype: Any = jnp.float32
    pixel_mean: Sequence[float] = IMAGENET_MEAN
    pixel_std: Sequence[float] = IMAGENET_STD

    @property
    def feature_dim(self) -> int:
        return self.width * 8 * (4 if self.bottleneck else 1)

    @nn.compact
    def __call__(self, images_BHWC: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        if images_BHWC.ndim != 4 or images_BHWC.shape[-1] != 3:
            raise ValueError(f"images must be [B, H, W, 3], got shape {images_BHWC.shape}")
        if not jnp.issubdtype(images_BHWC.dtype, jnp.floating):
            # Integer pixels would be normalised as if in [0, 1]: features of another image.
            raise TypeError(
                f"images must be float RGB in [0, 1], got dtype {images_BHWC.dtype} "
                "(divide uint8 images by 255, or serve them through invfeat.api.FeatureAPI)"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        mean = jnp.asarray(self.pixel_mean, jnp.float32)
        std = jnp.asarray(self.pixel_std, jnp.float32)
        x = (images_BHWC.astype(jnp.float32) - mean) / std
        if self.backbone_size is not None:
            x = jax.image.resize(x, (x.shape[0], *self.backbone_size, 3), "linear")
        x = ResNet(
            stage_sizes=tuple(self.stage_sizes),
            bottleneck=self.bottleneck,
            width=self.width,
            last_stride=self.last_stride,
            stem_pool=self.stem_pool,
            dtype=self.dtype,
            name="backbone",
        )(x, train)
        if self.pooling == "gem":
            pooled = GeM(name="pool")(x)
        else:
            pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        features = BNNeck(name="bottleneck")(pooled, train)
        out = {"features": features, "global": pooled}
        if self.num_classes > 0:
            classifier = nn.Dense(
                self.num_classes,
                use_bias=False,
                kernel_init=nn.initializers.normal(0.01),
                name="classifier",
            )
            out["logits"] = classifier(features)
        return out


@dataclasses.dataclass(frozen=True)
class ReIDConfig:
    """A named victim size: architecture plus the input size (height, width) it is meant for."""

    name: str
    stage_sizes: tuple[int, ...]
    bottleneck: bool
    width: int
    image_size: tuple[int, int]
    pooling: str = "avg"
    last_stride: int = 1
    backbone_size: tuple[int, int] | None = None  # see ReIDModel

    @property
    def feature_dim(self) -> int:
        return self.width * 8 * (4 if self.bottleneck else 1)

    def build(self, num_classes: int = 0, dtype: Any = jnp.float32, **kwargs: Any) -> ReIDModel:
        return ReIDModel(
            stage_sizes=self.stage_sizes,
            bottleneck=self.bottleneck,
            width=self.width,
            last_stride=self.last_stride,
            pooling=self.pooling,
            backbone_size=self.backbone_size,
            num_classes=num_classes,
            dtype=dtype,
            **kwargs,
        )


CONFIGS: dict[str, ReIDConfig] = {
    config.name: config
    for config in (
        # Unit tests: the smallest net.
        ReIDConfig("cpu-tiny", (1, 1, 1, 1), False, 8, (32, 16)),
        # The CPU default: 64x32 images, upsampled to 96x48 inside (a 6x3 last feature map).
        ReIDConfig("cpu-small", (1, 1, 1, 1), False, 16, (64, 32), backbone_size=(96, 48)),
        # ResNet-18 depth at the CPU width.
        ReIDConfig("cpu-medium", STAGE_SIZES[18], False, 16, (64, 32)),
        ReIDConfig("resnet18", STAGE_SIZES[18], False, 64, (256, 128)),
        ReIDConfig("resnet34", STAGE_SIZES[34], False, 64, (256, 128)),
        # FastReID's BoT baseline backbone: 2048-d features.
        ReIDConfig("resnet50", STAGE_SIZES[50], True, 64, (256, 128)),
        ReIDConfig("resnet50-gem", STAGE_SIZES[50], True, 64, (256, 128), pooling="gem"),
    )
}


def get_config(name: str) -> ReIDConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown victim config {name!r}; choose from {sorted(CONFIGS)}")
    return CONFIGS[name]


def init_variables(model: ReIDModel, rng: jax.Array, image_size: tuple[int, int]) -> Any:
    """Variables ({"params", "batch_stats"}) for images of size (height, width), one jit.

    On CPU pass an "rbg" key (`jax.random.key(seed, impl="rbg")`): the per-tensor samplers of
    the default threefry key dominate the compile.
    """
    dummy = jnp.zeros((1, *image_size, 3), jnp.float32)
    return jax.jit(model.init, static_argnames="train")(rng, dummy, train=False)


def make_features_fn(model: ReIDModel) -> Callable[[Any, jax.Array], jax.Array]:
    """The pure inference function `features_fn(variables, images_BHWC) -> features [B, D]`."""

    def features_fn(variables: Any, images_BHWC: jax.Array) -> jax.Array:
        return model.apply(variables, images_BHWC, train=False)["features"]

    return features_fn
