"""The library as a researcher uses it: gradients at edge points, shape and dtype mistakes named,
metrics on edge cases against plain numpy, the black-box API's argument checks."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from invfeat import losses, metrics
from invfeat.api import FeatureAPI, as_float_images
from invfeat.attacks.steps import attribute_class_weights
from invfeat.models.perceptual import SurrogateNet
from invfeat.models.reid import ReIDModel

# ---- gradients ------------------------------------------------------------------------------


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


# ---- shapes named, not broadcast ------------------------------------------------------------


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


# ---- re-ID metrics --------------------------------------------------------------------------


def numpy_cmc_ap(qf, qid, qcam, gf, gid, gcam):
    """Per query: (0-based first-match rank, AP) or None, by the definitions, in float64."""
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    out = []
    for i in range(len(qf)):
        dist = 1.0 - gf @ qf[i]
        ranked = sorted(range(len(gf)), key=lambda j: (dist[j], j))  # ties: gallery order
        ranked = [j for j in ranked if not (gid[j] == qid[i] and gcam[j] == qcam[i])]
        hits = [k for k, j in enumerate(ranked) if gid[j] == qid[i]]
        out.append(
            (hits[0], np.mean([(n + 1) / (k + 1) for n, k in enumerate(hits)])) if hits else None
        )
    return out


def test_reid_with_tied_distances_and_unmatched_queries_matches_numpy():
    rng = np.random.default_rng(1)
    # Entries in {-1, 0, 1}: many exactly equal distances; id 5 has no gallery entry.
    gf = rng.integers(-1, 2, (40, 4)).astype(np.float32)
    qf = rng.integers(-1, 2, (15, 4)).astype(np.float32)
    gf[~gf.any(1)], qf[~qf.any(1)] = 1.0, 1.0
    gid, gcam = rng.integers(0, 5, 40), rng.integers(0, 2, 40)
    qid, qcam = rng.integers(0, 6, 15), rng.integers(0, 2, 15)
    first, ap, valid = metrics.reid_per_query(qf, qid, qcam, gf, gid, gcam, block_size=4)
    expected = numpy_cmc_ap(qf, qid, qcam, gf, gid, gcam)
    np.testing.assert_array_equal(valid, [e is not None for e in expected])
    assert 0 < valid.sum() < len(qf)
    for i in np.flatnonzero(valid):
        assert first[i] == expected[i][0]
        assert ap[i] == pytest.approx(expected[i][1], rel=1e-6)


def test_reid_names_bad_inputs():
    f, ids = np.ones((3, 4), np.float32), np.zeros(3, int)
    cases = [
        ((f[:0], ids[:0], ids[:0], f, ids, ids), "query_features must be a non-empty"),
        ((f, ids, ids, f[:0], ids[:0], ids[:0]), "gallery_features must be a non-empty"),
        ((f, ids, ids, f[:, :3], ids, ids), "4-d but gallery_features 3-d"),
        ((f, ids, ids, f, ids[:2], ids), r"gallery_ids must have shape \(3,\)"),
        (
            (np.where(np.eye(3, 4) > 0, np.nan, f), ids, ids, f, ids, ids),
            "query_features holds NaN",
        ),
        ((f, ids, ids, np.full_like(f, np.inf), ids, ids), "gallery_features holds NaN"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            metrics.reid_per_query(*args)


# ---- balanced accuracy ----------------------------------------------------------------------


def test_balanced_accuracy_and_majority_on_single_class_and_unknown_attributes():
    labels = np.array([[1, -1, 0], [1, -1, 2], [1, -1, 2], [1, -1, 0]])
    preds = np.array([[1, 0, 0], [0, 1, 2], [1, 0, 0], [1, 1, 1]])
    bacc = np.asarray(metrics.balanced_accuracy(labels, preds, 3))
    # Column 0: one class, recall 3/4. Column 1: nothing known. Column 2: (1/2 + 1/2) / 2.
    np.testing.assert_allclose(bacc, [0.75, np.nan, 0.5])
    majority = np.asarray(metrics.majority_balanced_accuracy(labels, 3))
    np.testing.assert_allclose(majority, [1.0, np.nan, 0.5])  # NaN, as bacc (was inf)
    jitted = jax.jit(metrics.majority_balanced_accuracy, static_argnums=1)
    np.testing.assert_allclose(jitted(labels, 3), majority)


def test_attribute_class_weights_refuse_a_label_beyond_the_class_count():
    labels = np.array([[0, 1], [1, 3], [-1, 0]])
    with pytest.raises(ValueError, match="column 1 holds class 3.*3 classes"):
        attribute_class_weights(labels, [2, 3])
    np.testing.assert_allclose(attribute_class_weights(labels, [2, 4])[0, :2], [1.0, 1.0])


# ---- models and the API ---------------------------------------------------------------------


def test_image_models_refuse_integer_pixels_and_reid_defaults_to_inference():
    images_u8 = jnp.zeros((1, 32, 16, 3), jnp.uint8)
    model = ReIDModel(stage_sizes=(1, 1, 1, 1), width=4)
    with pytest.raises(TypeError, match="float RGB in \\[0, 1\\], got dtype uint8"):
        jax.eval_shape(model.init, jax.random.key(0), images_u8)
    with pytest.raises(TypeError, match="got dtype uint8"):
        jax.eval_shape(SurrogateNet(feature_dim=4, widths=(4,)).init, jax.random.key(0), images_u8)
    variables = jax.eval_shape(model.init, jax.random.key(0), images_u8.astype(jnp.float32))
    out = jax.eval_shape(model.apply, variables, images_u8.astype(jnp.bfloat16))  # train=False
    assert out["features"].shape == (1, 32) and out["features"].dtype == jnp.float32


def test_api_images_accept_bfloat16_and_refuse_nan():
    images = np.full((2, 4, 4, 3), 0.5, jnp.bfloat16)
    converted = as_float_images(images)
    assert converted.dtype == np.float32 and np.all(converted == 0.5)
    images_nan = np.full((2, 4, 4, 3), 0.5, np.float32)
    images_nan[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match="images hold NaN"):
        as_float_images(images_nan)


def test_api_arguments_are_checked_when_built():
    features_fn = lambda variables, images: images[:, 0, 0]
    for bad in (0, -3):
        with pytest.raises(ValueError, match="batch_size must be at least 1"):
            FeatureAPI(features_fn, {}, batch_size=bad)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        FeatureAPI(features_fn, {}, batch_size=2.5)
    with pytest.raises(ValueError, match="devices is empty"):
        FeatureAPI(features_fn, {}, devices=[])


# ---- import invfeat -------------------------------------------------------------------------


def test_import_invfeat_reaches_submodules_lazily():
    code = (
        "import sys, invfeat\n"
        "assert 'jax' not in sys.modules, 'import invfeat imported jax'\n"
        "assert invfeat.losses.cosine_distance and invfeat.models.reid.ReIDModel\n"
        "assert invfeat.data.builders.build and invfeat.attacks.steps and invfeat.train.loop.fit\n"
        "assert 'losses' in dir(invfeat) and 'reid' in dir(invfeat.models)\n"
        "try:\n"
        "    invfeat.no_such_module\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_module' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
