"""Atomic file writes: readers see the old file or the new one, never half of one; a file that
another writer made meanwhile is never replaced unless asked; and the temporary files of writers
that were killed are found and removed by the next writer of the same path."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import stat
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

TMP_SUFFIX = ".tmp"


def _host() -> str:
    """This machine's name as it goes into a temporary file's name (no dots, no separators)."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname()) or "host"


def temporary_path(path: Path) -> Path:
    """`.<name>.<host>.<pid>.<random>.tmp` beside `path`: hidden, unique, and naming the process
    that writes it, so a later writer can tell whether that process still runs."""
    return path.parent / f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(8)}{TMP_SUFFIX}"


def _writer_is_gone(host: str, pid: str) -> bool:
    """Whether the process that named a temporary file has ended: known only on its own host."""
    if host != _host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_orphans(path: Path) -> list[Path]:
    """Remove the temporary files beside `path` that writers of `path` on this machine left
    when they were killed (their process has ended), each with a warning naming it and its
    size; return them. Those of running writers, and of other machines, are left alone."""
    prefix = f".{path.name}."
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for sibling in siblings:
        name = sibling.name
        if not (name.startswith(prefix) and name.endswith(TMP_SUFFIX)):
            continue
        parts = name[len(prefix) : -len(TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not _writer_is_gone(parts[0], parts[1]):
            continue
        try:
            size = sibling.stat().st_size
            sibling.unlink()
        except FileNotFoundError:  # another writer removed it first
            continue
        warnings.warn(
            f"{sibling}: removed a temporary file ({size / 2**20:.1f} MiB) that a killed "
            f"writer of {path} left",
            stacklevel=2,
        )
        removed.append(sibling)
    return removed


def make_folder(folder: Path) -> None:
    """`folder` and its parents, made where missing; a file in their place is refused as
    NotADirectoryError naming that file (where `mkdir` names the folder it could not make)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(p for p in (folder, *folder.parents) if p.exists() and not p.is_dir())
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", str(blocker)) from None


def _named(err: OSError, path: Path) -> OSError:
    """The same error naming the user's `path` instead of the temporary file."""
    return type(err)(err.errno, err.strerror or os.strerror(err.errno or 0), str(path))


def write_atomic(
    path: Path,
    write: Callable[[BinaryIO], object],
    mode: int | None = None,
    *,
    exclusive: bool = False,
) -> None:
    """Calls `write` on a temporary file beside `path`, then publishes it as `path`.

    Published by a rename over `path`, or, with `exclusive`, by a hard link that fails when
    `path` exists by then (FileExistsError): a file another writer made while this one ran is
    never replaced. The file and then its folder are synced, so the new file survives a crash of
    the machine too; the folder is created if missing; on any error the temporary file is
    removed, and the file-system errors name `path`, never the temporary file. Temporary files
    of killed writers of `path` are removed first (`remove_orphans`). Permissions: `mode` if
    given; else those of the file replaced; else a new file's (0666 less the umask), so a
    restrictive umask or a file chmod-ed 600 is never widened.
    """
    make_folder(path.parent)
    remove_orphans(path)
    tmp = temporary_path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask
    except OSError as err:
        raise _named(err, path) from None
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
        _publish(tmp, path, exclusive)
    except BaseException as err:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):  # a leftover is removed by the next writer
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno and err.filename in (None, str(tmp), tmp):
            raise _named(err, path) from None  # a write, a sync, or the temporary file's name
        raise
    sync_folder(path)


def sync_folder(path: Path) -> None:
    """Sync `path`'s folder, so that a rename or link into it survives a crash of the machine;
    an error names `path`."""
    try:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as err:
        raise _named(err, path) from None


def _publish(tmp: Path, path: Path, exclusive: bool) -> None:
    if not exclusive:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(
            errno.EEXIST, "made by another writer while this one ran; left as it is", str(path)
        ) from None
    with contextlib.suppress(OSError):  # published; a leftover is removed by the next writer
        tmp.unlink()


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
