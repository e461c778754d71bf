"""Pure loss functions (jnp in, scalar out), shared by the victim and the attacks.

Reductions follow the published Keras scripts where they define one: pixel and feature MSE are
per-sample means averaged over the batch, total variation is `tf.image.total_variation` divided
by H*W*C, the least-squares GAN losses are MSE against targets 1 (real) and 0 (fake).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _check_labels(name: str, scores_B: jax.Array, labels_B: jax.Array) -> None:
    """Refuses anything but [B, ...] scores with one label per row (checked when traced)."""
    if jnp.ndim(scores_B) != 2 or jnp.shape(labels_B) != jnp.shape(scores_B)[:1]:
        raise ValueError(
            f"{name} needs [B, ...] scores and [B] labels, got {jnp.shape(scores_B)} and "
            f"{jnp.shape(labels_B)}"
        )


def cross_entropy(logits_BC: jax.Array, labels_B: jax.Array, label_smoothing: float = 0.0):
    """Mean softmax cross-entropy with integer labels; label smoothing spreads eps over all C
    classes (Szegedy et al.; FastReID spreads it over the C - 1 others, a target eps / C apart)."""
    _check_labels("cross_entropy", logits_BC, labels_B)
    num_classes = logits_BC.shape[-1]
    log_probs = jax.nn.log_softmax(logits_BC.astype(jnp.float32), axis=-1)
    targets = jax.nn.one_hot(labels_B, num_classes) * (1.0 - label_smoothing)
    targets = targets + label_smoothing / num_classes
    return -jnp.mean(jnp.sum(targets * log_probs, axis=-1))


def pairwise_euclidean(x_BD: jax.Array, y_ND: jax.Array) -> jax.Array:
    """Euclidean distances [B, N], with a gradient-safe square root at zero."""
    x = x_BD.astype(jnp.float32)
    y = y_ND.astype(jnp.float32)
    squared = jnp.sum(x * x, axis=-1)[:, None] + jnp.sum(y * y, axis=-1)[None, :] - 2.0 * x @ y.T
    return jnp.sqrt(jnp.maximum(squared, 1e-12))


def batch_hard_triplet(
    features_BD: jax.Array, labels_B: jax.Array, margin: float | None = 0.3
) -> jax.Array:
    """Batch-hard triplet loss on a PK batch (Hermans et al.), Euclidean distances.

    For every anchor: the farthest positive (same label, itself excluded) and the nearest
    negative. `margin` None gives the soft margin log(1 + exp(d_ap - d_an)). Anchors without a
    positive or a negative in the batch are left out of the mean.
    """
    _check_labels("batch_hard_triplet", features_BD, labels_B)
    dist = pairwise_euclidean(features_BD, features_BD)
    same = labels_B[:, None] == labels_B[None, :]
    positive = same & ~jnp.eye(labels_B.shape[0], dtype=bool)
    d_ap = jnp.max(jnp.where(positive, dist, -jnp.inf), axis=1)
    d_an = jnp.min(jnp.where(same, jnp.inf, dist), axis=1)
    valid = jnp.any(positive, axis=1) & jnp.any(~same, axis=1)
    gap = jnp.where(valid, d_ap - d_an, 0.0)
    per_anchor = jax.nn.softplus(gap) if margin is None else jax.nn.relu(gap + margin)
    return jnp.sum(jnp.where(valid, per_anchor, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def balanced_class_weights(labels_N: jax.Array, num_classes: int) -> jax.Array:
    """sklearn's "balanced" weights n / (k * count_c) over the k present classes, 0 if absent;
    labels -1 (unknown) are ignored."""
    valid = labels_N >= 0
    counts = jnp.zeros(num_classes, jnp.float32).at[jnp.where(valid, labels_N, 0)].add(valid)
    present = jnp.sum(counts > 0)
    weights = jnp.sum(valid) / (present * counts)
    return jnp.where(counts > 0, weights, 0.0)


def class_balanced_cross_entropy(
    logits_BC: jax.Array, labels_B: jax.Array, class_weights_C: jax.Array
) -> jax.Array:
    """Cross-entropy weighted per sample by its class weight, averaged over known labels.

    Matches Keras' `class_weight` (weighted sum divided by the number of samples); labels -1
    contribute nothing and are not counted.
    """
    _check_labels("class_balanced_cross_entropy", logits_BC, labels_B)
    valid = labels_B >= 0
    safe = jnp.where(valid, labels_B, 0)
    log_probs = jax.nn.log_softmax(logits_BC.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, safe[:, None], axis=-1)[:, 0]
    weighted = jnp.where(valid, class_weights_C[safe] * nll, 0.0)
    return jnp.sum(weighted) / jnp.maximum(jnp.sum(valid), 1)


def _check_same_shape(name: str, x: jax.Array, y: jax.Array) -> None:
    """Refuses arrays of different shapes (checked when traced: free under jit)."""
    if jnp.shape(x) != jnp.shape(y):
        raise ValueError(
            f"{name} needs two arrays of one shape, got {jnp.shape(x)} and {jnp.shape(y)}"
        )


def mse(x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean squared error over every element (= per-sample MSE averaged over equal samples)."""
    _check_same_shape("mse", x, y)
    return jnp.mean(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)))


def pixel_mse(images_BHWC: jax.Array, reconstructions_BHWC: jax.Array) -> jax.Array:
    _check_same_shape("pixel_mse", images_BHWC, reconstructions_BHWC)
    return mse(images_BHWC, reconstructions_BHWC)


def feature_reconstruction_mse(features_real, features_fake) -> jax.Array:
    """MSE between perceptual activations; a pytree of activations gives the mean over leaves."""
    real_leaves, fake_leaves = jax.tree.leaves(features_real), jax.tree.leaves(features_fake)
    if not real_leaves or len(real_leaves) != len(fake_leaves):
        raise ValueError(
            "feature_reconstruction_mse needs two non-empty pytrees with as many activations, "
            f"got {len(real_leaves)} and {len(fake_leaves)}"
        )
    losses = [mse(real, fake) for real, fake in zip(real_leaves, fake_leaves, strict=True)]
    return sum(losses) / len(losses)


def total_variation(images_BHWC: jax.Array) -> jax.Array:
    """Anisotropic total variation per image divided by H*W*C, averaged over the batch."""
    x = images_BHWC.astype(jnp.float32)
    dy = jnp.sum(jnp.abs(x[:, 1:] - x[:, :-1]), axis=(1, 2, 3))
    dx = jnp.sum(jnp.abs(x[:, :, 1:] - x[:, :, :-1]), axis=(1, 2, 3))
    return jnp.mean((dy + dx) / (x.shape[1] * x.shape[2] * x.shape[3]))


def lsgan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Least-squares D loss: MSE to 1 on real and 0 on fake, over the concatenated batch."""
    real = jnp.square(real_logits.astype(jnp.float32) - 1.0)
    fake = jnp.square(fake_logits.astype(jnp.float32))
    return (jnp.sum(real) + jnp.sum(fake)) / (real.size + fake.size)


def lsgan_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Least-squares G loss: MSE of D(fake) to the real target 1."""
    return jnp.mean(jnp.square(fake_logits.astype(jnp.float32) - 1.0))


@functools.partial(jax.jit, static_argnames=("axis", "keepdims"))
def safe_norm(x: jax.Array, axis: int = -1, keepdims: bool = False) -> jax.Array:
    """Euclidean norm along `axis` (the values of `jnp.linalg.norm`, one compiled program as it
    is); its gradient at the zero vector is 0, not NaN (0 * inf)."""
    squared = jnp.sum(x * x, axis=axis, keepdims=keepdims)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def cosine_distance(x_BD: jax.Array, y_BD: jax.Array, eps: float = 1e-12) -> jax.Array:
    """1 - cosine similarity along the last axis, per row (not reduced).

    A zero vector is at distance 1 from anything; the gradient there is finite (that of
    1 - x.y / eps), never NaN.
    """
    x = x_BD.astype(jnp.float32)
    y = y_BD.astype(jnp.float32)
    norms = safe_norm(x) * safe_norm(y)
    return 1.0 - jnp.sum(x * y, axis=-1) / jnp.maximum(norms, eps)
