"""Optimisation-based inversion on tiny images and networks: features approach their targets,
pixels approach a known image under an injective model, the TV prior smooths, any number of
targets runs on one compilation, given images are the start, each target is optimised alone,
and the result is scored by the reconstructions' own evaluation."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from invfeat import losses
from invfeat.attacks.evaluation import cosine_distances, evaluate_reconstructions
from invfeat.attacks.optimisation import (
    OptimisationAttack,
    OptimisationConfig,
    invert_features,
    surrogate_features_fn,
)
from invfeat.models.perceptual import SurrogateNet
from invfeat.train.mesh import make_mesh

H, W, D = 16, 8, 16
HW = (H, W)
FAST = OptimisationConfig(steps=60, learning_rate=0.05, total_variation=0.0, batch_size=4)
REFINE = dataclasses.replace(FAST, init="given")


class TinyNet(nn.Module):
    """Conv-BatchNorm (inference)-ReLU, a strided conv, Dense to D."""

    @nn.compact
    def __call__(self, images_BHWC: jax.Array) -> jax.Array:
        x = nn.Conv(8, (3, 3))(images_BHWC - 0.5)
        x = nn.relu(nn.BatchNorm(use_running_average=True)(x))
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2))(x))
        return nn.Dense(D)(x.reshape(len(x), -1))


NET = TinyNet()
net_features = lambda variables, images: NET.apply(variables, images)


@pytest.fixture(scope="module")
def net_variables():
    variables = jax.jit(NET.init)(jax.random.key(0), jnp.zeros((1, H, W, 3)))
    stats = variables["batch_stats"]["BatchNorm_0"]  # running statistics that are not 0 and 1
    stats = {"mean": stats["mean"] - 0.1, "var": stats["var"] * 2.0}
    return {**variables, "batch_stats": {"BatchNorm_0": stats}}


def smooth_images(n: int, seed: int) -> np.ndarray:
    """One colour per image, shaded by a vertical ramp, plus a horizontal wave: smooth images."""
    rng = np.random.default_rng(seed)
    colour = rng.uniform(0.1, 0.9, size=(n, 1, 1, 3))
    ramp = np.linspace(0.0, 1.0, H)[None, :, None, None]
    wave = np.sin(np.linspace(0, np.pi, W))[None, None, :, None]
    return np.clip(
        colour * (0.5 + 0.5 * ramp) + 0.2 * wave * rng.uniform(-1, 1, (n, 1, 1, 3)), 0, 1
    ).astype(np.float32)


def features_of(fn, variables, images) -> np.ndarray:
    return np.asarray(jax.jit(fn)(variables, jnp.asarray(images, jnp.float32)))


pixels = lambda variables, images: images.reshape(len(images), -1)[:, :D]


def grey_starts(n: int, config: OptimisationConfig) -> np.ndarray:
    """The starts of `init="grey"` (they depend on the seed and row only), recovered with one
    step of a negligible learning rate through any features function."""
    tiny = dataclasses.replace(config, steps=1, learning_rate=1e-12)
    ones = np.ones((n, D), np.float32)
    return invert_features(pixels, None, ones, tiny, image_hw=HW, progress=False).images


def tv(images: np.ndarray) -> float:
    return float(losses.total_variation(jnp.asarray(images)))


# ---- the config ------------------------------------------------------------------------------


def test_config_round_trips_and_resolves_its_loss():
    config = OptimisationConfig(encoding="bits", init="given", total_variation=0.5)
    assert OptimisationConfig.from_dict(config.to_dict()) == config
    assert config.resolved_loss == "mse"
    assert OptimisationConfig().resolved_loss == "cosine"
    assert OptimisationConfig(loss="mse").resolved_loss == "mse"


@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("steps", 0, ValueError, "steps must be >= 1"),
        ("steps", 2.5, TypeError, "steps must be an int"),
        ("batch_size", 0, ValueError, "batch_size must be >= 1"),
        ("batch_size", True, TypeError, "batch_size must be an int"),
        ("curve_every", 0, ValueError, "curve_every must be >= 1"),
        ("seed", -1, ValueError, "seed must be >= 0"),
        ("learning_rate", 0.0, ValueError, "learning_rate must be finite and positive"),
        ("learning_rate", float("nan"), ValueError, "learning_rate must be finite"),
        ("learning_rate", "fast", TypeError, "learning_rate must be a number"),
        ("total_variation", -0.1, ValueError, "total_variation must be finite and >= 0"),
        ("init_noise", float("inf"), ValueError, "init_noise must be finite"),
        ("cosine_decay", 1, TypeError, "cosine_decay must be a bool"),
        ("loss", "l1", ValueError, "loss must be one of"),
        ("init", "zeros", ValueError, "init must be one of"),
        ("encoding", "base64", ValueError, "encoding must be None or one of"),
    ],
)
def test_config_refuses_bad_values(field, value, error, message):
    with pytest.raises(error, match=message):
        OptimisationConfig(**{field: value})


def test_config_from_dict_refuses_unknown_fields():
    with pytest.raises(ValueError, match="unknown fields"):
        OptimisationConfig.from_dict({"steps": 3, "momentum": 0.9})


# ---- the optimisation ------------------------------------------------------------------------


def test_optimised_features_approach_the_targets(net_variables):
    targets = features_of(net_features, net_variables, smooth_images(6, seed=1))
    result = invert_features(
        net_features, net_variables, targets, FAST, image_hw=HW, progress=False
    )
    assert result.images.shape == (6, H, W, 3) and result.images.dtype == np.float32
    assert 0.0 <= result.images.min() and result.images.max() <= 1.0
    before = cosine_distances(
        features_of(net_features, net_variables, grey_starts(6, FAST)), targets
    )
    after = cosine_distances(features_of(net_features, net_variables, result.images), targets)
    assert np.mean(before) > 0.3
    assert np.all(after < 0.1 * before), (before, after)
    # the reported losses are those cosine distances (no TV here), the curve starts at the start
    np.testing.assert_allclose(result.feature_loss, after, atol=1e-5)
    np.testing.assert_allclose(result.loss, result.feature_loss, atol=1e-6)
    np.testing.assert_allclose(result.curve[:, 0], before, atol=1e-5)
    assert result.curve.shape == (6, 6)  # steps 0, 10, ..., 50
    assert result.threat_model_allowed


def test_pixels_approach_a_known_image_under_an_injective_model():
    """A random projection of the 384 pixels to 512 features is injective: matching the features
    recovers the image."""
    projection = np.random.default_rng(3).normal(size=(H * W * 3, 512)).astype(np.float32)
    project = lambda p, images: (images.reshape(len(images), -1) - 0.5) @ p / 20.0
    truth = smooth_images(2, seed=4)
    targets = features_of(project, projection, truth)
    config = OptimisationConfig(
        steps=150, learning_rate=0.05, total_variation=0.0, loss="mse", batch_size=2
    )
    result = invert_features(project, projection, targets, config, image_hw=HW, progress=False)
    before = np.mean((grey_starts(2, config) - truth) ** 2, axis=(1, 2, 3))
    after = np.mean((result.images - truth) ** 2, axis=(1, 2, 3))
    assert np.all(after < 0.01 * before), (before, after)
    assert np.all(result.loss < 0.01 * result.curve[:, 0])


def test_total_variation_prior_smooths(net_variables):
    targets = features_of(net_features, net_variables, smooth_images(4, seed=5))
    rough = invert_features(net_features, net_variables, targets, FAST, image_hw=HW, progress=False)
    prior = dataclasses.replace(FAST, total_variation=1.0)
    smooth = invert_features(
        net_features, net_variables, targets, prior, image_hw=HW, progress=False
    )
    assert tv(smooth.images) < 0.5 * tv(rough.images), (tv(smooth.images), tv(rough.images))
    # the objective holds the prior: loss - feature loss = weight x TV of each image
    per_image = [tv(image[None]) for image in smooth.images]
    np.testing.assert_allclose(smooth.loss - smooth.feature_loss, per_image, rtol=1e-4, atol=1e-6)


def test_any_number_of_targets_runs_on_one_compilation(net_variables):
    traces = []

    def counted(variables, images):
        traces.append(images.shape)  # runs when traced, never when the program runs
        return NET.apply(variables, images)

    config = dataclasses.replace(FAST, steps=3, batch_size=2)
    targets = features_of(net_features, net_variables, smooth_images(5, seed=6))
    one_chunk = invert_features(
        counted, net_variables, targets[:2], config, image_hw=HW, progress=False
    )
    once = len(traces)
    assert once > 0
    five = invert_features(counted, net_variables, targets, config, image_hw=HW, progress=True)
    single = invert_features(
        counted, net_variables, targets[:1], config, image_hw=HW, progress=False
    )
    assert len(traces) == once  # 3 chunks, the last one padded, and 1 padded chunk: no retrace
    assert five.images.shape == (5, H, W, 3) and five.loss.shape == (5,)
    assert five.curve.shape == (5, 1)
    np.testing.assert_allclose(five.images[:2], one_chunk.images, atol=1e-6)
    np.testing.assert_allclose(five.images[:1], single.images, atol=1e-6)


def test_given_images_are_the_start(net_variables):
    given = smooth_images(3, seed=7)
    targets = features_of(net_features, net_variables, smooth_images(3, seed=8))
    as_uint8 = np.rint(given * 255).astype(np.uint8)  # uint8 images are accepted
    refined = invert_features(
        net_features, net_variables, targets, REFINE, init_images=as_uint8, progress=False
    )
    # the objective at step 0 is that of the given images; refining lowers it
    start = cosine_distances(features_of(net_features, net_variables, as_uint8 / 255.0), targets)
    np.testing.assert_allclose(refined.curve[:, 0], start, atol=1e-5)
    assert np.all(refined.feature_loss < 0.5 * start)
    # a grey start has another objective at step 0
    grey = invert_features(net_features, net_variables, targets, FAST, image_hw=HW, progress=False)
    assert np.all(np.abs(grey.curve[:, 0] - start) > 0.01), (grey.curve[:, 0], start)


def test_encoded_targets_run_with_mse(net_variables):
    """Ciphertext targets (NaN and inf bit patterns included) are read through the encoding, and
    the surrogate's output has the encoded size."""
    words = np.random.default_rng(9).integers(0, 2**32, size=(3, 4), dtype=np.uint64)
    words[0, :2] = [0x7FC00001, 0x7F800000]  # a NaN payload, +inf
    cipher = words.astype(np.uint32).view(np.float32)
    config = dataclasses.replace(FAST, encoding="bytes", steps=5)  # 4 floats -> 16 = D values
    result = invert_features(
        net_features, net_variables, cipher, config, image_hw=HW, progress=False
    )
    assert np.isfinite(result.loss).all() and np.isfinite(result.images).all()
    targets = np.asarray(
        [
            [b / 255.0 for w in row for b in int(w).to_bytes(4, "big")]
            for row in words.astype(np.uint32)
        ]
    )
    mse = np.mean((features_of(net_features, net_variables, result.images) - targets) ** 2, axis=1)
    np.testing.assert_allclose(result.feature_loss, mse, rtol=1e-4)


def test_surrogate_features_fn_reads_the_regression_output():
    net = SurrogateNet(feature_dim=D, widths=(4, 8))
    images = jax.ShapeDtypeStruct((2, H, W, 3), jnp.float32)
    variables = jax.eval_shape(net.init, jax.random.key(1), images)
    fn = surrogate_features_fn(net)
    assert surrogate_features_fn(net) is fn  # one function per network: programs are reused
    out = jax.eval_shape(fn, variables, images)  # the [B, D] output, not the stage activations
    assert out.shape == (2, D) and out.dtype == jnp.float32


# ---- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(targets=np.zeros(D, np.float32)), ValueError, r"targets must be \[N, D\]"),
        (dict(targets=np.zeros((0, D), np.float32)), ValueError, "targets has no rows"),
        (dict(targets=np.full((2, D), np.nan, np.float32)), ValueError, "targets holds NaN"),
        (dict(targets=np.full((2, D), np.inf, np.float32)), ValueError, "targets holds NaN or inf"),
        (dict(targets=np.zeros((2, D), np.int32)), TypeError, "targets must be float"),
        (
            dict(targets=np.ones((2, D + 1), np.float32)),
            ValueError,
            r"features_fn gave shape \(1, 16\)",
        ),
        (dict(image_hw=None), ValueError, r'init="grey" needs image_hw'),
        (dict(image_hw=(16, 0)), ValueError, "image_hw must be"),
        (dict(init_images=np.zeros((2, H, W, 3), np.float32)), ValueError, "pass no init_images"),
        (dict(config=OptimisationConfig(init="given")), ValueError, "needs init_images"),
        (
            dict(
                config=OptimisationConfig(init="given"),
                init_images=np.zeros((3, H, W, 3), np.float32),
            ),
            ValueError,
            "init_images has 3 images for 2 targets",
        ),
        (
            dict(
                config=OptimisationConfig(init="given"), init_images=np.zeros((2, H, W), np.float32)
            ),
            ValueError,
            r"init_images must be \[N, H, W, 3\]",
        ),
        (
            dict(config=OptimisationConfig(init="given"), init_images=np.full((2, H, W, 3), 2.0)),
            ValueError,
            "init_images are floats outside",
        ),
        (
            dict(
                config=OptimisationConfig(init="given"),
                init_images=np.zeros((2, H, W, 3)),
                image_hw=(8, 8),
            ),
            ValueError,
            "but image_hw is",
        ),
        (dict(config={"steps": 3}), TypeError, "config must be an OptimisationConfig"),
        (dict(white_box="yes"), TypeError, "white_box must be a bool"),
        (dict(mesh="two"), ValueError, "batch_size=4 must be a positive multiple"),
    ],
)
def test_bad_inputs_raise_clear_errors(net_variables, change, error, message):
    if change.get("mesh") == "two":
        change = {**change, "mesh": make_mesh(jax.devices()[:3])}
    kwargs = dict(
        targets=np.ones((2, D), np.float32), config=dataclasses.replace(FAST, steps=1), image_hw=HW
    )
    kwargs.update(change)
    targets, config = kwargs.pop("targets"), kwargs.pop("config")
    with pytest.raises(error, match=message):
        invert_features(net_features, net_variables, targets, config, progress=False, **kwargs)


# ---- independence of the targets -------------------------------------------------------------


def batch_coupled(variables, images):
    """A features function that mixes the rows of its batch: each row plus the batch's mean."""
    features = NET.apply(variables, images)
    return features + jnp.mean(features, axis=0, keepdims=True)


@pytest.mark.parametrize("fn", [net_features, batch_coupled], ids=["batchnorm", "batch_coupled"])
def test_each_target_is_optimised_alone(net_variables, fn):
    """Target a gives the same image alone (its chunk padded) as beside a very different b, even
    through a function that would mix a batch's rows: each target is a batch of its own."""
    a, b = smooth_images(1, seed=11), 1.0 - smooth_images(1, seed=12)
    targets = features_of(net_features, net_variables, np.concatenate([a, b]))
    pair = invert_features(fn, net_variables, targets, FAST, image_hw=HW, progress=False)
    alone = invert_features(fn, net_variables, targets[:1], FAST, image_hw=HW, progress=False)
    np.testing.assert_allclose(alone.images[0], pair.images[0], atol=1e-6)
    np.testing.assert_allclose(alone.curve[0], pair.curve[0], rtol=1e-5)
    # the property is not vacuous: b's image and a's differ
    assert np.mean(np.abs(pair.images[0] - pair.images[1])) > 0.01


def test_a_mesh_splits_the_chunks(net_variables):
    targets = features_of(net_features, net_variables, smooth_images(3, seed=13))
    config = dataclasses.replace(FAST, steps=5)
    plain = invert_features(
        net_features, net_variables, targets, config, image_hw=HW, progress=False
    )
    mesh = make_mesh(jax.devices()[:2])
    split = invert_features(
        net_features, net_variables, targets, config, image_hw=HW, mesh=mesh, progress=False
    )
    np.testing.assert_allclose(split.images, plain.images, atol=1e-6)


# ---- scoring and the threat model ------------------------------------------------------------


def test_reconstructions_are_scored_by_evaluate_reconstructions(net_variables):
    """The attack's `reconstruct` goes through the decoders' scorer; optimised images score far
    better than the grey start, white-box labelled outside the threat model."""
    ids = 4
    query, gallery = smooth_images(ids, seed=14), smooth_images(ids, seed=14) * 0.95 + 0.02
    api = lambda images: features_of(net_features, net_variables, images)
    common = dict(
        query_images=query,
        query_features_plain=api(query),
        query_ids=np.arange(ids),
        query_cams=np.zeros(ids, np.int32),
        gallery_features_plain=api(gallery),
        gallery_ids=np.arange(ids),
        gallery_cams=np.ones(ids, np.int32),
        plain_features_fn=api,
    )
    attack = OptimisationAttack(
        net_features, net_variables, FAST, HW, white_box=True, progress=False
    )
    assert not attack.threat_model_allowed
    assert attack.summary()["threat_model_allowed"] is False
    assert attack.summary()["loss"] == "cosine" and attack.summary()["kind"] == "optimisation"
    scored = evaluate_reconstructions(attack.reconstruct, api(query), **common).metrics
    start = lambda features: grey_starts(len(features), FAST)
    baseline = evaluate_reconstructions(start, api(query), **common).metrics
    assert scored["cosine_distance"] < 0.1 * baseline["cosine_distance"]
    assert scored["rank1"] == 1.0
    assert {"psnr", "ssim", "mAP"} <= set(scored)

    # init="given" refines a start function's images (here: the grey start, a decoder's stand-in)
    refining = OptimisationAttack(
        net_features, net_variables, REFINE, HW, start=start, progress=False
    )
    assert refining.threat_model_allowed
    refined = evaluate_reconstructions(refining.reconstruct, api(query), **common).metrics
    assert refined["cosine_distance"] < 0.1 * baseline["cosine_distance"]
    with pytest.raises(ValueError, match="a start function is needed"):
        OptimisationAttack(net_features, net_variables, REFINE, HW)
    with pytest.raises(ValueError, match="a start function is needed"):
        OptimisationAttack(net_features, net_variables, FAST, HW, start=start)
