"""The tiny synthetic worlds that the shared data fixtures of tests/conftest.py build, and what a
test needs to open them again."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.configs import get_study, get_victim_config
from invfeat.data.datasets import open_dataset_split
from invfeat.data.pipeline import read_labels

# `tiny_market_dir`: synth_market with 3 train and 2 test identities, 2 images of each.
TINY_MARKET = {
    "num_train_identities": 3,
    "num_test_identities": 2,
    "train_per_identity": 2,
    "gallery_per_identity": 2,
}
# `untrained_victim`: the tiny victim config on that world.
TINY_MARKET_VICTIM = get_victim_config("tiny", dataset="synth_market", data_settings=TINY_MARKET)

# `small_msmt_dir`: synth_msmt with 8 train people x 2 images, 4 test people (1 query + 2
# gallery images each).
SMALL_MSMT = {
    "num_train_identities": 8,
    "num_test_identities": 4,
    "train_per_identity": 2,
    "gallery_per_identity": 2,
}
# `trained_victim`: the tiny victim config on that world (2 epochs x 3 steps, batch 4 x 2).
SMALL_MSMT_VICTIM = get_victim_config("tiny", data_settings=SMALL_MSMT)

# `tiny_study_data_dir`: the tiny study's attack data, synth_market at its settings.
TINY_STUDY = get_study("tiny")
TINY_STUDY_DATA = TINY_STUDY.attack_data_settings


def tiny_study_names(data_dir: Path, split: str) -> np.ndarray:
    """The file names of one split of the tiny study's attack data, in record order."""
    source = open_dataset_split(
        "synth_market", split, data_dir=data_dir, data_settings=TINY_STUDY_DATA
    )
    return read_labels(source)["file_name"]
