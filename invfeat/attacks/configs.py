"""Configs of the attacks: frozen, JSON-able dataclasses with the published defaults.

tests/data/published_hyperparameters.json transcribes the published values (and those invfeat
has no field for); docs/DEPARTURES.md lists where the code still departs from the published
scripts. `SurrogateConfig` is invfeat's own: the published scripts have no surrogate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from invfeat.attacks.ciphertext import ENCODINGS
from invfeat.models.initializers import KERNEL_INITIALIZERS
from invfeat.models.perceptual import PERCEPTUAL_BUILDERS

T = TypeVar("T")
DEFAULT_PERCEPTUAL = "victim-surrogate"  # the threat model's own: a surrogate of the API
KINDS = ("autoencoder", "gan")
PRESETS = {  # the README's settings
    "autoencoder": {"pixel": 1.0, "feature": 0.0, "discriminator": 0.0},
    "gan": {"pixel": 0.0, "feature": 1.0, "discriminator": 0.06},
}
CONDITIONS = {"concat": "concatenation", "absdiff": "absolute_difference"}
SURROGATE_LOSSES = ("auto", "cosine", "mse")


def _check_encoding(encoding: str | None) -> None:
    if encoding is not None and encoding not in ENCODINGS:
        raise ValueError(f"encoding must be None or one of {list(ENCODINGS)}, got {encoding!r}")


def _positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ValueError(f"{type(config).__name__}.{name} must be positive, got {value}")


def resolved_feature_loss(loss: str, encoding: str | None) -> str:
    """A feature loss as named, or for "auto": cosine on plaintext, MSE on encoded ciphertext."""
    if loss != "auto":
        return loss
    return "cosine" if encoding is None else "mse"


def _check_training(config: Any) -> None:
    """The fields every trained attack shares: its initialiser and Adam's epsilon."""
    if config.initializer not in KERNEL_INITIALIZERS:
        raise ValueError(
            f"initializer must be one of {list(KERNEL_INITIALIZERS)}, got {config.initializer!r}"
        )
    _positive(config, "adam_epsilon")


def _from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    values = {}
    for name, value in data.items():
        if isinstance(value, list):
            value = tuple(value)
        if name == "surrogate" and isinstance(value, Mapping):
            value = SurrogateConfig.from_dict(value)
        values[name] = value
    return cls(**values)


class _JSONable:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """The config `to_dict()` gave (lists become tuples again)."""
        return _from_dict(cls, data)


@dataclasses.dataclass(frozen=True)
class AttributeAttackConfig(_JSONable):
    """The attribute head of the published code and its training.

    The defaults are the flags of the published `scripts/reconstruction_attributes.py`
    (`block_num` 1, `dropout_rate` 0.0, `learning_rate` 5e-5, `batch_size` 128, `epoch_num`
    100; tests/data/published_hyperparameters.json). Adam at `learning_rate`, times `lr_drop`
    (the published 1/5) for the second half of the steps; with `keep_best` the checkpoint with
    the best mean balanced accuracy on the victims' split is kept (as published), else the last
    one. Kernels start from `initializer` (published: Keras' "glorot_uniform"; Flax's default
    is "lecun_normal") and Adam's epsilon is `adam_epsilon` (published: Keras' 1e-7).
    With `partial_batches` an epoch is Keras' `fit`: a new shuffle of the rows, ceil(rows /
    batch_size) batches, the last one partial (its padding rows are masked out of the loss and
    of the BatchNorm statistics); without it, `steps_per_epoch` full batches (None:
    floor(rows / batch_size)) from one continuous shuffled stream, batches straddling epochs.
    `encoding` (None, or a name of `invfeat.attacks.ciphertext.ENCODINGS`) is how the attacker
    reads the features it receives: None uses the floats as they are (plaintext only); an
    encoding reads ciphertext (or plaintext, for a like-for-like comparison) without NaN.
    """

    block_num: int = 1
    dropout: float = 0.0
    learning_rate: float = 5e-5
    lr_drop: float = 0.2
    batch_size: int = 128
    epochs: int = 100
    partial_batches: bool = True  # published: Keras' fit, ceil(rows / batch) steps per epoch
    steps_per_epoch: int | None = None  # only without partial_batches
    initializer: str = "glorot_uniform"  # published: Keras' default
    adam_epsilon: float = 1e-7  # published: Keras' default
    merge_colours: bool = True
    # published (`dropna`, exactly one colour flag): a record with any attribute unknown is left
    # out of training and scoring; False keeps its known attributes
    drop_incomplete_records: bool = True
    keep_best: bool = True
    encoding: str | None = None
    eval_batch_size: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        _check_encoding(self.encoding)
        _positive(self, "block_num", "learning_rate", "batch_size", "epochs", "steps_per_epoch")
        _positive(self, "eval_batch_size")
        _check_training(self)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.partial_batches and self.steps_per_epoch is not None:
            raise ValueError(
                "partial_batches counts an epoch's batches itself (ceil(rows / batch_size)): "
                "set steps_per_epoch None, or partial_batches False for a fixed count"
            )

    def steps_per_epoch_for(self, rows: int) -> int:
        """The optimizer steps of one epoch over `rows` training records."""
        if self.partial_batches:
            return -(-rows // self.batch_size)
        return self.steps_per_epoch or max(1, rows // self.batch_size)


@dataclasses.dataclass(frozen=True)
class SurrogateConfig(_JSONable):
    """The attacker's imitation of the black-box API (for the victim-surrogate perceptual net).

    invfeat's own, with no published counterpart (the published feature loss runs through an
    ImageNet ResNet-50, `perceptual="resnet50-imagenet"`, or VGG16, `"vgg16-imagenet"`): its
    defaults are not published values.

    `loss` "auto": cosine distance to plaintext features, MSE to encoded ones (bits/bytes/...).
    `stages`: how many stage outputs of the SurrogateNet serve as perceptual features.
    `encoding` is set by the reconstruction attack to its own.
    """

    widths: tuple[int, ...] = (32, 64, 128)
    stages: int = 2
    loss: str = "auto"
    learning_rate: float = 1e-3
    batch_size: int = 64
    epochs: int = 20
    steps_per_epoch: int | None = None
    encoding: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_encoding(self.encoding)
        _positive(self, "learning_rate", "batch_size", "epochs", "steps_per_epoch")
        if self.loss not in SURROGATE_LOSSES:
            raise ValueError(f"surrogate loss must be one of {SURROGATE_LOSSES}, got {self.loss!r}")
        if not 1 <= self.stages <= len(self.widths):
            raise ValueError(f"stages must be in [1, {len(self.widths)}], got {self.stages}")

    @property
    def resolved_loss(self) -> str:
        return resolved_feature_loss(self.loss, self.encoding)


# The output layer of each Keras perceptual network in the published scripts: ResNet-50's
# `conv2_block3_out`, and VGG16's `block2_pool`, the scripts' commented alternative.
PERCEPTUAL_LAYERS = {"resnet50-imagenet": "conv2_block3_out", "vgg16-imagenet": "block2_pool"}


@dataclasses.dataclass(frozen=True)
class ReconstructionConfig(_JSONable):
    """An image-reconstruction attack: the published flags plus model sizes and step counts.

    Loss weights as the published flags (`pixel`, `feature`, `total_variation`,
    `discriminator`; those left None take the README preset of `kind`); `perceptual` names the
    network of the feature loss (`perceptual_weights`: the Keras .h5 file of resnet50-imagenet
    or vgg16-imagenet, `perceptual_layer` its output layer, by default the published one:
    PERCEPTUAL_LAYERS); `discriminator_steps` / `generator_steps` /
    `separate_batches` drive the GAN alternation; `condition` "concat" or "absdiff" compares the
    image and the feature in the discriminator; `encoding` as in `AttributeAttackConfig`.
    Training runs `epochs` x `steps_per_epoch` steps (published: 300 x 200, batch 64).
    The defaults are the published flags of `scripts/reconstruction_GAN.py` and
    `scripts/reconstruction_autoencoder.py` (Adam at 1e-4 for the decoder and the discriminator,
    `use_different_batches` True, no spectral normalisation, concatenation) and the published
    decoder and discriminator sizes (`reconstruction_utils.py`); the loss weights are the
    README's commands (PRESETS), not the scripts' flag defaults (1, 1, 0, 1); kernels start from
    Keras' "glorot_uniform" and Adam's epsilon is Keras' 1e-7, as published. With `keep_best`
    (None: on for the autoencoder, as published, off for the GAN) each epoch ends with the
    pixel MSE of the decoder on `validation_batches` x `batch_size` validation pairs (published:
    50 batches of 64 query and gallery images), and the epoch with the lowest is kept. Not
    published: `perceptual` defaults to the threat model's victim-surrogate (published: the
    ImageNet ResNet-50, which the paper-* studies name).
    """

    kind: str = "autoencoder"
    pixel: float | None = None  # None: the kind's preset (PRESETS)
    feature: float | None = None
    total_variation: float = 0.0
    discriminator: float | None = None
    perceptual: str = DEFAULT_PERCEPTUAL
    perceptual_weights: str | None = None
    perceptual_layer: str | None = None  # None: the network's published layer (PERCEPTUAL_LAYERS)
    discriminator_steps: int = 1
    generator_steps: int = 1
    separate_batches: bool = True  # published use_different_batches: D and G alternate batches
    spectral_norm: bool = False
    condition: str = "concat"
    learning_rate: float = 1e-4  # published learning_rate_of_G
    discriminator_learning_rate: float | None = None  # None: learning_rate (published: 1e-4)
    batch_size: int = 64
    epochs: int = 300
    steps_per_epoch: int = 200
    dense_units: int = 256
    smallest_channels: int = 128
    decoder_filters: int = 16
    discriminator_filters: int = 32
    min_side: int = 4
    initializer: str = "glorot_uniform"  # published: Keras' default
    adam_epsilon: float = 1e-7  # published: Keras' default
    keep_best: bool | None = None  # None: the autoencoder keeps its best validation epoch
    validation_batches: int = 50  # published: 50 batches of query and gallery images
    encoding: str | None = None
    surrogate: SurrogateConfig = SurrogateConfig()
    eval_batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        _check_encoding(self.encoding)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name, value in PRESETS[self.kind].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.keep_best is None:
            object.__setattr__(self, "keep_best", self.kind == "autoencoder")
        if self.perceptual_layer is None:
            layer = PERCEPTUAL_LAYERS.get(self.perceptual, PERCEPTUAL_LAYERS["resnet50-imagenet"])
            object.__setattr__(self, "perceptual_layer", layer)
        if self.kind == "autoencoder" and self.discriminator != 0:
            raise ValueError("an autoencoder has no discriminator: set discriminator=0")
        if self.kind == "gan" and self.discriminator <= 0:
            raise ValueError("a GAN needs a discriminator weight > 0")
        for name in ("pixel", "feature", "total_variation", "discriminator"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")
        if self.perceptual not in PERCEPTUAL_BUILDERS:
            raise ValueError(
                f"unknown perceptual network {self.perceptual!r}; "
                f"choose one of {list(PERCEPTUAL_BUILDERS)}"
            )
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {list(CONDITIONS)}, got {self.condition!r}")
        _positive(self, "discriminator_steps", "generator_steps", "learning_rate", "batch_size")
        _positive(self, "epochs", "steps_per_epoch", "dense_units", "smallest_channels")
        _positive(self, "decoder_filters", "discriminator_filters", "min_side", "eval_batch_size")
        _positive(self, "discriminator_learning_rate", "validation_batches")
        _check_training(self)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def autoencoder_config(**overrides: Any) -> ReconstructionConfig:
    """The README's autoencoder: pixel 1, feature 0."""
    return ReconstructionConfig(**{"kind": "autoencoder", **overrides})


def gan_config(**overrides: Any) -> ReconstructionConfig:
    """The README's GAN: pixel 0, feature 1, discriminator 0.06."""
    return ReconstructionConfig(**{"kind": "gan", **overrides})
