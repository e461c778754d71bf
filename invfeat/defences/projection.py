"""Keyed random orthogonal projections (cancelable biometrics): a secret `ProjectionKey` and the
D x k matrix with orthonormal columns that it determines (`projection_matrix`).

The derivation is standard at every step:

1. keystream: ChaCha20 (RFC 8439, the block function of `invfeat.shufflebits.chacha20`) under
   the key's 32 bytes, the fixed nonce `NONCE` (the 12 ASCII bytes "invfeat-proj", its words
   little-endian) and block counter 0, 1, 2, ...: the words of ChaCha20 encrypting zeros;
2. uniforms: each pair of words (a, b) gives (a >> 5) 2^-27 + (b >> 6) 2^-53 in [0, 1), 53
   random bits (MT19937's `genrand_res53`, numpy's legacy `random_sample`);
3. Gaussians: each pair of uniforms (u1, u2) gives sqrt(-2 ln(1 - u1)) (cos 2 pi u2,
   sin 2 pi u2) (Box-Muller; 1 - u1 is never 0), in float64;
4. matrix: Gaussian j D + i is element (i, j) of G [D, k], column by column; Q R = G (numpy's
   LAPACK QR, float64), each column of Q times the sign of R's diagonal entry, so that R's
   diagonal is positive and Q unique (Mezzadri 2007: then Q's columns are those of a Haar-random
   orthogonal matrix); cast to float32.

Column j depends on columns 0..j of G alone, so the matrix for k columns is the first k columns
of the one for D: under one key, smaller k keep a prefix of the same projection. Another key gives
an unrelated matrix. The float32 result is the same on every machine up to float64 rounding in
the host's LAPACK, far below float32's resolution.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from invfeat.shufflebits import chacha20_block

NONCE = b"invfeat-proj"  # 12 bytes: RFC 8439's nonce, fixed (each key derives one matrix)
_BLOCK_WORDS = 16
_CHUNK_BLOCKS = 4096  # keystream blocks per call of the compiled chunk
_MAX_BLOCKS = (1 << 32) - _CHUNK_BLOCKS  # the 32-bit block counter must not wrap in a chunk


class ProjectionKey:
    """A projection key: 256 random bits keying the ChaCha20 keystream that `projection_matrix`
    turns into the matrix. Held in memory only (no key file: `invfeat.shufflebits.load_key`
    reads the schemes it names, and this is none of them); `to_bytes` gives the bytes for a
    store of the caller's. Its repr hides the value; it cannot be pickled."""

    __slots__ = ("_words",)

    def __init__(self, key_bytes: bytes):
        if not isinstance(key_bytes, bytes | bytearray) or len(key_bytes) != 32:
            raise ValueError("ProjectionKey needs exactly 32 bytes")
        self._words = np.frombuffer(bytes(key_bytes), "<u4").astype(np.uint32)

    @classmethod
    def generate(cls) -> ProjectionKey:
        """256 bits from `secrets`."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_bytes(cls, key_bytes: bytes) -> ProjectionKey:
        """The key of 32 bytes (the ChaCha20 key of RFC 8439)."""
        return cls(key_bytes)

    def to_bytes(self) -> bytes:
        return self._words.astype("<u4").tobytes()

    def words(self) -> np.ndarray:
        """The eight little-endian uint32 ChaCha20 key words."""
        return self._words.copy()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProjectionKey) and hmac.compare_digest(
            self._words.tobytes(), other._words.tobytes()
        )

    def __hash__(self) -> int:
        return hash(("ProjectionKey", hashlib.sha256(self._words.tobytes()).digest()))

    def __repr__(self) -> str:
        return "ProjectionKey(bits=256, value=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("ProjectionKeys are not picklable; store ProjectionKey.to_bytes()")


@jax.jit
def _chunk(key_words: jax.Array, nonce_words: jax.Array, first_block: jax.Array) -> jax.Array:
    """The keystream words of blocks first_block .. first_block + _CHUNK_BLOCKS - 1."""
    counter = first_block + jnp.arange(_CHUNK_BLOCKS, dtype=jnp.uint32)
    return chacha20_block(key_words, counter, nonce_words).reshape(-1)


def keystream_words(key: ProjectionKey, n_words: int) -> np.ndarray:
    """The first `n_words` uint32 words of the key's ChaCha20 keystream under `NONCE`, block
    counter from 0 (the little-endian words of ChaCha20 encrypting zero bytes). Made in chunks
    of a fixed size: one compiled program for every length."""
    if not isinstance(key, ProjectionKey):
        raise TypeError(f"a projection needs a ProjectionKey, got {type(key).__name__}")
    n_blocks = -(-n_words // _BLOCK_WORDS)
    if n_blocks > _MAX_BLOCKS:
        raise ValueError(f"{n_words} words are past ChaCha20's 2^32 blocks")
    key_words = jnp.asarray(key._words)
    nonce_words = jnp.asarray(np.frombuffer(NONCE, "<u4").astype(np.uint32))
    chunks = [
        _chunk(key_words, nonce_words, jnp.uint32(first))
        for first in range(0, n_blocks, _CHUNK_BLOCKS)
    ]
    return np.concatenate([np.asarray(c) for c in chunks] or [np.zeros(0, np.uint32)])[:n_words]


def keyed_gaussians(key: ProjectionKey, count: int) -> np.ndarray:
    """`count` standard normals (float64) from the key's keystream: 53-bit uniforms from pairs of
    words, Box-Muller on pairs of uniforms (four words per two Gaussians)."""
    pairs = -(-count // 2)
    words = keystream_words(key, 4 * pairs).reshape(2 * pairs, 2)
    high, low = (words[:, 0] >> 5).astype(np.float64), (words[:, 1] >> 6).astype(np.float64)
    uniforms = (high * 2.0**26 + low) * 2.0**-53
    u1, u2 = uniforms[0::2], uniforms[1::2]
    radius = np.sqrt(-2.0 * np.log1p(-u1))
    angle = 2.0 * np.pi * u2
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1).reshape(-1)[:count]


def projection_matrix(key: ProjectionKey, dim: int, k: int) -> np.ndarray:
    """The key's D x k matrix (float32) with orthonormal columns (the derivation: module doc)."""
    for name, value in (("dim", dim), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"projection {name} must be a positive int, got {value!r}")
    if k > dim:
        raise ValueError(f"a D x k matrix with orthonormal columns needs k <= D, got {k} > {dim}")
    gaussians_DK = keyed_gaussians(key, dim * k).reshape(k, dim).T
    q, r = np.linalg.qr(gaussians_DK)
    signs = np.where(np.diagonal(r) < 0, -1.0, 1.0)
    return (q * signs).astype(np.float32)
