"""Entry point: `python -m experiments <group> <command> [options]`.

Each command group lives in its own module of this package, exposing
`register(subparsers)`, which adds its parser and sets `func(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from experiments import INTERRUPTED_EXIT

# Command groups, in the order `--help` lists them; one module per group.
GROUPS = ("shufflebits", "data", "victim", "features", "study")


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
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
