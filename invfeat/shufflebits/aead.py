"""Poly1305 tags of stream-mode ciphertext: each vector with its tag is one RFC 8439
ChaCha20-Poly1305 message, so any standard library decrypts and authenticates a row on its own.

A vector's tag is that of RFC 8439 section 2.8 with empty associated data: the one-time Poly1305
key is the first 32 bytes of the ChaCha20 block at counter 0 under the vector's nonce (section
2.6; the keystream of `stream.py` starts at counter 1), and the MAC runs over the ciphertext bytes
(`row.tobytes()`, little-endian), zero-padded to 16 bytes, then le64(0) and le64(len(ciphertext)).
The tags are computed on the host from the ciphertext (the keystream is in-graph; the writer has
only what the API emitted), the Poly1305 MAC by the `cryptography` package (OpenSSL).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.poly1305 import Poly1305

from invfeat.shufflebits.chacha20 import NONCE_WORDS, chacha20_block
from invfeat.shufflebits.keys import StreamKey

TAG_BYTES = 16


class TagError(ValueError):
    """Some rows' Poly1305 tags do not verify (`rows`: their indices, ascending)."""

    def __init__(self, message: str, rows: np.ndarray):
        super().__init__(message)
        self.rows = rows


@jax.jit
def _block_0(key_words: jax.Array, nonces: jax.Array) -> jax.Array:
    return chacha20_block(key_words, jnp.uint32(0), nonces)


def poly1305_keys(key: StreamKey, nonces: Any) -> np.ndarray:
    """The one-time Poly1305 keys [N, 32] uint8 of RFC 8439 section 2.6, one per nonce [N, 3]:
    the first 32 bytes of each nonce's ChaCha20 block at counter 0 (all rows in one call)."""
    block = np.asarray(_block_0(key.words(), jnp.asarray(nonces, jnp.uint32)))  # [N, 16]
    return np.ascontiguousarray(block[..., :8].astype("<u4")).view(np.uint8)


def mac_data(aad: bytes, ciphertext: bytes) -> bytes:
    """The Poly1305 input of RFC 8439 section 2.8: each part zero-padded to 16, then lengths."""
    pad = lambda n: bytes(-n % 16)  # noqa: E731
    lengths = len(aad).to_bytes(8, "little") + len(ciphertext).to_bytes(8, "little")
    return aad + pad(len(aad)) + ciphertext + pad(len(ciphertext)) + lengths


def _rows(ciphertext: Any, key: StreamKey, nonces: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ciphertext as little-endian rows [N, D] and the Poly1305 keys of its nonces, checked."""
    if not isinstance(key, StreamKey):
        raise TypeError(f"Poly1305 tags need a StreamKey, got {type(key).__name__}")
    x = np.asarray(ciphertext)
    if x.ndim != 2:
        raise ValueError(f"ciphertext must be [N, D], got shape {x.shape}")
    x = np.ascontiguousarray(x, x.dtype.newbyteorder("<"))
    nonces = np.asarray(nonces)
    if nonces.dtype != np.uint32 or nonces.shape != (len(x), NONCE_WORDS):
        raise ValueError(
            f"nonces must be uint32 [{len(x)}, {NONCE_WORDS}], got {nonces.dtype} {nonces.shape}"
        )
    return x, poly1305_keys(key, nonces)


def stream_tags(ciphertext: Any, key: StreamKey, nonces: Any) -> np.ndarray:
    """The ChaCha20-Poly1305 tag (empty associated data) of each stream-mode ciphertext row
    [N, D] under its nonce [N, 3]: uint8 [N, 16]."""
    x, otks = _rows(ciphertext, key, nonces)
    tags = np.zeros((len(x), TAG_BYTES), np.uint8)
    for i, (row, otk) in enumerate(zip(x, otks, strict=True)):
        tag = Poly1305.generate_tag(otk.tobytes(), mac_data(b"", row.tobytes()))
        tags[i] = np.frombuffer(tag, np.uint8)
    return tags


def bad_stream_tags(ciphertext: Any, key: StreamKey, nonces: Any, tags: Any) -> np.ndarray:
    """Indices of the rows whose tag does not verify (each compared in constant time)."""
    x, otks = _rows(ciphertext, key, nonces)
    tags = np.asarray(tags)
    if tags.dtype != np.uint8 or tags.shape != (len(x), TAG_BYTES):
        raise ValueError(
            f"tags must be uint8 [{len(x)}, {TAG_BYTES}], got {tags.dtype} {tags.shape}"
        )
    bad = []
    for i, (row, otk, tag) in enumerate(zip(x, otks, tags, strict=True)):
        try:
            Poly1305.verify_tag(otk.tobytes(), mac_data(b"", row.tobytes()), tag.tobytes())
        except InvalidSignature:
            bad.append(i)
    return np.array(bad, dtype=np.int64)


def check_stream_tags(
    ciphertext: Any, key: StreamKey, nonces: Any, tags: Any, *, names: Any = None
) -> None:
    """Raise `TagError` naming the rows (by index, and by `names[i]` if given) whose tag does not
    verify: a tampered row, a wrong key or a swapped nonce."""
    bad = bad_stream_tags(ciphertext, key, nonces, tags)
    if not len(bad):
        return
    shown = [f"{i} ({names[i]})" if names is not None else str(i) for i in bad[:5]]
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise TagError(
        f"{len(bad)} of {len(tags)} rows fail Poly1305 authentication (tampered ciphertext, a "
        f"wrong key or swapped nonces): row{'s' if len(bad) > 1 else ''} {', '.join(shown)}{more}",
        bad,
    )
