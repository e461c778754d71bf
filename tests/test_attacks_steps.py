"""The attacks' pure train steps (invfeat/attacks/steps.py): each lowers its loss on a tiny fixed
batch; the GAN alternates D and G; attribute class weights are balanced and checked."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers.fast_init import fast_init

from invfeat.attacks.steps import (
    GAN_WEIGHTS,
    LossWeights,
    Reconstruction,
    attribute_class_weights,
    gan_phase,
    make_attribute_head_step,
    make_decoder_step,
    make_gan_step,
    make_surrogate_step,
)
from invfeat.models.attribute_head import AttributeHead
from invfeat.models.decoder import Decoder
from invfeat.models.discriminator import Discriminator
from invfeat.models.perceptual import SurrogateNet, surrogate_perceptual
from invfeat.train.state import create_train_state

B, D, H, W = 8, 6, 16, 8


@pytest.fixture(scope="module")
def recon_batch():
    """Images whose colours follow the features, so a decoder can learn the map."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(B, D)).astype(np.float32)
    colour = 1.0 / (1.0 + np.exp(-features[:, None, None, :3]))
    ramp = np.linspace(0.0, 1.0, H, dtype=np.float32)[None, :, None, None]
    image = (colour * ramp + (1 - ramp) * (1 - colour)) * np.ones((B, H, W, 3), np.float32)
    return {"image": image.astype(np.float32), "features": features}


def run(step, state, batch, n):
    step = jax.jit(step, donate_argnums=0)
    history = []
    for _ in range(n):
        state, metrics = step(state, batch)
        history.append(jax.device_get(metrics))
    return state, history


def fixed_variables(variables):
    """An init_fn for create_train_state that returns variables made elsewhere."""
    return lambda rng: variables


# ---- attribute head ------------------------------------------------------------------------


def test_attribute_class_weights_are_balanced_and_padded():
    labels = np.array([[0, 1], [0, -1], [1, 1], [0, 2]])
    weights = np.asarray(attribute_class_weights(labels, (2, 3)))
    np.testing.assert_allclose(weights, [[4 / 6, 2.0, 0.0], [0.0, 0.75, 1.5]], rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        attribute_class_weights(labels, (2, 3, 2))


def test_attribute_class_weights_refuse_a_label_beyond_the_class_count():
    labels = np.array([[0, 1], [1, 3], [-1, 0]])
    with pytest.raises(ValueError, match="column 1 holds class 3.*3 classes"):
        attribute_class_weights(labels, [2, 3])
    np.testing.assert_allclose(attribute_class_weights(labels, [2, 4])[0, :2], [1.0, 1.0])


def test_attribute_head_step_lowers_balanced_cross_entropy(one_device):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(32, 8)).astype(np.float32)
    attributes = np.stack([features[:, 0] > 0.8, np.argmax(features[:, 1:4], 1)], 1)
    attributes = attributes.astype(np.int32)
    attributes[:3, 1] = -1  # unknown labels are ignored
    head = AttributeHead(num_classes=(2, 3), block_num=2, dropout_rate=0.1)
    variables = fast_init(head.init, features)
    tx = optax.adam(1e-2)
    state = create_train_state(fixed_variables(variables), tx, one_device)
    weights = attribute_class_weights(attributes, (2, 3))
    step = make_attribute_head_step(head, tx, weights)
    batch = {"features": features, "attributes": attributes}
    state, history = run(step, state, batch, 40)
    losses = [float(m["loss"]) for m in history]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.5 * losses[0]
    assert history[-1]["accuracy"] > 0.8
    assert int(state.step) == 40
    assert not np.allclose(
        state.model_state["batch_stats"]["attr0_bn0"]["mean"],
        variables["batch_stats"]["attr0_bn0"]["mean"],
    )


def test_a_masked_batch_steps_as_its_real_rows_alone(one_device):
    """A padded batch (Keras' partial last batch): the rows the mask leaves out change neither
    the loss, the gradients nor the BatchNorm statistics, whatever they hold."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(5, 8)).astype(np.float32)
    attributes = np.stack([features[:, 0] > 0, np.argmax(features[:, 1:4], 1)], 1).astype(np.int32)
    head = AttributeHead(num_classes=(2, 3), block_num=2)
    variables = fast_init(head.init, features)
    tx = optax.sgd(0.1)
    weights = attribute_class_weights(attributes, (2, 3))
    step = jax.jit(make_attribute_head_step(head, tx, weights))
    real = {"features": features, "attributes": attributes}
    padded = {
        "features": np.concatenate([features, 100 * rng.normal(size=(3, 8)).astype(np.float32)]),
        "attributes": np.concatenate([attributes, np.ones((3, 2), np.int32)]),
        "mask": np.arange(8) < 5,
    }
    outs = [
        step(create_train_state(fixed_variables(variables), tx, one_device), b)
        for b in (real, padded)
    ]
    (alone, m_alone), (masked, m_masked) = outs
    np.testing.assert_allclose(m_masked["loss"], m_alone["loss"], rtol=1e-5)
    np.testing.assert_allclose(m_masked["accuracy"], m_alone["accuracy"], rtol=1e-6)
    for a, b in zip(
        jax.tree.leaves((alone.params, alone.model_state)),
        jax.tree.leaves((masked.params, masked.model_state)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    unmasked = step(
        create_train_state(fixed_variables(variables), tx, one_device),
        {k: v for k, v in padded.items() if k != "mask"},
    )[1]
    assert abs(float(unmasked["loss"]) - float(m_alone["loss"])) > 1e-3  # the mask is what acts


# ---- surrogate -----------------------------------------------------------------------------


def test_surrogate_step_imitates_the_api(one_device, recon_batch):
    net = SurrogateNet(feature_dim=D, widths=(4, 8))
    variables = fast_init(net.init, recon_batch["image"])
    tx = optax.adam(1e-2)
    state = create_train_state(fixed_variables(variables), tx, one_device)
    _, history = run(make_surrogate_step(net, tx, "cosine"), state, recon_batch, 30)
    distances = [float(m["cosine_distance"]) for m in history]
    assert np.mean(distances[-3:]) < 0.5 * distances[0]
    with pytest.raises(ValueError, match="surrogate loss"):
        make_surrogate_step(net, tx, "l1")


# ---- autoencoder ---------------------------------------------------------------------------


def tiny_decoder():
    return Decoder(H, W, dense_units=16, smallest_channels=8, base_filters=4, min_side=2)


def test_autoencoder_step_lowers_pixel_loss(one_device, recon_batch):
    decoder = tiny_decoder()
    rec = Reconstruction(decoder, optax.adam(3e-3))
    assert rec.parts == ("decoder",)
    variables = fast_init(rec.init_fn(D))
    state = create_train_state(fixed_variables(variables), rec.optimizers, one_device)
    state, history = run(make_decoder_step(rec), state, recon_batch, 30)
    pixel = [float(m["pixel"]) for m in history]
    assert np.mean(pixel[-3:]) < 0.7 * pixel[0]
    assert set(history[0]) == {"loss", "generator_loss", "pixel", "total_variation"}


@pytest.fixture(scope="module")
def perceptual(recon_batch):
    net = SurrogateNet(feature_dim=D, widths=(4, 8))
    return surrogate_perceptual(net, fast_init(net.init, recon_batch["image"]), stages=1)


# ---- GAN -----------------------------------------------------------------------------------

WEIGHTS = LossWeights(pixel=0.5, feature=1.0, total_variation=0.1, discriminator=0.06)


@pytest.fixture(scope="module")
def gan(one_device, recon_batch, perceptual):
    disc = Discriminator(base_filters=4, spectral_norm=True, min_side=2)
    rec = Reconstruction(
        tiny_decoder(), optax.adam(3e-3), WEIGHTS, disc, optax.adam(3e-3), perceptual.features
    )
    assert rec.parts == ("decoder", "discriminator", "perceptual")
    return rec, fast_init(rec.init_fn(D, perceptual.variables))


def test_gan_needs_its_parts():
    with pytest.raises(ValueError, match="discriminator"):
        Reconstruction(tiny_decoder(), optax.adam(1e-3), GAN_WEIGHTS)
    with pytest.raises(ValueError, match="perceptual"):
        Reconstruction(tiny_decoder(), optax.adam(1e-3), LossWeights(feature=1.0))


@pytest.fixture(scope="module")
def gan_run(one_device, recon_batch, gan):
    """30 alternating steps (2 D, 1 G): per-step params, D stats and metrics."""
    rec, variables = gan
    state = create_train_state(fixed_variables(variables), rec.optimizers, one_device)
    step = jax.jit(make_gan_step(rec, discriminator_steps=2, generator_steps=1))
    trace = [(jax.device_get(state.params), jax.device_get(state.model_state), None)]
    for _ in range(30):
        state, metrics = step(state, recon_batch)
        trace.append((jax.device_get(state.params), jax.device_get(state.model_state), metrics))
    return state, trace


def _differs(a, b) -> bool:
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return any(not np.array_equal(x, y) for x, y in leaves)


def test_gan_step_alternates_discriminator_and_generator(gan_run):
    state, trace = gan_run
    d_updates = [float(m["d_updates"]) for _, _, m in trace[1:]]
    g_updates = [float(m["g_updates"]) for _, _, m in trace[1:]]
    assert d_updates[:6] == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert [d + g for d, g in zip(d_updates, g_updates, strict=True)] == [1.0] * 30
    assert d_updates == [float(gan_phase(jnp.int32(i), 2, 1)) for i in range(30)]
    for (p0, s0, _), (p1, s1, m) in zip(trace, trace[1:], strict=False):
        is_d = float(m["d_updates"]) == 1.0
        assert _differs(p1["discriminator"], p0["discriminator"]) == is_d
        assert _differs(s1["discriminator"], s0["discriminator"]) == is_d  # spectral-norm u
        assert _differs(p1["decoder"], p0["decoder"]) != is_d
        assert not _differs(p1["perceptual"], p0["perceptual"])  # frozen
        assert float(m["loss"]) == float(m["discriminator_loss"] if is_d else m["generator_loss"])
    assert int(state.step) == 30


def test_gan_steps_lower_their_losses(gan_run):
    _, trace = gan_run
    metrics = [m for _, _, m in trace[1:]]
    d_losses = [float(m["discriminator_loss"]) for m in metrics if float(m["d_updates"])]
    g_losses = [float(m["generator_loss"]) for m in metrics if float(m["g_updates"])]
    assert np.mean(d_losses[-3:]) < 0.7 * d_losses[0]
    assert np.mean(g_losses[-3:]) < 0.8 * g_losses[0]
    g_keys = {"generator_loss", "pixel", "total_variation", "feature", "adversarial"}
    assert set(metrics[0]) == g_keys | {"discriminator_loss", "d_real", "d_fake", "loss"} | {
        "d_updates",
        "g_updates",
    }


def test_gan_step_on_the_same_batch_updates_both(one_device, recon_batch):
    """Without spectral norm or a perceptual part, D then G train on every batch."""
    weights = LossWeights(pixel=1.0, total_variation=0.1, discriminator=0.5)
    disc = Discriminator(base_filters=4, spectral_norm=False, min_side=2)
    rec = Reconstruction(tiny_decoder(), optax.adam(3e-3), weights, disc, optax.adam(3e-3))
    assert rec.parts == ("decoder", "discriminator")
    variables = fast_init(rec.init_fn(D))
    state = create_train_state(fixed_variables(variables), rec.optimizers, one_device)
    step = jax.jit(make_gan_step(rec, different_batches=False))
    new_state, metrics = step(state, recon_batch)
    assert float(metrics["d_updates"]) == 1.0 and float(metrics["g_updates"]) == 1.0
    assert _differs(new_state.params["decoder"], variables["decoder"]["params"])
    assert _differs(new_state.params["discriminator"], variables["discriminator"]["params"])
    np.testing.assert_allclose(
        metrics["loss"], metrics["discriminator_loss"] + metrics["generator_loss"], rtol=1e-6
    )
    weighted = (
        weights.pixel * metrics["pixel"]
        + weights.total_variation * metrics["total_variation"]
        + weights.discriminator * metrics["adversarial"]
    )
    np.testing.assert_allclose(metrics["generator_loss"], weighted, rtol=1e-5)


def test_gan_without_discriminator_weight_is_the_decoder_step(one_device, recon_batch):
    rec = Reconstruction(tiny_decoder(), optax.adam(1e-3), LossWeights(pixel=1.0))
    step = make_gan_step(rec, discriminator_steps=3)
    assert step.__qualname__ == make_decoder_step(rec).__qualname__
