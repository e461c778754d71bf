"""Entry point: `python -m experiments <group> <command> [options]`.

Each command group lives in its own module of this package, exposing
`register(subparsers)`, which adds its parser and sets `func(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

import experiments
import invfeat
from experiments import INTERRUPTED_EXIT, fail, on_process_0

# Command groups, in the order `--help` lists them; one module per group.
GROUPS = ("shufflebits", "data", "victim", "features", "study", "config", "frontier")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments",
        description="invfeat: how much deep features leak, and how to encrypt them.",
    )
    subparsers = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for name in GROUPS:
        importlib.import_module(f"experiments.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "handles_processes", False):
            return int(args.func(args) or 0)
        return int(on_process_0(args.func, args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except OSError as err:  # a path of the user's: missing, not a folder, no permission, full
        if err.filename is None:
            raise
        return fail(err)


def deliver_dropped_interrupts() -> None:
    """Installs a `sys.unraisablehook` under which a Ctrl-C still stops the command when it lands
    in a callback whose exceptions Python drops (JAX's garbage-collection hook): the SIGINT is
    sent again to the main thread, from another thread, once the callback has returned."""
    previous = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous(unraisable)
            return
        main_thread = threading.main_thread().ident
        again = threading.Timer(0.05, signal.pthread_kill, (main_thread, signal.SIGINT))
        again.daemon = True
        again.start()

    sys.unraisablehook = hook


def show_own_warnings_as_lines() -> None:
    """Shows the warnings invfeat issues (a file left out, a partial copy...) as one `warning:`
    line on stderr, as errors are shown, above any progress bar, where Python's format would add
    a source line of invfeat and write into TFDS's bars. Warnings from elsewhere keep Python's
    format."""
    previous = warnings.showwarning
    ours = tuple(f"{Path(p.__file__).parent}{os.sep}" for p in (invfeat, experiments))

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not category.__module__.startswith("invfeat.") and not filename.startswith(ours):
            previous(message, category, filename, lineno, file, line)
            return
        from tqdm import tqdm  # clears the bars TFDS and the fit loop draw, then redraws them

        tqdm.write(f"warning: {message}", file=file if file is not None else sys.stderr)

    warnings.showwarning = show


if __name__ == "__main__":
    deliver_dropped_interrupts()
    show_own_warnings_as_lines()
    status = main()
    if status == INTERRUPTED_EXIT:
        # A Ctrl-C can leave one of XLA's compiles running in its own thread; the interpreter's
        # teardown then frees what it uses and the process ends in a segfault. Finished work is
        # on disk (checkpoints are waited for), so end here, output flushed, without teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
