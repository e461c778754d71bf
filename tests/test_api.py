"""The black-box API (invfeat/api.py): batching without retracing, sharding, uint8, float and
bfloat16 input (NaN refused), arguments checked when built, ShuffleBits modes."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from invfeat import shufflebits
from invfeat.api import FeatureAPI, as_float_images
from invfeat.defences import Defence, ProjectionKey, apply_defence, projection_matrix
from invfeat.models.reid import get_config, init_variables, make_features_fn

TINY = get_config("cpu-tiny")


@pytest.fixture(scope="module")
def victim():
    model = TINY.build(num_classes=3)
    variables = init_variables(model, jax.random.key(0, impl="rbg"), TINY.image_size)
    images_u8 = np.random.default_rng(0).integers(0, 256, (19, *TINY.image_size, 3), np.uint8)
    features_fn = make_features_fn(model)
    reference = np.asarray(jax.jit(features_fn)(variables, images_u8 / np.float32(255)))
    return features_fn, variables, images_u8, reference


@pytest.fixture(scope="module")
def plain_api(victim):
    features_fn, variables, _, _ = victim
    # Counts traces of the whole served program: any recompilation fails the test.
    return FeatureAPI(chex.assert_max_traces(features_fn, n=1), variables, batch_size=8)


def test_plaintext_matches_the_model_across_padded_batches(plain_api, victim):
    _, _, images_u8, reference = victim
    assert plain_api.mesh.devices.size == jax.local_device_count() == 8
    out = plain_api(images_u8)  # 19 images: batches of 8, 8 and 3 (padded)
    assert out.shape == reference.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-6)
    as_float = plain_api(images_u8[:5].astype(np.float32) / 255)  # another length, float input
    np.testing.assert_allclose(as_float, reference[:5], rtol=1e-5, atol=1e-6)
    served = plain_api.serve(images_u8[:2])
    assert served.nonces is None


def test_batch_size_rounds_up_to_the_device_count(victim):
    features_fn, variables, _, _ = victim
    assert FeatureAPI(features_fn, variables, batch_size=5).batch_size == 8
    assert (
        FeatureAPI(features_fn, variables, batch_size=1, devices=jax.devices()[:1]).batch_size == 1
    )


def test_static_key_ciphertext_is_the_encrypted_plaintext(victim):
    features_fn, variables, images_u8, reference = victim
    key = shufflebits.Key.from_seed(7)
    api = FeatureAPI(features_fn, variables, batch_size=8, key=key)
    cipher = api(images_u8)
    plain = np.asarray(shufflebits.decrypt(cipher, key))
    np.testing.assert_allclose(plain, reference, rtol=1e-5, atol=1e-6)
    expected = np.asarray(shufflebits.encrypt(plain, key))
    np.testing.assert_array_equal(cipher.view(np.uint32), expected.view(np.uint32))
    assert not np.allclose(np.nan_to_num(cipher), reference)


def test_one_time_mode_returns_fresh_nonces_and_decrypts_exactly(victim):
    features_fn, variables, images_u8, reference = victim
    secret = shufflebits.Secret.generate()
    api = FeatureAPI(features_fn, variables, batch_size=8, key=secret)
    first, second = api.serve(images_u8), api.serve(images_u8)
    assert first.nonces.shape == (19, 3) and first.nonces.dtype == np.uint32
    assert len({tuple(n) for n in np.concatenate([first.nonces, second.nonces])}) == 38
    for served in (first, second):
        plain = np.asarray(shufflebits.decrypt(served.features, secret, served.nonces))
        np.testing.assert_allclose(plain, reference, rtol=1e-5, atol=1e-6)
    # Same images, different nonces: the ciphertexts differ.
    assert np.mean(first.features.view(np.uint32) != second.features.view(np.uint32)) > 0.5


def test_bad_inputs_raise_clear_errors(plain_api):
    with pytest.raises(ValueError, match="outside"):
        plain_api(np.full((2, *TINY.image_size, 3), 255.0, np.float32))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        as_float_images(np.zeros((2, 4, 4)))
    with pytest.raises(TypeError, match="uint8 or float"):
        as_float_images(np.zeros((1, 4, 4, 3), np.int32))
    with pytest.raises(TypeError, match="Key or Secret"):
        FeatureAPI(lambda v, x: x, {}, key="not a key")


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


def test_a_defence_runs_inside_the_served_program_before_encryption(victim):
    features_fn, variables, images_u8, reference = victim
    dim = reference.shape[1]
    key = ProjectionKey.from_bytes(bytes(range(32)))
    project = Defence("project", 0.5)
    projected = reference @ projection_matrix(key, dim, dim // 2)
    api = FeatureAPI(features_fn, variables, batch_size=8, defence=project, projection_key=key)
    np.testing.assert_allclose(api(images_u8), projected, rtol=1e-4, atol=1e-5)
    # The key holder decrypts the projection: the defence comes first, then the cipher.
    secret = shufflebits.Secret.generate()
    api = FeatureAPI(
        features_fn, variables, batch_size=8, key=secret, defence=project, projection_key=key
    )
    served = api.serve(images_u8)
    plain = np.asarray(shufflebits.decrypt(served.features, secret, served.nonces))
    np.testing.assert_allclose(plain, projected, rtol=1e-4, atol=1e-5)
    quantise = Defence("quantise", 1)
    signs = FeatureAPI(features_fn, variables, batch_size=8, defence=quantise)(images_u8)
    np.testing.assert_array_equal(signs, np.asarray(apply_defence(quantise, reference)))


def test_noise_is_drawn_afresh_for_each_served_vector(victim):
    features_fn, variables, images_u8, reference = victim
    api = FeatureAPI(features_fn, variables, batch_size=8, defence=Defence("noise", 1.0))
    twice = np.concatenate([images_u8[:1], images_u8[:1]])
    first, second = api(twice)
    assert not np.allclose(first, second)  # a fresh PRNG key per served vector
    noise = api(images_u8) - reference
    ratio = np.sqrt(np.mean(noise**2, axis=1)) / np.sqrt(np.mean(reference**2, axis=1))
    np.testing.assert_allclose(ratio, 1.0, rtol=0.5)  # std / RMS = strength 1


def test_defence_arguments_are_checked_when_built(victim):
    features_fn, variables, _, _ = victim
    key = ProjectionKey.generate()
    with pytest.raises(ValueError, match="project-0.5 needs a projection_key"):
        FeatureAPI(features_fn, variables, defence=Defence("project", 0.5))
    with pytest.raises(ValueError, match="for a project defence alone"):
        FeatureAPI(features_fn, variables, defence=Defence("noise", 0.1), projection_key=key)
    with pytest.raises(ValueError, match="for a project defence alone"):
        FeatureAPI(features_fn, variables, projection_key=key)
    with pytest.raises(TypeError, match="must be a ProjectionKey"):
        FeatureAPI(
            features_fn, variables, defence=Defence("project", 0.5), projection_key=bytes(32)
        )
    with pytest.raises(TypeError, match="must be an invfeat.defences.Defence"):
        FeatureAPI(features_fn, variables, defence=("noise", 0.1))
