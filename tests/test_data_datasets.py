"""Datasets by name (invfeat/data/datasets.py): a dataset not built under the data dir is named as
such (`DatasetNotBuiltError`, which the CLI turns into the `data build` command), without TFDS's
log lines, and so is a dataset with no built split that features are extracted from."""

from __future__ import annotations

import logging

import pytest

from experiments import describe
from invfeat.data import builders
from invfeat.data.datasets import DatasetNotBuiltError, open_dataset_split
from invfeat.victims.extraction import extract_features


def test_a_dataset_never_built_there_is_named_without_tfds_noise(tmp_path, caplog):
    with caplog.at_level(logging.WARNING), pytest.raises(FileNotFoundError) as info:
        builders.open_split("dukemtmc_reid", "train", data_dir=tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'dukemtmc_reid'}: no such folder, dukemtmc_reid is not built there"
    )
    assert not caplog.records
    with pytest.raises(DatasetNotBuiltError) as info:
        open_dataset_split("dukemtmc_reid", "train", data_dir=tmp_path)
    assert "python -m experiments" not in str(info.value)  # the library names no command
    message = describe(info.value)
    assert "data build --dataset dukemtmc_reid" in message
    assert message.endswith("dukemtmc_reid is not built there")


def test_missing_dataset_is_a_clear_error(untrained_victim, tmp_path):
    with pytest.raises(FileNotFoundError, match="not built|no built split"):
        extract_features(
            untrained_victim, "market1501", tmp_path / "o", data_dir=tmp_path, progress=False
        )
