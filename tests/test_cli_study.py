"""The study commands (experiments/study.py): `list` names every study, and the paths given on
the command line (victim features, perceptual weights) reach the study's config."""

import argparse

import pytest

from experiments.__main__ import main
from experiments.configs import STUDIES, get_study
from experiments.study import with_paths


def test_list_names_every_study(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in STUDIES)


def test_paths_from_the_command_line_reach_the_config(tmp_path):
    args = argparse.Namespace(
        victim_features=tmp_path / "f", victim_weights=None, perceptual_weights=tmp_path / "r.h5"
    )
    config = with_paths(get_study("paper-market-sbs"), args)
    assert config.victim.features_dir == str(tmp_path / "f")
    assert config.gan.perceptual_weights == str(tmp_path / "r.h5")
    assert config.autoencoder.perceptual_weights is None  # pixel loss only: no perceptual net
    with pytest.raises(ValueError, match="trains its victim"):
        with_paths(get_study("tiny"), args)
