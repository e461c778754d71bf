"""The Benes network that applied static ShuffleBits keys until the masked rotations replaced it.

Kept for `shufflebits.py --formulations`, which measures it against the library's kernels in the
same run. A permutation of n bits is `2 log2(n) - 1` delta swaps (shift/xor/and stages), with
masks routed by the looping algorithm, on the host (numpy) or per vector (jax.numpy).
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_UINT = {16: np.uint16, 32: np.uint32, 64: np.uint64}


def benes_shifts(bits: int) -> tuple[int, ...]:
    """Delta-swap distances of the Benes network on `bits` positions, in application order."""
    half = [bits >> (k + 1) for k in range(bits.bit_length() - 1)]  # bits/2, ..., 1
    return tuple(half + half[-2::-1])


def _pack(swap: Any, block: int, xp: Any, uint: type) -> Any:
    """Bit mask with bit (b * block + i) set where swap[..., b, i]."""
    n_blocks, width = swap.shape[-2:]
    pos = (xp.arange(n_blocks)[:, None] * block + xp.arange(width)[None, :]).astype(uint)
    ones = xp.ones(pos.shape, uint) << pos
    return xp.sum(xp.where(swap, ones, xp.zeros_like(ones)), axis=(-2, -1), dtype=uint)


def _take(a: Any, i: Any, xp: Any) -> Any:
    """a[..., i[..., j]] along the last axis, as a one-hot select (fuses; no gather)."""
    k = xp.arange(a.shape[-1], dtype=np.int32)
    hit = xp.broadcast_to(i, a.shape)[..., :, None] == k
    return xp.sum(xp.where(hit, a.astype(np.int32)[..., None, :], 0), axis=-1).astype(a.dtype)


def _inverse(p: Any, xp: Any) -> Any:
    """The inverse of permutations p[..., n]."""
    k = xp.arange(p.shape[-1], dtype=np.int32)
    return xp.sum(xp.where(p[..., :, None] == k, k[:, None], 0), axis=-2).astype(np.int32)


def _cycle_minimum(low: Any, hop: Any, steps: int, xp: Any) -> Any:
    """Smallest label on each cycle of the successor map `hop`, by pointer doubling."""

    def double(_: Any, carry: tuple) -> tuple:
        low, hop = carry
        return xp.minimum(low, _take(low, hop, xp)), _take(hop, hop, xp)

    if xp is np:
        for i in range(steps):
            low, hop = double(i, (low, hop))
        return low
    return jax.lax.fori_loop(0, steps, double, (low, hop))[0]


def benes_masks(src: Any, xp: Any = jnp) -> Any:
    """Stage masks [..., 2 log2(n) - 1] applying the bit permutation src[..., n] (n = 16/32/64).

    Output bit j takes input bit src[j]. Works with numpy (host) or jax.numpy (traced) as `xp`:
    the looping algorithm, with each cycle's colour set by its smallest output index (found by
    pointer doubling), so it runs as fixed array ops for every vector at once.
    """
    n = src.shape[-1]
    uint = _UINT[n]
    batch = src.shape[:-1]
    blocks = xp.reshape(xp.asarray(src).astype(np.int32), (-1, 1, n))
    first, last = [], []
    m = n
    while m > 2:
        h = m // 2
        idx = xp.arange(m, dtype=np.int32)
        inv = _inverse(blocks, xp)
        nxt = _take(inv, _take(blocks, idx ^ h, xp) ^ h, xp)  # same sub-network as output j
        low = _cycle_minimum(xp.broadcast_to(idx, blocks.shape), nxt, m.bit_length() - 1, xp)
        lower = low > _take(low, idx ^ h, xp)  # output j is fed through the lower sub-network
        first.append(_pack(_take(lower, inv, xp)[..., :h], m, xp, uint))
        last.append(_pack(lower[..., :h], m, xp, uint))
        top, bottom = blocks[..., :h], blocks[..., h:]
        upper_src = xp.where(lower[..., :h], bottom, top) % h
        lower_src = xp.where(lower[..., :h], top, bottom) % h
        blocks = xp.reshape(xp.stack([upper_src, lower_src], axis=-2), (blocks.shape[0], -1, h))
        m = h
    first.append(_pack(blocks[..., :1] == 1, 2, xp, uint))
    masks = xp.stack(first + last[::-1], axis=-1)
    return xp.reshape(masks, batch + (masks.shape[-1],))


def delta_swaps(u: jax.Array, shifts: tuple[int, ...], masks: list[Any]) -> jax.Array:
    """Swap bits i and i + d wherever mask bit i is set, stage by stage."""
    kind = u.dtype.type
    for d, m in zip(shifts, masks, strict=True):
        t = ((u >> kind(d)) ^ u) & m
        u = u ^ t ^ (t << kind(d))
    return u


if __name__ == "__main__":
    print(
        "benes.py is a module of the ShuffleBits benchmark, not a script: run "
        "`python benchmarks/shufflebits.py --formulations` to time it",
        file=sys.stderr,
    )
    sys.exit(2)
