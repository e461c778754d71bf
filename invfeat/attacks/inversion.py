"""Irreversibility and key recovery: how much of the plaintext floats, and of a static key, an
attacker who knows the scheme but not the key gets back from ShuffleBits ciphertext.

A ShuffleBits key moves bit positions, never bit values: within a vector every float's bit j
comes from one plaintext position src[j] (a static key: the same src for every vector; a one-time
key: its own src per vector). So a vector's 32 bit columns (bit j of each of its D floats) are its
plaintext's columns, reordered. Two attacks follow:

- with one known (plaintext, ciphertext) pair, each ciphertext column equals the plaintext column
  it came from (`known_pair_permutation`): exact where a column is unique, ambiguous (reported,
  not guessed) where several plaintext columns are equal;
- with ciphertext alone, each column betrays its position, because sign, exponent and mantissa
  bits are set at very different rates in features of one scale, and at rates of their own in
  each dimension (one dimension mostly negative, another mostly large). The attacker learns those
  rates on its own plaintext (`learn_profile`) and assigns columns to positions by maximum
  likelihood (`ciphertext_only_permutation`: one assignment problem,
  `scipy.optimize.linear_sum_assignment`, per vector for one-time keys, over all vectors seen for
  a static key). Undoing the estimated permutation decodes an estimate of the floats
  (`estimate_plaintext`). Positions whose columns are equal in a vector are interchangeable
  there: a wrong guess among them decodes the same floats, so `bits_correct` says more than
  `positions_correct` about what an estimate gives back.

Bit positions are LSB 0 (bit 31 is a float32's sign) and a permutation is `src[j]`: output bit j
takes input bit src[j], as `shufflebits.one_time_permutation` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize

from invfeat import shufflebits as sb

BITS = 32


def _words(features: Any) -> np.ndarray:
    """The uint32 words of float32 features [..., D] (uint32 words pass)."""
    x = np.asarray(features)
    if x.dtype == np.uint32:
        return x
    if x.dtype != np.float32:
        raise TypeError(
            f"ShuffleBits inversion reads float32 features or uint32 words, got {x.dtype}"
        )
    return x.view(np.uint32)


def bit_columns(features: Any) -> np.ndarray:
    """uint8 [..., D, 32]: bit k (LSB 0) of every float."""
    return ((_words(features)[..., None] >> np.arange(BITS, dtype=np.uint32)) & 1).astype(np.uint8)


def column_counts(features: Any) -> np.ndarray:
    """int32 [..., 32]: how many of a vector's D floats have a one at each bit position."""
    return bit_columns(features).sum(axis=-2, dtype=np.int32)


def key_permutation(key: sb.Key | sb.Secret, nonces: Any = None) -> np.ndarray:
    """The true src of a key (int64 [32]) or of a secret under nonces [..., 3] ([..., 32]): what
    an evaluator, not the attacker, compares estimates with."""
    if isinstance(key, sb.Secret):
        return np.asarray(sb.one_time_permutation(key, nonces, BITS), np.int64)
    if key.bits != BITS:
        raise ValueError(f"inversion reads float32: a {BITS}-bit key, got {key.bits} bits")
    arr = key.to_index_array()
    return BITS - 1 - arr[BITS - 1 - np.arange(BITS)]  # published MSB-first string -> LSB 0


def decode(cipher: Any, src: Any) -> np.ndarray:
    """The words that `src` ([32], or [N, 32] per vector of cipher [N, D]) maps to cipher:
    plaintext bit src[j] is ciphertext bit j (uint32, same shape as cipher)."""
    src = np.asarray(src, np.int64)
    bits = bit_columns(cipher).astype(np.uint32)
    shifts = src[..., None, :] if src.ndim == 2 else src
    return np.sum(bits << shifts.astype(np.uint32), axis=-1, dtype=np.uint32)


MODELS = ("dims", "counts")


@dataclass(frozen=True)
class BitProfile:
    """What the attacker learned on its own plaintext vectors [N, D]: per dimension d and bit
    position k the log-probability of a one, `log_one` / `log_zero` [D, 32] (the "dims" model);
    per position the log-probability of each column count, `log_counts` [32, D + 1] (the "counts"
    model); and the largest |value| it saw (a decoded float beyond it is clamped)."""

    log_one: np.ndarray
    log_zero: np.ndarray
    log_counts: np.ndarray
    bound: float

    @property
    def width(self) -> int:
        return self.log_one.shape[0]


def learn_profile(plain_features: Any, *, pseudo_count: float = 0.5) -> BitProfile:
    """The attacker's bit statistics of its own plaintext vectors [N, D] (`pseudo_count` added
    to every count, so that no event it has not seen is impossible)."""
    x = np.asarray(plain_features, np.float32)
    if x.ndim != 2 or x.shape[0] < 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"plain_features must be a non-empty finite [N, D] array, got {x.shape}")
    if pseudo_count <= 0:
        raise ValueError(f"pseudo_count must be positive, got {pseudo_count}")
    bits = bit_columns(x)  # [N, D, 32]
    ones = bits.sum(axis=0, dtype=np.float64)
    p_one = (ones + pseudo_count) / (len(x) + 2 * pseudo_count)
    counts = bits.sum(axis=1, dtype=np.int64)  # [N, 32]
    width = x.shape[1]
    hist = np.stack([np.bincount(counts[:, k], minlength=width + 1) for k in range(BITS)])
    hist = hist + pseudo_count
    return BitProfile(
        log_one=np.log(p_one),
        log_zero=np.log1p(-p_one),
        log_counts=np.log(hist / hist.sum(axis=1, keepdims=True)),
        bound=float(np.abs(x).max()),
    )


def _costs(words: np.ndarray, profile: BitProfile, model: str) -> np.ndarray:
    """[N, 32 columns, 32 positions]: -log p(column j of a vector | it is bit position k).

    "dims": each dimension's bit independent, with its own rate per position (a feature's
    dimensions differ in sign and scale, so a column's pattern over the dimensions says more
    than its count); "counts": only the column's count of ones, with its distribution per
    position.
    """
    if model == "counts":
        return -np.moveaxis(profile.log_counts[:, column_counts(words)], 0, -1)
    if model != "dims":
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
    bits = bit_columns(words).astype(np.float64)  # [N, D, 32 columns]
    ones = np.einsum("ndj,dk->njk", bits, profile.log_one)
    return -(ones + np.einsum("ndj,dk->njk", 1.0 - bits, profile.log_zero))


def _assign(cost: np.ndarray) -> np.ndarray:
    columns, positions = scipy.optimize.linear_sum_assignment(cost)
    src = np.empty(BITS, np.int64)
    src[columns] = positions
    return src


def _check_width(cipher: Any, profile: BitProfile) -> np.ndarray:
    words = _words(cipher)
    if words.ndim != 2 or words.shape[1] != profile.width:
        raise ValueError(
            f"ciphertext must be [N, {profile.width}] (the width the profile was learned on), "
            f"got {words.shape}"
        )
    return words


def ciphertext_only_permutation(
    cipher: Any, profile: BitProfile, *, shared: bool, model: str = "dims"
) -> np.ndarray:
    """The maximum-likelihood src of ciphertext [N, D] under the attacker's profile: one src [32]
    for all N vectors where the key is `shared` (static), else one per vector [N, 32]."""
    cost = _costs(_check_width(cipher, profile), profile, model)  # [N, 32, 32]
    if shared:
        return _assign(cost.sum(axis=0))
    return np.stack([_assign(c) for c in cost])


def estimate_plaintext(cipher: Any, profile: BitProfile, *, model: str = "dims") -> np.ndarray:
    """Finite float32 [N, D] estimates of one-time ciphertext: each vector decoded under its
    estimated permutation; NaN decodes to 0, and a value beyond the profile's bound (a wrong
    exponent bit: inf or huge) to that bound with its sign."""
    return _estimate(cipher, profile, model)[1]


def _estimate(cipher: Any, profile: BitProfile, model: str) -> tuple[np.ndarray, np.ndarray]:
    src = ciphertext_only_permutation(cipher, profile, shared=False, model=model)
    x = decode(cipher, src).view(np.float32)
    x = np.where(np.isnan(x), np.float32(0), x)
    return src, np.clip(x, -profile.bound, profile.bound).astype(np.float32)


def static_estimates(cipher: Any, src: Any) -> np.ndarray:
    """Float32 estimates of static-key ciphertext [N, D] decoded under one src [32]: the
    plaintext itself where src is the key's; a NaN or inf from a wrong position reads as 0."""
    x = decode(cipher, src).view(np.float32)
    return np.where(np.isfinite(x), x, np.float32(0)).astype(np.float32)


def known_pair_permutation(plain: Any, cipher: Any) -> np.ndarray:
    """src [32] of a static key from known (plaintext, ciphertext) vectors [..., D] (one pair or
    several): a ciphertext column matching exactly one plaintext column came from it; -1 where
    several plaintext columns are equal (ambiguous). Never wrong for a true pair."""
    p = bit_columns(plain).reshape(-1, BITS)
    c = bit_columns(cipher).reshape(-1, BITS)
    if p.shape != c.shape:
        raise ValueError(f"plain and cipher differ in shape: {p.shape} vs {c.shape}")
    matches = (c[:, :, None] == p[:, None, :]).all(axis=0)  # [column j, position k]
    if not matches.any(axis=1).all():
        raise ValueError("a ciphertext column matches no plaintext column: not a ShuffleBits pair")
    unique = matches.sum(axis=1) == 1
    return np.where(unique, matches.argmax(axis=1), -1)


def consistent_permutation(plain: Any, cipher: Any) -> np.ndarray:
    """A static key's src [32] from known (plaintext, ciphertext) vectors [..., D]: equal to the
    key's wherever the pairs tell positions apart; where several plaintext columns are equal in
    every pair, one consistent choice among them (it decodes those pairs alike)."""
    p = bit_columns(plain).reshape(-1, BITS)
    c = bit_columns(cipher).reshape(-1, BITS)
    if p.shape != c.shape:
        raise ValueError(f"plain and cipher differ in shape: {p.shape} vs {c.shape}")
    matches = (c[:, :, None] == p[:, None, :]).all(axis=0)  # [column j, position k]
    columns, positions = scipy.optimize.linear_sum_assignment(~matches)
    if matches[columns, positions].sum() != BITS:
        raise ValueError("no permutation maps these plaintext columns to these: not static pairs")
    src = np.empty(BITS, np.int64)
    src[columns] = positions
    return src


def positions_recovered(estimate: Any, truth: Any) -> float:
    """Fraction of bit positions an estimated src [..., 32] gets exactly right (-1 counts as
    not recovered)."""
    return float(np.mean(np.asarray(estimate) == np.asarray(truth)))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-30)


def irreversibility(
    cipher: Any, plain: Any, profile: BitProfile, true_src: Any = None, *, model: str = "dims"
) -> dict[str, Any]:
    """How close the ciphertext-only estimates of cipher [N, D] come to the true plaintext
    [N, D]: {estimates, cosine (mean over vectors), cosine_stderr, cosine_null (each estimate
    against another vector's plaintext: what the profile alone gives), bits_correct (fraction
    of plaintext bits decoded right), positions_correct (where `true_src` [N, 32] is given)}."""
    plain = np.asarray(plain, np.float32)
    src, estimates = _estimate(cipher, profile, model)
    if estimates.shape != plain.shape or len(plain) < 2:
        raise ValueError(f"cipher and plain must be [N >= 2, D] alike, got {plain.shape}")
    cosine = _cosines(estimates, plain)
    bits = bit_columns(decode(cipher, src)) == bit_columns(plain)
    out = {
        "estimates": estimates,
        "cosine": float(cosine.mean()),
        "cosine_stderr": float(cosine.std(ddof=1) / np.sqrt(len(cosine))),
        "cosine_null": float(_cosines(estimates, np.roll(plain, 1, axis=0)).mean()),
        "bits_correct": float(bits.mean()),
    }
    if true_src is not None:
        out["positions_correct"] = positions_recovered(src, true_src)
    return out


def key_recovery_curve(
    cipher: Any,
    profile: BitProfile,
    true_src: Any,
    sizes: tuple[int, ...] = (1, 10, 100, 1000),
    *,
    trials: int = 10,
    seed: int = 0,
    model: str = "dims",
) -> dict[int, float]:
    """{n: mean fraction of a static key's positions recovered from n ciphertext vectors alone}
    over `trials` random draws of n of the N vectors (one draw where n >= N: all of them)."""
    words = _check_width(cipher, profile)
    rng = np.random.default_rng(seed)
    out = {}
    for n in sizes:
        if n < 1:
            raise ValueError(f"sizes must be >= 1, got {n}")
        draws = 1 if n >= len(words) else trials
        picks = [rng.choice(len(words), min(n, len(words)), replace=False) for _ in range(draws)]
        found = [
            ciphertext_only_permutation(words[p], profile, shared=True, model=model) for p in picks
        ]
        out[n] = float(np.mean([positions_recovered(f, true_src) for f in found]))
    return out
