"""How an attacker reads ciphertext floats (invfeat/attacks/ciphertext.py): every encoding is
finite for every bit pattern and sized as `encoded_dim` says, the bit readings are lossless, and
the `columns` and `popcount` readings see through the bit permutations of one-time keys."""

import jax
import numpy as np
import pytest

from invfeat import shufflebits
from invfeat.attacks.ciphertext import ENCODINGS, encode_features, encoded_dim


def random_bit_patterns(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """float32 arrays from uniformly random 32-bit words plus every special value."""
    words = rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32)
    special = np.array(
        [0x7FC00000, 0xFFC00001, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0x00000001, 0x80000000, 0],
        dtype=np.uint32,
    )
    words.reshape(-1)[: special.size] = special  # NaN payloads, +-inf, max, subnormal, +-0
    return words.view(np.float32)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_encodings_are_finite_and_sized(encoding):
    features = random_bit_patterns(np.random.default_rng(0), (16, 24))
    assert np.isnan(features).any() and np.isinf(features).any()
    encoded = np.asarray(jax.jit(encode_features, static_argnums=1)(features, encoding))
    assert encoded.shape == (16, encoded_dim(24, encoding))
    assert encoded.dtype == np.float32
    assert np.isfinite(encoded).all()


def test_bits_are_the_float32_bits_msb_first():
    features = random_bit_patterns(np.random.default_rng(1), (4, 5))
    bits = np.asarray(encode_features(features, "bits"))
    assert set(np.unique(bits)) <= {0.0, 1.0}
    weights = 2 ** np.arange(31, -1, -1, dtype=np.uint64)
    words = (bits.reshape(4, 5, 32).astype(np.uint64) * weights).sum(-1).astype(np.uint32)
    np.testing.assert_array_equal(words, features.view(np.uint32))
    assert np.asarray(encode_features(np.float32([[-0.0]]), "bits"))[0, 0] == 1.0  # the sign bit


def test_bytes_round_trip_and_range():
    features = random_bit_patterns(np.random.default_rng(2), (3, 7))
    encoded = np.asarray(encode_features(features, "bytes"))
    assert encoded.min() >= 0.0 and encoded.max() <= 1.0
    byte_values = np.rint(encoded * 255).astype(np.uint32).reshape(3, 7, 4)
    words = (byte_values << np.array([24, 16, 8, 0], np.uint32)).sum(-1, dtype=np.uint32)
    np.testing.assert_array_equal(words, features.view(np.uint32))


def test_signed_log_keeps_order_and_sign_of_plain_values():
    plain = np.float32([[-1e30, -2.0, 0.0, 3.0, 1e30, np.inf, -np.inf, np.nan]])
    encoded = np.asarray(encode_features(plain, "signed-log"))[0]
    assert np.all(np.diff(encoded[:5]) > 0)
    assert encoded[5] > encoded[4] - 1e-3 and encoded[6] < encoded[0] + 1e-3 and encoded[7] == 0.0
    np.testing.assert_allclose(encoded[3], np.log1p(3.0), rtol=1e-6)


def test_bad_encoding_and_dtype_are_named():
    with pytest.raises(ValueError, match="unknown feature encoding 'hex'"):
        encode_features(np.zeros((1, 2), np.float32), "hex")
    with pytest.raises(TypeError, match="float32"):
        encode_features(np.zeros((1, 2), np.float64), "bits")


def test_columns_reading_undoes_a_per_vector_bit_permutation():
    """One-time ShuffleBits permutes the bit positions of all D floats of a vector alike; with
    distinct counts of ones per position, the `columns` reading of the ciphertext equals that of
    the plaintext exactly (as no other reading does)."""
    rng = np.random.default_rng(2)
    batch, dim = 6, 40
    bits_BDK = np.zeros((batch, dim, 32), np.uint32)
    for b in range(batch):
        for position, count in enumerate(rng.permutation(32) + 1):  # counts 1..32, distinct
            bits_BDK[b, rng.choice(dim, count, replace=False), position] = 1
    words = (bits_BDK << np.arange(31, -1, -1, dtype=np.uint32)).sum(-1).astype(np.uint32)
    plain = words.view(np.float32)
    secret = shufflebits.Secret.generate()
    cipher = np.asarray(shufflebits.encrypt(plain, secret, shufflebits.fresh_nonces(batch)))
    assert not np.array_equal(encode_features(cipher, "bits"), encode_features(plain, "bits"))
    canonical = np.asarray(encode_features(plain, "columns"))
    np.testing.assert_array_equal(np.asarray(encode_features(cipher, "columns")), canonical)
    counts = canonical.reshape(batch, dim, 32).sum(1)
    np.testing.assert_array_equal(counts, np.broadcast_to(np.arange(1, 33), (batch, 32)))


def test_popcount_survives_every_bit_permutation():
    """What one-time keys cannot hide: each float's count of one-bits, read without NaN."""
    plain = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    static = np.asarray(shufflebits.encrypt(plain, shufflebits.Key.from_seed(3)))
    secret = shufflebits.Secret.generate()
    one_time = np.asarray(shufflebits.encrypt(plain, secret, shufflebits.fresh_nonces(6)))
    expected = np.vectorize(lambda w: bin(int(w)).count("1"))(plain.view(np.uint32)) / 32
    assert encoded_dim(5, "popcount") == 5
    for features in (plain, static, one_time, one_time.view(np.uint32)):
        encoded = np.asarray(encode_features(features, "popcount"))
        assert encoded.dtype == np.float32 and np.isfinite(encoded).all()
        np.testing.assert_array_equal(encoded, expected.astype(np.float32))
