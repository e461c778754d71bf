"""Fault injection for `python -m experiments`: a command runs in a child process whose file-system
calls (`os.fsync`, `os.replace`, `os.link`, `os.unlink`) are counted, and at the k-th call of
one of them the process is killed (SIGKILL, just before or just after the call) or the call
fails as a full disk does (ENOSPC). Nothing in invfeat knows about it: the child patches `os`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CALLS = ("fsync", "replace", "link", "unlink")
ACTIONS = ("kill-before", "kill-after", "enospc")

CHILD = r"""
import errno, json, os, signal, sys
name, k, action, counts_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
counts = {}

def hooked(real, call):
    def run(*args, **kwargs):
        counts[call] = counts.get(call, 0) + 1
        if call == name and counts[call] == k:
            if action == "kill-before":
                os.kill(os.getpid(), signal.SIGKILL)
            if action == "enospc":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            result = real(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
            return result
        return real(*args, **kwargs)
    return run

for call in ("fsync", "replace", "link", "unlink"):
    setattr(os, call, hooked(getattr(os, call), call))
from experiments.__main__ import main, show_own_warnings_as_lines
show_own_warnings_as_lines()
status = main(sys.argv[5:])
with open(counts_file, "w") as f:
    json.dump(counts, f)
sys.exit(status)
"""


@dataclasses.dataclass(frozen=True)
class Fault:
    call: str  # a name of CALLS
    k: int  # the k-th call of it, from 1
    action: str  # a name of ACTIONS

    def __str__(self) -> str:
        return f"{self.action}@{self.call}#{self.k}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    returncode: int  # -9 when killed
    stdout: str
    stderr: str
    counts: dict[str, int]  # calls made (a run that finished)

    @property
    def killed(self) -> bool:
        return self.returncode == -9


def run(argv: list[str], cwd: Path, fault: Fault | None = None, timeout: float = 300) -> Outcome:
    """`python -m experiments *argv` in `cwd`, with `fault` injected (or none: counting only)."""
    counts_file = cwd / ".fault-counts.json"
    counts_file.unlink(missing_ok=True)
    spec = [fault.call, str(fault.k), fault.action] if fault else ["none", "0", "none"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *spec, str(counts_file), *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    counts = json.loads(counts_file.read_text()) if counts_file.exists() else {}
    counts_file.unlink(missing_ok=True)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, counts)


def every_fault(counts: dict[str, int], actions: tuple[str, ...] = ACTIONS) -> list[Fault]:
    """Every fault a run with these call counts can meet: each call of each kind, each action
    (a full disk fails the calls that allocate: not `unlink`)."""
    return [
        Fault(call, k, action)
        for call in CALLS
        for k in range(1, counts.get(call, 0) + 1)
        for action in actions
        if not (action == "enospc" and call == "unlink")
    ]


def leftovers(folder: Path) -> list[Path]:
    """Temporary files and half-built folders under `folder`."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.name.endswith(".tmp") or p.name.startswith("incomplete.") or "-tmp-" in p.name
    )
