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
