"""Registry of re-ID dataset builders: build one by name, open a built split as a data source.

Real datasets (`real.py`, manual download): market1501, dukemtmc_reid, msmt17; synthetic worlds
(`synth.py`, the embedded default): synth_market, synth_duke, synth_msmt. Built datasets live
under `--data-dir`, else $INVFEAT_DATA_DIR, else ./data.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import pathlib
import shutil
import warnings
from collections.abc import Sequence
from typing import Any

import tensorflow_datasets as tfds

from invfeat.data.builders import real  # noqa: F401  (registers the real builders)
from invfeat.data.builders.common import (
    REGISTRY,
    ReidBuilder,
    ReidRecord,
    attributes_from_metadata,
    decode_image,
    encode_image,
    reid_features,
)
from invfeat.files import make_folder

BUILD_LOCK = ".build.lock"

# Each registers its builders on import, so `REGISTRY` is complete once this module is imported;
# a module that does not exist is skipped, one that fails to import raises.
_OPTIONAL_MODULES = ("invfeat.data.builders.synth",)
for _module in _OPTIONAL_MODULES:
    try:
        importlib.import_module(_module)
    except ModuleNotFoundError as _e:
        if _e.name != _module:
            raise

DATA_DIR_ENV = "INVFEAT_DATA_DIR"

__all__ = [
    "REGISTRY",
    "ReidBuilder",
    "ReidRecord",
    "attributes_from_metadata",
    "build",
    "builder",
    "builder_class",
    "decode_image",
    "default_data_dir",
    "encode_image",
    "open_split",
    "reid_features",
]


def default_data_dir() -> pathlib.Path:
    """$INVFEAT_DATA_DIR if set, else ./data (relative to the working directory)."""
    return pathlib.Path(os.environ.get(DATA_DIR_ENV) or "data")


def builder_class(name: str) -> type[ReidBuilder]:
    """The registered builder class called `name`; ValueError listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(REGISTRY)}") from None


def builder(
    name: str, *, data_dir: str | os.PathLike | None = None, **builder_kwargs: Any
) -> ReidBuilder:
    """An instance of the builder `name` over `data_dir` (default: `default_data_dir()`)."""
    data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    return builder_class(name)(data_dir=os.fspath(data_dir), **builder_kwargs)


def build(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    **builder_kwargs: Any,
) -> ReidBuilder:
    """Builds dataset `name` (no-op if already built) and returns its builder.

    One build at a time per dataset and config: a build holds an exclusive lock on
    `.build.lock` beside the version folders, and a second one waits for it, then finds the
    dataset built. Under the lock, the `incomplete.*` folders that TFDS leaves when a build is
    killed can only be such leftovers: they are removed, each with a warning.
    """
    b = builder(name, data_dir=data_dir, **builder_kwargs)
    config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir is not None else None
    )
    root = pathlib.Path(b.data_dir).parent
    make_folder(root)
    with open(root / BUILD_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for leftover in sorted(root.glob("incomplete.*")):
            shutil.rmtree(leftover, ignore_errors=True)
            warnings.warn(f"{leftover}: removed what a killed build of {name} left", stacklevel=2)
        b.download_and_prepare(download_config=config)
    return b


def open_split(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    **builder_kwargs: Any,
) -> Sequence[dict[str, Any]]:
    """Random-access source of a built split (`tfds.data_source`); records as numpy/bytes.

    FileNotFoundError naming the folder when nothing of `name` is built under `data_dir`.
    """
    builder_class(name)  # clear error for unknown names
    data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    if not (data_dir / name).is_dir():  # before TFDS, which logs a warning and raises KeyError
        raise FileNotFoundError(f"{data_dir / name}: no such folder, {name} is not built there")
    return tfds.data_source(
        name,
        split=split,
        data_dir=os.fspath(data_dir),
        download=False,
        builder_kwargs=builder_kwargs or None,
    )
