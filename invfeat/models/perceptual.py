"""Perceptual networks for the feature-reconstruction loss, chosen by name.

Which of them an attacker may use is the attacks' decision (`invfeat.attacks.perceptual`).
"""

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from invfeat.models.keras_h5 import keras_to_flax, read_keras_h5

Activations = tuple[jax.Array, ...]
FeaturesFn = Callable[[Any, jax.Array], Activations]


def check_float_images(images_BHWC: jax.Array) -> None:
    """Refuses integer pixels, which the networks would read as if in [0, 1] (when traced)."""
    if not jnp.issubdtype(images_BHWC.dtype, jnp.floating):
        raise TypeError(
            f"images must be float RGB in [0, 1], got dtype {images_BHWC.dtype} "
            "(divide uint8 images by 255)"
        )


@dataclasses.dataclass(frozen=True)
class PerceptualNetwork:
    """A named perceptual network: a pure activations function and its (frozen) variables.

    `features(variables, images_BHWC) -> tuple of activations`; the variables travel separately
    (in the attack's state), so jitted steps never embed them as constants.
    """

    name: str
    features: FeaturesFn
    variables: Any
    description: str


class SurrogateNet(nn.Module):
    """Images in [0, 1] -> (features [B, feature_dim], stage activations); a small ResNet.

    Trained to imitate the black-box API (regression on (image, API(image)) pairs), its stage
    outputs serve as perceptual features (`victim-surrogate`).
    A 3x3 stem, then per width one residual block of stride 2 (conv3x3-BN-ReLU-conv3x3-BN plus a
    strided 1x1 conv-BN shortcut), global average pooling and a Dense layer to the API's size.
    """

    feature_dim: int
    widths: Sequence[int] = (32, 64, 128)

    @nn.compact
    def __call__(
        self, images_BHWC: jax.Array, train: bool = False
    ) -> tuple[jax.Array, Activations]:
        check_float_images(images_BHWC)
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)
        x = (images_BHWC - 0.5) / 0.25
        x = nn.relu(norm()(nn.Conv(self.widths[0], (3, 3), use_bias=False)(x)))
        stages = []
        for width in self.widths:
            y = nn.Conv(width, (3, 3), strides=(2, 2), use_bias=False)(x)
            y = nn.Conv(width, (3, 3), use_bias=False)(nn.relu(norm()(y)))
            shortcut = norm()(nn.Conv(width, (1, 1), strides=(2, 2), use_bias=False)(x))
            x = nn.relu(norm()(y) + shortcut)
            stages.append(x)
        features_BD = nn.Dense(self.feature_dim)(jnp.mean(x, axis=(1, 2)))
        return features_BD, tuple(stages)


def surrogate_perceptual(model: SurrogateNet, variables: Any, stages: int = 2) -> PerceptualNetwork:
    """The trained surrogate's first `stages` stage outputs (low-level, like conv2 of ResNet-50)."""
    if not 1 <= stages <= len(model.widths):
        raise ValueError(f"stages must be in [1, {len(model.widths)}], got {stages}")

    def features(variables: Any, images_BHWC: jax.Array) -> Activations:
        return model.apply(variables, images_BHWC, train=False)[1][:stages]

    return PerceptualNetwork(
        "victim-surrogate",
        features,
        variables,
        description=f"surrogate of the black-box API, first {stages} stages",
    )


# ---- ResNet-50 with Keras layer names ------------------------------------------------------

RESNET50_STAGES = (
    ("conv2", 64, 3, 1),
    ("conv3", 128, 4, 2),
    ("conv4", 256, 6, 2),
    ("conv5", 512, 3, 2),
)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def caffe_preprocess(images_BHWC: jax.Array) -> jax.Array:
    """RGB in [0, 1] -> Keras' "caffe" input (`preprocess_input` of resnet50 and vgg16):
    x 255, RGB -> BGR, minus the ImageNet BGR mean."""
    return images_BHWC[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR, images_BHWC.dtype)


def resnet50_layers() -> tuple[str, ...]:
    """The output layers a KerasResNet50 can stop at, in order."""
    blocks = [f"{s}_block{b}_out" for s, _, n, _ in RESNET50_STAGES for b in range(1, n + 1)]
    return ("conv1_relu", "pool1_pool", *blocks)


class KerasResNet50(nn.Module):
    """ImageNet ResNet-50 (Keras' v1 layout and layer names) up to `output_layer`, inference only.

    Input: RGB in [0, 1]; preprocessing as Keras' "caffe" mode (x 255, RGB -> BGR, minus the
    ImageNet BGR mean). Only the layers up to `output_layer` exist, so their weights alone load.
    """

    output_layer: str = "conv2_block3_out"

    @nn.compact
    def __call__(self, images_BHWC: jax.Array) -> jax.Array:
        if self.output_layer not in resnet50_layers():
            raise ValueError(
                f"unknown ResNet-50 layer {self.output_layer!r}; choose one of {resnet50_layers()}"
            )
        check_float_images(images_BHWC)
        conv = lambda f, k, s, name, pad="VALID": nn.Conv(f, (k, k), (s, s), padding=pad, name=name)
        bn = lambda name: nn.BatchNorm(use_running_average=True, epsilon=1.001e-5, name=name)
        x = caffe_preprocess(images_BHWC)
        x = nn.relu(bn("conv1_bn")(conv(64, 7, 2, "conv1_conv", [(3, 3), (3, 3)])(x)))
        if self.output_layer == "conv1_relu":
            return x
        x = nn.max_pool(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), (3, 3), strides=(2, 2))
        if self.output_layer == "pool1_pool":
            return x
        for stage, filters, blocks, stride in RESNET50_STAGES:
            for b in range(1, blocks + 1):
                name, s = f"{stage}_block{b}", stride if b == 1 else 1
                shortcut = x
                if b == 1:
                    shortcut = bn(f"{name}_0_bn")(conv(4 * filters, 1, s, f"{name}_0_conv")(x))
                y = nn.relu(bn(f"{name}_1_bn")(conv(filters, 1, s, f"{name}_1_conv")(x)))
                y = nn.relu(bn(f"{name}_2_bn")(conv(filters, 3, 1, f"{name}_2_conv", "SAME")(y)))
                y = bn(f"{name}_3_bn")(conv(4 * filters, 1, 1, f"{name}_3_conv")(y))
                x = nn.relu(y + shortcut)
                if f"{name}_out" == self.output_layer:
                    return x
        raise AssertionError("unreachable: output_layer was validated")


def _keras_template(model: nn.Module) -> Any:
    """The shapes of `model`'s variables (for `keras_to_flax`), computed without running it."""
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 32, 3)))


# The Keras ImageNet weights files (include_top=False) of the networks loaded from them.
KERAS_WEIGHTS_FILES = {
    "resnet50-imagenet": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg16-imagenet": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
}


def _check_weights_file(weights_path: str, name: str, network: str, which: str) -> None:
    """Refuses a missing weights file, naming the Keras file it should be (nothing downloads)."""
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"{network} weights not found: {weights_path}. The {name} perceptual network needs "
            f"Keras' ImageNet weights ({KERAS_WEIGHTS_FILES[name]}, {which}); nothing is "
            "downloaded at run time. Or choose the victim-surrogate perceptual network."
        )


def load_keras_resnet50(
    weights_path: str | os.PathLike, output_layer: str = "conv2_block3_out"
) -> tuple[KerasResNet50, dict]:
    """The module and its variables read from a Keras ResNet-50 .h5 file (layers up to the output)."""
    weights_path = os.fspath(weights_path)
    _check_weights_file(
        weights_path,
        "resnet50-imagenet",
        "ResNet-50",
        "the keras-applications/resnet release with layer names like conv1_conv",
    )
    model = KerasResNet50(output_layer)
    template = _keras_template(model)
    layers = read_keras_h5(weights_path)
    if "conv1_conv" not in layers and "bn_conv1" in layers:
        raise ValueError(
            f"{weights_path} uses the legacy Keras ResNet-50 layer names (conv1, bn_conv1, "
            "res2a_branch2a, ...); use the keras-applications/resnet weights (conv1_conv, ...)"
        )
    return model, keras_to_flax(layers, template, source=weights_path)


def resnet50_perceptual(
    weights_path: str | os.PathLike, output_layer: str = "conv2_block3_out"
) -> PerceptualNetwork:
    """The published choice: an intermediate block of an ImageNet ResNet-50, weights from a Keras
    .h5 file the user provides (e.g. resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5)."""
    model, variables = load_keras_resnet50(weights_path, output_layer)
    return PerceptualNetwork(
        "resnet50-imagenet",
        lambda variables, images_BHWC: (model.apply(variables, images_BHWC),),
        jax.tree.map(jnp.asarray, variables),
        description=f"ImageNet ResNet-50 (Keras weights) at {output_layer}",
    )


# ---- VGG16 with Keras layer names -----------------------------------------------------------

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (filters, convolutions)


def vgg16_layers() -> tuple[str, ...]:
    """The output layers a KerasVGG16 can stop at, in order (block1_conv1 ... block5_pool)."""
    return tuple(
        layer
        for b, (_, convs) in enumerate(VGG16_BLOCKS, 1)
        for layer in (*(f"block{b}_conv{c}" for c in range(1, convs + 1)), f"block{b}_pool")
    )


class KerasVGG16(nn.Module):
    """ImageNet VGG16 (Keras' layout and layer names) up to `output_layer`, inference only.

    Input: RGB in [0, 1], preprocessed as Keras' vgg16 `preprocess_input` ("caffe" mode); then
    per block 3x3 "same" convolutions with ReLU and a 2x2 stride-2 max pooling. Only the layers
    up to `output_layer` exist, so their weights alone load.
    """

    output_layer: str = "block2_pool"

    @nn.compact
    def __call__(self, images_BHWC: jax.Array) -> jax.Array:
        if self.output_layer not in vgg16_layers():
            raise ValueError(
                f"unknown VGG16 layer {self.output_layer!r}; choose one of {vgg16_layers()} "
                "(the published feature loss uses block2_pool)"
            )
        check_float_images(images_BHWC)
        x = caffe_preprocess(images_BHWC)
        for b, (filters, convs) in enumerate(VGG16_BLOCKS, 1):
            for c in range(1, convs + 1):
                x = nn.relu(nn.Conv(filters, (3, 3), padding="SAME", name=f"block{b}_conv{c}")(x))
                if f"block{b}_conv{c}" == self.output_layer:
                    return x
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            if f"block{b}_pool" == self.output_layer:
                return x
        raise AssertionError("unreachable: output_layer was validated")


def load_keras_vgg16(
    weights_path: str | os.PathLike, output_layer: str = "block2_pool"
) -> tuple[KerasVGG16, dict]:
    """The module and its variables read from a Keras VGG16 .h5 file (layers up to the output)."""
    weights_path = os.fspath(weights_path)
    _check_weights_file(
        weights_path, "vgg16-imagenet", "VGG16", "with layer names like block1_conv1"
    )
    model = KerasVGG16(output_layer)
    template = _keras_template(model)
    return model, keras_to_flax(read_keras_h5(weights_path), template, source=weights_path)


def vgg16_perceptual(
    weights_path: str | os.PathLike, output_layer: str = "block2_pool"
) -> PerceptualNetwork:
    """The published scripts' alternative: VGG16 at block2_pool, weights from a Keras .h5 file
    the user provides (e.g. vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5)."""
    model, variables = load_keras_vgg16(weights_path, output_layer)
    return PerceptualNetwork(
        "vgg16-imagenet",
        lambda variables, images_BHWC: (model.apply(variables, images_BHWC),),
        jax.tree.map(jnp.asarray, variables),
        description=f"ImageNet VGG16 (Keras weights) at {output_layer}",
    )


def white_box_perceptual(
    victim_features_fn: Callable[[Any, jax.Array], jax.Array], victim_variables: Any
) -> PerceptualNetwork:
    """The victim's own features as perceptual features (gradients through the victim)."""
    return PerceptualNetwork(
        "white-box",
        lambda variables, images_BHWC: (victim_features_fn(variables, images_BHWC),),
        victim_variables,
        description="white-box victim gradients (upper bound; outside the threat model)",
    )


PERCEPTUAL_BUILDERS: dict[str, Callable[..., PerceptualNetwork]] = {
    "victim-surrogate": surrogate_perceptual,
    "resnet50-imagenet": resnet50_perceptual,
    "vgg16-imagenet": vgg16_perceptual,
    "white-box": white_box_perceptual,
}


# The networks whose weights come from a Keras .h5 file the user gives: their loaders
# (weights_path, output_layer) -> (module, variables).
KERAS_LOADERS: dict[str, Callable[[str | os.PathLike, str], tuple[nn.Module, dict]]] = {
    "resnet50-imagenet": load_keras_resnet50,
    "vgg16-imagenet": load_keras_vgg16,
}


def make_perceptual(name: str, **kwargs: Any) -> PerceptualNetwork:
    """Build the perceptual network `name` from its builder's keyword arguments."""
    if name not in PERCEPTUAL_BUILDERS:
        raise ValueError(
            f"unknown perceptual network {name!r}; choose one of {list(PERCEPTUAL_BUILDERS)}"
        )
    return PERCEPTUAL_BUILDERS[name](**kwargs)
