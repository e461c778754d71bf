"""The ChaCha20 block function of RFC 8439 in uint32 jnp ops, shared by one-time ShuffleBits (per
vector permutations) and stream mode (keystream XOR)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from invfeat.shufflebits.rotations import _rotl

NONCE_WORDS = 3
_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)
_COLUMNS = ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15))
_DIAGONALS = ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))


def _double_round(_: Any, state: tuple) -> tuple:
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


def chacha20_lanes(
    key_words: Any, counter: Any, nonce_words: tuple, unroll: bool = False
) -> list[jax.Array]:
    """RFC 8439 block function on a state of 16 separate uint32 arrays (vectorises over them).

    The ten double rounds are unrolled on accelerators (one fused kernel, not a loop of small
    launches) and rolled on CPU, where XLA gives every word its own fusion either way; `unroll`
    unrolls them on CPU too, for a caller that fuses all 16 words into one program
    (`stream.keystream_words`).
    """
    shape = jnp.broadcast_shapes(jnp.shape(counter), *(jnp.shape(n) for n in nonce_words))
    lanes = [*_SIGMA, *(key_words[i] for i in range(8)), counter, *nonce_words]
    init = tuple(jnp.broadcast_to(jnp.asarray(v, jnp.uint32), shape) for v in lanes)
    unrolled = lambda s: jax.lax.fori_loop(0, 10, _double_round, s, unroll=True)
    if unroll:
        out = unrolled(init)
    else:
        out = jax.lax.platform_dependent(
            init, cpu=lambda s: jax.lax.fori_loop(0, 10, _double_round, s), default=unrolled
        )
    return [o + i for o, i in zip(out, init, strict=True)]


def chacha20_block(key_words: Any, counter: Any, nonce: Any) -> jax.Array:
    """RFC 8439 ChaCha20 block: 8 key words, counter [...], nonce [..., 3] -> [..., 16] uint32."""
    nonce = jnp.asarray(nonce, jnp.uint32)
    words = jnp.asarray(key_words, jnp.uint32)
    lanes = chacha20_lanes(words, counter, tuple(nonce[..., i] for i in range(NONCE_WORDS)))
    return jnp.stack(lanes, axis=-1)
