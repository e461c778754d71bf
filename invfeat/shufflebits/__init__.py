"""ShuffleBits: encrypt float features by permuting the bits of every element, in jnp ops; and
stream mode, a standard cipher (ChaCha20) fused the same way.

A static `Key` (the published scheme) is one secret permutation of the bit positions of a 16-, 32-
or 64-bit float. One-time keys give every vector its own permutation: a 256-bit `Secret` keys
ChaCha20 (RFC 8439) over the vector's 96-bit nonce, and output bit j (LSB 0) takes input bit
`argsort(w)[j]` of the keystream words w (a stable sort: a tie, probability about bits^2 / 2^33
per vector, favours the lower index). Both run as masked rotations inside one compiled XLA
program (no callbacks). Gradients through them are zero: encrypt what a model emits, not what a
loss still needs.

What it protects. The key (or secret and nonce) gives back the exact bits; nothing else about the
model changes. A static key is one fixed bijection: equal floats give equal ciphertexts, and
anyone who can query the encrypting API can learn on (image, ciphertext) pairs or recover the
permutation from a few chosen outputs, so it hides features only from someone who sees stored
vectors and cannot query. One-time keys leave no mapping to learn across vectors, but all
elements of a vector share its permutation and every element keeps its Hamming weight. Equal
nonces give equal permutations (passed twice, broadcast over a batch, or left unmapped under
`jax.vmap`) and nothing here can see a repeat: draw fresh nonces for every call (`fresh_nonces`,
96 random bits: a repeat is unlikely before ~2^48 vectors) or count them so that none repeats
under one secret. Neither mode authenticates: tampering goes unnoticed.

Where the key lives. Fused into a jitted program, a static key's masks, or a secret closed over by
`with_encryption` or the `ShuffleBits` layer, are constants of the compiled code: HLO dumps
(`XLA_FLAGS=--xla_dump_to`), a persistent compilation cache or an exported program hold them, so
guard those like the key file. JAX's logs see a static key only as its repr, which hides it.

Stream mode. A 256-bit `StreamKey` keys ChaCha20 (RFC 8439) over each vector's nonce, and the
keystream is XORed onto the vector's little-endian bytes: each vector is encrypted exactly as the
ciphertext part of ChaCha20-Poly1305 (block counter from 1, empty associated data), so any
standard library decrypts it (`stream.py` says which keystream bits meet which float bits). It
runs in uint32 jnp ops inside the same compiled program as the permutations, for 16-, 32- and
64-bit floats. With nonces that never repeat under one key it hides everything about a vector
but its length: no Hamming weights, no bit-column statistics, no equal ciphertexts for equal
floats. A nonce used twice under one key gives two vectors one keystream, and the XOR of their
ciphertexts is the XOR of their plaintexts: the rule on nonces above holds here with more at
stake. On its own it does not authenticate: a flipped ciphertext bit flips the same plaintext
bit, unnoticed. `stream_tags` (aead.py) gives each vector its Poly1305 tag, so that vector and
tag are the whole ChaCha20-Poly1305 message (empty associated data), and `check_stream_tags`
names the vectors whose tags do not verify: stream-mode feature files store the tags, and
decrypting one checks them all first. A key file names its scheme, and each scheme's `load`
refuses the others' keys: key material is never shared across schemes.
"""

from invfeat.shufflebits.aead import TagError, check_stream_tags, stream_tags
from invfeat.shufflebits.chacha20 import NONCE_WORDS, chacha20_block
from invfeat.shufflebits.cipher import (
    ShuffleBits,
    decrypt,
    encrypt,
    published_string_encrypt,
    uses_nonces,
    with_encryption,
)
from invfeat.shufflebits.keys import (
    FILE_FORMAT,
    FILE_VERSION,
    WIDTHS,
    Key,
    KeyFileError,
    Secret,
    StreamKey,
    load_key,
)
from invfeat.shufflebits.one_time import fresh_nonces, one_time_permutation
from invfeat.shufflebits.rotations import (
    UINT_BY_WIDTH,
    fewest_rotations,
    rotate_groups,
    rotation_masks,
)

__all__ = [
    "FILE_FORMAT",
    "FILE_VERSION",
    "NONCE_WORDS",
    "UINT_BY_WIDTH",
    "WIDTHS",
    "Key",
    "KeyFileError",
    "Secret",
    "ShuffleBits",
    "StreamKey",
    "TagError",
    "chacha20_block",
    "check_stream_tags",
    "decrypt",
    "encrypt",
    "fewest_rotations",
    "fresh_nonces",
    "load_key",
    "one_time_permutation",
    "published_string_encrypt",
    "rotate_groups",
    "rotation_masks",
    "stream_tags",
    "uses_nonces",
    "with_encryption",
]
