"""One-time permutations: the stable argsort of the words of a vector's ChaCha20 blocks (RFC 8439,
`chacha20.py`); `fresh_nonces` draws the nonces (one-time and stream mode alike)."""

from __future__ import annotations

import functools
import operator
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from invfeat.shufflebits.chacha20 import NONCE_WORDS, chacha20_block, chacha20_lanes
from invfeat.shufflebits.keys import Secret

__all__ = ["NONCE_WORDS", "chacha20_block", "fresh_nonces", "one_time_permutation"]


def _stable_ranks(w: jax.Array) -> jax.Array:
    """Position of each of the last-axis words in their stable ascending order (int32).

    rank[i] = #{k : w[k] < w[i] or (w[k] == w[i] and k < i)}: [..., n, n] comparisons summed
    over the minor axis (fuses into one vectorised reduction).
    """
    k = jnp.arange(w.shape[-1])
    smaller = w[..., None, :] < w[..., :, None]
    tied_before = (w[..., None, :] == w[..., :, None]) & (k[None, :] < k[:, None])
    return jnp.sum(smaller | tied_before, axis=-1, dtype=jnp.int32)


@functools.partial(jax.jit, static_argnames="bits")
def _one_time_ranks(key_words: jax.Array, nonce: jax.Array, bits: int) -> jax.Array:
    """[..., bits]: input bit i goes to output bit rank[i] (rank = inverse of src = argsort(w))."""
    n_blocks = -(-bits // 16)
    counter = jnp.arange(n_blocks, dtype=jnp.uint32).reshape((n_blocks,) + (1,) * (nonce.ndim - 1))
    lanes = chacha20_lanes(
        key_words, counter, tuple(nonce[None, ..., i] for i in range(NONCE_WORDS))
    )
    w = jnp.moveaxis(jnp.stack(lanes, axis=-1), 0, -2)  # [..., blocks, 16]
    return _stable_ranks(w.reshape(w.shape[:-2] + (n_blocks * 16,))[..., :bits])


def one_time_permutation(secret: Secret, nonce: Any, bits: int) -> jax.Array:
    """Per-vector permutation src[..., bits] (output bit j takes input bit src[j]): the stable
    argsort of the first `bits` words of the nonce's ChaCha20 blocks 0, 1, ..."""
    rank = _one_time_ranks(jnp.asarray(secret._words), jnp.asarray(nonce, jnp.uint32), bits)
    return jnp.argsort(rank, axis=-1).astype(jnp.int32)


def fresh_nonces(shape: int | tuple[int, ...]) -> np.ndarray:
    """Random nonces of shape `shape + (3,)` (uint32) from os.urandom, one per vector."""
    try:  # an int, numpy integer included, or a sequence of them
        shape = (operator.index(shape),)
    except TypeError:
        shape = tuple(operator.index(d) for d in shape)
    if min(shape, default=0) < 0:
        raise ValueError(f"fresh_nonces: shape must be non-negative, got {shape}")
    count = int(np.prod(shape, dtype=np.int64)) * NONCE_WORDS
    return np.frombuffer(os.urandom(4 * count), "<u4").astype(np.uint32).reshape(shape + (3,))
