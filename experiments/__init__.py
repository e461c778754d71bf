"""`python -m experiments ...`: a thin command line over the invfeat library.

What every command group shares: how a user's mistake ends a command (one `error:` line naming
the input, exit status 2; an error of the file system names the path and what is wrong with it),
how Ctrl-C does, the argparse type for bounded counts, and how a
command runs when it is launched as several processes (`on_process_0`).
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys
from collections.abc import Callable

USAGE_EXIT = 2  # a user's mistake (a path, a name, a size); the message names the input
INTERRUPTED_EXIT = 130  # stopped by Ctrl-C (what a shell reports); finished work is kept


def fail(error: object) -> int:
    """Print `error: ...` on stderr; return the exit status of a user's mistake."""
    print(f"error: {describe(error)}", file=sys.stderr)
    return USAGE_EXIT


def describe(error: object) -> str:
    """The message of `error`, with the command that mends it where the library names a state
    the command line can change (a dataset not built, a victim not trained)."""
    from invfeat.data.datasets import DatasetNotBuiltError
    from invfeat.train.run import RunExistsError
    from invfeat.victims.base import VictimNotTrainedError
    from invfeat.victims.extraction import OutputsExistError

    if isinstance(error, DatasetNotBuiltError):
        manual = "" if error.dataset.startswith("synth_") else " --manual-dir /path/to/unpacked"
        build = shlex.join(
            ["python", "-m", "experiments", "data", "build", "--dataset", error.dataset,
             "--data-dir", str(error.data_dir)]
        )  # fmt: skip
        return (
            f"dataset {error.dataset!r} split {error.split!r} is not built in {error.data_dir} "
            f"(build it with `{build}{manual}`): {error.reason}"
        )
    if isinstance(error, VictimNotTrainedError):
        from experiments.victim import how_to_train

        return (
            f"{error.path}: no trained victim here ({how_to_train(error.workdir, error.started)})"
        )
    if isinstance(error, RunExistsError):
        return (
            f"{error.workdir} already holds a training run; continue it with --resume, or "
            "choose another --workdir"
        )
    if isinstance(error, OutputsExistError):
        return (
            f"{', '.join(map(str, error.paths))}: already exist(s); pass --overwrite to replace "
            "them (a killed run resumes when rerun with the same options)"
        )
    if isinstance(error, OSError) and error.filename is not None:
        return os_error_message(error)
    return str(error)


OS_REASONS = {
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "is a folder",
    errno.EEXIST: "already exists",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
}


def os_error_message(error: OSError) -> str:
    """`<the user's path>: <what is wrong>` for an error of the file system, without errno codes
    (both paths of a rename or link)."""
    standard = error.errno is None or error.strerror in (None, os.strerror(error.errno))
    reason = (OS_REASONS.get(error.errno) if standard else None) or (
        error.strerror or str(error)
    ).lower()
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}"


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= `minimum`, refused while parsing (before any work starts)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse's "invalid int value" for non-numbers
    return parse


def on_process_0(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run `command` as one process would. Launched as several processes (JAX_NUM_PROCESSES >
    1), they join the group, process 0 runs it on its own devices and every process exits with
    its status, so a file is written and a key drawn once. Commands that work across processes
    themselves (`victim train`) or refuse them (the study) set `handles_processes`."""
    from invfeat.train import distributed

    try:
        if distributed.requested_process_count() == 1:
            return command(args)
        distributed.initialize_from_env()
    except ValueError as err:  # a malformed JAX_* variable, named
        return fail(err)
    name = f"{command.__module__}.{command.__qualname__}"
    return distributed.on_primary(lambda: int(command(args) or 0), name)
