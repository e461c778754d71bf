"""The attacker's readings of feature vectors that may be ShuffleBits ciphertext.

Read as floats, ciphertext holds NaN, inf and huge values that make a naive network's losses NaN,
so a reasonable adversary reads the bits. Each encoding maps float32 [B, D] (or its raw uint32
words) to finite float32 [B, D'] inside jit, for plaintext and ciphertext alike, so the two
attacks compare on equal terms. What each sees of a float: `bits` its 32 bits, `bytes` its 4
bytes, `popcount` its count of one-bits (no permutation changes it, so one-time keys cannot hide
it), `columns` its bits with each vector's bit positions sorted by count (undoing most of a
one-time key's permutation), `signed-log` its value, squashed.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_ENCODING = "bits"


def _as_uint32(features_BD: jax.Array) -> jax.Array:
    """The 32-bit words of float32 features (uint32 words pass), so no float op sees a NaN."""
    dtype = np.dtype(getattr(features_BD, "dtype", np.float64))
    if dtype == np.uint32:
        return jnp.asarray(features_BD)
    if dtype != np.float32:
        raise TypeError(
            f"bit-level encodings read float32 features (or their uint32 words), got {dtype}; "
            "casting would alter ciphertext bits, so cast only plaintext, and before encrypting"
        )
    return jax.lax.bitcast_convert_type(jnp.asarray(features_BD), jnp.uint32)


def _fields(features_BD: jax.Array, width: int) -> jax.Array:
    """Split each 32-bit word into 32 / width unsigned fields, most significant first: [B, D*n]."""
    words_BD = _as_uint32(features_BD)
    shifts = jnp.arange(32 - width, -1, -width, dtype=jnp.uint32)
    fields = (words_BD[..., None] >> shifts) & jnp.uint32(2**width - 1)
    return fields.reshape(*words_BD.shape[:-1], -1)


def bits_encoding(features_BD: jax.Array) -> jax.Array:
    """The 32 bits of every float, most significant first, as {0, 1}: [B, 32 D]."""
    return _fields(features_BD, 1).astype(jnp.float32)


def bytes_encoding(features_BD: jax.Array) -> jax.Array:
    """The 4 bytes of every float, most significant first, scaled to [0, 1]: [B, 4 D]."""
    return _fields(features_BD, 8).astype(jnp.float32) / 255.0


def popcount_encoding(features_BD: jax.Array) -> jax.Array:
    """The number of one-bits of every float, divided by 32: [B, D].

    Any permutation of a float's bits leaves it unchanged, so one-time keys (a fresh permutation
    per vector) cannot hide it; a small input that a head need not learn to sum from 32 D bits.
    """
    return jax.lax.population_count(_as_uint32(features_BD)).astype(jnp.float32) / 32.0


def columns_encoding(features_BD: jax.Array) -> jax.Array:
    """The bits as for `bits`, each vector's 32 bit positions sorted by how many of its D floats
    have a one there (stable): [B, 32 D].

    One-time ShuffleBits applies one permutation per vector to all its D floats alike, so it only
    reorders these 32 columns; sorting them by count undoes that (exactly, where the counts
    differ), and exponent bits land in stable places.
    """
    words_BD = _as_uint32(features_BD)
    shifts = jnp.arange(31, -1, -1, dtype=jnp.uint32)
    bits_BDK = (words_BD[..., None] >> shifts) & jnp.uint32(1)
    counts_BK = bits_BDK.sum(axis=-2)
    order_BK = jnp.argsort(counts_BK, axis=-1, stable=True)
    canonical_BDK = jnp.take_along_axis(bits_BDK, order_BK[..., None, :], axis=-1)
    return canonical_BDK.reshape(*words_BD.shape[:-1], -1).astype(jnp.float32)


def signed_log_encoding(features_BD: jax.Array) -> jax.Array:
    """The value with NaN -> 0 and +-inf -> +-float32 max, squashed by sign(x) log(1 + |x|):
    [B, D] in about [-88.8, 88.8]."""
    x = jax.lax.bitcast_convert_type(_as_uint32(features_BD), jnp.float32)
    big = jnp.finfo(jnp.float32).max
    x = jnp.nan_to_num(x, nan=0.0, posinf=big, neginf=-big)
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


ENCODINGS: dict[str, tuple[Callable[[jax.Array], jax.Array], int]] = {
    "bits": (bits_encoding, 32),
    "bytes": (bytes_encoding, 4),
    "popcount": (popcount_encoding, 1),
    "columns": (columns_encoding, 32),
    "signed-log": (signed_log_encoding, 1),
}


def _check(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown feature encoding {encoding!r}; choose one of {list(ENCODINGS)}")


def encode_features(
    features_BD: jax.Array | np.ndarray, encoding: str = DEFAULT_ENCODING
) -> jax.Array:
    """Finite float32 [B, encoded_dim(D)] features for the attack networks."""
    _check(encoding)
    return ENCODINGS[encoding][0](features_BD)


def encoded_dim(feature_dim: int, encoding: str = DEFAULT_ENCODING) -> int:
    _check(encoding)
    return feature_dim * ENCODINGS[encoding][1]
