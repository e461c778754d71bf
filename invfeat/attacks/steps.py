"""Pure training steps of the attacks, `(state, batch) -> (state, metrics)`, ready for `jax.jit`.

States are `invfeat.train.state.TrainState`s. Batches are dicts: "features" [B, D] (what the
attacker feeds its networks: API outputs, or their ciphertext encoding), "attributes" [B, A]
int32 (-1 unknown) for the attribute head, "image" [B, H, W, 3] in [0, 1] for the rest.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from invfeat import losses
from invfeat.attacks.arrays import MASK
from invfeat.models.perceptual import FeaturesFn
from invfeat.train.state import (
    Batch,
    LossFn,
    Metrics,
    StepFn,
    TrainState,
    apply_gradients,
    make_train_step,
)

# ---- attribute head ------------------------------------------------------------------------


def attribute_class_weights(labels_NA: np.ndarray, num_classes: Sequence[int]) -> jax.Array:
    """Balanced class weights n / (k * count_c) per attribute, zero-padded to [A, max C].

    As `losses.balanced_class_weights`, computed on the host (no per-attribute compilation).
    A label at or beyond its attribute's class count is refused, naming the column.
    """
    labels_NA = np.asarray(labels_NA)
    if labels_NA.ndim != 2 or labels_NA.shape[1] != len(num_classes):
        raise ValueError(
            f"attribute labels must be [N, {len(num_classes)}], got shape {labels_NA.shape}"
        )
    weights_AC = np.zeros((len(num_classes), max(num_classes)), np.float32)
    for a, classes in enumerate(num_classes):
        known = labels_NA[:, a][labels_NA[:, a] >= 0].astype(np.int64)
        if known.size and known.max() >= classes:
            # Out of range, a label would make the loss NaN (no class weight, no logit).
            raise ValueError(
                f"attribute labels column {a} holds class {known.max()}, but that attribute "
                f"has {classes} classes (0..{classes - 1}; -1 for unknown)"
            )
        counts = np.bincount(known, minlength=classes)[:classes]
        present = np.count_nonzero(counts)
        weights_AC[a, :classes] = np.where(
            counts > 0, len(known) / np.maximum(present * counts, 1), 0.0
        )
    return jnp.asarray(weights_AC)


def attribute_head_loss_fn(head: nn.Module, class_weights_AC: jax.Array) -> LossFn:
    """Sum over attributes of the class-balanced cross-entropy; metrics: mean batch accuracy.

    Summed as Keras sums the losses of a multi-output model; dropout and BatchNorm in training
    mode. A batch with a MASK (`ArrayBatches(partial_batches=True)`) leaves its padding rows out.
    """
    num_classes = tuple(head.num_classes)

    def loss_fn(params, model_state, batch: Batch, rng: jax.Array):
        mask_B = batch.get(MASK)
        logits, updates = head.apply(
            {"params": params, **model_state},
            batch["features"],
            train=True,
            mask_B=mask_B,
            rngs={"dropout": rng},
            mutable=["batch_stats"],
        )
        labels_BA = batch["attributes"]
        if mask_B is not None:  # padding rows: unknown labels, out of the loss and the accuracy
            labels_BA = jnp.where(mask_B[:, None], labels_BA, -1)
        total, correct, known = 0.0, 0.0, 0.0
        for a, (logits_BC, classes) in enumerate(zip(logits, num_classes, strict=True)):
            weights_C = class_weights_AC[a, :classes]
            total = total + losses.class_balanced_cross_entropy(
                logits_BC, labels_BA[:, a], weights_C
            )
            valid = labels_BA[:, a] >= 0
            correct = correct + jnp.sum(valid & (jnp.argmax(logits_BC, -1) == labels_BA[:, a]))
            known = known + jnp.sum(valid)
        return total, ({"accuracy": correct / jnp.maximum(known, 1)}, updates)

    return loss_fn


def make_attribute_head_step(
    head: nn.Module, tx: optax.GradientTransformation, class_weights_AC: jax.Array
) -> StepFn:
    return make_train_step(attribute_head_loss_fn(head, class_weights_AC), tx)


# ---- surrogate of the black-box API --------------------------------------------------------

SURROGATE_LOSSES = ("cosine", "mse")


def surrogate_loss_fn(model: nn.Module, loss: str = "cosine") -> LossFn:
    """Regress batch["features"] (the API's output) from batch["image"]."""
    if loss not in SURROGATE_LOSSES:
        raise ValueError(f"surrogate loss must be one of {SURROGATE_LOSSES}, got {loss!r}")

    def loss_fn(params, model_state, batch: Batch, rng: jax.Array):
        (predicted_BD, _), updates = model.apply(
            {"params": params, **model_state}, batch["image"], train=True, mutable=["batch_stats"]
        )
        cosine = jnp.mean(losses.cosine_distance(predicted_BD, batch["features"]))
        mse = losses.mse(predicted_BD, batch["features"])
        value = cosine if loss == "cosine" else mse
        return value, ({"cosine_distance": cosine, "mse": mse}, updates)

    return loss_fn


def make_surrogate_step(
    model: nn.Module, tx: optax.GradientTransformation, loss: str = "cosine"
) -> StepFn:
    return make_train_step(surrogate_loss_fn(model, loss), tx)


# ---- reconstruction: autoencoder and GAN ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The published flags: pixel, feature (reconstruction), total_variation, discriminator."""

    pixel: float = 1.0
    feature: float = 0.0
    total_variation: float = 0.0
    discriminator: float = 0.0


AUTOENCODER_WEIGHTS = LossWeights(pixel=1.0, feature=0.0)
GAN_WEIGHTS = LossWeights(pixel=0.0, feature=1.0, discriminator=0.06)


@dataclasses.dataclass(frozen=True)
class Reconstruction:
    """The networks of a reconstruction attack, their optimizers, and the decoder loss weights.

    One multi-part state: "decoder", "discriminator" (when its weight is > 0) and "perceptual"
    (when the feature weight is > 0; frozen, its optimizer `optax.set_to_zero()`).
    `perceptual` is a pure `features(variables, images)` (see invfeat.models.perceptual); its
    variables go into the state through `init_fn`, never into the compiled program as constants.
    """

    decoder: nn.Module
    decoder_tx: optax.GradientTransformation
    weights: LossWeights = AUTOENCODER_WEIGHTS
    discriminator: nn.Module | None = None
    discriminator_tx: optax.GradientTransformation | None = None
    perceptual: FeaturesFn | None = None

    def __post_init__(self) -> None:
        if self.weights.discriminator > 0 and (
            self.discriminator is None or self.discriminator_tx is None
        ):
            raise ValueError("a discriminator weight > 0 needs a discriminator and its optimizer")
        if self.weights.feature > 0 and self.perceptual is None:
            raise ValueError("a feature weight > 0 needs a perceptual network")

    @property
    def parts(self) -> tuple[str, ...]:
        parts = ["decoder"]
        if self.weights.discriminator > 0:
            parts.append("discriminator")
        if self.weights.feature > 0:
            parts.append("perceptual")
        return tuple(parts)

    def init_fn(
        self, feature_dim: int, perceptual_variables: Any = None
    ) -> Callable[[jax.Array], dict[str, Any]]:
        """rng -> {part: flax variables}, for `create_train_state`."""
        if "perceptual" in self.parts and perceptual_variables is None:
            raise ValueError("a feature weight > 0 needs the perceptual network's variables")
        features = jnp.zeros((1, feature_dim), jnp.float32)

        def init(rng: jax.Array) -> dict[str, Any]:
            decoder_rng, discriminator_rng = jax.random.split(rng)
            variables = {"decoder": self.decoder.init(decoder_rng, features)}
            if "discriminator" in self.parts:
                images = jnp.zeros((1, self.decoder.image_height, self.decoder.image_width, 3))
                variables["discriminator"] = self.discriminator.init(
                    discriminator_rng, images, features
                )
            if "perceptual" in self.parts:
                variables["perceptual"] = perceptual_variables
            return variables

        return init

    @property
    def optimizers(self) -> dict[str, optax.GradientTransformation]:
        """One optax optimizer per part, for `create_train_state`; the perceptual part is frozen."""
        txs = {"decoder": self.decoder_tx}
        if "discriminator" in self.parts:
            txs["discriminator"] = self.discriminator_tx
        if "perceptual" in self.parts:
            txs["perceptual"] = optax.set_to_zero()
        return txs

    @property
    def generator_metric_names(self) -> tuple[str, ...]:
        names = ["generator_loss", "pixel", "total_variation"]
        names += ["feature"] * ("perceptual" in self.parts)
        names += ["adversarial"] * ("discriminator" in self.parts)
        return tuple(names)

    def _variables(self, state: TrainState, part: str, params: Any = None) -> dict[str, Any]:
        params = state.params[part] if params is None else params
        return {"params": params, **state.model_state[part]}

    def decoder_loss(self, decoder_params: Any, state: TrainState, batch: Batch):
        """(weighted loss, (metrics, decoder model_state)) with the decoder in training mode.

        pixel * MSE + feature * perceptual MSE + total_variation * TV + discriminator * LSGAN(G).
        """
        w = self.weights
        recon_BHWC, updates = self.decoder.apply(
            self._variables(state, "decoder", decoder_params),
            batch["features"],
            train=True,
            mutable=["batch_stats"],
        )
        metrics = {
            "pixel": losses.pixel_mse(batch["image"], recon_BHWC),
            "total_variation": losses.total_variation(recon_BHWC),
        }
        loss = w.pixel * metrics["pixel"] + w.total_variation * metrics["total_variation"]
        if "perceptual" in self.parts:
            perceptual_variables = self._variables(state, "perceptual")
            real = jax.lax.stop_gradient(self.perceptual(perceptual_variables, batch["image"]))
            fake = self.perceptual(perceptual_variables, recon_BHWC)
            metrics["feature"] = losses.feature_reconstruction_mse(real, fake)
            loss = loss + w.feature * metrics["feature"]
        if "discriminator" in self.parts:
            logits_B = self.discriminator.apply(
                self._variables(state, "discriminator"), recon_BHWC, batch["features"], train=False
            )
            metrics["adversarial"] = losses.lsgan_generator_loss(logits_B)
            loss = loss + w.discriminator * metrics["adversarial"]
        return loss, (metrics, updates)

    def generator_update(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        """One optimizer step of the decoder (autoencoder, or the GAN's generator)."""
        grad_fn = jax.value_and_grad(self.decoder_loss, has_aux=True)
        (loss, (metrics, updates)), grads = grad_fn(state.params["decoder"], state, batch)
        state = apply_gradients(state, grads, self.decoder_tx, part="decoder", model_state=updates)
        return state, {"generator_loss": loss, **metrics}

    def discriminator_update(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        """One optimizer step of the discriminator: real -> 1, reconstruction -> 0.

        Least-squares targets on one concatenated batch of (real image, feature) and
        (reconstruction in inference mode, feature).
        """
        fake_BHWC = self.decoder.apply(
            self._variables(state, "decoder"), batch["features"], train=False
        )
        images = jnp.concatenate([batch["image"], jax.lax.stop_gradient(fake_BHWC)])
        conditions = jnp.concatenate([batch["features"], batch["features"]])
        size = batch["image"].shape[0]

        def loss_fn(params):
            logits, updates = self.discriminator.apply(
                self._variables(state, "discriminator", params),
                images,
                conditions,
                train=True,
                mutable=["batch_stats"],
            )
            loss = losses.lsgan_discriminator_loss(logits[:size], logits[size:])
            return loss, (logits, updates)

        (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params["discriminator"]
        )
        state = apply_gradients(
            state, grads, self.discriminator_tx, part="discriminator", model_state=updates
        )
        metrics = {
            "discriminator_loss": loss,
            "d_real": jnp.mean(logits[:size]),
            "d_fake": jnp.mean(logits[size:]),
        }
        return state, metrics


def make_decoder_step(rec: Reconstruction) -> StepFn:
    """The autoencoder step (or any decoder-only training): one decoder update per batch."""

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        state, metrics = rec.generator_update(state, batch)
        return state.replace(step=state.step + 1), {"loss": metrics["generator_loss"], **metrics}

    return step


def gan_phase(step: jax.Array, discriminator_steps: int, generator_steps: int) -> jax.Array:
    """True where step `step` trains the discriminator: the first `discriminator_steps` of
    every cycle of discriminator_steps + generator_steps batches, as the published loop."""
    return step % (discriminator_steps + generator_steps) < discriminator_steps


def make_gan_step(
    rec: Reconstruction,
    discriminator_steps: int = 1,
    generator_steps: int = 1,
    different_batches: bool = True,
) -> StepFn:
    """The GAN step. With `different_batches`, each batch trains either D or G (`gan_phase`,
    chosen inside the compiled step by `lax.cond`); otherwise D then G on the same batch.

    Metrics always hold every key: those of a phase that did not run are 0, and
    `d_updates` / `g_updates` (0 or 1) count the updates, so epoch sums divided by them are
    per-update means. `loss` is the sum of the losses optimised at this step. With a
    discriminator weight of 0 the discriminator is never trained, as published.
    """
    if "discriminator" not in rec.parts:
        return make_decoder_step(rec)
    if discriminator_steps < 1 or generator_steps < 1:
        raise ValueError(
            f"discriminator_steps and generator_steps must be >= 1, got "
            f"{discriminator_steps} and {generator_steps}"
        )

    g_keys = rec.generator_metric_names

    def d_only(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        state, d_metrics = rec.discriminator_update(state, batch)
        return state, _merge(d_metrics, None, g_keys)

    def g_only(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        state, g_metrics = rec.generator_update(state, batch)
        return state, _merge(None, g_metrics, g_keys)

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        if different_batches:
            train_d = gan_phase(state.step, discriminator_steps, generator_steps)
            state, metrics = jax.lax.cond(train_d, d_only, g_only, state, batch)
        else:
            state, d_metrics = rec.discriminator_update(state, batch)
            state, g_metrics = rec.generator_update(state, batch)
            metrics = _merge(d_metrics, g_metrics, g_keys)
        return state.replace(step=state.step + 1), metrics

    return step


_D_KEYS = ("discriminator_loss", "d_real", "d_fake")


def _merge(
    d_metrics: Metrics | None, g_metrics: Metrics | None, g_keys: tuple[str, ...]
) -> Metrics:
    """One metrics dict with every D and G key; zeros for the phase that did not run."""
    zero = jnp.zeros((), jnp.float32)
    d = d_metrics if d_metrics is not None else dict.fromkeys(_D_KEYS, zero)
    g = g_metrics if g_metrics is not None else {k: zero for k in g_keys}
    return {
        "loss": d["discriminator_loss"] + g["generator_loss"],
        "d_updates": jnp.float32(d_metrics is not None),
        "g_updates": jnp.float32(g_metrics is not None),
        **d,
        **g,
    }
