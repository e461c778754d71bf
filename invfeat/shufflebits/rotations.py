"""Masked rotations: any permutation of the bits of an unsigned word as a few rotations and masks.

A permutation moves bit i by a left rotation g = (rank[i] - i) mod n, so it is the OR over g of
rotl(x, g) & mask[g]; the rotations are factored as rotl(rotl(x, stride * a) & m, b).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

UINT_BY_WIDTH = {16: np.uint16, 32: np.uint32, 64: np.uint64}  # float width -> unsigned view
# The jitted kernels' compiler options: 512-bit vectors where the CPU has them. The kernels are
# compute-bound on CPU, and an Intel core runs more lanes per cycle at 512 bits (an AMD Zen 4
# splits them in two); no other backend reads the option (benchmarks/RESULTS.md). JAX takes
# compiler options on top-level jits only: `cipher._run` runs a kernel's body when traced.
KERNEL_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


def _rotl(v: Any, r: int) -> Any:
    """Rotate left by a constant (XLA lowers it to one rotate instruction where there is one)."""
    if r == 0:
        return v
    bits = v.dtype.itemsize * 8
    kind = v.dtype.type
    return (v << kind(r)) | (v >> kind(bits - r))


def rotation_masks(rank: Any, inverse: Any, kind: type, stride: int, xp: Any = jnp) -> Any:
    """Masks [..., n] of `rotate_groups` sending input bit i to output bit rank[i] (or back).

    Bit i moves from position p_i to q_i ((i, rank[i]) to encrypt, (rank[i], i) to decrypt), a
    left rotation by g = (q_i - p_i) mod n = stride * a + b. Mask g holds the bits that take
    rotation g, at their position after the first rotation (by stride * a): q_i - b. `kind` is
    the unsigned type of n bits; `xp` is numpy for host constants, jnp for traced ranks.
    """
    n = rank.shape[-1]
    i = xp.arange(n, dtype=kind)
    rank = rank.astype(kind)
    p, q = xp.where(inverse, rank, i), xp.where(inverse, i, rank)
    group = (q - p) & kind(n - 1)  # [..., i]
    g = xp.arange(n, dtype=kind)[:, None]  # [g, 1]
    bit = kind(1) << ((q[..., None, :] - g % kind(stride)) & kind(n - 1))  # [..., g, i]
    return xp.sum(xp.where(group[..., None, :] == g, bit, kind(0)), axis=-1, dtype=kind)


def rotate_groups(u: jax.Array, masks: list[Any], stride: int) -> jax.Array:
    """OR over rotations g = stride * a + b of rotl(u, g) & masks[g], as rotl(rotl(u, s a) & m, b).

    A mask of None is a rotation no bit takes: it costs nothing. With every mask present that is
    n/stride - 1 + stride - 1 rotations, n and-or pairs and stride - 1 ors.
    """
    n = len(masks)
    rotated: dict[int, jax.Array] = {}
    out = None
    for b in range(stride):
        part = None
        for a in range(n // stride):
            mask = masks[stride * a + b]
            if mask is None:
                continue
            if a not in rotated:
                rotated[a] = _rotl(u, stride * a)
            part = rotated[a] & mask if part is None else part | (rotated[a] & mask)
        if part is not None:
            out = _rotl(part, b) if out is None else out | _rotl(part, b)
    return out


def fewest_rotations(taken: np.ndarray, n: int) -> int:
    """The power-of-two stride that needs the fewest rotations for the rotation amounts `taken`."""

    def rotations(stride: int) -> int:
        return len(set(taken // stride) - {0}) + len(set(taken % stride) - {0})

    return min((1 << k for k in range(n.bit_length())), key=rotations)


def _static_plan(rank: np.ndarray, inverse: bool) -> tuple[int, tuple[int, ...]]:
    """(stride, masks) of one fixed permutation; a mask of 0 is a rotation no bit takes."""
    n = rank.size
    kind = UINT_BY_WIDTH[n]
    stride = fewest_rotations(np.flatnonzero(rotation_masks(rank, inverse, kind, 1, np)), n)
    return stride, tuple(int(m) for m in rotation_masks(rank, inverse, kind, stride, np))
