"""`python -m experiments` (experiments/__main__.py): invfeat's own warnings reach stderr as one
`warning:` line each, and other warnings keep Python's format."""

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import fake_trees

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "default"}


def _lines(stderr: str) -> list[str]:
    """stderr as a terminal would leave it: each line's text after its last carriage return,
    cursor movements removed."""
    return [re.sub(r"\x1b\[\d*A", "", line.split("\r")[-1]) for line in stderr.splitlines()]


def test_data_build_warnings_are_one_line_each(tmp_path):
    root = fake_trees.market_tree(tmp_path / "manual")
    empty = sorted((root / "query").glob("*.jpg"))[0]
    empty.write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "experiments", "data", "build", "--dataset", "market1501",
         "--manual-dir", str(tmp_path / "manual"), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = _lines(done.stderr)
    left_out = [line for line in lines if f"{empty.name}: left out" in line]
    assert left_out == [f"warning: {empty}: left out: cannot decode image query/{empty.name}: "
                        "it is empty"], done.stderr[-3000:]  # fmt: skip
    assert any(line.startswith("warning: ") and "partial copy?" in line for line in lines)
    # Not Python's format, which names the invfeat source line and echoes it (`for record in ...`).
    assert "LayoutWarning" not in done.stderr and "for record in records" not in done.stderr


_SCRIPT = """
import warnings
from experiments.__main__ import show_own_warnings_as_lines
from invfeat.data.layouts import LayoutWarning

show_own_warnings_as_lines()
warnings.warn("ours", LayoutWarning)
warnings.warn_explicit("theirs", UserWarning, "/elsewhere/lib.py", 3)
"""


def test_other_warnings_keep_their_format():
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=ENV, cwd=ROOT,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["warning: ours", "/elsewhere/lib.py:3: UserWarning: theirs"]


def test_errors_of_the_file_system_are_one_error_line_naming_the_path(
    tmp_path, capsys, monkeypatch
):
    """A data dir that is a file: one `error:` line naming the user's path and what is wrong,
    exit 2, no traceback."""
    from experiments.__main__ import main

    monkeypatch.chdir(tmp_path)
    a_file = tmp_path / "a file"
    a_file.write_text("")
    argv = ["victim", "train", "--config", "tiny", "--data-dir", str(a_file), "--workdir", "w"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last == f"error: {a_file}: a file, not a folder", err
    assert "Traceback" not in err and "Errno" not in err


def test_os_error_messages_name_the_path_without_errno_codes():
    import errno

    from experiments import describe

    error = PermissionError(errno.EACCES, "Permission denied", "/sys/key.json")
    assert describe(error) == "/sys/key.json: permission denied"
    full = OSError(errno.ENOSPC, "No space left on device", "out.npz")
    assert describe(full) == "out.npz: no space left on the device"
    rename = OSError(errno.EXDEV, "Invalid cross-device link", "a.tmp", None, "b.npz")
    assert describe(rename) == "a.tmp -> b.npz: invalid cross-device link"
    assert describe(FileExistsError("x: already exists; pass --overwrite")) == (
        "x: already exists; pass --overwrite"
    )
