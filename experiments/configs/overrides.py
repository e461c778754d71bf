"""`--set a.b=value`: a field of a resolved (nested, frozen dataclass) config, replaced by its
dotted path.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")
_WRONG = object()  # what `_convert` returns for a value that does not fit


class OverrideError(ValueError):
    """A `--set` that names no field, gives a value of the wrong type, or is malformed."""


def add_set_option(parser: argparse.ArgumentParser, example: str) -> None:
    """Add the repeatable `--set FIELD=VALUE` to `parser` (into `args.overrides`)."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="FIELD=VALUE",
        help=f"replace a field of the resolved config by its dotted path, e.g. {example}; "
        "repeatable; VALUE is JSON (numbers, true/false, null, lists) where it parses, else a "
        "string",
    )


def apply_overrides(config: T, assignments: Iterable[str]) -> T:
    """`config` with each `a.b=value` of `assignments` applied, in order.

    The value is read as JSON where it parses (numbers, true/false, null, lists, objects), else as
    the text itself; it must fit the field's type (a list becomes a tuple, an int a float where
    the field asks for one), and the config's own checks run on the result. Mistakes raise
    `OverrideError` naming the assignment: an unknown field (with the fields at that level) or a
    value of the wrong type.
    """
    for assignment in assignments:
        path, sep, text = assignment.partition("=")
        if not sep or not all(path.split(".")):
            raise OverrideError(
                f"--set {assignment}: expected FIELD=VALUE, a dotted path to a field "
                "(e.g. gan.learning_rate=1e-4)"
            )
        try:
            config = _replace(config, path.split("."), text, "")
        except ValueError as err:  # OverrideError, or the config's own checks refused it
            raise OverrideError(f"--set {assignment}: {err}") from None
    return config


def _replace(node: Any, keys: list[str], text: str, where: str) -> Any:
    """`node` (at the dotted path `where`) with the field at `keys` set from `text`."""
    label = f"{where} ({type(node).__name__})" if where else type(node).__name__
    names = [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []
    if not keys:
        raise OverrideError(f"{label} is a config: set one of its fields: {', '.join(names)}")
    if not names:
        raise OverrideError(f"{where} is a value, not a config with fields: set it whole")
    key, rest = keys[0], keys[1:]
    if key not in names:
        raise OverrideError(f"{label} has no field {key!r}; its fields: {', '.join(names)}")
    here = f"{where}.{key}" if where else key
    current = getattr(node, key)
    if rest or dataclasses.is_dataclass(current):
        value = _replace(current, rest, text, here)
    else:
        value = _parse(text, typing.get_type_hints(type(node))[key], here)
    return dataclasses.replace(node, **{key: value})


def _parse(text: str, hint: Any, where: str) -> Any:
    """`text` as a value of type `hint`: JSON where it parses and fits, else the text itself."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    for candidate in (value, text):
        converted = _convert(candidate, hint)
        if converted is not _WRONG:
            return converted
    raise OverrideError(f"{where} takes {_type_name(hint)}, got {text!r} ({type(value).__name__})")


def _convert(value: Any, hint: Any) -> Any:
    """`value` as a `hint` (lists become tuples, ints floats where asked), or `_WRONG`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        converted = (_convert(value, arm) for arm in args)
        return next((c for c in converted if c is not _WRONG), _WRONG)
    if hint is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if number else _WRONG
    if hint is int and isinstance(value, bool):
        return _WRONG
    if origin in (tuple, list):
        if not isinstance(value, list):
            return _WRONG
        items = args[:1] * len(value) if origin is list or args[1:] == (...,) else args
        if len(items) != len(value):
            return _WRONG
        converted = [_convert(v, item) for v, item in zip(value, items, strict=True)]
        return _WRONG if any(c is _WRONG for c in converted) else origin(converted)
    if origin is dict:
        if not isinstance(value, dict):
            return _WRONG
        converted = {k: _convert(v, args[1]) for k, v in value.items()}
        return _WRONG if any(c is _WRONG for c in converted.values()) else converted
    if hint is type(None):
        return None if value is None else _WRONG
    return value if isinstance(hint, type) and isinstance(value, hint) else _WRONG


def _type_name(hint: Any) -> str:
    """`hint` as written in the code: `int`, `tuple[int, int] | None`."""
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
