"""Reconstruction attacks through the engine: the autoencoder learns a tiny set and resumes
exactly; the GAN alternates D and G on ciphertext with a surrogate perceptual network and stays
finite; perceptual networks are chosen by name with clear errors."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from invfeat.attacks import reconstruction as R
from invfeat.attacks.configs import (
    ReconstructionConfig,
    SurrogateConfig,
    autoencoder_config,
    gan_config,
)
from invfeat.attacks.perceptual import describe_perceptual, resolve_perceptual
from invfeat.models.perceptual import white_box_perceptual

N, D, H, W = 64, 16, 32, 16
SMALL = dict(
    dense_units=32,
    smallest_channels=16,
    decoder_filters=8,
    discriminator_filters=4,
    batch_size=16,
    learning_rate=3e-3,
)
AE = autoencoder_config(epochs=4, steps_per_epoch=40, keep_best=False, **SMALL)


def records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pairs():
    """Images whose colours follow the first three features: a decoder can learn the map."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(N, D)).astype(np.float32)
    colour = 1.0 / (1.0 + np.exp(-2.0 * features[:, None, None, :3]))
    ramp = np.linspace(0.0, 1.0, H, dtype=np.float32)[None, :, None, None]
    images = (colour * ramp + (1 - ramp) * (1 - colour)) * np.ones((N, H, W, 3))
    return np.rint(images * 255).astype(np.uint8), features  # uint8 images are accepted


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory, pairs, one_device):
    images, features = pairs
    workdir = tmp_path_factory.mktemp("ae")
    return R.run_reconstruction(images, features, AE, workdir, mesh=one_device, progress=False)


def test_autoencoder_reconstructions_get_closer(autoencoder, pairs):
    images, features = pairs
    real = images.astype(np.float32) / 255
    epochs = [r for r in records(autoencoder.log.parent) if r["kind"] == "epoch"]
    assert len(epochs) == 4
    assert epochs[-1]["train/pixel"] < 0.5 * epochs[0]["train/pixel"]
    out = autoencoder.reconstruct(features)
    assert out.shape == (N, H, W, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    mse = np.mean((out - real) ** 2)
    mean_image_mse = np.mean((real.mean(0, keepdims=True) - real) ** 2)
    assert mse < 0.5 * mean_image_mse
    assert autoencoder.perceptual is None and autoencoder.threat_model_allowed
    assert autoencoder.metrics["train/pixel"] == epochs[-1]["train/pixel"]


def test_killed_autoencoder_resumes_to_the_same_decoder(
    tmp_path, monkeypatch, autoencoder, pairs, one_device
):
    images, features = pairs
    real_fit = R.run_training

    def interrupt(step, state):
        if step == 50:
            raise KeyboardInterrupt

    monkeypatch.setattr(R, "run_training", lambda *a, **kw: real_fit(*a, **kw, hooks=[interrupt]))
    with pytest.raises(KeyboardInterrupt):
        R.run_reconstruction(images, features, AE, tmp_path, mesh=one_device, progress=False)
    monkeypatch.setattr(R, "run_training", real_fit)
    resumed = R.run_reconstruction(images, features, AE, tmp_path, mesh=one_device, progress=False)
    assert [r["step"] for r in records(tmp_path)] == [40, 80, 120, 160]
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        resumed.variables,
        autoencoder.variables,
    )


def test_killed_mid_epoch_loses_at_most_the_steps_since_the_last_save(
    tmp_path, monkeypatch, autoencoder, pairs, one_device
):
    """A kill (no save on the way out) at step 70 of 40-step epochs: the run goes on from the
    save at step 60, not from the epoch end at 40, and ends at the same decoder."""
    images, features = pairs
    real_fit = R.run_training
    steps = []

    class Killed(Exception):
        pass

    def kill_at_70(step, state):
        steps.append(step)
        if step == 70 and steps[0] == 1:  # the first run only
            raise Killed

    monkeypatch.setattr(R, "run_training", lambda *a, **kw: real_fit(*a, **kw, hooks=[kill_at_70]))
    run = dict(mesh=one_device, progress=False, save_every_steps=20)
    with pytest.raises(Killed):
        R.run_reconstruction(images, features, AE, tmp_path, **run)
    steps.clear()
    resumed = R.run_reconstruction(images, features, AE, tmp_path, **run)
    assert steps == list(range(61, 161))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        resumed.variables,
        autoencoder.variables,
    )


def test_the_autoencoder_keeps_its_epoch_of_lowest_validation_loss(
    tmp_path, monkeypatch, pairs, one_device
):
    """keep_best (the published ModelCheckpoint on val_loss): each epoch ends with the pixel MSE
    on the validation pairs, and the decoder returned is the lowest one's: that MSE measured
    again; and, with the losses scripted to put the best in the middle, the decoder a run of
    two epochs ends with."""
    images, features = pairs
    config = dataclasses.replace(AE, epochs=3, steps_per_epoch=10, keep_best=True)
    run = dict(mesh=one_device, progress=False)
    with pytest.raises(ValueError, match="validation_images and validation_features"):
        R.run_reconstruction(images, features, config, tmp_path / "none", **run)
    others = np.roll(images, N // 2, axis=0)  # mismatched pairs: the loss moves each epoch
    validation = dict(validation_images=others, validation_features=features)
    result = R.run_reconstruction(images, features, config, tmp_path / "real", **validation, **run)
    losses = [r[R.BEST_METRIC] for r in records(tmp_path / "real") if r["kind"] == "epoch"]
    assert len(losses) == 3 and len(set(losses)) == 3
    made = result.reconstruct(features)
    returned = np.mean(np.square(made - others.astype(np.float32) / 255))
    assert returned == pytest.approx(min(losses), rel=1e-5)

    scripted = iter([0.3, 0.1, 0.2])
    monkeypatch.setattr(
        R.PixelEvaluator, "run", lambda self, state: [("pixel_mse", next(scripted))]
    )
    best = R.run_reconstruction(
        images, features, config, tmp_path / "scripted", **validation, **run
    )
    two = dataclasses.replace(config, epochs=2, keep_best=False)
    second = R.run_reconstruction(images, features, two, tmp_path / "two", **run)
    jax.tree.map(np.testing.assert_array_equal, best.variables, second.variables)


def test_the_adam_epsilon_of_the_config_is_the_optimizers():
    grads = {"w": jnp.asarray([1e-7, -3e-6, 2.0])}
    for eps in (1e-7, 1e-3):
        config = dataclasses.replace(AE, adam_epsilon=eps)
        tx = R.build_reconstruction(config, (H, W), None).decoder_tx
        expected = optax.adam(config.learning_rate, eps=eps)
        got, _ = tx.update(grads, tx.init(grads))
        want, _ = expected.update(grads, expected.init(grads))
        np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)
    with pytest.raises(ValueError, match="adam_epsilon must be positive"):
        dataclasses.replace(AE, adam_epsilon=0.0)
    with pytest.raises(ValueError, match="initializer must be one of"):
        dataclasses.replace(AE, initializer="he_normal")


def test_gan_on_ciphertext_alternates_and_stays_finite(tmp_path, pairs, one_device):
    images, _ = pairs
    words = np.random.default_rng(5).integers(0, 2**32, size=(N, D), dtype=np.uint64)
    cipher = words.astype(np.uint32).view(np.float32)  # one-time-like: no stable mapping
    assert not np.isfinite(cipher).all()
    config = gan_config(
        epochs=2,
        steps_per_epoch=6,
        discriminator_steps=2,
        separate_batches=True,
        condition="absdiff",
        encoding="bits",
        surrogate=SurrogateConfig(
            widths=(4,), stages=1, epochs=1, steps_per_epoch=4, batch_size=16
        ),
        **SMALL,
    )
    result = R.run_reconstruction(images, cipher, config, tmp_path, mesh=one_device, progress=False)
    assert result.stop_reason is None
    epochs = [r for r in records(tmp_path) if r["kind"] == "epoch"]
    assert len(epochs) == 2
    for record in epochs:
        values = [v for k, v in record.items() if k.startswith("train/")]
        assert np.isfinite(values).all()
        # two discriminator batches, then one generator batch, in every cycle of three
        assert record["train/d_updates"] == pytest.approx(4 / 6)
        assert record["train/g_updates"] == pytest.approx(2 / 6)
    # the surrogate perceptual network was trained first, on the bits the API returned
    surrogate = [r for r in records(tmp_path / R.SURROGATE_DIR) if r["kind"] == "epoch"]
    assert len(surrogate) == 1 and np.isfinite(surrogate[0]["train/mse"])
    assert result.perceptual["name"] == "victim-surrogate"
    assert "bits-encoded" in result.perceptual["description"]
    assert result.threat_model_allowed
    out = result.reconstruct(cipher[:5])
    assert out.shape == (5, H, W, 3) and np.isfinite(out).all()


def test_surrogate_imitates_plaintext_api(tmp_path, pairs, one_device):
    images, features = pairs
    config = SurrogateConfig(widths=(4, 8), stages=2, epochs=3, steps_per_epoch=10, batch_size=16)
    result = R.train_surrogate(images, features, config, tmp_path, mesh=one_device, progress=False)
    epochs = [r for r in records(tmp_path) if r["kind"] == "epoch"]
    assert epochs[-1]["train/cosine_distance"] < epochs[0]["train/cosine_distance"]
    activations = result.perceptual.features(result.perceptual.variables, jnp.zeros((2, H, W, 3)))
    assert len(activations) == 2
    assert "plaintext features" in result.perceptual.description


def test_perceptual_networks_by_name(tmp_path, pairs, one_device):
    images, features = pairs
    never = lambda: pytest.fail("no surrogate should be trained")
    white = white_box_perceptual(lambda v, x: jnp.mean(x, axis=(1, 2)) @ v, jnp.ones((3, 4)))
    config = gan_config(perceptual="white-box", **SMALL)
    network, surrogate = resolve_perceptual(config, white, never)
    assert network is white and surrogate is None
    assert describe_perceptual(network)["threat_model_allowed"] is False
    with pytest.raises(ValueError, match="white_box_perceptual"):
        resolve_perceptual(config, None, never)
    with pytest.raises(ValueError, match="perceptual_fn is a 'white-box'"):
        resolve_perceptual(gan_config(**SMALL), white, never)
    resnet = gan_config(perceptual="resnet50-imagenet", **SMALL)
    with pytest.raises(ValueError, match="perceptual_weights"):
        resolve_perceptual(resnet, None, never)
    missing = dataclasses.replace(resnet, perceptual_weights=str(tmp_path / "none.h5"))
    with pytest.raises(FileNotFoundError, match="ResNet-50 weights not found"):
        R.run_reconstruction(images, features, missing, tmp_path, mesh=one_device)


def test_configs_round_trip_and_reject_bad_values():
    config = gan_config(surrogate=SurrogateConfig(widths=(8, 16), stages=1), encoding="bytes")
    data = json.loads(json.dumps(config.to_dict()))
    assert ReconstructionConfig.from_dict(data) == config
    assert (config.pixel, config.feature, config.discriminator) == (0.0, 1.0, 0.06)
    assert (AE.pixel, AE.feature, AE.discriminator) == (1.0, 0.0, 0.0)
    assert ReconstructionConfig(kind="gan") == gan_config()  # weights default to the preset
    assert ReconstructionConfig(kind="gan", pixel=0.5).pixel == 0.5
    with pytest.raises(ValueError, match="encoding"):
        autoencoder_config(encoding="hex")
    with pytest.raises(ValueError, match="discriminator weight"):
        gan_config(discriminator=0.0)
    with pytest.raises(ValueError, match="condition"):
        gan_config(condition="sum")
    with pytest.raises(ValueError, match="unknown fields"):
        ReconstructionConfig.from_dict({"pixels": 1.0})
