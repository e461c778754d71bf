"""torch.save's zip layout written from numpy, no torch needed: the checkpoints the `.pth`
reader's tests (invfeat/models/pth.py) and the FastReID import's tests read."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict

import numpy as np

from invfeat.models import pth


class _Global:
    """Pickles as a reference to the global `module.name` (torch's, with no torch installed)."""

    def __init__(self, qualified: str):
        self.module, self.name = qualified.rsplit(".", 1)

    def __call__(self, *args):  # pickle's save_reduce wants a callable
        raise NotImplementedError


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


_STORAGE_NAMES = {np.dtype(dtype): name for name, dtype in pth.STORAGE_DTYPES.items()}


class _PthPickler(pickle._Pickler):
    """torch.save's data.pkl: numpy arrays as `_rebuild_tensor_v2` over persistent storages."""

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[_Global] = lambda self, obj: self.write(
        pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode()
    )

    def __init__(self, file):
        super().__init__(file, protocol=2)
        self.storages: list[_Storage] = []

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            kind = _Global(f"torch.{_STORAGE_NAMES[obj.array.dtype]}")
            return ("storage", kind, obj.key, "cpu", obj.array.size)
        return None

    def reducer_override(self, obj):
        if not isinstance(obj, np.ndarray):
            return NotImplemented
        array = np.ascontiguousarray(obj)
        storage = _Storage(str(len(self.storages)), array.ravel())
        self.storages.append(storage)
        stride = tuple(s // array.itemsize for s in array.strides)
        args = (storage, 0, array.shape, stride, False, OrderedDict())
        return _Global("torch._utils._rebuild_tensor_v2"), args


def write_zip(path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def pth_files(obj, byteorder: str = "little", name: str = "archive") -> dict[str, bytes]:
    """The files of a torch.save zip holding `obj`, its numpy arrays saved as tensors."""
    buffer = io.BytesIO()
    pickler = _PthPickler(buffer)
    pickler.dump(obj)
    files = {f"{name}/data.pkl": buffer.getvalue(), f"{name}/byteorder": byteorder.encode()}
    for storage in pickler.storages:
        array = storage.array
        if byteorder == "big":
            unit = array.itemsize // 2 if array.dtype.kind == "c" else array.itemsize
            array = array.view(f"u{unit}").byteswap()
        files[f"{name}/data/{storage.key}"] = array.tobytes()
    files[f"{name}/version"] = b"3\n"
    return files


def write_pth(path, obj, byteorder: str = "little") -> None:
    """Save `obj` as torch.save would, numpy arrays standing for tensors; no torch needed."""
    write_zip(path, pth_files(obj, byteorder))
