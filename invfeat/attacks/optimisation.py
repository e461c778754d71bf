"""Attack 2, without a decoder: reconstruct images by gradient descent on their pixels.

For each target feature vector the pixels start from mid-grey (or from given images, e.g. a
decoder's reconstructions, to refine them) and descend the feature loss between
`features_fn(variables, image)` and the target plus a total-variation prior. In the black-box
setting `features_fn` is the attacker's surrogate of the API; with the victim's own network
(`white_box=True`) the result is an upper bound outside the threat model, and says so.

One jitted program optimises a chunk of `batch_size` targets: the per-target optimisation (its
own Adam state, its own loss) is `jax.vmap`ped over the chunk and its step loop is a
`jax.lax.scan`, so any number of targets runs on one compilation (the last chunk is padded).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm import tqdm

from invfeat import losses
from invfeat.api import as_float_images
from invfeat.attacks.arrays import attacker_features, feature_transform
from invfeat.attacks.configs import _check_encoding, _JSONable, resolved_feature_loss
from invfeat.models.perceptual import SurrogateNet
from invfeat.train.mesh import batch_sharding, check_batch_size, replicated_sharding

FeaturesFn = Callable[[Any, jax.Array], jax.Array]  # (variables, images [B, H, W, 3]) -> [B, D]
FEATURE_LOSSES = ("auto", "cosine", "mse")
INITS = ("grey", "given")


def _check_int(config: Any, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{type(config).__name__}.{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{type(config).__name__}.{name} must be >= {minimum}, got {value}")


def _check_float(config: Any, name: str, *, positive: bool) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{type(config).__name__}.{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        which = "positive" if positive else ">= 0"
        raise ValueError(f"{type(config).__name__}.{name} must be finite and {which}, got {value}")


@dataclasses.dataclass(frozen=True)
class OptimisationConfig(_JSONable):
    """Gradient descent on the pixels towards target features (invfeat's own, not published).

    `steps` Adam steps at `learning_rate` (in pixel units: Adam's first steps move each pixel by
    about that much), decayed to 0 by a cosine over the steps with `cosine_decay`, so the last
    iterate settles. The objective per target is the feature loss plus `total_variation` times
    `invfeat.losses.total_variation` of the image. `loss` "cosine" (cosine distance) or "mse"
    (mean over D); "auto" is cosine for plaintext targets (`encoding` None) and MSE for encoded
    ones, as `SurrogateConfig`. `encoding` (None, or a name of
    `invfeat.attacks.ciphertext.ENCODINGS`) reads the targets as the surrogate was trained to
    regress them: its output must then have the encoded size. `init` "grey": mid-grey plus
    Gaussian noise of std `init_noise`, target i's noise drawn from `fold_in(key(seed), i)`;
    "given": the caller's images (e.g. a decoder's reconstructions, refined here; `seed` and
    `init_noise` unused). `batch_size` targets per compiled call; `curve_every`: the objective
    is recorded every that many steps. The defaults are not tuned on a study.
    """

    steps: int = 500
    learning_rate: float = 0.01
    cosine_decay: bool = True
    total_variation: float = 0.05
    loss: str = "auto"
    encoding: str | None = None
    init: str = "grey"
    init_noise: float = 0.02
    batch_size: int = 64
    curve_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        _check_encoding(self.encoding)
        _check_int(self, "steps", 1)
        _check_int(self, "batch_size", 1)
        _check_int(self, "curve_every", 1)
        _check_int(self, "seed", 0)
        _check_float(self, "learning_rate", positive=True)
        _check_float(self, "total_variation", positive=False)
        _check_float(self, "init_noise", positive=False)
        if not isinstance(self.cosine_decay, bool):
            raise TypeError(f"cosine_decay must be a bool, got {self.cosine_decay!r}")
        if self.loss not in FEATURE_LOSSES:
            raise ValueError(f"loss must be one of {FEATURE_LOSSES}, got {self.loss!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")

    @property
    def resolved_loss(self) -> str:
        return resolved_feature_loss(self.loss, self.encoding)


class InversionResult(NamedTuple):
    """Per target: the images [N, H, W, 3] float32 in [0, 1], the objective and its feature loss
    at them [N], the objective every `curve_every` steps from step 0 [N, ceil(steps / k)]
    (`curve[:, 0]` is the start's), and whether the threat model allows the attack."""

    images: np.ndarray
    loss: np.ndarray
    feature_loss: np.ndarray
    curve: np.ndarray
    threat_model_allowed: bool


@functools.lru_cache(maxsize=8)
def surrogate_features_fn(net: SurrogateNet) -> FeaturesFn:
    """A trained SurrogateNet's regression output (its imitation of the API), BatchNorm in
    inference mode; one function per network, so the programs keyed on it are reused."""
    return lambda variables, images_BHWC: net.apply(variables, images_BHWC, train=False)[0]


@functools.lru_cache(maxsize=16)
def _program(features_fn: FeaturesFn, config: OptimisationConfig, image_hw: tuple[int, int]):
    """`(variables, targets [B, D], given [B, H, W, 3] or None, rows [B]) -> (images, loss,
    feature_loss, curve)`, jitted; built once per (function, config, image size).

    Pixels are optimised directly and clipped to [0, 1] after each Adam step (projected
    descent) rather than parametrised as sigmoid(logits): the start is exactly the given images
    (a logit of a 0 or 1 pixel is infinite), the learning rate is in pixel units, and a
    saturated pixel keeps its full gradient where a sigmoid's would vanish.
    """
    transform = feature_transform(config.encoding)
    cosine = config.resolved_loss == "cosine"
    rate = config.learning_rate
    if config.cosine_decay:
        rate = optax.cosine_decay_schedule(config.learning_rate, config.steps)
    tx = optax.adam(rate)

    def objective(variables: Any, image_HWC: jax.Array, target_D: jax.Array):
        features = features_fn(variables, image_HWC[None])
        if jnp.ndim(features) != 2 or jnp.shape(features)[1] != target_D.shape[0]:
            raise ValueError(
                f"features_fn gave shape {jnp.shape(features)} for one image; the targets "
                f"(as read{'' if config.encoding is None else ' with ' + config.encoding}) "
                f"need [1, {target_D.shape[0]}]"
            )
        features = features.astype(jnp.float32)
        if cosine:
            feature = losses.cosine_distance(features, target_D[None])[0]
        else:
            feature = jnp.mean(jnp.square(features[0] - target_D))
        value = feature + config.total_variation * losses.total_variation(image_HWC[None])
        return value, feature

    grad_fn = jax.value_and_grad(objective, argnums=1, has_aux=True)

    def one(variables: Any, target_D: jax.Array, start_HWC: jax.Array):
        def step(carry, _):
            image, opt_state = carry
            (value, _), grad = grad_fn(variables, image, target_D)
            updates, opt_state = tx.update(grad, opt_state, image)
            image = jnp.clip(optax.apply_updates(image, updates), 0.0, 1.0)
            return (image, opt_state), value

        carry = (start_HWC, tx.init(start_HWC))
        (image, _), values = jax.lax.scan(step, carry, length=config.steps)
        value, feature = objective(variables, image, target_D)
        return image, value, feature, values[:: config.curve_every]

    def grey(row: jax.Array) -> jax.Array:
        noise = jax.random.normal(
            jax.random.fold_in(jax.random.key(config.seed), row), (*image_hw, 3)
        )
        return jnp.clip(0.5 + config.init_noise * noise, 0.0, 1.0)

    def program(variables: Any, targets_BD: jax.Array, given_BHWC: Any, rows_B: jax.Array):
        targets = transform(targets_BD).astype(jnp.float32)
        starts = jax.vmap(grey)(rows_B) if given_BHWC is None else given_BHWC
        return jax.vmap(one, in_axes=(None, 0, 0))(variables, targets, starts)

    return jax.jit(program)


def _pad(block: np.ndarray, size: int) -> np.ndarray:
    """`block` with its last row repeated up to `size` rows (the copies are dropped later)."""
    return np.pad(block, [(0, size - len(block))] + [(0, 0)] * (block.ndim - 1), mode="edge")


def _starts(
    config: OptimisationConfig,
    init_images: Any,
    rows: int,
    image_hw: tuple[int, int] | None,
) -> tuple[np.ndarray | None, tuple[int, int]]:
    """The checked given images (None for "grey") and the image size."""
    if image_hw is not None:
        if (
            not isinstance(image_hw, tuple | list)
            or len(image_hw) != 2
            or not all(isinstance(s, int | np.integer) and s > 0 for s in image_hw)
        ):
            raise ValueError(f"image_hw must be (height, width), two positive ints; got {image_hw}")
        image_hw = (int(image_hw[0]), int(image_hw[1]))
    if config.init == "grey":
        if init_images is not None:
            raise ValueError('init="grey" starts from mid-grey: pass no init_images (or "given")')
        if image_hw is None:
            raise ValueError('init="grey" needs image_hw=(height, width)')
        return None, image_hw
    if init_images is None:
        raise ValueError('init="given" needs init_images [N, H, W, 3] (one per target)')
    given = np.asarray(init_images)
    if given.dtype == np.uint8:  # kept uint8 on the host (a quarter of the memory), per chunk
        if given.ndim != 4 or given.shape[-1] != 3:
            raise ValueError(f"init_images must be [N, H, W, 3] RGB, got shape {given.shape}")
    else:
        given = as_float_images(given, "init_images")
    if len(given) != rows:
        raise ValueError(f"init_images has {len(given)} images for {rows} targets")
    if image_hw is not None and given.shape[1:3] != image_hw:
        raise ValueError(f"init_images are {given.shape[1:3]}, but image_hw is {image_hw}")
    return given, given.shape[1:3]


def _fetch(outputs: tuple[jax.Array, ...], valid: int) -> tuple[np.ndarray, ...]:
    if not all(x.is_fully_addressable for x in outputs):
        outputs = multihost_utils.process_allgather(outputs, tiled=True)
    return tuple(np.asarray(x)[:valid] for x in outputs)


def invert_features(
    features_fn: FeaturesFn,
    variables: Any,
    targets_ND: np.ndarray,
    config: OptimisationConfig,
    *,
    image_hw: tuple[int, int] | None = None,
    init_images: np.ndarray | None = None,
    white_box: bool = False,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> InversionResult:
    """Images whose features under `features_fn(variables, images)` approach `targets_ND`.

    `features_fn(variables, images [B, H, W, 3] float32 in [0, 1]) -> [B, D]` must be
    differentiable in the images; it is called on one image at a time under vmap, so the
    targets of a chunk never mix (BatchNorm belongs in inference mode: the statistics of one
    image are not the model's). `targets_ND`: float features, finite unless `config.encoding`
    reads their bits; `image_hw` the size of the images (for `init="grey"`), or `init_images`
    [N, H, W, 3] uint8 or float in [0, 1] (for `"given"`).
    `white_box`: `features_fn` is the victim itself, so the result is labelled outside the
    threat model. Targets run in chunks of `config.batch_size` (split over `mesh` if given: a
    multiple of its devices), the last one padded, one compilation for any number; a target's
    result depends on its own row only. `progress` shows a bar over the chunks on stderr.
    """
    if not isinstance(white_box, bool):
        raise TypeError(f"white_box must be a bool, got {white_box!r}")
    if not isinstance(config, OptimisationConfig):
        raise TypeError(f"config must be an OptimisationConfig, got {type(config).__name__}")
    targets = attacker_features(targets_ND, config.encoding, "targets")
    n = len(targets)
    if n == 0:
        raise ValueError("nothing to invert: targets has no rows")
    given, image_hw = _starts(config, init_images, n, image_hw)
    size = config.batch_size
    place = lambda tree: tree
    if mesh is None:
        variables = jax.device_put(variables)  # once, not with every chunk
    else:
        check_batch_size(size, mesh, "OptimisationConfig.batch_size")
        variables = jax.device_put(variables, replicated_sharding(mesh))
        place = lambda tree: jax.device_put(tree, batch_sharding(mesh))
    program = _program(features_fn, config, image_hw)

    parts, in_flight = [], None
    chunks = range(0, n, size)
    bar = tqdm(
        total=len(chunks), desc="inversion", unit="chunk", file=sys.stderr,
        disable=not progress, leave=False,
    )  # fmt: skip
    with bar:
        for start in chunks:
            rows = np.arange(start, min(start + size, n), dtype=np.int32)
            starts = None if given is None else as_float_images(given[rows], "init_images")
            block = (targets[rows], starts, rows)
            block = place(jax.tree.map(lambda x: _pad(x, size), block))
            dispatched = (program(variables, *block), len(rows))
            if in_flight is not None:  # fetch the previous chunk while this one runs
                parts.append(_fetch(*in_flight))
                bar.update()
            in_flight = dispatched
        parts.append(_fetch(*in_flight))
        bar.update()
    images, loss, feature_loss, curve = (np.concatenate(p) for p in zip(*parts, strict=True))
    return InversionResult(
        np.asarray(images, np.float32),
        loss,
        feature_loss,
        curve,
        threat_model_allowed=not white_box,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class OptimisationAttack:
    """An optimisation attack bound to its model, ready for `evaluate_reconstructions`.

    `reconstruct(features [N, D]) -> images [N, H, W, 3]` float32 in [0, 1] is the
    `reconstruct` argument of `invfeat.attacks.evaluation.evaluate_reconstructions`, which scores
    it as any decoder. With `init="given"`, `start(features) -> images` gives each target's
    start (e.g. a `ReconstructionResult.reconstruct`, refined here).
    """

    features_fn: FeaturesFn
    variables: Any
    config: OptimisationConfig
    image_hw: tuple[int, int]
    white_box: bool = False
    start: Callable[[np.ndarray], np.ndarray] | None = None
    mesh: Mesh | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if (self.config.init == "given") != (self.start is not None):
            raise ValueError(
                f'init={self.config.init!r}: a start function is needed for "given" and only then'
            )

    @property
    def threat_model_allowed(self) -> bool:
        return not self.white_box

    def invert(self, targets_ND: np.ndarray) -> InversionResult:
        init = None if self.start is None else self.start(targets_ND)
        return invert_features(
            self.features_fn,
            self.variables,
            targets_ND,
            self.config,
            image_hw=self.image_hw,
            init_images=init,
            white_box=self.white_box,
            mesh=self.mesh,
            progress=self.progress,
        )

    def reconstruct(self, targets_ND: np.ndarray) -> np.ndarray:
        return self.invert(targets_ND).images

    def summary(self) -> dict[str, Any]:
        """What a report needs besides the evaluation, as `reconstruction_summary`."""
        return {
            "kind": "optimisation",
            "encoding": self.config.encoding,
            "loss": self.config.resolved_loss,
            "init": self.config.init,
            "white_box": self.white_box,
            "threat_model_allowed": self.threat_model_allowed,
        }
