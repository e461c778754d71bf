"""Atomic file writes: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def write_atomic(path: Path, write: Callable[[BinaryIO], object], mode: int | None = None) -> None:
    """Calls `write` on a temporary file beside `path`, then renames it over `path`.

    The file and then its folder are synced, so the new file survives a crash of the machine too;
    the folder is created if missing; on any error the temporary file is removed. Permissions:
    `mode` if given; else those of the file replaced; else a new file's (0666 less the umask), so
    a restrictive umask or a file chmod-ed 600 is never widened.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask
    try:
        if mode is None:
            try:
                mode = stat.S_IMODE(os.stat(path).st_mode)
            except FileNotFoundError:
                pass
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)  # the rename is durable once the folder is synced
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)` for numpy scalars and arrays and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_json(data: Mapping[str, Any], path: Path) -> None:
    """`data` as indented JSON, written atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=json_default)
    write_atomic(path, lambda f: f.write((text + "\n").encode()))
