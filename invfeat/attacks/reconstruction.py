"""Attack 2: reconstruct images from feature vectors (autoencoder, conditional GAN).

The attacker trains a decoder on its own (API(image), image) pairs with the published loss
weights (`ReconstructionConfig`), through the engine's `fit`; the feature loss's perceptual
network is the one `invfeat.attacks.perceptual` resolves and allows.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from invfeat.api import as_float_images
from invfeat.attacks.arrays import ArrayBatches, attacker_features, feature_transform, init_key
from invfeat.attacks.ciphertext import encoded_dim
from invfeat.attacks.configs import CONDITIONS, ReconstructionConfig, SurrogateConfig
from invfeat.attacks.perceptual import (
    describe_perceptual,
    perceptual_key,
    resolve_perceptual,
    threat_model_allowed,
    with_perceptual,
)
from invfeat.attacks.steps import LossWeights, Reconstruction, make_gan_step, make_surrogate_step
from invfeat.models.decoder import Decoder
from invfeat.models.discriminator import Discriminator
from invfeat.models.perceptual import (
    FeaturesFn,
    PerceptualNetwork,
    SurrogateNet,
    surrogate_perceptual,
)
from invfeat.train.checkpoint import CheckpointConfig, Checkpointer
from invfeat.train.loop import CHECKPOINT_DIR, METRICS_FILE
from invfeat.train.mesh import make_mesh
from invfeat.train.optim import OptimizerConfig, make_optimizer
from invfeat.train.predict import BlockPredictor
from invfeat.train.run import claim_workdir, run_training
from invfeat.train.state import abstract_like

SURROGATE_DIR = "surrogate"
VALIDATION = "validation"
BEST_METRIC = f"{VALIDATION}/pixel_mse"
VALIDATION_CHUNK = 256  # validation images reconstructed at a time (bounds the host memory)
CHECKPOINTS = CheckpointConfig(keep_last=1)
# Reconstructions also save mid-epoch, so a killed run loses at most this many steps (an epoch
# of the published 200 steps, or the demo's single 400-step epoch, would otherwise be lost).
SAVE_EVERY_STEPS = 100


@dataclasses.dataclass
class SurrogateResult:
    """The trained surrogate as a perceptual network, its config, log and last epoch's means."""

    perceptual: PerceptualNetwork
    config: SurrogateConfig
    log: Path
    metrics: dict[str, float]


@dataclasses.dataclass
class ReconstructionResult:
    """The trained decoder and how to use it.

    `reconstruct(features [N, D]) -> images [N, H, W, 3]` float32 in [0, 1] reads features as
    the attack did (same encoding). `perceptual` describes the feature loss's network (None for
    an autoencoder); `threat_model_allowed` is False for white-box gradients. `metrics` are the
    last epoch's training means.
    """

    variables: Any  # the decoder's flax variables
    config: ReconstructionConfig
    reconstruct: Callable[[np.ndarray], np.ndarray]
    log: Path
    metrics: dict[str, float]
    perceptual: dict[str, Any] | None
    threat_model_allowed: bool
    stop_reason: str | None = None
    surrogate_log: Path | None = None


def host_images(images: Any, name: str) -> np.ndarray:
    """uint8 images stay uint8 on the host (a quarter of the memory); floats are checked."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{name} must be [N, H, W, 3] RGB, got shape {images.shape}")
        return images
    return as_float_images(images, name)


def _device_images(images: jax.Array) -> jax.Array:
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images


def _last_epoch(history: list[dict[str, Any]]) -> dict[str, float]:
    epochs = [r for r in history if r.get("kind") == "epoch"]
    if not epochs:
        return {}
    return {k: v for k, v in epochs[-1].items() if k.startswith("train/")}


def _check_pairs(images: np.ndarray, features: np.ndarray) -> None:
    if len(images) != len(features):
        raise ValueError(f"{len(images)} images but {len(features)} feature rows")


def train_surrogate(
    images: np.ndarray,
    api_features: np.ndarray,
    config: SurrogateConfig,
    workdir: str | Path,
    *,
    resume: bool = True,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> SurrogateResult:
    """Train a SurrogateNet to regress the API's outputs (encoded by `config.encoding`).

    Under one-time keys the encoded outputs carry nothing learnable, so the surrogate ends up a
    CNN trained on the attacker's images towards noise, whose early stages are a generic
    image-similarity measure: the honest outcome of running the same recipe on what the API
    returns. The network's `description` names the target it regressed.
    """
    mesh = make_mesh() if mesh is None else mesh
    workdir = Path(workdir)
    images = host_images(images, "images")
    features = attacker_features(api_features, config.encoding, "api_features")
    _check_pairs(images, features)
    record = {"attack": "surrogate", **config.to_dict()}
    claim_workdir(workdir, record, resume=resume, old_runs="clear")

    program = _surrogate_program(config, images.shape[1:], features.shape[1], mesh)
    steps_per_epoch = config.steps_per_epoch or max(1, len(images) // config.batch_size)
    batches = ArrayBatches(
        {"image": images, "features": features}, config.batch_size, mesh=mesh, seed=config.seed
    )
    result = run_training(
        program.init_fn,
        program.txs,
        program.step,
        batches,
        mesh=mesh,
        seed=config.seed,
        num_steps=config.epochs * steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        workdir=workdir,
        checkpoint=CHECKPOINTS,
        meta=record,
        resume=resume,
        progress=progress,
    )
    variables = {"params": result.state.params, **result.state.model_state}
    network = _surrogate_network(program.model, config.stages)
    target = "plaintext features" if config.encoding is None else f"{config.encoding}-encoded"
    network = dataclasses.replace(
        network,
        variables=variables,
        description=f"{network.description}, trained to regress the API's {target} outputs "
        f"({config.resolved_loss} loss)",
    )
    return SurrogateResult(network, config, workdir / METRICS_FILE, _last_epoch(result.history))


def build_reconstruction(
    config: ReconstructionConfig, image_hw: tuple[int, int], perceptual: FeaturesFn | None
) -> Reconstruction:
    """The networks, optimizers and loss weights of `config` for images of size `image_hw`."""
    decoder = Decoder(
        image_hw[0],
        image_hw[1],
        dense_units=config.dense_units,
        smallest_channels=config.smallest_channels,
        base_filters=config.decoder_filters,
        min_side=config.min_side,
        kernel_init=config.initializer,
    )
    adam = lambda rate: make_optimizer(OptimizerConfig(learning_rate=rate, eps=config.adam_epsilon))
    weights = LossWeights(
        pixel=config.pixel,
        feature=config.feature,
        total_variation=config.total_variation,
        discriminator=config.discriminator,
    )
    discriminator = discriminator_tx = None
    if config.discriminator > 0:
        discriminator = Discriminator(
            base_filters=config.discriminator_filters,
            spectral_norm=config.spectral_norm,
            comparison=CONDITIONS[config.condition],
            min_side=config.min_side,
            kernel_init=config.initializer,
        )
        discriminator_tx = adam(config.discriminator_learning_rate or config.learning_rate)
    return Reconstruction(
        decoder=decoder,
        decoder_tx=adam(config.learning_rate),
        weights=weights,
        discriminator=discriminator,
        discriminator_tx=discriminator_tx,
        perceptual=perceptual,
    )


class PixelEvaluator:
    """Evaluator for `fit`: the decoder's pixel MSE on fixed validation (features, images) pairs,
    the published autoencoder's `val_loss` (its loss is pixel MSE alone)."""

    def __init__(self, predictor: BlockPredictor, images: np.ndarray, features: np.ndarray):
        self._predictor, self._images, self._features = predictor, images, features

    def run(self, state: Any) -> list[tuple[str, float]]:
        variables = {"params": state.params["decoder"], **state.model_state["decoder"]}
        total = 0.0
        for start in range(0, len(self._images), VALIDATION_CHUNK):
            real = as_float_images(self._images[start : start + VALIDATION_CHUNK])
            made = self._predictor(variables, self._features[start : start + VALIDATION_CHUNK])
            total += float(np.sum(np.square(made - real, dtype=np.float64)))
        return [("pixel_mse", total / self._images.size)]


def validation_pairs(
    images: np.ndarray | None, features: np.ndarray | None, config: ReconstructionConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The `validation_batches` x `batch_size` pairs (all, if fewer) that `keep_best` scores:
    one fixed draw, seeded by `config.seed`, in the attack's reading of the features."""
    if images is None or features is None:
        raise ValueError(
            "keep_best picks the epoch by its pixel MSE on validation pairs: pass "
            "validation_images and validation_features (published: query and gallery), "
            "or set keep_best=False"
        )
    images = host_images(images, "validation_images")
    features = attacker_features(features, config.encoding, "validation_features")
    _check_pairs(images, features)
    keep = min(len(images), config.validation_batches * config.batch_size)
    rows = np.sort(np.random.default_rng([config.seed, 0x7A1]).permutation(len(images))[:keep])
    return images[rows], features[rows]


@dataclasses.dataclass(frozen=True)
class _Program:
    """A model's optimizer(s), init function and compiled pieces for one configuration."""

    model: Any
    txs: Any
    init_fn: Callable[[jax.Array], Any]
    step: Callable[[Any, Any], Any]
    predictor: BlockPredictor | None = None


@functools.lru_cache(maxsize=8)
def _surrogate_program(
    config: SurrogateConfig, image_shape: tuple[int, ...], feature_dim: int, mesh: Mesh
) -> _Program:
    """Built once per configuration, so a resumed or repeated run reuses its compilations."""
    del mesh  # part of the cache key: compilations belong to one mesh
    target_dim = encoded_dim(feature_dim, config.encoding) if config.encoding else feature_dim
    net = SurrogateNet(feature_dim=target_dim, widths=config.widths)
    tx = make_optimizer(OptimizerConfig(learning_rate=config.learning_rate))
    inner = make_surrogate_step(net, tx, config.resolved_loss)
    transform = feature_transform(config.encoding)

    def step(state, batch):
        batch = {"image": _device_images(batch["image"]), "features": transform(batch["features"])}
        return inner(state, batch)

    def init_fn(rng: jax.Array) -> Any:
        return net.init(init_key(rng), jnp.zeros((1, *image_shape), jnp.float32))

    return _Program(net, tx, init_fn, step)


@functools.lru_cache(maxsize=8)
def _surrogate_network(net: SurrogateNet, stages: int) -> PerceptualNetwork:
    """One features function per surrogate model, so programs keyed on it are reused."""
    return surrogate_perceptual(net, None, stages)


@functools.lru_cache(maxsize=8)
def _reconstruction_program(
    config: ReconstructionConfig,
    image_hw: tuple[int, int],
    feature_dim: int,
    mesh: Mesh,
    perceptual_key: tuple | None,
) -> _Program:
    """Built once per configuration (and perceptual network), reused by resumed runs."""
    in_dim = encoded_dim(feature_dim, config.encoding) if config.encoding else feature_dim
    features_fn = None
    placeholders = None
    if perceptual_key is not None:
        features_fn, tree, shapes = perceptual_key
        placeholders = jax.tree.unflatten(tree, [jnp.zeros(s, d) for s, d in shapes])
    rec = build_reconstruction(config, image_hw, features_fn)
    inner = make_gan_step(
        rec, config.discriminator_steps, config.generator_steps, config.separate_batches
    )
    transform = feature_transform(config.encoding)

    def step(state, batch):
        batch = {"image": _device_images(batch["image"]), "features": transform(batch["features"])}
        return inner(state, batch)

    def decode(variables: Any, features: jax.Array) -> jax.Array:
        return rec.decoder.apply(variables, transform(features), train=False)

    init = rec.init_fn(in_dim, placeholders)
    return _Program(
        model=rec,
        txs=rec.optimizers,
        init_fn=lambda rng: init(init_key(rng)),
        step=step,
        predictor=BlockPredictor(decode, mesh, config.eval_batch_size),
    )


def run_reconstruction(
    train_images: np.ndarray,
    train_features: np.ndarray,
    config: ReconstructionConfig,
    workdir: str | Path,
    *,
    perceptual_fn: PerceptualNetwork | SurrogateResult | None = None,
    validation_images: np.ndarray | None = None,
    validation_features: np.ndarray | None = None,
    resume: bool = True,
    mesh: Mesh | None = None,
    progress: bool = True,
    save_every_steps: int = SAVE_EVERY_STEPS,
) -> ReconstructionResult:
    """Train the decoder of `config` on the attacker's (images, API features) pairs.

    Images: [N, H, W, 3] uint8 or float in [0, 1]; features [N, D] float32 (ciphertext with
    `config.encoding` set: the decoder and the discriminator's condition then read the encoded
    features, so losses stay finite whatever the bits). A perceptual network is used only when
    `config.feature > 0`: a victim-surrogate is trained first (in `<workdir>/surrogate`) unless
    `perceptual_fn` gives one (a `PerceptualNetwork`, or the `SurrogateResult` of
    `train_surrogate`); `white-box` needs `perceptual_fn=white_box_perceptual(victim
    features_fn, victim variables)`, and its result carries `threat_model_allowed=False`. A
    checkpoint is kept every `save_every_steps` steps and at each epoch's end; a resumed run
    goes on from the last one, bit for bit. With `config.keep_best` each epoch ends with the
    pixel MSE on `validation_pairs` of (`validation_images`, `validation_features`) and the
    decoder of the lowest is returned.
    """
    mesh = make_mesh() if mesh is None else mesh
    workdir = Path(workdir)
    images = host_images(train_images, "train_images")
    features = attacker_features(train_features, config.encoding, "train_features")
    _check_pairs(images, features)
    if config.keep_best:
        validation = validation_pairs(validation_images, validation_features, config)
    record = {"attack": "reconstruction", **config.to_dict()}
    claim_workdir(workdir, record, resume=resume, old_runs="clear")

    perceptual, surrogate = None, None
    if config.feature > 0:
        surrogate_config = dataclasses.replace(config.surrogate, encoding=config.encoding)
        perceptual, surrogate = resolve_perceptual(
            config,
            perceptual_fn,
            lambda: train_surrogate(
                images,
                train_features,
                surrogate_config,
                workdir / SURROGATE_DIR,
                resume=resume,
                mesh=mesh,
                progress=progress,
            ),
        )
        record["perceptual"] = describe_perceptual(perceptual)

    program = _reconstruction_program(
        config, images.shape[1:3], features.shape[1], mesh, perceptual_key(perceptual)
    )
    place_perceptual = lambda state: with_perceptual(state, perceptual.variables)
    batches = ArrayBatches(
        {"image": images, "features": features}, config.batch_size, mesh=mesh, seed=config.seed
    )
    checkpoint = dataclasses.replace(
        CHECKPOINTS,
        every_steps=save_every_steps,
        best_metric=BEST_METRIC if config.keep_best else None,
        best_mode="min",
    )
    evaluators = None
    if config.keep_best:
        evaluators = {VALIDATION: PixelEvaluator(program.predictor, *validation)}
    result = run_training(
        program.init_fn,
        program.txs,
        program.step,
        batches,
        mesh=mesh,
        seed=config.seed,
        num_steps=config.total_steps,
        steps_per_epoch=config.steps_per_epoch,
        workdir=workdir,
        checkpoint=checkpoint,
        meta=record,
        resume=resume,
        evaluators=evaluators,
        progress=progress,
        prepare_state=None if perceptual is None else place_perceptual,
    )
    final = result.state
    if config.keep_best:
        with Checkpointer(workdir / CHECKPOINT_DIR, checkpoint) as ckpt:
            best = ckpt.best_step()
            if best is not None and best != result.step:
                final = ckpt.restore(abstract_like(final), best).state
    variables = {"params": final.params["decoder"], **final.model_state["decoder"]}

    def reconstruct(features_ND: np.ndarray) -> np.ndarray:
        features_ND = attacker_features(features_ND, config.encoding, "features")
        return program.predictor(variables, features_ND)

    label = describe_perceptual(perceptual) if perceptual is not None else None
    return ReconstructionResult(
        variables=variables,
        config=config,
        reconstruct=reconstruct,
        log=workdir / METRICS_FILE,
        metrics=_last_epoch(result.history),
        perceptual=label,
        threat_model_allowed=perceptual is None or threat_model_allowed(perceptual),
        stop_reason=result.stop_reason,
        surrogate_log=surrogate.log if surrogate is not None else None,
    )


def reconstruction_summary(result: ReconstructionResult) -> Mapping[str, Any]:
    """What a report needs besides the evaluation: kind, perceptual label, threat model."""
    return {
        "kind": result.config.kind,
        "encoding": result.config.encoding,
        "perceptual": result.perceptual,
        "threat_model_allowed": result.threat_model_allowed,
        "stop_reason": result.stop_reason,
    }
