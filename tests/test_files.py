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
