"""Built datasets by name: render a synthetic one on first use, open a split, list the splits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SPLITS = ("train", "query", "gallery")  # the splits every re-ID dataset has


class DatasetNotBuiltError(FileNotFoundError):
    """A split of `dataset` is not built in `data_dir`; the message says why."""

    def __init__(self, dataset: str, split: str, data_dir: Path, reason: object):
        super().__init__(
            f"dataset {dataset!r} split {split!r} is not built in {data_dir}: {reason}"
        )
        self.dataset, self.split, self.data_dir, self.reason = dataset, split, data_dir, reason


def _synth_config(data_settings: Mapping[str, Any]) -> Any:
    from invfeat.data.builders.synth import builder_config

    settings = dict(data_settings)
    if "size" in settings:
        settings["size"] = tuple(settings["size"])
    return builder_config(**settings)


def open_dataset_split(
    dataset: str,
    split: str,
    *,
    data_dir: str | Path | None = None,
    data_settings: Mapping[str, Any] | None = None,
) -> Sequence[Mapping[str, Any]]:
    """A built split as a random-access source; `data_settings` (SynthConfig fields) pick the
    builder config of a synthetic dataset."""
    from invfeat.data import builders

    kwargs: dict[str, Any] = {}
    if data_settings:
        if not dataset.startswith("synth_"):
            raise ValueError(f"data_settings apply to synthetic datasets only, not {dataset!r}")
        kwargs["config"] = _synth_config(data_settings)
    builders.builder_class(dataset)  # clear error for unknown names
    where = Path(data_dir) if data_dir is not None else builders.default_data_dir()
    try:
        return builders.open_split(dataset, split, data_dir=data_dir, **kwargs)
    except Exception as err:  # tfds raises several types for "not built" / "no such split"
        raise DatasetNotBuiltError(dataset, split, where, err) from err


def prepare_dataset(
    dataset: str,
    *,
    data_dir: str | Path | None = None,
    data_settings: Mapping[str, Any] | None = None,
) -> None:
    """Render a synthetic dataset if it is not built yet (a no-op when built; real datasets
    are left alone: opening them raises `DatasetNotBuiltError` until they are built)."""
    if not dataset.startswith("synth_"):
        return
    from invfeat.data import builders

    builders.build(dataset, data_dir=data_dir, config=_synth_config(data_settings or {}))


def dataset_splits(
    dataset: str,
    *,
    data_dir: str | Path | None = None,
    data_settings: Mapping[str, Any] | None = None,
) -> tuple[str, ...]:
    """The splits a built dataset has, in its builder's order (train, query, gallery, val...)."""
    from invfeat.data import builders

    found = []
    for split in builders.builder_class(dataset).SPLITS:
        try:
            open_dataset_split(dataset, split, data_dir=data_dir, data_settings=data_settings)
        except FileNotFoundError:
            continue
        found.append(split)
    if not found:
        raise FileNotFoundError(f"dataset {dataset!r} has no built split in {data_dir or 'data'}")
    return tuple(found)
