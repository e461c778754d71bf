"""`python -m experiments data build` (experiments/data.py): without --manual-dir an error line and
the instructions; with it, a table of images and identities per split, read back from disk when
the dataset is built already."""

from __future__ import annotations

import argparse

import pytest
from helpers import fake_trees

from experiments import data as data_cli


@pytest.mark.filterwarnings("ignore::invfeat.data.layouts.LayoutWarning")
def test_cli_build_prints_images_and_identities(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="group"))
    fake_trees.duke_tree(tmp_path / "manual")
    argv = ["data", "build", "--dataset", "dukemtmc_reid", "--data-dir", str(tmp_path / "data")]
    args = parser.parse_args(argv)
    assert args.func(args) == 2  # no --manual-dir: an error line, then the instructions
    assert "DukeMTMC-reID" in capsys.readouterr().err
    args = parser.parse_args([*argv, "--manual-dir", str(tmp_path / "manual")])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    lines = lines[[line.split()[:1] for line in lines].index(["split"]) + 1 :]
    rows = {line.split()[0]: line.split()[1:] for line in lines}
    assert rows == {"train": ["4", "2"], "query": ["2", "2"], "gallery": ["3", "3"]}
    # Built already: a second run reads the counts back from disk.
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines()[-3:] == lines
