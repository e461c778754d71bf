"""invfeat.defences: the properties each defence claims (identity at strength 0, exact sign bits,
the noise level, a fixed drop subset, orthonormal keyed projections that keep cosines and renew
with the key), under jit and grad, and the checks on names, strengths and keys."""

from __future__ import annotations

import json
import math
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from invfeat import defences
from invfeat.defences import (
    DEFENCES,
    Defence,
    ProjectionKey,
    add_noise,
    apply_defence,
    build,
    drop_mask,
    projection_matrix,
    quantise,
    sweep,
)
from invfeat.defences.projection import NONCE, keystream_words
from invfeat.shufflebits import StreamKey

KEY_A = ProjectionKey.from_bytes(bytes(range(32)))
KEY_B = ProjectionKey.from_bytes(bytes(range(100, 132)))
ALL = sweep([("noise", 0.3), ("quantise", 3), ("drop", 0.25), ("project", 0.5)])


def features(n: int = 6, d: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return np.sum(x * y, -1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))


def transform_of(defence: Defence, dim: int):
    return build(defence, dim, key=KEY_A if defence.needs_key else None)


def rng_of(defence: Defence):
    return jax.random.key(0) if defence.needs_rng else None


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("defence", ALL, ids=lambda d: d.label)
def test_dtype_is_kept_and_only_project_changes_the_width(defence, dtype):
    x = jnp.asarray(features(d=32), dtype)
    out = transform_of(defence, 32)(x, rng_of(defence))
    assert out.dtype == dtype
    assert out.shape == (6, defence.output_dim(32))
    assert out.shape == ((6, 16) if defence.name == "project" else (6, 32))


@pytest.mark.parametrize(
    "defence", [Defence("noise", 0), Defence("drop", 0.0)], ids=lambda d: d.label
)
def test_strength_zero_is_the_identity(defence):
    x = features()
    x[0, :3] = [-0.0, 0.0, np.inf]
    out = np.asarray(transform_of(defence, 32)(x, None))
    assert out.tobytes() == x.tobytes()  # bit for bit, -0.0 and inf included


def test_one_bit_quantise_is_the_sign():
    x = features(d=64)
    x[0, :4] = [-1e-9, 1e-30, -2.5, 3.0]  # the tiniest keep their sign
    assert np.array_equal(np.asarray(quantise(x, 1)), np.sign(x))
    assert np.array_equal(np.asarray(quantise(np.array([[0.0, -1.0]], np.float32), 1)), [[1, -1]])


@pytest.mark.parametrize("bits", [1, 2, 3, 8, 16])
def test_quantise_is_within_one_step_on_its_levels(bits):
    x = features(n=8, d=256)
    q = np.asarray(quantise(x, bits), np.float64)
    y = x / np.abs(x).max(-1, keepdims=True)
    top = 2**bits - 1
    assert np.abs(q - y).max() <= 1.0 / top + 1e-6
    index = (q + 1.0) * top / 2.0  # levels -1 + 2 i / top
    assert np.allclose(index, np.round(index), atol=1e-3)
    assert index.min() >= -1e-3 and index.max() <= top + 1e-3
    assert np.all(np.abs(q).max(-1) == 1.0)  # max |x| lands on -1 or 1


def test_quantise_gradient_is_straight_through():
    x = jnp.asarray(features())
    w = jnp.asarray(features(seed=1))
    through = jax.grad(lambda v: jnp.sum(w * quantise(v, 2)))(x)
    scaled = jax.grad(lambda v: jnp.sum(w * v / jnp.max(jnp.abs(v), -1, keepdims=True)))(x)
    assert np.all(np.isfinite(through)) and np.any(through != 0)
    np.testing.assert_allclose(through, scaled, rtol=1e-6)


@pytest.mark.parametrize("strength", [0.1, 1.0, 3.0])
def test_noise_std_is_the_strength_times_the_rms(strength):
    x = features(n=64, d=4096) * np.linspace(0.1, 10, 64, dtype=np.float32)[:, None]
    noisy = np.asarray(add_noise(x, jax.random.key(1), strength), np.float64)
    rms = np.sqrt(np.mean(np.square(x.astype(np.float64)), -1))
    relative = (noisy - x) / rms[:, None]
    # 262144 draws: the std is within 1 % and the mean within 0.01 with overwhelming odds
    assert abs(relative.std() / strength - 1) < 0.01
    assert abs(relative.mean() / strength) < 0.01
    assert np.allclose(relative.std(-1) / strength, 1, atol=0.06)  # per vector too
    assert abs(cosine(x, noisy).mean() - 1 / np.sqrt(1 + strength**2)) < 0.01


def test_noise_depends_on_the_key_and_per_vector_keys_on_the_vector_alone():
    x = features(n=4, d=16)
    one = jax.random.key(3)
    assert np.array_equal(add_noise(x, one, 0.5), add_noise(x, one, 0.5))
    assert not np.allclose(add_noise(x, one, 0.5), add_noise(x, jax.random.key(4), 0.5))
    keys = defences.fresh_noise_keys(4)
    assert keys.shape == (4,)
    batch = np.asarray(add_noise(x, keys, 0.5))
    alone = np.asarray(add_noise(x[2:3], keys[2:3], 0.5))
    np.testing.assert_array_equal(batch[2:3], alone)
    assert len({bytes(row) for row in np.asarray(jax.random.key_data(keys))}) == 4
    with pytest.raises(ValueError, match="one per vector"):
        add_noise(x, keys[:3], 0.5)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        add_noise(x, None, 0.5)


@pytest.mark.parametrize(
    ("dim", "fraction", "dropped"), [(32, 0.25, 8), (5, 0.5, 3), (100, 0.9, 90)]
)
def test_drop_removes_the_rounded_fraction_the_same_each_call(dim, fraction, dropped):
    x = np.abs(features(n=5, d=dim)) + 1.0  # no zeros of its own
    transform = transform_of(Defence("drop", fraction), dim)
    first = np.asarray(transform(x)) == 0
    assert np.all(first.sum(-1) == dropped)  # round(f D), halves up
    assert np.all(first == first[0])  # the same dimensions in every vector
    again = np.asarray(apply_defence(Defence("drop", fraction), x[::-1])) == 0
    assert np.array_equal(again, first)  # and in every call and every build
    np.testing.assert_array_equal(np.asarray(transform(x))[~first], x[~first])


def test_drop_subset_comes_from_the_seed_and_nests():
    small, large = drop_mask(64, 0.25, 0), drop_mask(64, 0.5, 0)
    assert np.all(large <= small)  # what 0.25 drops, 0.5 drops too
    assert not np.array_equal(drop_mask(64, 0.25, 1), small)
    assert Defence("drop", 0.25, seed=1).label == "drop-0.25-seed1"


@pytest.mark.parametrize(("dim", "k"), [(64, 64), (64, 16), (100, 37), (8, 1)])
def test_projection_columns_are_orthonormal(dim, k):
    q = projection_matrix(KEY_A, dim, k)
    assert q.shape == (dim, k) and q.dtype == np.float32
    np.testing.assert_allclose(q.T.astype(np.float64) @ q, np.eye(k), atol=1e-5)


def test_projection_is_determined_by_the_key():
    q = projection_matrix(KEY_A, 48, 48)
    same = ProjectionKey.from_bytes(KEY_A.to_bytes())
    assert same == KEY_A and hash(same) == hash(KEY_A) and same != KEY_B
    np.testing.assert_array_equal(projection_matrix(same, 48, 48), q)
    np.testing.assert_array_equal(projection_matrix(KEY_A, 48, 20), q[:, :20])  # a prefix
    other = projection_matrix(KEY_B, 48, 48)
    assert np.abs(q - other).max() > 0.1
    assert np.abs(q.T @ other).max() < 0.7  # no column of one is close to a column of the other
    assert ProjectionKey.generate() != ProjectionKey.generate()


def test_projection_keystream_is_rfc8439_chacha20():
    """The words are those of `cryptography`'s ChaCha20 encrypting zeros (counter 0, NONCE)."""
    n_words = 16 * 4096 + 40  # past the first compiled chunk
    cipher = Cipher(algorithms.ChaCha20(KEY_B.to_bytes(), bytes(4) + NONCE), mode=None)
    stream = cipher.encryptor().update(bytes(4 * n_words))
    np.testing.assert_array_equal(keystream_words(KEY_B, n_words), np.frombuffer(stream, "<u4"))


def test_projection_matrix_follows_its_documented_derivation():
    """53-bit uniforms from word pairs, Box-Muller, G column by column, QR with R's diagonal
    positive (recomputed here in plain Python for the first Gaussians)."""
    w = [int(v) for v in keystream_words(KEY_A, 8)]
    u = [((w[i] >> 5) * 2**26 + (w[i + 1] >> 6)) / 2**53 for i in (0, 2, 4, 6)]
    expected = []
    for u1, u2 in ((u[0], u[1]), (u[2], u[3])):
        radius = math.sqrt(-2 * math.log(1 - u1))
        expected += [radius * math.cos(2 * math.pi * u2), radius * math.sin(2 * math.pi * u2)]
    gaussians = defences.projection.keyed_gaussians(KEY_A, 24 * 6)
    np.testing.assert_allclose(gaussians[:4], expected, rtol=1e-12)
    g = gaussians.reshape(6, 24).T  # element (i, j) is Gaussian 24 j + i
    r = projection_matrix(KEY_A, 24, 6).astype(np.float64).T @ g  # Q^T G = R
    assert np.all(np.diagonal(r) > 0)
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-5)


def test_projection_gaussians_are_standard_normal():
    z = defences.projection.keyed_gaussians(KEY_A, 20_000)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.03
    assert abs(np.mean(z[0::2] * z[1::2])) < 0.05  # the Box-Muller pairs are uncorrelated


def test_full_width_projection_keeps_cosines_exactly():
    x, y = features(n=20, d=64), features(n=20, d=64, seed=1)
    full = transform_of(Defence("project", 1.0), 64)
    px, py = np.asarray(full(x)), np.asarray(full(y))
    np.testing.assert_allclose(cosine(px, py), cosine(x, y), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(px, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)


def test_projections_under_two_keys_are_unlinkable():
    """The same vector under two keys: cosine about N(0, 1/D), as for unrelated vectors, and
    nearest neighbours across keys at chance; under one key, every vector links."""
    spec, dim = Defence("project", 1.0), 256
    x = features(n=200, d=dim)
    under_a, under_b = apply_defence(spec, x, key=KEY_A), apply_defence(spec, x, key=KEY_B)
    assert np.all(cosine(under_a, apply_defence(spec, x, key=KEY_A)) > 0.9999)
    across = cosine(under_a, under_b)
    assert abs(across.mean()) < 0.02  # about trace(Q_A^T Q_B) / D: sd 1 / D = 0.004
    assert 0.5 / np.sqrt(dim) < across.std() < 1.5 / np.sqrt(dim)
    shifted = x + 0.5  # a mean direction shared by every vector, as features have
    a = np.asarray(apply_defence(spec, shifted, key=KEY_A), np.float64)
    b = np.asarray(apply_defence(spec, shifted, key=KEY_B), np.float64)
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    b /= np.linalg.norm(b, axis=-1, keepdims=True)
    assert np.mean(np.argmax(a @ b.T, axis=1) == np.arange(200)) < 0.03  # chance: 0.005
    assert np.mean(np.argmax(a @ a.T, axis=1) == np.arange(200)) == 1.0


def test_the_key_is_never_shown():
    key = ProjectionKey.generate()
    secret = key.to_bytes()
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert "hidden" in text
        assert secret.hex() not in text and str(list(secret)) not in text
        assert not any(str(word) in text for word in key.words())
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(key)


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), "0" * 32, list(range(32))])
def test_projection_key_needs_32_bytes(bad):
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        ProjectionKey.from_bytes(bad)


def test_build_checks_the_key_width_and_rng():
    with pytest.raises(ValueError, match="needs a ProjectionKey"):
        build(Defence("project", 0.5), 32)
    with pytest.raises(ValueError, match="needs a ProjectionKey"):
        build(Defence("project", 0.5), 32, key=StreamKey.generate())  # no key of another scheme
    with pytest.raises(ValueError, match="takes no key"):
        build(Defence("noise", 0.5), 32, key=KEY_A)
    with pytest.raises(ValueError, match="keeps no dimension"):
        build(Defence("project", 0.01), 32, key=KEY_A)
    with pytest.raises(ValueError, match="drops all"):
        build(Defence("drop", 0.99), 32)
    with pytest.raises(ValueError, match="positive int"):
        build(Defence("drop", 0.5), 0)
    with pytest.raises(ValueError, match="built for width 32"):
        build(Defence("quantise", 2), 32)(features(d=16))
    with pytest.raises(ValueError, match="takes no rng"):
        build(Defence("drop", 0.5), 32)(features(), jax.random.key(0))
    with pytest.raises(TypeError, match="floats"):
        build(Defence("quantise", 2), 32)(np.ones((2, 32), np.int32))
    x = features()
    assert np.array_equal(build(Defence("noise", 0.0), 32)(x, jax.random.key(0)), x)


@pytest.mark.parametrize("defence", ALL, ids=lambda d: d.label)
def test_transforms_run_under_jit_as_they_do_eagerly(defence):
    transform = transform_of(defence, 32)
    x = features()
    np.testing.assert_allclose(
        jax.jit(transform)(x, rng_of(defence)), transform(x, rng_of(defence)), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("defence", ALL, ids=lambda d: d.label)
def test_gradients_through_each_defence_are_finite_and_not_zero(defence):
    transform = transform_of(defence, 32)
    target = jnp.asarray(features(seed=2)[:, : defence.output_dim(32)])
    loss = lambda x: jnp.mean(jnp.square(transform(x, rng_of(defence)) - target))
    grad = jax.jit(jax.grad(loss))(jnp.asarray(features()))
    assert np.all(np.isfinite(grad)) and np.any(np.asarray(grad) != 0)
    if defence.name == "drop":  # nothing flows to a dropped dimension
        dropped = np.asarray(transform(features())) == 0
        assert np.all(np.asarray(grad)[dropped] == 0) and np.all(np.asarray(grad)[~dropped] != 0)


def test_noise_gradient_is_finite_at_a_zero_vector():
    grad = jax.grad(lambda x: jnp.sum(add_noise(x, jax.random.key(0), 0.5)))(jnp.zeros((2, 8)))
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(
    ("name", "strength", "error"),
    [
        ("blur", 1.0, ValueError),
        ("Noise", 1.0, ValueError),
        ("noise", -0.1, ValueError),
        ("noise", float("nan"), ValueError),
        ("noise", float("inf"), ValueError),
        ("noise", True, TypeError),
        ("noise", "0.1", TypeError),
        ("quantise", 0, ValueError),
        ("quantise", 17, ValueError),
        ("quantise", 2.5, ValueError),
        ("drop", 1.0, ValueError),
        ("drop", -0.5, ValueError),
        ("project", 0.0, ValueError),
        ("project", 1.5, ValueError),
    ],
)
def test_bad_names_and_strengths_are_refused(name, strength, error):
    with pytest.raises(error):
        Defence(name, strength)


def test_bad_seeds_and_fields_are_refused():
    for seed in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="seed"):
            Defence("drop", 0.5, seed=seed)
    with pytest.raises(ValueError, match="unknown fields"):
        Defence.from_dict({"name": "noise", "strength": 0.1, "key": "00"})
    with pytest.raises(ValueError, match="unknown defence"):
        sweep([("noise", 0.1), ("blur", 1.0)])


def test_a_defence_round_trips_through_json_and_strengths_are_normalised():
    for defence in (*ALL, Defence("drop", 0.5, seed=7)):
        text = json.dumps(defence.to_dict())
        assert Defence.from_dict(json.loads(text)) == defence
    assert Defence("quantise", 4.0).strength == 4 and isinstance(
        Defence("quantise", 4.0).strength, int
    )
    assert Defence("noise", 1) == Defence("noise", 1.0)
    assert [d.label for d in ALL] == ["noise-0.3", "quantise-3", "drop-0.25", "project-0.5"]
    assert set(DEFENCES) == {"noise", "quantise", "drop", "project"}
    assert all(kind.key_holder and kind.strength for kind in DEFENCES.values())
    assert [d.needs_rng for d in ALL] == [True, False, False, False]
    assert [d.needs_key for d in ALL] == [False, False, False, True]
    assert (
        Defence("project", 0.3).output_dim(10) == 3 and Defence("project", 0.25).output_dim(10) == 3
    )
