"""Atomic writes: a failure mid-write leaves the old file and no temporary file behind."""

import os
import stat

import pytest

from invfeat.files import write_atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    write_atomic(path, lambda f: f.write(b"old"))

    def half_then_fail(f):
        f.write(b"new, half written")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_creates_the_folder_and_sets_the_mode(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"
    write_atomic(path, lambda f: f.write(b"x"), mode=0o640)
    assert path.read_bytes() == b"x"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_never_widens_permissions(tmp_path):
    """A new file gets 0666 less the umask; a replaced file keeps its mode."""
    old_umask = os.umask(0o077)
    try:
        write_atomic(tmp_path / "new.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o600
    kept = tmp_path / "kept.bin"
    kept.write_bytes(b"old")
    kept.chmod(0o600)
    write_atomic(kept, lambda f: f.write(b"new"))
    assert kept.read_bytes() == b"new" and stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_syncs_the_file_and_then_its_folder(tmp_path, monkeypatch):
    """The data reaches the disk before the rename, and the rename itself after it."""
    synced, fsync = [], os.fsync

    def record(fd):
        synced.append(
            (
                "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file",
                sorted(os.listdir(tmp_path)),
            )
        )
        fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    write_atomic(tmp_path / "out.bin", lambda f: f.write(b"x"))
    assert [kind for kind, _ in synced] == ["file", "folder"]
    assert "out.bin" not in synced[0][1] and synced[1][1] == ["out.bin"]
