"""Stream mode (invfeat/shufflebits/stream.py): ChaCha20 byte for byte as RFC 8439 and the
`cryptography` package, bit-exact round trips, one program per shape, vmap and sharding, the
linen layer, `with_encryption`, `FeatureAPI`, and `StreamKey` files."""

import json
import logging
import os
import pickle
import re
import stat

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from invfeat import shufflebits as sb
from invfeat.api import FeatureAPI
from invfeat.selftest import RFC8439_SUNSCREEN, special_bits
from invfeat.shufflebits.stream import stream_kernel

KEY = sb.StreamKey.generate()
FLOATS = ((jnp.float16, 5, 10), (jnp.bfloat16, 8, 7), (jnp.float32, 8, 23), (jnp.float64, 11, 52))
LENGTHS = (1, 3, 15, 16, 17, 100, 1000)
SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
    b"future, sunscreen would be it."
)
# RFC 8439 section 2.8.2: the AEAD's ciphertext (its tag is not stream mode's business here).
RFC8439_AEAD = (
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116"
)


def bits_of(x) -> np.ndarray:
    x = np.asarray(x)
    return x.view(sb.UINT_BY_WIDTH[x.dtype.itemsize * 8])


def aead_ciphertext(key: sb.StreamKey, nonce: np.ndarray, row: np.ndarray) -> bytes:
    """The ciphertext part of ChaCha20-Poly1305 (OpenSSL, through `cryptography`) of one row."""
    sealed = ChaCha20Poly1305(key.to_bytes()).encrypt(
        nonce.astype("<u4").tobytes(), row.tobytes(), None
    )
    return sealed[:-16]


def from_bytes(data: bytes, dtype) -> np.ndarray:
    return np.frombuffer(data, np.uint8).view(np.dtype(dtype))


# ----------------------------------------------------------------------------- interoperability


@pytest.mark.parametrize("dtype,exp,man", FLOATS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_each_vector_is_the_chacha20poly1305_ciphertext(dtype, exp, man):
    rng = np.random.default_rng(exp)
    width = np.dtype(dtype).itemsize
    with jax.enable_x64(dtype == jnp.float64):
        for length in LENGTHS:  # bytes: multiples of 64 and not
            key = sb.StreamKey.generate()
            x = rng.integers(0, 256, (2, 3, length * width), np.uint8).view(np.dtype(dtype))
            nonces = sb.fresh_nonces(x.shape[:-1])
            y = np.asarray(sb.encrypt(x, key, nonces))
            assert y.shape == x.shape and y.dtype == x.dtype
            for index in np.ndindex(x.shape[:-1]):
                assert y[index].tobytes() == aead_ciphertext(key, nonces[index], x[index]), (
                    length,
                    index,
                )
            back = sb.decrypt(y, key, nonces)
            assert np.array_equal(bits_of(back), bits_of(x))


@pytest.mark.parametrize("dtype,exp,man", FLOATS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_special_values_round_trip_bit_for_bit(dtype, exp, man):
    """±0, ±inf, NaN payloads, subnormals: the bits go through XOR untouched by float rules."""
    with jax.enable_x64(dtype == jnp.float64):
        x = special_bits(exp, man).view(np.dtype(dtype)).reshape(2, -1)
        nonces = sb.fresh_nonces(2)
        y = sb.encrypt(x, KEY, nonces)
        assert not np.array_equal(bits_of(y), bits_of(x))
        assert np.array_equal(bits_of(sb.decrypt(y, KEY, nonces)), bits_of(x))
        assert np.asarray(y)[1].tobytes() == aead_ciphertext(KEY, nonces[1], x[1])
        empty = sb.encrypt(np.zeros((2, 0), dtype), KEY, nonces)
        assert empty.shape == (2, 0)


def test_rfc8439_vectors_through_the_kernel():
    """Section 2.4.2 (counter 1, the "sunscreen" text) and 2.8.2 (the AEAD's ciphertext)."""
    text = from_bytes(SUNSCREEN, np.float16)  # 114 bytes: not a multiple of 4 or 64
    key = sb.StreamKey.from_bytes(bytes(range(32)))
    nonce = np.frombuffer(bytes.fromhex("000000000000004a00000000"), "<u4").astype(np.uint32)
    assert np.asarray(sb.encrypt(text, key, nonce)).tobytes().hex() == RFC8439_SUNSCREEN
    key = sb.StreamKey.from_bytes(bytes(range(0x80, 0xA0)))
    nonce = np.frombuffer(bytes.fromhex("070000004041424344454647"), "<u4").astype(np.uint32)
    assert np.asarray(sb.encrypt(text, key, nonce)).tobytes().hex() == RFC8439_AEAD
    # the same bytes read as 32-bit and bfloat16 floats: whole elements, the first 112 bytes
    for dtype in (np.float32, jnp.bfloat16):
        x = from_bytes(SUNSCREEN[:112], dtype)
        assert np.asarray(sb.encrypt(x, key, nonce)).tobytes().hex() == RFC8439_AEAD[:224]


def test_a_repeated_nonce_reveals_the_xor_of_two_vectors():
    """What the docs warn of: one keystream twice gives c1 ^ c2 = x1 ^ x2 (never reuse nonces)."""
    x = np.random.default_rng(1).standard_normal((2, 33)).astype(np.float32)
    nonce = sb.fresh_nonces(1)
    c1, c2 = (bits_of(sb.encrypt(row[None], KEY, nonce)) for row in x)
    assert np.array_equal(c1 ^ c2, (bits_of(x[0]) ^ bits_of(x[1]))[None])


# ----------------------------------------------------------------------------- compiled programs


def test_one_compile_per_shape_and_none_per_key():
    x = jnp.arange(5 * 24, dtype=jnp.float32).reshape(5, 24)
    fused = jax.jit(chex.assert_max_traces(lambda v, n: sb.encrypt(jnp.tanh(v), KEY, n), n=1))
    for _ in range(3):
        nonces = sb.fresh_nonces(5)
        assert np.array_equal(
            bits_of(fused(x, nonces)), bits_of(sb.encrypt(jnp.tanh(x), KEY, nonces))
        )
    text = jax.jit(lambda v, n: sb.encrypt(v, KEY, n)).lower(x, nonces).as_text()
    assert "custom_call" not in text and "callback" not in text
    x = jnp.ones((3, 41), jnp.float16)  # a shape no other test compiles
    sb.encrypt(x, KEY, sb.fresh_nonces(3))
    before = stream_kernel._cache_size()
    for _ in range(3):  # other keys, other nonces, decryption: the same program
        sb.decrypt(x, sb.StreamKey.generate(), sb.fresh_nonces(3))
    assert stream_kernel._cache_size() == before


def test_eager_call_is_one_compiled_program(caplog):
    x = jnp.ones((3, 39), jnp.bfloat16)  # a shape no other test compiles
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING, logger="jax"):
            sb.encrypt(x, KEY, sb.fresh_nonces(3))
    finally:
        jax.config.update("jax_log_compiles", False)
    over_x = re.findall(r"Compiling (jit\(\w+\)) with global shapes and types", caplog.text)
    assert over_x == ["jit(stream_kernel)"], caplog.text


def test_cpu_keystream_is_one_fusion_of_sixteen_outputs():
    """On CPU each block is computed once, in one fusion whose 16 outputs are its words (a
    variadic reduce): no loop, and no fusion on the smaller shapes of the nonces or counter."""
    x = jnp.ones((4, 2048), jnp.float32)
    text = stream_kernel.lower(x, KEY._words, sb.fresh_nonces(4)).compile().as_text()
    types = [
        line.split(" = ", 1)[1].split(" fusion(")[0]
        for line in text.splitlines()
        if " fusion(" in line
    ]
    assert [t.count("u32[4,128]{1,0}") for t in types if t.startswith("(")] == [16], text
    assert "while" not in text and not re.search(r"u32\[(4|128)\]\{0\} fusion\(", text)


def test_vmap_and_sharded_over_eight_devices():
    assert jax.device_count() == 8
    rows = NamedSharding(jax.make_mesh((8,), ("data",)), P("data"))
    x = jax.random.normal(jax.random.key(0), (16, 40))
    nonces = sb.fresh_nonces(16)
    eager = bits_of(sb.encrypt(x, KEY, nonces))
    xs, ns = jax.device_put(x, rows), jax.device_put(nonces, rows)
    y = jax.jit(lambda v, n: sb.encrypt(v, KEY, n), out_shardings=rows)(xs, ns)
    assert y.sharding.is_equivalent_to(rows, 2)
    assert np.array_equal(bits_of(y), eager)
    mapped = jax.vmap(lambda v, n: sb.encrypt(v, KEY, n))(x, nonces)
    assert np.array_equal(bits_of(mapped), eager)
    back = jax.jit(lambda v, n: sb.decrypt(v, KEY, n))(y, ns)
    assert np.array_equal(bits_of(back), bits_of(x))


class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(8)(nn.relu(nn.Dense(16)(x)))


def test_layer_and_with_encryption_take_a_stream_key():
    model = Tiny()
    variables = model.init(jax.random.key(0), jnp.zeros((4, 6)))
    x = jax.random.normal(jax.random.key(1), (4, 6))
    nonces = sb.fresh_nonces(4)
    plain = model.apply(variables, x)
    expected = bits_of(sb.encrypt(plain, KEY, nonces))
    fused = jax.jit(sb.with_encryption(model.apply, KEY))
    assert np.array_equal(bits_of(fused(variables, x, nonce=nonces)), expected)
    layer = sb.ShuffleBits(KEY)
    assert np.array_equal(bits_of(jax.jit(layer.apply)({}, plain, nonces)), expected)
    undo = sb.ShuffleBits(KEY, inverse=True).apply({}, expected.view(np.float32), nonces)
    assert np.array_equal(bits_of(undo), bits_of(plain))
    with pytest.raises(ValueError, match="stream encryption .* reuse each nonce"):
        sb.with_encryption(lambda v: (v, 2 * v), KEY)(x, nonce=nonces)


def test_argument_errors():
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="stream mode needs nonce"):
        sb.encrypt(x, KEY)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        sb.encrypt(x, KEY, sb.fresh_nonces(3))
    with pytest.raises(ValueError, match="got uint64"):
        sb.encrypt(x, KEY, sb.fresh_nonces(2).astype(np.uint64))
    with pytest.raises(ValueError, match="at least one axis"):
        sb.encrypt(jnp.float32(1), KEY, sb.fresh_nonces(()))
    with pytest.raises(TypeError, match="float arrays"):
        sb.encrypt(jnp.zeros((2, 3), jnp.int32), KEY, sb.fresh_nonces(2))
    assert sb.uses_nonces(KEY) and sb.uses_nonces(sb.Secret.generate())
    assert not sb.uses_nonces(sb.Key.from_seed(0))


# ----------------------------------------------------------------------------- the API


def test_feature_api_serves_stream_ciphertext_with_its_nonces():
    w = np.random.default_rng(2).standard_normal((3, 20)).astype(np.float32)
    features_fn = lambda v, images: jnp.mean(images, axis=(1, 2)) @ v["w"]
    images = np.random.default_rng(3).integers(0, 256, (11, 8, 4, 3), np.uint8)
    plain = FeatureAPI(features_fn, {"w": w}, batch_size=8)(images)
    api = FeatureAPI(features_fn, {"w": w}, batch_size=8, key=KEY)
    assert api.uses_nonces
    first, second = api.serve(images), api.serve(images)
    assert first.nonces.shape == (11, 3) and first.nonces.dtype == np.uint32
    assert len({tuple(n) for n in np.concatenate([first.nonces, second.nonces])}) == 22
    for served in (first, second):
        back = sb.decrypt(served.features, KEY, served.nonces)
        assert np.array_equal(bits_of(back), bits_of(plain))
    row = served.features[4].tobytes()
    assert row == aead_ciphertext(KEY, served.nonces[4], plain[4])
    assert np.mean(bits_of(first.features) != bits_of(second.features)) > 0.9


# ----------------------------------------------------------------------------- keys


def test_stream_key_bytes_repr_and_secrecy():
    raw = os.urandom(32)
    key = sb.StreamKey.from_bytes(raw)
    assert key.to_bytes() == raw and key == sb.StreamKey(raw) and key != sb.StreamKey.generate()
    assert key != sb.Secret(raw)  # one key's bytes, two schemes: never equal
    assert np.array_equal(key.words(), np.frombuffer(raw, "<u4"))
    assert raw.hex() not in repr(key) and "<hidden>" in repr(key) and str(key) == repr(key)
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(key)
    for bad in (raw[:31], raw + b"\0", raw.hex()):
        with pytest.raises(ValueError, match="exactly 32 bytes"):
            sb.StreamKey.from_bytes(bad)
    assert len({key, sb.StreamKey(raw)}) == 1


def test_stream_key_file_round_trip_mode_0600_under_umask_0(tmp_path):
    path = tmp_path / "stream.json"
    old = os.umask(0)
    try:
        KEY.save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["kind"] == "stream" and data["version"] == sb.FILE_VERSION
    assert sb.StreamKey.load(path) == KEY and sb.load_key(path) == KEY
    assert isinstance(sb.load_key(path), sb.StreamKey)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        KEY.save(path)
    other = sb.StreamKey.generate()
    other.save(path, overwrite=True)
    assert sb.StreamKey.load(path) == other


def test_a_key_of_one_scheme_is_refused_by_the_others(tmp_path):
    files = {}
    for name, key in (
        ("key", sb.Key.generate()),
        ("secret", sb.Secret.generate()),
        ("stream", KEY),
    ):
        files[name] = tmp_path / f"{name}.json"
        key.save(files[name])
    refusals = (
        (sb.Key.load, "stream", "holds a stream key, not a static key"),
        (sb.Secret.load, "stream", "holds a stream key, not a one-time secret"),
        (sb.StreamKey.load, "key", "holds a static key, not a stream key"),
        (sb.StreamKey.load, "secret", "holds a one-time secret, not a stream key"),
    )
    for load, held, message in refusals:
        with pytest.raises(sb.KeyFileError, match=message) as err:
            load(files[held])
        assert str(files[held]) in str(err.value)


def test_corrupt_or_unchecked_stream_key_files_are_refused(tmp_path):
    path = tmp_path / "stream.json"
    KEY.save(path)
    data = json.loads(path.read_text())
    digit = data["stream"][0]
    data["stream"] = ("1" if digit == "0" else "0") + data["stream"][1:]  # another valid key
    bad = tmp_path / "bad.json"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    with pytest.raises(sb.KeyFileError, match="check does not match") as err:
        sb.StreamKey.load(bad)
    assert str(bad) in str(err.value)
    data = json.loads(path.read_text())
    del data["check"]
    data["version"] = 1  # stream keys were never written without a check
    bad.write_text(json.dumps(data))
    with pytest.raises(sb.KeyFileError, match="version 2 or later"):
        sb.load_key(bad)
    data["version"], data["stream"] = 2, "zz" * 32
    bad.write_text(json.dumps(data))
    with pytest.raises(sb.KeyFileError, match="corrupt stream"):
        sb.load_key(bad)
