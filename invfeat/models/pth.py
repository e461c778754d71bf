"""Read PyTorch `.pth` checkpoints (torch.save's zip format) into numpy arrays, without torch.

The zip holds `<name>/data.pkl`, a pickle of the saved object whose tensors point by persistent
id at raw storages `<name>/data/<key>`, and `<name>/byteorder`. `data.pkl` is read by a
restricted unpickler that knows only the globals a state dict needs (tensors, parameters, typed
storages, OrderedDict, Counter): any other global is refused by name before anything is called,
so an untrusted file cannot run code. Tensors come back as C-contiguous numpy arrays (bfloat16
as `ml_dtypes.bfloat16`); dicts, lists, tuples, numbers and strings as themselves.
"""

from __future__ import annotations

import collections
import io
import operator
import os
import pickle
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
}
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # pre-1.6 torch.save


class PthError(ValueError):
    """The file is not a torch.save zip checkpoint this reader can read."""


class ForbiddenGlobalError(PthError):
    """`data.pkl` names a global outside the state-dict allowlist (e.g. a pickled nn.Module)."""

    def __init__(self, path: str | os.PathLike, name: str):
        super().__init__(
            f"{path}: refused pickled global {name}: only tensors, dicts, lists and scalars "
            "are read from .pth files"
        )
        self.name = name


class _StorageType:
    """What `torch.<X>Storage` unpickles to: the numpy dtype of that storage."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: Any):
        self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v2`: the (offset, size, stride) view of a storage, copied."""
    if not (isinstance(storage, np.ndarray) and storage.ndim == 1):
        raise PthError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
    offset = operator.index(storage_offset)
    size = tuple(operator.index(n) for n in size)
    stride = tuple(operator.index(s) for s in stride)
    if len(size) != len(stride) or min((offset, *size, *stride)) < 0:
        raise PthError(f"bad tensor layout: offset {offset}, size {size}, stride {stride}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise PthError(
            f"tensor (offset {offset}, size {size}, stride {stride}) runs past its storage of "
            f"{storage.size} elements"
        )
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=[s * itemsize for s in stride], writeable=False
    )
    return view.copy()


def _rebuild_parameter(data, requires_grad, backward_hooks, *_unused) -> Any:
    """`torch._utils._rebuild_parameter`: the parameter's tensor."""
    return data


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    """Unpickles `data.pkl`: allowlisted globals only, storages read from the zip."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, path: str | os.PathLike):
        super().__init__(io.BytesIO(archive.read(prefix + "data.pkl")))
        self.archive, self.prefix, self.path = archive, prefix, path
        order = "little"
        if prefix + "byteorder" in archive.namelist():
            order = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise PthError(f"{path}: unknown byteorder {order!r}")
        self.swap = order != "little"
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenGlobalError(self.path, f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
        ):
            raise PthError(f"{self.path}: unknown persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        key = str(key)
        if key not in self.storages:
            self.storages[key] = self._read_storage(key, storage_type.dtype, operator.index(numel))
        return self.storages[key]

    def _read_storage(self, key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        name = f"{self.prefix}data/{key}"
        try:
            raw = self.archive.read(name)
        except KeyError:
            raise PthError(f"{self.path}: storage file {name} is missing") from None
        if numel < 0 or len(raw) < numel * dtype.itemsize:
            raise PthError(
                f"{self.path}: storage file {name} holds {len(raw)} bytes, not {numel} x "
                f"{dtype.itemsize}"
            )
        raw = raw[: numel * dtype.itemsize]
        if not self.swap or dtype.itemsize == 1:
            return np.frombuffer(raw, dtype)
        unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
        return np.frombuffer(raw, f"u{unit}").byteswap().view(dtype)


def load_pth(path: str | os.PathLike) -> Any:
    """The object a torch.save zip checkpoint holds, tensors as numpy arrays.

    Raises FileNotFoundError for a missing file, ForbiddenGlobalError for a pickle naming any
    global besides tensors, storages, OrderedDict and Counter, PthError for anything else
    unreadable (legacy pre-1.6 files, TorchScript archives, truncated or corrupt zips).
    """
    with open(path, "rb") as file:
        head = file.read(len(_LEGACY_MAGIC))
    if head.startswith(_LEGACY_MAGIC):
        raise PthError(
            f"{path}: legacy (pre-1.6) torch.save format, which invfeat does not read; re-save it "
            "with torch >= 1.6: torch.save(torch.load(f, weights_only=True), f)"
        )
    if not zipfile.is_zipfile(path):
        raise PthError(f"{path}: not a torch.save checkpoint (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [
                n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1
            ]
            if len(pickles) != 1:
                raise PthError(f"{path}: no single <name>/data.pkl, not a torch.save checkpoint")
            return _Unpickler(archive, pickles[0][: -len("data.pkl")], path).load()
    except PthError:
        raise
    except Exception as err:  # whatever a corrupt zip or pickle raises, named
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise PthError(f"{path}: unreadable ({type(err).__name__}: {first_line})") from None
