"""Keys of every scheme: static ShuffleBits `Key`s, one-time `Secret`s, stream-mode `StreamKey`s,
and their key files (versioned, checked by a SHA-256 field, mode 0600, written atomically; the
file names its scheme, and each scheme's `load` refuses the others)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import stat
from pathlib import Path
from typing import Any, Self

import numpy as np

from invfeat.shufflebits.rotations import _static_plan

WIDTHS = (16, 32, 64)
FILE_FORMAT = "invfeat-shufflebits"
FILE_VERSION = 2  # 2 adds "check"; files of version 1 (no check) are still read
_READ_VERSIONS = (1, 2)
_MAX_FILE_BYTES = 1 << 16


class KeyFileError(ValueError):
    """A key or secret file is missing, unsafe or malformed (the message names the file)."""


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
    _what = "a static key"

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
        return _load_as(cls, path)

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


class _Key256:
    """256 random bits as the eight little-endian uint32 words of a ChaCha20 key."""

    __slots__ = ("_words",)
    _kind = ""  # the key file's "kind"
    _what = ""  # what a file of that kind holds, for messages

    def __init__(self, key_bytes: bytes):
        if not isinstance(key_bytes, bytes | bytearray) or len(key_bytes) != 32:
            raise ValueError(f"{type(self).__name__} needs exactly 32 bytes")
        self._words = np.frombuffer(bytes(key_bytes), "<u4").astype(np.uint32)

    @classmethod
    def generate(cls) -> Self:
        """256 bits from `secrets`."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_bytes(cls, key_bytes: bytes) -> Self:
        """The key of 32 bytes (the ChaCha20 key of RFC 8439, as other libraries take it)."""
        return cls(key_bytes)

    def to_bytes(self) -> bytes:
        return self._words.astype("<u4").tobytes()

    def words(self) -> np.ndarray:
        """The eight little-endian uint32 ChaCha20 key words."""
        return self._words.copy()

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write a versioned key file of this scheme with mode 0600 (atomically)."""
        payload = {"kind": self._kind, self._kind: self.to_bytes().hex()}
        _write_private(Path(path), payload, overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Self:
        return _load_as(cls, path)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and hmac.compare_digest(
            self._words.tobytes(), other._words.tobytes()
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, hashlib.sha256(self._words.tobytes()).digest()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits=256, value=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        name = type(self).__name__
        raise TypeError(f"{name}s are not picklable; use {name}.save")


class Secret(_Key256):
    """A one-time-pad secret: 256 random bits keying ChaCha20 over per-vector nonces, whose
    keystream words choose each vector's bit permutation."""

    __slots__ = ()
    _kind = "secret"
    _what = "a one-time secret"


class StreamKey(_Key256):
    """A stream-mode key: 256 random bits keying the ChaCha20 keystream XORed onto each vector."""

    __slots__ = ()
    _kind = "stream"
    _what = "a stream key"


AnyKey = Key | Secret | StreamKey
_KEY256_KINDS = {cls._kind: cls for cls in (Secret, StreamKey)}


def _load_as(cls: type, path: str | os.PathLike) -> Any:
    """`load_key(path)` if it holds a `cls`; otherwise an error naming what the file holds (a key
    of one scheme is never used by another)."""
    key = load_key(path)
    if not isinstance(key, cls):
        raise KeyFileError(f"{path}: holds {key._what}, not {cls._what}")
    return key


def _temporary_path(path: Path) -> Path:
    """`.<name>.<host>.<pid>.<random>.tmp` beside `path`, as `invfeat.files.temporary_path`
    names them (this package imports nothing else of invfeat), so that the writer after a
    killed one finds and removes its temporary file (`invfeat.files.remove_orphans`)."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname()) or "host"
    return path.parent / f".{path.name}.{host}.{os.getpid()}.{secrets.token_hex(8)}.tmp"


def _named(err: OSError, path: Path) -> OSError:
    """The same error naming the key file (a write's or a sync's names none; the temporary
    file's name is not the user's)."""
    return type(err)(err.errno, err.strerror or os.strerror(err.errno or 0), str(path))


def _write_private(path: Path, payload: dict, overwrite: bool) -> None:
    """Write a mode-0600 temporary file, then link it into place (replace it if `overwrite`):
    either way atomic, and without overwrite a file created meanwhile is never replaced."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; refusing to overwrite a key file")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder for the key file {path.name}")
    content = {"format": FILE_FORMAT, "version": FILE_VERSION, **payload}
    text = json.dumps({**content, "check": _checksum(content)})
    tmp = _temporary_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as err:
        raise _named(err, path) from None
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
    except OSError as err:
        if err.errno is None or err.filename not in (None, str(tmp)):
            raise
        raise _named(err, path) from None
    finally:
        with contextlib.suppress(OSError):  # a leftover is removed by the next keygen
            tmp.unlink(missing_ok=True)
    try:  # a key lost to a crash loses what it encrypted: the folder is synced too
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as err:
        raise _named(err, path) from None


def _checksum(content: dict) -> str:
    """64 bits of SHA-256 over the file's other fields: a flipped digit or a swapped pair of
    positions makes another valid key, which only this check can tell from the one written."""
    fields = {k: v for k, v in content.items() if k != "check"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def _verified(path: Path, data: dict, key: AnyKey) -> AnyKey:
    """`key`, once a version-2 file's check matches its fields (version-1 files have none)."""
    if data["version"] >= 2:
        check = data.get("check")
        if not isinstance(check, str) or not hmac.compare_digest(check, _checksum(data)):
            raise KeyFileError(f"{path}: corrupt key file (its check does not match its contents)")
    return key


def load_key(path: str | os.PathLike) -> AnyKey:
    """Read a key file of any scheme (`Key`, `Secret`, `StreamKey`), checking permissions, format,
    version and contents."""
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
    if kind in _KEY256_KINDS:
        if kind == "stream" and data["version"] < 2:  # stream keys came with the check
            raise KeyFileError(f"{path}: a stream key file must be of version 2 or later")
        value = data.get(kind)
        try:
            raw = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise KeyFileError(f"{path}: corrupt {kind} (expected 64 hex digits)")
        return _verified(path, data, _KEY256_KINDS[kind](raw))
    raise KeyFileError(f"{path}: unknown key kind {kind!r}")
