"""Atomic writes: a failure mid-write leaves the old file and no temporary file behind; an
exclusive write never replaces a file made meanwhile; errors name the user's path; the
temporary files of killed writers are removed by the next writer."""

import os
import stat
import subprocess
import sys

import pytest

from invfeat.files import remove_orphans, temporary_path, write_atomic


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


def test_exclusive_never_replaces_a_file_made_meanwhile(tmp_path):
    """Another writer creates the file while this one writes: this one fails, naming the path,
    and the other's file and no temporary file remain."""
    path = tmp_path / "out.bin"

    def write_then_race(f):
        f.write(b"mine")
        path.write_bytes(b"theirs")

    with pytest.raises(FileExistsError, match="made by another writer") as err:
        write_atomic(path, write_then_race, exclusive=True)
    assert err.value.filename == str(path)
    assert path.read_bytes() == b"theirs"
    assert os.listdir(tmp_path) == ["out.bin"]
    write_atomic(tmp_path / "new.bin", lambda f: f.write(b"x"), exclusive=True)
    assert sorted(os.listdir(tmp_path)) == ["new.bin", "out.bin"]


def test_errors_name_the_path_not_the_temporary_file(tmp_path):
    (tmp_path / "afile").write_bytes(b"")
    with pytest.raises(NotADirectoryError) as err:
        write_atomic(tmp_path / "afile" / "sub" / "out.bin", lambda f: f.write(b"x"))
    assert err.value.filename == str(tmp_path / "afile")
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError) as err:
        write_atomic(tmp_path / "folder", lambda f: f.write(b"x"))
    assert err.value.filename == str(tmp_path / "folder")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_orphans_of_ended_writers_are_removed_with_a_warning(tmp_path):
    """A temporary file names its writer's host and process: one whose process has ended on
    this host is removed by the next writer of the path; a running writer's, or another
    host's, is left alone."""
    path = tmp_path / "out.bin"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(ended.stdout)
    ours = temporary_path(path)
    orphan = ours.with_name(ours.name.replace(f".{os.getpid()}.", f".{dead}."))
    elsewhere = ours.with_name(ours.name.replace(f".{ours.name.split('.')[2]}.", ".otherhost."))
    for tmp in (ours, orphan, elsewhere):
        tmp.write_bytes(b"x" * 2**20)
    with pytest.warns(UserWarning, match=r"removed a temporary file \(1.0 MiB\) that a killed"):
        write_atomic(path, lambda f: f.write(b"new"))
    assert sorted(tmp_path.iterdir()) == sorted([ours, elsewhere, path])
    assert remove_orphans(path) == []
