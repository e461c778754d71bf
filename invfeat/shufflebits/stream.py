"""Stream mode: the ChaCha20 keystream of RFC 8439 XORed onto the raw bits of every float.

Each vector (the last axis) is one RFC 8439 message under its nonce: the nonce's three uint32
words are the ChaCha20 state's nonce words (its 12 bytes are the words little-endian), the block
counter starts at 1 (block 0 is reserved for the Poly1305 key of ChaCha20-Poly1305), and the
vector's little-endian bytes (`row.tobytes()`) XOR the keystream bytes. So a vector's ciphertext
is byte for byte the ciphertext part of ChaCha20-Poly1305 with empty associated data. In words:
32-bit floats take one keystream word each; 16-bit element 2k takes the low half of word k and
element 2k + 1 its high half; 64-bit element k takes words 2k (low) and 2k + 1 (high).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from invfeat.shufflebits.chacha20 import NONCE_WORDS, chacha20_lanes
from invfeat.shufflebits.rotations import UINT_BY_WIDTH

FIRST_COUNTER = 1  # RFC 8439 section 2.8: block 0 keys Poly1305
_MAX_BLOCKS = (1 << 32) - FIRST_COUNTER  # the 32-bit counter must not wrap within a vector


def keystream_words(key_words: jax.Array, nonce: jax.Array, n_words: int) -> jax.Array:
    """The first `n_words` uint32 keystream words [..., n_words] of each nonce [..., 3], from
    block `FIRST_COUNTER` on (word 16 b + j is word j of block FIRST_COUNTER + b)."""
    n_blocks = max(-(-n_words // 16), 1)
    if n_blocks > _MAX_BLOCKS:
        raise ValueError(f"a vector of {4 * n_words} bytes is past ChaCha20's 2^32 blocks")
    counter = jnp.arange(FIRST_COUNTER, FIRST_COUNTER + n_blocks, dtype=jnp.uint32)
    nonce_words = tuple(nonce[..., i, None] for i in range(NONCE_WORDS))  # [..., 1]
    lanes = chacha20_lanes(key_words, counter, nonce_words)  # 16 x [..., blocks]
    # The block is computed once, then interleaved: fused into the interleave, every output word
    # would recompute all 16 lanes of its block.
    words = jnp.stack(jax.lax.optimization_barrier(lanes), axis=-1)  # [..., blocks, 16]
    return words.reshape(words.shape[:-2] + (n_blocks * 16,))[..., :n_words]


@jax.jit
def stream_kernel(x: jax.Array, key_words: jax.Array, nonce: jax.Array) -> jax.Array:
    """x XOR keystream, bitcasts included (its own inverse): one fused pass over memory."""
    n = x.dtype.itemsize * 8
    length = x.shape[-1]
    u = jax.lax.bitcast_convert_type(x, UINT_BY_WIDTH[n])
    if n == 32:
        pad = keystream_words(key_words, nonce, length)
    elif n == 16:
        ks = keystream_words(key_words, nonce, -(-length // 2))
        halves = jnp.stack([ks, ks >> 16], axis=-1).astype(jnp.uint16)  # low, high
        pad = halves.reshape(ks.shape[:-1] + (2 * ks.shape[-1],))[..., :length]
    else:
        ks = keystream_words(key_words, nonce, 2 * length).astype(jnp.uint64)
        pad = ks[..., 0::2] | (ks[..., 1::2] << jnp.uint64(32))
    return jax.lax.bitcast_convert_type(u ^ pad, x.dtype)
