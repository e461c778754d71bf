"""`python -m experiments ...`: a thin command line over the invfeat library.

What every command group shares: how a user's mistake ends a command (one `error:` line naming
the input, exit status 2), how Ctrl-C does, and the argparse type for bounded counts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

USAGE_EXIT = 2  # a user's mistake (a path, a name, a size); the message names the input
INTERRUPTED_EXIT = 130  # stopped by Ctrl-C (what a shell reports); finished work is kept


def fail(error: object) -> int:
    """Print `error: ...` on stderr; return the exit status of a user's mistake."""
    print(f"error: {error}", file=sys.stderr)
    return USAGE_EXIT


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= `minimum`, refused while parsing (before any work starts)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse's "invalid int value" for non-numbers
    return parse
