"""ShuffleBits inside compiled programs: Flax, one trace, no callbacks, sharding, properties."""

import logging
import re
import time

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from invfeat import shufflebits as sb

SECRET = sb.Secret.generate()
ONE_TIME_SHAPE = (4, 16)


def bits_of(x) -> np.ndarray:
    x = np.asarray(x)
    return x.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize])


def permute_bits(u: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Reference: output bit j of each element takes input bit src[..., j] (src per vector)."""
    n = src.shape[-1]
    u = u.astype(np.uint64)
    out = np.zeros_like(u)
    for j in range(n):
        out |= ((u >> src[..., j : j + 1].astype(np.uint64)) & np.uint64(1)) << np.uint64(j)
    return out


class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(8)(nn.relu(nn.Dense(16)(x)))


class TinyEncrypted(nn.Module):
    key: sb.Key | sb.Secret

    @nn.compact
    def __call__(self, x, nonce=None):
        return sb.ShuffleBits(self.key)(Tiny()(x), nonce)


@pytest.fixture(scope="module")
def tiny():
    model = Tiny()
    return model, model.init(jax.random.key(0), jnp.zeros((4, 6)))


def test_with_encryption_fused_once_and_exact(tiny):
    model, variables = tiny
    key = sb.Key.from_seed(3)
    fused = jax.jit(chex.assert_max_traces(sb.with_encryption(model.apply, key), n=1))
    plain_fn = jax.jit(model.apply)
    for i in range(3):
        x = jax.random.normal(jax.random.key(i), (4, 6))
        y = fused(variables, x)
        plain = plain_fn(variables, x)
        assert np.array_equal(bits_of(y), bits_of(sb.encrypt(plain, key)))
        assert np.array_equal(bits_of(sb.decrypt(y, key)), bits_of(plain))
    lowered = jax.jit(sb.with_encryption(model.apply, key)).lower(variables, x)
    assert "custom_call" not in lowered.as_text()
    assert "callback" not in lowered.compile().as_text().lower()


def test_one_time_layer_fused_and_exact(tiny):
    _, variables = tiny
    model = TinyEncrypted(SECRET)
    params = {"params": {"Tiny_0": variables["params"]}}
    fused = jax.jit(chex.assert_max_traces(lambda v, x, n: model.apply(v, x, n), n=1))
    nonces = sb.fresh_nonces(4)
    for i in range(2):
        x = jax.random.normal(jax.random.key(i), (4, 6))
        y = fused(params, x, nonces)
        plain = Tiny().apply(variables, x)
        assert np.array_equal(bits_of(y), bits_of(sb.encrypt(plain, SECRET, nonces)))
        undo = sb.ShuffleBits(SECRET, inverse=True).apply({}, y, nonces)
        assert np.array_equal(bits_of(undo), bits_of(plain))
    text = jax.jit(model.apply).lower(params, x, nonces).as_text()
    assert "custom_call" not in text and "callback" not in text
    assert "<hidden>" in repr(sb.ShuffleBits(SECRET)) or "Secret" in repr(sb.ShuffleBits(SECRET))


def test_with_encryption_one_time_refuses_to_reuse_nonces_across_outputs():
    """Two outputs under one nonce would share each row's permutation (a reused one-time pad)."""
    two = sb.with_encryption(lambda x: (x, 2 * x), SECRET)
    with pytest.raises(ValueError, match="reuse each nonce"):
        two(jnp.ones((2, 4)), nonce=sb.fresh_nonces(2))
    a, b = sb.with_encryption(lambda x: (x, 2 * x), sb.Key.from_seed(0))(jnp.ones((2, 4)))
    assert a.shape == b.shape == (2, 4)  # a static key has no nonce to reuse


def test_vmap_and_sharded_over_eight_devices():
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",))
    rows = NamedSharding(mesh, P("data"))
    key = sb.Key.from_seed(11)
    x = jax.random.normal(jax.random.key(0), (16, 8))
    nonces = sb.fresh_nonces(16)
    xs, ns = jax.device_put(x, rows), jax.device_put(nonces, rows)

    y = jax.jit(lambda v: sb.encrypt(v, key), out_shardings=rows)(xs)
    assert y.sharding.is_equivalent_to(rows, 2)
    assert np.array_equal(bits_of(y), bits_of(sb.encrypt(x, key)))
    assert np.array_equal(bits_of(jax.vmap(lambda v: sb.encrypt(v, key))(x)), bits_of(y))

    z = jax.jit(lambda v, n: sb.encrypt(v, SECRET, n))(xs, ns)
    assert np.array_equal(bits_of(z), bits_of(sb.encrypt(x, SECRET, nonces)))
    back = jax.jit(lambda v, n: sb.decrypt(v, SECRET, n))(z, ns)
    assert np.array_equal(bits_of(back), bits_of(x))


# ----------------------------------------------------------------------------- properties

patterns32 = st.integers(0, 2**32 - 1)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.sampled_from([0, 1, 42, 2**31 + 5]),
    shape=st.sampled_from([(7,), (2, 5), (3, 1, 4)]),
    data=st.data(),
)
def test_static_key_matches_published_algorithm(seed, shape, data):
    size = int(np.prod(shape))
    u = np.array(data.draw(st.lists(patterns32, min_size=size, max_size=size)), np.uint32)
    key = sb.Key.from_seed(seed)
    x = u.reshape(shape).view(np.float32)
    y = sb.encrypt(x, key)
    assert y.shape == shape and y.dtype == jnp.float32
    expected = sb.published_string_encrypt(u, key.to_index_array()).reshape(shape)
    assert np.array_equal(bits_of(y), expected)
    assert np.array_equal(bits_of(sb.decrypt(y, key)), u.reshape(shape))


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_one_time_matches_its_permutations(data):
    size = int(np.prod(ONE_TIME_SHAPE))
    u = np.array(data.draw(st.lists(patterns32, min_size=size, max_size=size)), np.uint32)
    u = u.reshape(ONE_TIME_SHAPE)
    words = data.draw(st.lists(patterns32, min_size=12, max_size=12))
    nonces = np.array(words, np.uint32).reshape(4, 3)
    y = sb.encrypt(u.view(np.float32), SECRET, nonces)
    src = np.asarray(sb.one_time_permutation(SECRET, nonces, 32))
    assert np.array_equal(bits_of(y), permute_bits(u, src))
    assert np.array_equal(bits_of(sb.decrypt(y, SECRET, nonces)), u)


@settings(max_examples=40, deadline=None)
@given(perm=st.sampled_from([16, 32, 64]).flatmap(lambda n: st.permutations(range(n))))
def test_masked_rotations_realise_any_permutation_at_every_stride(perm):
    src = np.array(perm)
    n = src.size
    kind = {16: np.uint16, 32: np.uint32, 64: np.uint64}[n]
    rank = np.argsort(src)
    u = np.random.default_rng(n).integers(0, 2**63, (1, 16), dtype=np.uint64)
    u = (u & np.uint64((1 << n) - 1)).astype(kind)
    for stride in (1 << k for k in range(n.bit_length())):
        for inverse, expected in ((False, permute_bits(u, src[None])), (True, u)):
            masks = sb.rotation_masks(rank, inverse, kind, stride, np)
            given_u = permute_bits(u, src[None]).astype(kind) if inverse else u
            out = sb.rotate_groups(given_u, [m if m else None for m in masks], stride)
            assert np.array_equal(out, expected.astype(kind)), (stride, inverse)


def test_static_plan_applies_only_the_rotations_taken():
    key = sb.Key.from_seed(0)
    src = 31 - key.to_index_array()[31 - np.arange(32)]
    taken = set((np.argsort(src) - np.arange(32)) % 32)
    stride, masks = key.rotation_plan()
    assert sum(m != 0 for m in masks) == len(taken) < 32
    assert stride == sb.fewest_rotations(np.array(sorted(taken)), 32)
    assert sum(m.bit_count() for m in masks) == 32  # each bit in exactly one rotation
    assert sb.fewest_rotations(np.arange(32), 32) == 4  # all 32 taken: 7 + 3 rotations
    assert sb.fewest_rotations(np.array([0]), 32) == 1  # the identity: no rotation at all


def test_masked_rotations_jnp_equals_numpy():
    rng = np.random.default_rng(0)
    rank = np.stack([rng.permutation(32) for _ in range(64)])
    for inverse in (False, True):
        got = jax.jit(sb.rotation_masks, static_argnums=(2, 3))(rank, inverse, np.uint32, 4)
        assert np.array_equal(np.asarray(got), sb.rotation_masks(rank, inverse, np.uint32, 4, np))


def test_static_key_never_reaches_jax_logs(caplog):
    """JAX logs static arguments when it explains a cache miss: a key may show only its repr."""
    keys = [sb.Key.from_seed(5), sb.Key.from_seed(6)]
    x = jnp.ones((4, 13))
    jax.clear_caches()  # so the closest earlier entry differs from the second key's by key alone
    jax.config.update("jax_explain_cache_misses", True)
    try:
        with caplog.at_level(logging.WARNING):
            for key in keys:
                sb.decrypt(sb.encrypt(x, key), key)
    finally:
        jax.config.update("jax_explain_cache_misses", False)
    text = caplog.text
    assert "_static_kernel" in text and "permutation=<hidden>" in text
    for key in keys:
        plans = (key.rotation_plan(inverse) for inverse in (False, True))
        masks = [m for _, plan in plans for m in plan if m >= 1 << 16]
        assert not [m for m in masks if re.search(rf"\b{m}\b", text)]
        assert ", ".join(map(str, key.to_index_array()[:6])) not in text


def test_eager_call_is_one_compiled_program(caplog):
    """Outside jit, encrypt/decrypt run one program (bitcasts inside it): one pass over memory."""
    x = jnp.ones((3, 37), jnp.bfloat16)  # a shape no other test compiles
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING, logger="jax"):
            sb.encrypt(x, sb.Key.from_seed(1, bits=16))
            sb.decrypt(x, SECRET, nonce=sb.fresh_nonces(3))
    finally:
        jax.config.update("jax_log_compiles", False)
    over_x = re.findall(
        r"Compiling (jit\(\w+\)) with global shapes and types \(ShapedArray\(\w+\[3,37\]",
        caplog.text,
    )
    assert sorted(over_x) == ["jit(_one_time_kernel)", "jit(_static_kernel)"], over_x


def test_gradients_through_encryption_are_zero():
    """Documented: a bit permutation is not differentiable; no NaN or garbage leaks into grads."""
    x = jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)

    def round_trip_sum(v, key, nonce):
        return jnp.sum(sb.decrypt(sb.encrypt(v, key, nonce), key, nonce))

    for key, nonce in ((sb.Key.from_seed(3), None), (SECRET, sb.fresh_nonces(3))):
        grad = jax.grad(round_trip_sum)(x, key, nonce)
        assert np.array_equal(np.asarray(grad), np.zeros((3, 4), np.float32))


@pytest.mark.slow
def test_all_float32_patterns_round_trip():
    """Walks all 2^32 float32 bit patterns in chunks of 2^24 (not run in CI)."""
    key = sb.Key.from_seed(42)
    ia = key.to_index_array()
    src = 31 - ia[31 - np.arange(32)]

    @jax.jit
    def check(start):
        u = start + jax.lax.iota(jnp.uint32, 1 << 24)
        y = sb.encrypt(jax.lax.bitcast_convert_type(u, jnp.float32), key)
        back = jax.lax.bitcast_convert_type(sb.decrypt(y, key), jnp.uint32)
        ref = jnp.zeros_like(u)
        for j in range(32):
            ref |= ((u >> np.uint32(src[j])) & np.uint32(1)) << np.uint32(j)
        return jnp.all(back == u) & jnp.all(jax.lax.bitcast_convert_type(y, jnp.uint32) == ref)

    t0 = time.perf_counter()
    for chunk in range(256):
        assert bool(check(np.uint32(chunk << 24))), chunk
    print(f"all 2^32 float32 patterns: {time.perf_counter() - t0:.1f} s")
