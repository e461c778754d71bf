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

import functools

import jax
import jax.numpy as jnp

from invfeat.shufflebits.chacha20 import NONCE_WORDS, chacha20_lanes
from invfeat.shufflebits.rotations import KERNEL_OPTIONS, UINT_BY_WIDTH

FIRST_COUNTER = 1  # RFC 8439 section 2.8: block 0 keys Poly1305
_MAX_BLOCKS = (1 << 32) - FIRST_COUNTER  # the 32-bit counter must not wrap within a vector


def _interleaved_blocks(key_words: jax.Array, counter: jax.Array, nonce_words: tuple) -> jax.Array:
    """[..., blocks * 16]: the blocks' words in order (accelerators). Each block is computed once,
    then interleaved: fused into the interleave, every output word would recompute all 16 lanes
    of its block."""
    lanes = chacha20_lanes(key_words, counter, nonce_words)  # 16 x [..., blocks]
    words = jnp.stack(jax.lax.optimization_barrier(lanes), axis=-1)  # [..., blocks, 16]
    return words.reshape(words.shape[:-2] + (-1,))


def _interleaved_blocks_cpu(
    key_words: jax.Array, counter: jax.Array, nonce_words: tuple
) -> jax.Array:
    """[..., blocks * 16] on XLA:CPU, where only a reduce makes a fusion of several outputs.

    The 16 lanes are the outputs of one variadic reduce, an XOR over an axis of two entries
    whose second is zeroed (XLA would drop a reduce over one entry; LLVM drops the dead one), so
    each block is computed once, in registers, vectorised over blocks. The counter and nonces
    vary along that axis (`entry >> 1` is 0) so that XLA computes no part of the first round on
    the smaller shapes of the nonces or the counter: those parts would be fusions of their own,
    sharing the rotation amounts as runtime operands, and the block's rotations by 16 and 12
    would become pairs of variable shifts. A select per word interleaves the outputs in the
    consumer's fusion (a concatenate of 16 would be a pass over memory of its own).
    """
    shape = jnp.broadcast_shapes(counter.shape, *(n.shape for n in nonce_words)) + (2,)
    entry = jax.lax.broadcasted_iota(jnp.uint32, shape, len(shape) - 1)
    spread = lambda v: v[..., None] + (entry >> 1)
    lanes = chacha20_lanes(
        key_words, spread(counter), tuple(spread(n) for n in nonce_words), unroll=True
    )  # 16 x [..., blocks, 2]
    blocks = jax.lax.reduce(
        tuple(jnp.where(entry == 1, jnp.uint32(0), lane) for lane in lanes),
        (jnp.uint32(0),) * len(lanes),
        lambda a, b: tuple(u ^ v for u, v in zip(a, b, strict=True)),
        (len(shape) - 1,),
    )  # 16 x [..., blocks]
    shape = blocks[0].shape + (16,)
    word = jax.lax.broadcasted_iota(jnp.uint32, shape, len(shape) - 1)
    words = jnp.broadcast_to(blocks[0][..., None], shape)
    for j in range(1, 16):
        words = jnp.where(word == j, blocks[j][..., None], words)
    return words.reshape(words.shape[:-2] + (-1,))


def keystream_words(key_words: jax.Array, nonce: jax.Array, n_words: int) -> jax.Array:
    """The first `n_words` uint32 keystream words [..., n_words] of each nonce [..., 3], from
    block `FIRST_COUNTER` on (word 16 b + j is word j of block FIRST_COUNTER + b)."""
    n_blocks = max(-(-n_words // 16), 1)
    if n_blocks > _MAX_BLOCKS:
        raise ValueError(f"a vector of {4 * n_words} bytes is past ChaCha20's 2^32 blocks")
    counter = jnp.arange(FIRST_COUNTER, FIRST_COUNTER + n_blocks, dtype=jnp.uint32)
    nonce_words = tuple(nonce[..., i, None] for i in range(NONCE_WORDS))  # [..., 1]
    words = jax.lax.platform_dependent(
        key_words,
        counter,
        nonce_words,
        cpu=_interleaved_blocks_cpu,
        default=_interleaved_blocks,
    )
    return words[..., :n_words]


@functools.partial(jax.jit, compiler_options=KERNEL_OPTIONS)
def stream_kernel(x: jax.Array, key_words: jax.Array, nonce: jax.Array) -> jax.Array:
    """x XOR keystream, bitcasts included (its own inverse): one program, whose XOR is one fused
    pass over x (on CPU after the keystream's own fusion)."""
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
