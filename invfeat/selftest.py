"""Fast self-checks of ShuffleBits and stream mode: `python -m experiments shufflebits selftest`."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from invfeat import shufflebits as sb

# (seed, plain uint32, encrypted uint32): from the published algorithm's reference vectors.
PUBLISHED = (
    (
        0,
        (2139095040, 2155872255, 8388608, 3212836864),
        (2219445252, 2075522043, 131072, 2219510784),
    ),
    (1, (2139095040, 2155872255, 8388608, 3212836864), (939596804, 3355370491, 1024, 671161860)),
    (42, (2139095040, 2155872255, 8388608, 3212836864), (570589237, 3724378058, 1, 570605617)),
)
# RFC 8439 section 2.3.2: key 00..1f, nonce 000000090000004a00000000, counter 1.
RFC8439_BLOCK = (
    "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
    "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
)
# RFC 8439 section 2.4.2: key 00..1f, nonce 000000000000004a00000000, counter 1, this text.
SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
    b"future, sunscreen would be it."
)
RFC8439_SUNSCREEN = (
    "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
    "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
    "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
    "5af90bbf74a35be6b40b8eedf2785e42874d"
)
_FLOATS = ((jnp.float16, 5, 10), (jnp.bfloat16, 8, 7), (jnp.float32, 8, 23), (jnp.float64, 11, 52))


def special_bits(exp: int, man: int) -> np.ndarray:
    """±0, ±inf, NaNs with payloads, subnormals, ±max, ±1 and all-ones, as unsigned patterns."""
    n = 1 + exp + man
    sign, inf, man_mask = 1 << (n - 1), ((1 << exp) - 1) << man, (1 << man) - 1
    one = ((1 << (exp - 1)) - 1) << man
    pats = [
        0,
        sign,
        inf,
        sign | inf,
        inf | 1,
        inf | (1 << (man - 1)),
        sign | inf | 5,
        1,
        man_mask,
        sign | 1,
        1 << man,
        inf - 1,
        sign | (inf - 1),
        one,
        sign | one,
        (1 << n) - 1,
    ]
    return np.array(pats, dtype=sb.UINT_BY_WIDTH[n])


def _require(ok: bool, what: object) -> None:
    if not ok:
        raise RuntimeError(str(what))


def _bits(x) -> np.ndarray:
    x = np.asarray(x)
    return x.view(sb.UINT_BY_WIDTH[x.dtype.itemsize * 8])


def _published() -> str:
    for seed, plain, enc in PUBLISHED:
        key = sb.Key.from_seed(seed)
        got = _bits(sb.encrypt(np.array(plain, np.uint32).view(np.float32), key))
        _require(np.array_equal(got, np.array(enc, np.uint32)), f"published seed {seed}")
    rng = np.random.default_rng(0)
    for seed in range(5):
        key = sb.Key.from_seed(seed)
        u = np.concatenate([special_bits(8, 23), rng.integers(0, 2**32, 48, dtype=np.uint32)])
        expected = sb.published_string_encrypt(u, key.to_index_array())
        _require(
            np.array_equal(_bits(sb.encrypt(u.view(np.float32), key)), expected),
            f"string method, seed {seed}",
        )
    return f"{len(PUBLISHED)} stored vectors + 5 seeds vs the published string method"


def _round_trips() -> str:
    secret = sb.Secret.generate()
    for dtype, exp, man in _FLOATS:
        with jax.enable_x64(dtype == jnp.float64):
            x = special_bits(exp, man).view(np.dtype(dtype)).reshape(2, -1)
            key = sb.Key.generate(1 + exp + man)
            y = sb.encrypt(x, key)
            _require(y.dtype == x.dtype and y.shape == x.shape, f"{dtype} shape/dtype")
            _require(np.array_equal(_bits(sb.decrypt(y, key)), _bits(x)), f"{dtype} round trip")
            if dtype in (jnp.bfloat16, jnp.float32):
                nonces = sb.fresh_nonces(2)
                z = sb.encrypt(x, secret, nonces)
                _require(
                    np.array_equal(_bits(sb.decrypt(z, secret, nonces)), _bits(x)),
                    f"{dtype} round trip",
                )
    return "±0, ±inf, NaN payloads, subnormals; float16/bfloat16/float32/float64"


def _one_time() -> str:
    key = np.frombuffer(bytes(range(32)), "<u4")
    nonce = np.frombuffer(bytes.fromhex("000000090000004a00000000"), "<u4")
    block = np.asarray(sb.chacha20_block(key, 1, nonce)).astype("<u4").tobytes().hex()
    _require(block == RFC8439_BLOCK, "ChaCha20 block differs from RFC 8439")
    secret, nonces = sb.Secret.generate(), sb.fresh_nonces(32)
    nonces[1] = nonces[0]
    perms = np.asarray(sb.one_time_permutation(secret, nonces, 32))
    _require(np.array_equal(perms[0], perms[1]), "equal nonces must reproduce")
    _require(len({tuple(p) for p in perms[1:]}) == 31, "distinct nonces must differ")
    return "RFC 8439 block, equal nonces reproduce, distinct nonces differ"


def _stream() -> str:
    key = sb.StreamKey.from_bytes(bytes(range(32)))
    nonce = np.frombuffer(bytes.fromhex("000000000000004a00000000"), "<u4").astype(np.uint32)
    text = np.frombuffer(SUNSCREEN, np.float16)  # 114 bytes: a partial last block
    cipher = np.asarray(sb.encrypt(text, key, nonce))
    _require(cipher.tobytes().hex() == RFC8439_SUNSCREEN, "stream differs from RFC 8439 2.4.2")
    _require(np.array_equal(_bits(sb.decrypt(cipher, key, nonce)), _bits(text)), "stream inverse")
    for dtype, exp, man in _FLOATS:
        with jax.enable_x64(dtype == jnp.float64):
            x = special_bits(exp, man).view(np.dtype(dtype)).reshape(2, -1)
            nonces = sb.fresh_nonces(2)
            back = sb.decrypt(sb.encrypt(x, key, nonces), key, nonces)
            _require(np.array_equal(_bits(back), _bits(x)), f"{dtype} stream round trip")
    return "RFC 8439 2.4.2 keystream encryption; round trips in every width"


def _fusion() -> str:
    key = sb.Key.from_seed(7)
    w = jax.random.normal(jax.random.key(0), (6, 8))
    x = jax.random.normal(jax.random.key(1), (4, 6))
    fused = jax.jit(sb.with_encryption(lambda v: jnp.tanh(v @ w), key))
    plain = jax.jit(lambda v: jnp.tanh(v @ w))(x)
    _require(np.array_equal(_bits(fused(x)), _bits(sb.encrypt(plain, key))), "fused != separate")
    _require("custom_call" not in fused.lower(x).as_text(), "host call in the compiled program")
    return "jit(with_encryption(f)) == encrypt(f), no custom_call"


def _key_files() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        for obj in (sb.Key.generate(), sb.Secret.generate(), sb.StreamKey.generate()):
            path = Path(tmp) / type(obj).__name__
            obj.save(path)
            _require(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "key file mode")
            _require(sb.load_key(path) == obj, "key file round trip")
    return "save/load round trip, mode 0600"


CHECKS: tuple[tuple[str, Callable[[], str]], ...] = (
    ("published vectors", _published),
    ("bit-exact round trips", _round_trips),
    ("one-time mode", _one_time),
    ("stream mode", _stream),
    ("jit fusion", _fusion),
    ("key files", _key_files),
)


def run_checks() -> Iterator[tuple[str, bool, str]]:
    """Yield (check name, passed, detail) for every check."""
    for name, check in CHECKS:
        try:
            yield name, True, check()
        except Exception as e:  # noqa: BLE001 -- report every failure, keep going
            yield name, False, f"{type(e).__name__}: {e}"
