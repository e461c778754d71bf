"""One-time permutations: the ChaCha20 block (RFC 8439) over a vector's nonce, then the stable
argsort of its keystream words; `fresh_nonces` draws the nonces."""

from __future__ import annotations

import functools
import operator
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from invfeat.shufflebits.keys import Secret
from invfeat.shufflebits.rotations import _rotl

NONCE_WORDS = 3
_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)
_COLUMNS = ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15))
_DIAGONALS = ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))


def _chacha20(key_words: Any, counter: Any, nonce_words: tuple) -> list[jax.Array]:
    """RFC 8439 block function on a state of 16 separate uint32 arrays (vectorises over them)."""
    shape = jnp.broadcast_shapes(jnp.shape(counter), *(jnp.shape(n) for n in nonce_words))
    lanes = [*_SIGMA, *(key_words[i] for i in range(8)), counter, *nonce_words]
    init = tuple(jnp.broadcast_to(jnp.asarray(v, jnp.uint32), shape) for v in lanes)

    def double_round(_: Any, state: tuple) -> tuple:
        x = list(state)
        for a, b, c, d in _COLUMNS + _DIAGONALS:
            x[a] = x[a] + x[b]
            x[d] = _rotl(x[d] ^ x[a], 16)
            x[c] = x[c] + x[d]
            x[b] = _rotl(x[b] ^ x[c], 12)
            x[a] = x[a] + x[b]
            x[d] = _rotl(x[d] ^ x[a], 8)
            x[c] = x[c] + x[d]
            x[b] = _rotl(x[b] ^ x[c], 7)
        return tuple(x)

    # Unrolled on accelerators (one fused kernel, not a loop of small launches); rolled on CPU,
    # where unrolling slows compilation and gains nothing (benchmarks/RESULTS.md).
    out = jax.lax.platform_dependent(
        init,
        cpu=lambda s: jax.lax.fori_loop(0, 10, double_round, s),
        default=lambda s: jax.lax.fori_loop(0, 10, double_round, s, unroll=True),
    )
    return [o + i for o, i in zip(out, init, strict=True)]


def chacha20_block(key_words: Any, counter: Any, nonce: Any) -> jax.Array:
    """RFC 8439 ChaCha20 block: 8 key words, counter [...], nonce [..., 3] -> [..., 16] uint32."""
    nonce = jnp.asarray(nonce, jnp.uint32)
    words = jnp.asarray(key_words, jnp.uint32)
    return jnp.stack(_chacha20(words, counter, tuple(nonce[..., i] for i in range(3))), axis=-1)


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
    lanes = _chacha20(key_words, counter, tuple(nonce[None, ..., i] for i in range(NONCE_WORDS)))
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
