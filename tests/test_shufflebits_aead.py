"""Poly1305 tags of stream mode (invfeat/shufflebits/aead.py): each row with its tag is the
ChaCha20-Poly1305 message of the `cryptography` package (empty associated data), the RFC 8439
vectors of sections 2.6.2 and 2.8.2, and which rows fail to verify."""

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.poly1305 import Poly1305

from invfeat import shufflebits as sb
from invfeat.shufflebits import aead

RFC_KEY = sb.StreamKey.from_bytes(bytes(range(0x80, 0xA0)))


def nonce_words(hex12: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(hex12), "<u4").astype(np.uint32)[None]


def sealed(key: sb.StreamKey, nonce: np.ndarray, row: np.ndarray) -> bytes:
    """ChaCha20-Poly1305 (OpenSSL, through `cryptography`) of one plaintext row: ct + tag."""
    return ChaCha20Poly1305(key.to_bytes()).encrypt(
        nonce.astype("<u4").tobytes(), row.tobytes(), None
    )


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("width", [1, 3, 16, 17, 100])
def test_tags_are_those_of_chacha20poly1305(dtype, width):
    rng = np.random.default_rng(width)
    key = sb.StreamKey.generate()
    x = rng.standard_normal((4, width)).astype(dtype)
    nonces = sb.fresh_nonces(4)
    rows = zip(nonces, x, strict=True)
    y = np.stack([np.frombuffer(sealed(key, n, r)[:-16], dtype) for n, r in rows])
    tags = aead.stream_tags(y, key, nonces)
    assert tags.dtype == np.uint8 and tags.shape == (4, 16)
    for i in range(4):
        assert tags[i].tobytes() == sealed(key, nonces[i], x[i])[-16:]
        ct = y[i].tobytes() + tags[i].tobytes()
        plain = ChaCha20Poly1305(key.to_bytes()).decrypt(
            nonces[i].astype("<u4").tobytes(), ct, None
        )
        assert plain == x[i].tobytes()
    assert len(aead.bad_stream_tags(y, key, nonces, tags)) == 0
    aead.check_stream_tags(y, key, nonces, tags)


def test_tags_of_the_in_graph_ciphertext_decrypt_with_cryptography():
    key = sb.StreamKey.generate()
    x = np.random.default_rng(0).standard_normal((5, 33)).astype(np.float32)
    nonces = sb.fresh_nonces(5)
    y = np.asarray(sb.encrypt(x, key, nonces))
    tags = aead.stream_tags(y, key, nonces)
    box = ChaCha20Poly1305(key.to_bytes())
    for i in range(5):
        message = y[i].tobytes() + tags[i].tobytes()
        assert box.decrypt(nonces[i].astype("<u4").tobytes(), message, None) == x[i].tobytes()
        with pytest.raises(InvalidTag):  # another row's nonce: refused by the standard library
            box.decrypt(nonces[(i + 1) % 5].astype("<u4").tobytes(), message, None)


def test_rfc8439_poly1305_key_generation_2_6_2():
    otk = aead.poly1305_keys(RFC_KEY, nonce_words("000000000001020304050607"))
    assert otk.shape == (1, 32) and otk.dtype == np.uint8
    assert otk[0].tobytes().hex() == (
        "8ad5a08b905f81cc815040274ab29471a833b637e3fd0da508dbb8e2fdd1a646"
    )


def test_rfc8439_aead_tag_2_8_2():
    """The RFC's vector has associated data; invfeat's tags use none, so this checks the key
    derivation and the MAC input layout (`mac_data`) the tags are built of."""
    text = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
        b"future, sunscreen would be it."
    )
    nonce = nonce_words("070000004041424344454647")
    ct = np.asarray(sb.encrypt(np.frombuffer(text, np.float16), RFC_KEY, nonce[0])).tobytes()
    otk = aead.poly1305_keys(RFC_KEY, nonce)[0].tobytes()
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    tag = Poly1305.generate_tag(otk, aead.mac_data(aad, ct))
    assert tag.hex() == "1ae10b594f09e26a7e902ecbd0600691"


def test_bad_rows_are_named():
    key = sb.StreamKey.generate()
    x = np.random.default_rng(1).standard_normal((6, 8)).astype(np.float32)
    nonces = sb.fresh_nonces(6)
    y = np.asarray(sb.encrypt(x, key, nonces))
    tags = aead.stream_tags(y, key, nonces)
    tampered = y.copy()
    tampered.view(np.uint8)[4, 3] ^= 0x01
    assert aead.bad_stream_tags(tampered, key, nonces, tags).tolist() == [4]
    swapped = nonces[[0, 2, 1, 3, 4, 5]]
    assert aead.bad_stream_tags(y, key, swapped, tags).tolist() == [1, 2]
    assert aead.bad_stream_tags(y, sb.StreamKey.generate(), nonces, tags).tolist() == list(range(6))
    names = np.array([f"{i}.jpg" for i in range(6)])
    with pytest.raises(aead.TagError, match=r"rows 1 \(1.jpg\), 2 \(2.jpg\)") as err:
        aead.check_stream_tags(y, key, swapped, tags, names=names)
    assert err.value.rows.tolist() == [1, 2]
    with pytest.raises(aead.TagError, match="1 of 6 rows .*: row 4$"):
        aead.check_stream_tags(tampered, key, nonces, tags)


def test_shapes_and_keys_are_checked():
    key = sb.StreamKey.generate()
    y, nonces = np.zeros((2, 4), np.float32), sb.fresh_nonces(2)
    with pytest.raises(TypeError, match="StreamKey"):
        aead.stream_tags(y, sb.Secret.generate(), nonces)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        aead.stream_tags(y[0], key, nonces[0])
    with pytest.raises(ValueError, match="nonces must be uint32"):
        aead.stream_tags(y, key, nonces[:1])
    with pytest.raises(ValueError, match="tags must be uint8"):
        aead.bad_stream_tags(y, key, nonces, np.zeros((2, 15), np.uint8))
