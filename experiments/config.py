"""`config NAME [--set FIELD=VALUE ...]`: a study's resolved configuration, as JSON.

What it prints is what `run NAME` (or `demo`) with the same `--set` records in its run folder's
config.json, before the machine's paths (`--victim-features`, `--perceptual-weights`) are added.
"""

from __future__ import annotations

import argparse
import json

from experiments import fail
from experiments.configs import get_study
from experiments.configs.overrides import add_set_option, apply_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser(
        "config", help="print a named study's resolved configuration as JSON (see `list`)"
    )
    config.add_argument("name", help="a configuration name from `python -m experiments list`")
    add_set_option(config, "gan.learning_rate=1e-4 or attributes.epochs=3")
    config.set_defaults(func=show)


def show(args: argparse.Namespace) -> int:
    try:
        config = apply_overrides(get_study(args.name), args.overrides)
    except ValueError as err:  # an unknown name (listing the names), or a bad --set
        return fail(err)
    print(json.dumps(config.to_dict(), indent=2))
    return 0
