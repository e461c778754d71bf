"""ShuffleBits: encrypt float features by permuting the bits of every element, in jnp ops.

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
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import operator
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

WIDTHS = (16, 32, 64)
NONCE_WORDS = 3
FILE_FORMAT = "invfeat-shufflebits"
FILE_VERSION = 2  # 2 adds "check"; files of version 1 (no check) are still read
_READ_VERSIONS = (1, 2)
UINT_BY_WIDTH = {16: np.uint16, 32: np.uint32, 64: np.uint64}  # float width -> unsigned view
_MAX_FILE_BYTES = 1 << 16


class KeyFileError(ValueError):
    """A key or secret file is missing, unsafe or malformed (the message names the file)."""


# ----------------------------------------------------------------------------- masked rotations
# A permutation moves bit i by a left rotation g = (rank[i] - i) mod n, so it is the OR over g of
# rotl(x, g) & mask[g]; the rotations are factored as rotl(rotl(x, stride * a) & m, b).


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


# ----------------------------------------------------------------------------- keys


def _check_permutation(index_array: Any, where: str) -> np.ndarray:
    arr = np.asarray(index_array)
    if arr.ndim != 1 or arr.size not in WIDTHS:
        raise ValueError(f"{where}: a key permutes {WIDTHS} bit positions; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{where}: index array must hold integers, got dtype {arr.dtype}")
    if not np.array_equal(np.sort(arr), np.arange(arr.size)):
        raise ValueError(f"{where}: index array is not a permutation of 0..{arr.size - 1}")
    return arr.astype(np.int64)


class Key:
    """A static ShuffleBits key: one secret permutation of the bit positions of a float type."""

    __slots__ = ("_index_array", "_plans", "bits")

    def __init__(self, index_array: Any):
        arr = _check_permutation(index_array, "Key")
        self.bits = int(arr.size)
        self._index_array = arr
        n = self.bits
        src = n - 1 - arr[n - 1 - np.arange(n)]  # published string positions -> LSB-0 bits
        rank = np.argsort(src)  # input bit i goes to output bit rank[i]
        self._plans = (_static_plan(rank, inverse=False), _static_plan(rank, inverse=True))

    @classmethod
    def from_index_array(cls, index_array: Any) -> Key:
        """The published convention: output position i of the bit string `np.binary_repr(int_view,
        width)` (MSB first) takes input position `index_array[i]`."""
        return cls(index_array)

    @classmethod
    def from_seed(cls, seed: int, bits: int = 32) -> Key:
        """The published `get_index_array(seed)`: a numpy default_rng shuffle of arange(bits)."""
        arr = np.arange(bits)
        np.random.default_rng(seed).shuffle(arr)
        return cls(arr)

    @classmethod
    def generate(cls, bits: int = 32) -> Key:
        """A uniformly random key from `secrets` (Fisher-Yates)."""
        if bits not in WIDTHS:
            raise ValueError(f"bits must be one of {WIDTHS}, got {bits}")
        arr = list(range(bits))
        for i in range(bits - 1, 0, -1):
            j = secrets.randbelow(i + 1)
            arr[i], arr[j] = arr[j], arr[i]
        return cls(np.array(arr))

    def to_index_array(self) -> np.ndarray:
        """The key in the published convention (for interoperating with the original code)."""
        return self._index_array.copy()

    def rotation_plan(self, inverse: bool = False) -> tuple[int, tuple[int, ...]]:
        """(stride, masks) of the `rotate_groups` that encrypt (inverse: decrypt) with this key."""
        return self._plans[inverse]

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write a versioned key file with mode 0600 (atomically)."""
        payload = {"kind": "key", "bits": self.bits, "index_array": self._index_array.tolist()}
        _write_private(Path(path), payload, overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Key:
        key = load_key(path)
        if not isinstance(key, Key):
            raise KeyFileError(f"{path}: holds a one-time secret, not a static key")
        return key

    def _digest(self) -> bytes:
        return hashlib.sha256(self._index_array.astype("<i8").tobytes()).digest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and hmac.compare_digest(self._digest(), other._digest())

    def __hash__(self) -> int:
        return hash(("Key", self._digest()))

    def __repr__(self) -> str:
        return f"Key(bits={self.bits}, permutation=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("ShuffleBits keys are not picklable; use Key.save")


class Secret:
    """A one-time-pad secret: 256 random bits keying ChaCha20 over per-vector nonces."""

    __slots__ = ("_words",)

    def __init__(self, secret_bytes: bytes):
        if not isinstance(secret_bytes, bytes | bytearray) or len(secret_bytes) != 32:
            raise ValueError("Secret needs exactly 32 bytes")
        self._words = np.frombuffer(bytes(secret_bytes), "<u4").astype(np.uint32)

    @classmethod
    def generate(cls) -> Secret:
        return cls(secrets.token_bytes(32))

    def words(self) -> np.ndarray:
        """The eight little-endian uint32 ChaCha20 key words."""
        return self._words.copy()

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write a versioned secret file with mode 0600 (atomically)."""
        payload = {"kind": "secret", "secret": self._words.astype("<u4").tobytes().hex()}
        _write_private(Path(path), payload, overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Secret:
        secret = load_key(path)
        if not isinstance(secret, Secret):
            raise KeyFileError(f"{path}: holds a static key, not a one-time secret")
        return secret

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(
            self._words.tobytes(), other._words.tobytes()
        )

    def __hash__(self) -> int:
        return hash(("Secret", hashlib.sha256(self._words.tobytes()).digest()))

    def __repr__(self) -> str:
        return "Secret(bits=256, value=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("ShuffleBits secrets are not picklable; use Secret.save")


def _write_private(path: Path, payload: dict, overwrite: bool) -> None:
    """Write a mode-0600 temporary file, then link it into place (replace it if `overwrite`):
    either way atomic, and without overwrite a file created meanwhile is never replaced."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; refusing to overwrite a key file")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder for the key file {path.name}")
    content = {"format": FILE_FORMAT, "version": FILE_VERSION, **payload}
    text = json.dumps({**content, "check": _checksum(content)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path exists, even if it appeared after the check
            except FileExistsError:
                raise FileExistsError(
                    f"{path}: already exists; refusing to overwrite a key file"
                ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)  # a key lost to a crash loses what it encrypted
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _checksum(content: dict) -> str:
    """64 bits of SHA-256 over the file's other fields: a flipped digit or a swapped pair of
    positions makes another valid key, which only this check can tell from the one written."""
    fields = {k: v for k, v in content.items() if k != "check"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def _verified(path: Path, data: dict, key: Key | Secret) -> Key | Secret:
    """`key`, once a version-2 file's check matches its fields (version-1 files have none)."""
    if data["version"] >= 2:
        check = data.get("check")
        if not isinstance(check, str) or not hmac.compare_digest(check, _checksum(data)):
            raise KeyFileError(f"{path}: corrupt key file (its check does not match its contents)")
    return key


def load_key(path: str | os.PathLike) -> Key | Secret:
    """Read a key or secret file, checking permissions, format, version and contents."""
    path = Path(path)
    try:  # one open: the mode checked is that of the bytes read; the read is bounded
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read(_MAX_FILE_BYTES + 1)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file ({e.strerror})") from None
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: key file is accessible to group/others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600"
        )
    if len(raw) > _MAX_FILE_BYTES:
        raise KeyFileError(f"{path}: too large to be a key file")
    try:
        data, corrupt = json.loads(raw.decode("utf-8")), False
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, absurd numbers or nesting
        data, corrupt = None, True
    if corrupt:  # raised out here: a JSONDecodeError holds the file's text (.doc) as context
        raise KeyFileError(f"{path}: corrupt key file (not valid JSON)")
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise KeyFileError(f"{path}: not a {FILE_FORMAT} key file")
    if type(data.get("version")) is not int or data["version"] not in _READ_VERSIONS:  # not `true`
        raise KeyFileError(
            f"{path}: unsupported key file version {data.get('version')!r} "
            f"(this code reads versions {', '.join(map(str, _READ_VERSIONS))})"
        )
    kind = data.get("kind")
    if kind == "key":
        bits, arr = data.get("bits"), data.get("index_array")
        if bits not in WIDTHS or not isinstance(arr, list) or len(arr) != bits:
            raise KeyFileError(f"{path}: bad key width (bits must be one of {WIDTHS})")
        if not all(type(v) is int for v in arr) or sorted(arr) != list(range(bits)):
            raise KeyFileError(f"{path}: key is not a permutation of 0..{bits - 1}")
        return _verified(path, data, Key(np.array(arr)))
    if kind == "secret":
        value = data.get("secret")
        try:
            raw = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise KeyFileError(f"{path}: corrupt secret (expected 64 hex digits)")
        return _verified(path, data, Secret(raw))
    raise KeyFileError(f"{path}: unknown key kind {kind!r}")


# ----------------------------------------------------------------------------- one-time PRF

_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)
_COLUMNS = ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15))
_DIAGONALS = ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))


def _chacha20(key_words: Any, counter: Any, nonce_words: tuple) -> list[jax.Array]:
    """RFC 8439 block function on a state of 16 separate uint32 arrays (vectorises over them)."""
    shape = jnp.broadcast_shapes(jnp.shape(counter), *(jnp.shape(n) for n in nonce_words))
    lanes = [*_SIGMA, *(key_words[i] for i in range(8)), counter, *nonce_words]
    init = tuple(jnp.broadcast_to(jnp.asarray(v, jnp.uint32), shape) for v in lanes)

    def double_round(_: Any, state: tuple) -> tuple:
        x = list(state)
        for a, b, c, d in _COLUMNS + _DIAGONALS:
            x[a] = x[a] + x[b]
            x[d] = _rotl(x[d] ^ x[a], 16)
            x[c] = x[c] + x[d]
            x[b] = _rotl(x[b] ^ x[c], 12)
            x[a] = x[a] + x[b]
            x[d] = _rotl(x[d] ^ x[a], 8)
            x[c] = x[c] + x[d]
            x[b] = _rotl(x[b] ^ x[c], 7)
        return tuple(x)

    # Unrolled on accelerators (one fused kernel, not a loop of small launches); rolled on CPU,
    # where unrolling slows compilation and gains nothing (benchmarks/RESULTS.md).
    out = jax.lax.platform_dependent(
        init,
        cpu=lambda s: jax.lax.fori_loop(0, 10, double_round, s),
        default=lambda s: jax.lax.fori_loop(0, 10, double_round, s, unroll=True),
    )
    return [o + i for o, i in zip(out, init, strict=True)]


def chacha20_block(key_words: Any, counter: Any, nonce: Any) -> jax.Array:
    """RFC 8439 ChaCha20 block: 8 key words, counter [...], nonce [..., 3] -> [..., 16] uint32."""
    nonce = jnp.asarray(nonce, jnp.uint32)
    words = jnp.asarray(key_words, jnp.uint32)
    return jnp.stack(_chacha20(words, counter, tuple(nonce[..., i] for i in range(3))), axis=-1)


def _stable_ranks(w: jax.Array) -> jax.Array:
    """Position of each of the last-axis words in their stable ascending order (int32).

    rank[i] = #{k : w[k] < w[i] or (w[k] == w[i] and k < i)}: [..., n, n] comparisons summed
    over the minor axis (fuses into one vectorised reduction).
    """
    k = jnp.arange(w.shape[-1])
    smaller = w[..., None, :] < w[..., :, None]
    tied_before = (w[..., None, :] == w[..., :, None]) & (k[None, :] < k[:, None])
    return jnp.sum(smaller | tied_before, axis=-1, dtype=jnp.int32)


@functools.partial(jax.jit, static_argnames="bits")
def _one_time_ranks(key_words: jax.Array, nonce: jax.Array, bits: int) -> jax.Array:
    """[..., bits]: input bit i goes to output bit rank[i] (rank = inverse of src = argsort(w))."""
    n_blocks = -(-bits // 16)
    counter = jnp.arange(n_blocks, dtype=jnp.uint32).reshape((n_blocks,) + (1,) * (nonce.ndim - 1))
    lanes = _chacha20(key_words, counter, tuple(nonce[None, ..., i] for i in range(NONCE_WORDS)))
    w = jnp.moveaxis(jnp.stack(lanes, axis=-1), 0, -2)  # [..., blocks, 16]
    return _stable_ranks(w.reshape(w.shape[:-2] + (n_blocks * 16,))[..., :bits])


def one_time_permutation(secret: Secret, nonce: Any, bits: int) -> jax.Array:
    """Per-vector permutation src[..., bits] (output bit j takes input bit src[j]): the stable
    argsort of the first `bits` words of the nonce's ChaCha20 blocks 0, 1, ..."""
    rank = _one_time_ranks(jnp.asarray(secret._words), jnp.asarray(nonce, jnp.uint32), bits)
    return jnp.argsort(rank, axis=-1).astype(jnp.int32)


def fresh_nonces(shape: int | tuple[int, ...]) -> np.ndarray:
    """Random nonces of shape `shape + (3,)` (uint32) from os.urandom, one per vector."""
    try:  # an int, numpy integer included, or a sequence of them
        shape = (operator.index(shape),)
    except TypeError:
        shape = tuple(operator.index(d) for d in shape)
    if min(shape, default=0) < 0:
        raise ValueError(f"fresh_nonces: shape must be non-negative, got {shape}")
    count = int(np.prod(shape, dtype=np.int64)) * NONCE_WORDS
    return np.frombuffer(os.urandom(4 * count), "<u4").astype(np.uint32).reshape(shape + (3,))


# ----------------------------------------------------------------------------- encrypt/decrypt


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


@functools.partial(jax.jit, static_argnames=("key", "inverse"))
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


@jax.jit
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


def _apply(x: Any, key: Key | Secret, nonce: Any, inverse: bool) -> jax.Array:
    dtype = _float_dtype(x)
    bits = dtype.itemsize * 8
    x = jnp.asarray(x)
    if isinstance(key, Key):
        if nonce is not None:
            raise ValueError("a static Key takes no nonce (nonces belong to one-time Secrets)")
        if key.bits != bits:
            raise ValueError(f"key width {key.bits} bits does not match {dtype} ({bits} bits)")
        return _static_kernel(x, key, inverse)
    if isinstance(key, Secret):
        if nonce is None:
            raise ValueError("one-time mode needs nonce=..., e.g. fresh_nonces(x.shape[:-1])")
        if x.ndim < 1:
            raise ValueError(
                "one-time mode permutes the bits of vectors: x must have at least one axis "
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
        return _one_time_kernel(x, key._words, nonce, jnp.asarray(inverse))
    raise TypeError(f"key must be a shufflebits Key or Secret, got {type(key).__name__}")


def encrypt(x: Any, key: Key | Secret, nonce: Any = None) -> jax.Array:
    """Permute the bits of every float in x (same shape, dtype); a Secret takes nonces [..., 3]."""
    return _apply(x, key, nonce, inverse=False)


def decrypt(y: Any, key: Key | Secret, nonce: Any = None) -> jax.Array:
    """Invert `encrypt` exactly (needs the same key, and for one-time mode the same nonces)."""
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


# ----------------------------------------------------------------------------- Flax


class ShuffleBits(nn.Module):
    """Encrypts (or, with inverse=True, decrypts) its input; put it last in a model."""

    key: Key | Secret
    inverse: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, nonce: jax.Array | None = None) -> jax.Array:
        return _apply(x, self.key, nonce, self.inverse)


def with_encryption(apply_fn: Callable[..., Any], key: Key | Secret) -> Callable[..., Any]:
    """Wrap `apply_fn` so that its output is encrypted: every leaf must be a float array (pass
    nonce= for Secrets, where the output must be one array: a nonce serves one permutation).

    The wrapper takes the keyword `nonce` for itself (`apply_fn` cannot receive one) and draws
    none: pass fresh nonces to every call (`fresh_nonces(output.shape[:-1])`).
    """

    def apply_encrypted(*args: Any, nonce: Any = None, **kwargs: Any) -> Any:
        out = apply_fn(*args, **kwargs)
        if isinstance(key, Secret) and len(jax.tree.leaves(out)) > 1:
            raise ValueError(
                "one-time encryption of an output with several arrays would reuse each nonce "
                "for all of them; return one array, or encrypt each with its own nonces"
            )
        return jax.tree.map(lambda y: encrypt(y, key, nonce), out)

    return apply_encrypted
