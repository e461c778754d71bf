"""Encrypt and decrypt float arrays with a `Key`, a `Secret` or a `StreamKey` (one jitted kernel
each), the `ShuffleBits` linen layer and `with_encryption`; the published per-element algorithm
as reference."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from invfeat.shufflebits.chacha20 import NONCE_WORDS
from invfeat.shufflebits.keys import WIDTHS, AnyKey, Key, Secret, StreamKey
from invfeat.shufflebits.one_time import _one_time_ranks
from invfeat.shufflebits.rotations import (
    KERNEL_OPTIONS,
    UINT_BY_WIDTH,
    fewest_rotations,
    rotate_groups,
    rotation_masks,
)
from invfeat.shufflebits.stream import stream_kernel

_MODES = {Secret: "one-time", StreamKey: "stream"}  # the schemes that take a nonce per vector


def uses_nonces(key: AnyKey) -> bool:
    """Whether `key`'s scheme takes a nonce per vector (`Secret`, `StreamKey`) or none (`Key`)."""
    if isinstance(key, Key):
        return False
    if type(key) in _MODES:
        return True
    raise TypeError(
        f"key must be a shufflebits Key or Secret, or a StreamKey, got {type(key).__name__}"
    )


def _float_dtype(x: Any) -> np.dtype:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        raise TypeError(
            f"ShuffleBits takes one float array, got {type(x).__name__}: pass an array, or "
            "jax.tree.map over a pytree (such as the output of with_encryption)"
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"ShuffleBits encrypts float arrays, got a {dtype} array")
    dtype = np.dtype(dtype)
    if dtype.itemsize == 8 and not jax.config.jax_enable_x64:
        raise TypeError("float64 ShuffleBits needs 64-bit JAX: jax.config.update('jax_enable_x64')")
    if dtype.itemsize * 8 not in WIDTHS:
        raise TypeError(f"ShuffleBits supports 16/32/64-bit floats, got {dtype}")
    return dtype


@functools.partial(jax.jit, static_argnames=("key", "inverse"), compiler_options=KERNEL_OPTIONS)
def _static_kernel(x: jax.Array, key: Key, inverse: bool) -> jax.Array:
    """A static key's masked rotations, bitcasts included: an eager call is one pass over memory.

    The Key itself is the static argument (hashed by digest): what JAX may log of a static
    argument, e.g. under `jax_explain_cache_misses`, is its repr, which hides the permutation.
    """
    stride, masks = key.rotation_plan(inverse)
    u = jax.lax.bitcast_convert_type(x, UINT_BY_WIDTH[key.bits])
    kind = u.dtype.type
    out = rotate_groups(u, [kind(m) if m else None for m in masks], stride)
    return jax.lax.bitcast_convert_type(out, x.dtype)


@functools.partial(jax.jit, compiler_options=KERNEL_OPTIONS)
def _one_time_kernel(x: jax.Array, key_words: jax.Array, nonce: jax.Array, inverse: jax.Array):
    """Per-vector rotation masks from ChaCha20, then masked rotations (one program both ways)."""
    n = x.dtype.itemsize * 8
    u = jax.lax.bitcast_convert_type(x, UINT_BY_WIDTH[n])
    stride = fewest_rotations(np.arange(n), n)  # every rotation may be taken
    rank = _one_time_ranks(key_words, nonce, n)
    # computed once per vector: the barrier stops XLA from fusing (recomputing) it per element
    masks = jax.lax.optimization_barrier(rotation_masks(rank, inverse, u.dtype.type, stride))
    out = rotate_groups(u, [masks[..., g, None] for g in range(n)], stride)
    return jax.lax.bitcast_convert_type(out, x.dtype)


def _run(kernel: Any, *args: Any) -> jax.Array:
    """An eager call runs the jitted kernel, a top-level program where its compiler options
    apply; a traced call (inside the caller's jit, vmap, ...) runs its body, as JAX refuses
    compiler options on a nested jit."""
    if any(isinstance(a, jax.core.Tracer) for a in args):
        return kernel.__wrapped__(*args)
    return kernel(*args)


def _checked_nonce(x: jax.Array, nonce: Any, mode: str) -> jax.Array:
    """The nonces [..., 3] uint32 of the vectors of x (its last axis), checked."""
    if nonce is None:
        raise ValueError(f"{mode} mode needs nonce=..., e.g. fresh_nonces(x.shape[:-1])")
    if x.ndim < 1:
        raise ValueError(
            f"{mode} mode encrypts vectors: x must have at least one axis "
            "(one nonce per vector along the last), got a scalar"
        )
    given = getattr(nonce, "dtype", None)  # before jnp.asarray, which may truncate uint64
    nonce = jnp.asarray(nonce)
    dtype = np.dtype(nonce.dtype if given is None else given)
    expected = tuple(x.shape[:-1]) + (NONCE_WORDS,)
    if dtype != np.uint32 or tuple(nonce.shape) != expected:
        raise ValueError(
            f"nonce must be uint32 of shape x.shape[:-1] + (3,) = {expected}, "
            f"got {dtype} {tuple(nonce.shape)}"
        )
    return nonce


def _apply(x: Any, key: AnyKey, nonce: Any, inverse: bool) -> jax.Array:
    dtype = _float_dtype(x)
    bits = dtype.itemsize * 8
    x = jnp.asarray(x)
    if not uses_nonces(key):
        if nonce is not None:
            raise ValueError(
                "a static Key takes no nonce (nonces belong to Secrets and StreamKeys)"
            )
        if key.bits != bits:
            raise ValueError(f"key width {key.bits} bits does not match {dtype} ({bits} bits)")
        return _run(_static_kernel, x, key, inverse)
    nonce = _checked_nonce(x, nonce, _MODES[type(key)])
    if isinstance(key, Secret):
        return _run(_one_time_kernel, x, key._words, nonce, jnp.asarray(inverse))
    return _run(stream_kernel, x, key._words, nonce)  # XOR: its own inverse


def encrypt(x: Any, key: AnyKey, nonce: Any = None) -> jax.Array:
    """Encrypt every float in x (same shape, dtype): a `Key` permutes its bits; a `Secret`
    permutes them per vector, and a `StreamKey` XORs them with the vector's ChaCha20 keystream,
    both under the nonces [..., 3] of the vectors along the last axis."""
    return _apply(x, key, nonce, inverse=False)


def decrypt(y: Any, key: AnyKey, nonce: Any = None) -> jax.Array:
    """Invert `encrypt` exactly (needs the same key, and for one-time and stream mode the same
    nonces)."""
    return _apply(y, key, nonce, inverse=True)


def published_string_encrypt(values: np.ndarray, index_array: Any) -> np.ndarray:
    """The published per-element algorithm (binary string, index, int(..., 2)); slow reference."""
    index_array = list(np.asarray(index_array))
    width = len(index_array)
    out = [
        int("".join(s[i] for i in index_array), 2)
        for s in (np.binary_repr(int(v), width) for v in np.asarray(values).ravel())
    ]
    return np.array(out, dtype=UINT_BY_WIDTH[width]).reshape(np.shape(values))


class ShuffleBits(nn.Module):
    """Encrypts (or, with inverse=True, decrypts) its input; put it last in a model."""

    key: AnyKey
    inverse: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, nonce: jax.Array | None = None) -> jax.Array:
        return _apply(x, self.key, nonce, self.inverse)


def with_encryption(apply_fn: Callable[..., Any], key: AnyKey) -> Callable[..., Any]:
    """Wrap `apply_fn` so that its output is encrypted: every leaf must be a float array (pass
    nonce= for a Secret or StreamKey, where the output must be one array: a nonce serves one
    permutation or keystream).

    The wrapper takes the keyword `nonce` for itself (`apply_fn` cannot receive one) and draws
    none: pass fresh nonces to every call (`fresh_nonces(output.shape[:-1])`).
    """

    nonced = uses_nonces(key)

    def apply_encrypted(*args: Any, nonce: Any = None, **kwargs: Any) -> Any:
        out = apply_fn(*args, **kwargs)
        if nonced and len(jax.tree.leaves(out)) > 1:
            raise ValueError(
                f"{_MODES[type(key)]} encryption of an output with several arrays would reuse "
                "each nonce for all of them; return one array, or encrypt each with its own nonces"
            )
        return jax.tree.map(lambda y: encrypt(y, key, nonce), out)

    return apply_encrypted
