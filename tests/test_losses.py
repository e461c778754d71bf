"""Losses (invfeat/losses.py) against numpy formulas and hand-made cases; finite, exact gradients
at zero vectors; mismatched shapes named, never broadcast."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from invfeat import losses, metrics


def test_cross_entropy_label_smoothing():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 6)
    plain = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    assert float(losses.cross_entropy(logits, labels)) == pytest.approx(float(plain), rel=1e-6)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    target = np.eye(5)[labels] * 0.9 + 0.1 / 5
    expected = -(target * log_p).sum(1).mean()
    assert float(losses.cross_entropy(logits, labels, 0.1)) == pytest.approx(expected, rel=1e-5)


def reference_triplet(f, y, margin):
    d = np.linalg.norm(f[:, None] - f[None], axis=-1)
    vals = []
    for i in range(len(f)):
        pos = (y == y[i]) & (np.arange(len(f)) != i)
        neg = y != y[i]
        if pos.any() and neg.any():
            gap = d[i][pos].max() - d[i][neg].min()
            vals.append(np.log1p(np.exp(gap)) if margin is None else max(gap + margin, 0))
    return np.mean(vals)


@pytest.mark.parametrize("margin", [0.3, None])
def test_batch_hard_triplet_matches_reference(margin):
    rng = np.random.default_rng(1)
    f = rng.normal(size=(12, 4)).astype(np.float32)
    y = np.repeat(np.arange(4), 3)
    y[-1] = 7  # an anchor without positive is left out
    got = float(losses.batch_hard_triplet(f, y, margin))
    assert got == pytest.approx(reference_triplet(f, y, margin), rel=1e-4)


def test_batch_hard_triplet_hand_made_and_finite_gradient_on_duplicates():
    f = np.array([[0.0], [1.0], [3.0], [5.0]], np.float32)
    y = np.array([0, 0, 1, 1])
    # anchors: d_ap = 1, 1, 2, 2; d_an = 3, 2, 2, 4 -> gaps -2, -1, 0, -2
    assert float(losses.batch_hard_triplet(f, y, 1.5)) == pytest.approx((0 + 0.5 + 1.5 + 0) / 4)
    grads = jax.grad(losses.batch_hard_triplet)(jnp.zeros((4, 3)), jnp.asarray(y))
    assert np.all(np.isfinite(grads))


def test_balanced_class_weights_follow_sklearn_and_ignore_unknown():
    labels = np.array([0, 0, 0, 1, -1, 3])
    w = np.asarray(losses.balanced_class_weights(labels, 4))
    # n=5 known labels, 3 present classes: 5 / (3 * count)
    np.testing.assert_allclose(w, [5 / 9, 5 / 3, 0.0, 5 / 3], rtol=1e-6)


def test_class_balanced_cross_entropy():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    labels = np.array([0, 2, -1, 1, 2])
    known = labels >= 0
    nll = optax.softmax_cross_entropy_with_integer_labels(logits[known], labels[known])
    ones = losses.class_balanced_cross_entropy(logits, labels, jnp.ones(3))
    assert float(ones) == pytest.approx(float(nll.mean()), rel=1e-6)
    weights = jnp.array([1.0, 2.0, 0.5])
    expected = float((nll * weights[labels[known]]).sum() / known.sum())
    got = losses.class_balanced_cross_entropy(logits, labels, weights)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_pixel_and_feature_mse():
    a, b = np.zeros((2, 4, 4, 3)), np.full((2, 4, 4, 3), 0.5)
    assert float(losses.pixel_mse(a, b)) == pytest.approx(0.25)
    real = {"x": np.zeros((2, 3)), "y": np.zeros((2, 5))}
    fake = {"x": np.ones((2, 3)), "y": np.full((2, 5), 3.0)}
    assert float(losses.feature_reconstruction_mse(real, fake)) == pytest.approx((1 + 9) / 2)


def test_total_variation():
    rng = np.random.default_rng(3)
    x = rng.random((2, 5, 4, 3)).astype(np.float32)
    per_image = np.abs(np.diff(x, axis=1)).sum((1, 2, 3)) + np.abs(np.diff(x, axis=2)).sum(
        (1, 2, 3)
    )
    assert float(losses.total_variation(x)) == pytest.approx(np.mean(per_image / 60), rel=1e-5)
    assert float(losses.total_variation(np.full((1, 4, 4, 3), 0.3))) == 0.0


def test_lsgan_losses():
    assert float(losses.lsgan_discriminator_loss(jnp.ones(4), jnp.zeros(4))) == 0.0
    assert float(losses.lsgan_discriminator_loss(jnp.zeros(2), jnp.ones(2))) == 1.0
    assert float(losses.lsgan_generator_loss(jnp.ones(3))) == 0.0
    assert float(losses.lsgan_generator_loss(jnp.array([0.0, 2.0]))) == 1.0


def test_cosine_distance():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    y = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    np.testing.assert_allclose(losses.cosine_distance(x, y), [0.0, 1.0, 2.0], atol=1e-6)


def test_cosine_distance_gradient_at_a_zero_vector_is_finite_and_exact():
    y = jnp.array([[1.0, 2.0, 2.0]])
    zero = jnp.zeros((1, 3))
    assert float(losses.cosine_distance(zero, y)[0]) == 1.0
    grad = jax.grad(lambda x: losses.cosine_distance(x, y)[0])(zero)
    # Below the eps floor the distance is 1 - x.y / eps: that is its gradient.
    np.testing.assert_allclose(grad, -y / 1e-12, rtol=1e-6)
    both = jax.grad(lambda x: jnp.sum(losses.cosine_distance(x, x)))(zero)
    np.testing.assert_array_equal(both, 0.0)
    unit = jax.grad(lambda x: metrics.l2_normalize(x)[0, 0])(zero)
    assert np.all(np.isfinite(unit))


def test_safe_norm_has_linalg_norm_values_and_gradients_away_from_zero():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 7)), jnp.float32)
    np.testing.assert_array_equal(losses.safe_norm(x), jnp.linalg.norm(x, axis=-1))
    grad = lambda norm: jax.jit(jax.grad(lambda a: jnp.sum(norm(a))))(x)
    np.testing.assert_array_equal(
        grad(losses.safe_norm), grad(lambda a: jnp.linalg.norm(a, axis=-1))
    )


def test_losses_refuse_mismatched_shapes_instead_of_broadcasting():
    images = jnp.ones((2, 4, 4, 3))
    with pytest.raises(ValueError, match="pixel_mse"):
        losses.pixel_mse(images, images[0])  # would broadcast to a silent wrong value
    with pytest.raises(ValueError, match="mse"):
        losses.mse(jnp.ones((2, 4)), jnp.ones((4,)))
    with pytest.raises(ValueError, match="batch_hard_triplet"):
        losses.batch_hard_triplet(jnp.ones((4, 3)), jnp.array([0, 0, 1]))
    with pytest.raises(ValueError, match="cross_entropy"):
        losses.cross_entropy(jnp.ones((4, 3)), jnp.array([0, 0, 1]))
    with pytest.raises(ValueError, match="feature_reconstruction_mse"):
        losses.feature_reconstruction_mse((), ())
    with pytest.raises(ValueError, match="psnr"):
        metrics.psnr(images, images[0])
    with pytest.raises(ValueError, match="predictions_NA"):
        metrics.balanced_accuracy(np.zeros((3, 2), int), np.zeros((3, 1), int), 2)
