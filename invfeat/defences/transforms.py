"""The defences as pure jnp functions over features [..., D]: `add_noise`, `quantise`,
`drop_dims` (with `drop_mask`, its fixed subset) and `project` (its matrix: `projection.py`).

Each runs inside `jax.jit` and keeps the input's dtype; all but `project` keep its shape. They
compute in float32 and cast back.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MAX_BITS = 16  # quantise: at most 2^16 levels, whose indices float32 holds exactly


def _floating(features: Any, where: str) -> jax.Array:
    features = jnp.asarray(features)
    if not jnp.issubdtype(features.dtype, jnp.floating):
        raise TypeError(f"{where}: features must be floats, got dtype {features.dtype}")
    if features.ndim < 1:
        raise ValueError(f"{where}: features must be [..., D], got a scalar")
    return features


def rounded_count(fraction: float, dim: int) -> int:
    """round(fraction * dim), halves rounded up (Python's `round` rounds them to even)."""
    return int(np.floor(fraction * dim + 0.5))


def rms(features: jax.Array) -> jax.Array:
    """Root mean square along the last axis, [..., 1] (= L2 norm / sqrt(D)); its gradient is
    finite at a zero vector."""
    mean_square = jnp.mean(jnp.square(features), axis=-1, keepdims=True)
    return jnp.sqrt(jnp.maximum(mean_square, jnp.finfo(jnp.float32).tiny))


def _gaussians(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard normals of `shape` from one key (shape ()) or from one key per vector (shape
    `shape[:-1]`): then each vector's noise depends on its own key alone."""
    if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.wrap_key_data(rng)  # a raw uint32 key of the default implementation
    if rng.shape == ():
        return jax.random.normal(rng, shape, jnp.float32)
    if rng.shape != shape[:-1]:
        raise ValueError(
            f"noise needs one key, or one per vector (shape {shape[:-1]}); got keys {rng.shape}"
        )
    draw = jax.vmap(lambda key: jax.random.normal(key, shape[-1:], jnp.float32))
    return draw(rng.reshape(-1)).reshape(shape)


def add_noise(features: Any, rng: jax.Array | None, strength: float) -> jax.Array:
    """features + strength * rms(features) * N(0, I), per vector.

    `strength` is the noise's standard deviation relative to the vector's RMS (its L2 norm /
    sqrt(D)): the noise has about strength^2 times the vector's energy, and a noisy vector's
    cosine to its clean one is about 1 / sqrt(1 + strength^2). Strength 0 returns `features`
    unchanged (and needs no `rng`). `rng`: one PRNG key for the whole array, or one key per vector
    ([...], e.g. `fresh_noise_keys`). Differentiable (reparameterised: the gradient of a loss
    through the noise, for the noise drawn). The legitimate user compares the noisy vectors
    directly (cosine); nothing inverts the noise.
    """
    features = _floating(features, "add_noise")
    if strength == 0:
        return features
    if rng is None:
        raise ValueError("add_noise: noise of strength > 0 needs a PRNG key (rng)")
    x = features.astype(jnp.float32)
    noise = _gaussians(jnp.asarray(rng), x.shape)
    return (x + strength * rms(x) * noise).astype(features.dtype)


@jax.custom_jvp
def _floor_straight_through(t: jax.Array) -> jax.Array:
    return jnp.floor(t)


@_floor_straight_through.defjvp
def _floor_jvp(primals: tuple, tangents: tuple) -> tuple:
    """Straight through: the floor's tangent is its input's."""
    return _floor_straight_through(*primals), tangents[0]


def quantise(features: Any, bits: int) -> jax.Array:
    """Each vector scaled by its max |x| into [-1, 1], then rounded to the nearest of 2^bits
    evenly spaced levels -1, -1 + 2/(2^bits - 1), ..., 1 (a tie goes to the upper level).

    The output is that level, a function of the `bits`-bit code alone: the vector's scale (max
    |x|) is not served, and cosine similarity, which re-ID ranks by, ignores it. Every element is
    within 1 / (2^bits - 1) of x / max|x|. The levels are the odd multiples of 1 / (2^bits - 1)
    and none is 0, so the level is found from floor(y (2^bits - 1) / 2), which keeps the sign of
    y = x / max|x| however small: 1 bit gives exactly sign(x), with +1 where x is 0. An all-zero
    vector gives the level just above 0 in every dimension.

    The gradient is the straight-through estimator (BPDA, Athalye et al. 2018): that of
    x / max|x|, as if the rounding were the identity. The exact gradient is zero almost
    everywhere; it would only hide the defence from an attacker who differentiates through it.
    The legitimate user compares the quantised vectors directly (cosine); there is no inverse.
    """
    features = _floating(features, "quantise")
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise TypeError(f"quantise: bits must be an int, got {type(bits).__name__}")
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"quantise: bits must be in [1, {MAX_BITS}], got {bits}")
    x = features.astype(jnp.float32)
    scale = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
    y = x / jnp.where(scale > 0, scale, 1.0)  # |x| <= max|x|: y in [-1, 1] exactly
    top = float(2**bits - 1)  # levels (2 j + 1) / top for j in [-2^(bits-1), 2^(bits-1) - 1]
    # |y| <= 1 and top / 2 = 2^(bits-1) - 1/2: the floor is already in [-2^(bits-1),
    # 2^(bits-1) - 1] (no clip, whose gradient would halve at the bounds)
    cell = _floor_straight_through(y * (top / 2.0))
    return ((2.0 * cell + 1.0) / top).astype(features.dtype)


def drop_mask(dim: int, fraction: float, seed: int) -> np.ndarray:
    """[D] bool, True where a dimension is kept: `rounded_count(fraction, dim)` dimensions are
    dropped, the first ones of `np.random.default_rng(seed).permutation(dim)`, so a larger
    fraction under one seed drops a superset."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"drop: fraction must be in [0, 1), got {fraction}")
    dropped = rounded_count(fraction, dim)
    if dropped >= dim:
        raise ValueError(f"drop: a fraction of {fraction} drops all {dim} dimensions")
    keep = np.ones(dim, bool)
    keep[np.random.default_rng(seed).permutation(dim)[:dropped]] = False
    return keep


def drop_dims(features: Any, keep: Any) -> jax.Array:
    """Features with the dimensions where `keep` [D] is False set to 0 (shape kept). The
    gradient passes to the kept dimensions. The legitimate user compares the vectors as served
    (cosine over the kept dimensions: the zeros add nothing); the dropped values are gone."""
    features = _floating(features, "drop_dims")
    keep = jnp.asarray(keep, bool)
    if keep.shape != features.shape[-1:]:
        raise ValueError(f"drop_dims: mask {keep.shape} for features {features.shape}")
    return jnp.where(keep, features, jnp.zeros((), features.dtype))


def project(features: Any, matrix_Dk: Any) -> jax.Array:
    """features [..., D] @ matrix [D, k] -> [..., k], in float32 at full precision. With
    orthonormal columns and k = D the map is orthogonal: norms, dot products and cosines are
    kept. The legitimate user (the key holder) compares projected vectors (cosine), exactly as
    the originals at k = D and approximately below (Johnson-Lindenstrauss); with the key, x @ Q
    @ Q^T is the original's part in Q's span (all of it at k = D)."""
    features = _floating(features, "project")
    matrix_Dk = jnp.asarray(matrix_Dk, jnp.float32)
    if matrix_Dk.ndim != 2 or matrix_Dk.shape[0] != features.shape[-1]:
        raise ValueError(f"project: matrix {matrix_Dk.shape} for features {features.shape}")
    out = jnp.matmul(features.astype(jnp.float32), matrix_Dk, precision=jax.lax.Precision.HIGHEST)
    return out.astype(features.dtype)
