"""What the benchmarks that read a finished study share: its options, the run it names, and its
feature files read back beside the dataset's labels (not a benchmark itself)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from experiments.configs import STUDIES, get_study
from invfeat.data import builders
from invfeat.data.datasets import SPLITS, open_dataset_split
from invfeat.data.feature_files import read_features
from invfeat.data.pipeline import read_labels


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """--study, --runs-dir, --data-dir: where the finished study and its data are."""
    parser.add_argument("--study", default="demo", choices=sorted(STUDIES))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the study's --data-dir (default: $INVFEAT_DATA_DIR or ./data)",
    )


def finished_run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Any, Path]:
    """The study's config and its run folder; a usage error when it has not finished."""
    run = args.runs_dir / args.study
    if not (run / "report.json").exists():
        parser.error(f"{run} holds no finished study (no report.json): run it first")
    return get_study(args.study), run


def read_splits(
    parser: argparse.ArgumentParser, args: argparse.Namespace, config: Any, run: Path, kind: str
) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """split -> (features, labels) of the run's `kind` ("plain", or a protection: "static",
    "one-time", "stream") feature files, rows
    checked against the dataset's records; a usage error naming what is missing."""
    data_dir = args.data_dir or builders.default_data_dir()
    try:
        return {split: _split(config, run, data_dir, kind, split) for split in SPLITS}
    except (OSError, ValueError) as err:  # data not built there, a feature file missing: named
        parser.error(f"{err} (--data-dir: the folder the study ran on)")


def _split(config: Any, run: Path, data_dir: Path, kind: str, split: str) -> tuple:
    source = open_dataset_split(
        config.attack_dataset, split, data_dir=data_dir, data_settings=config.attack_data_settings
    )
    labels = read_labels(source)
    path = run / "features" / f"{kind}_{split}.npz"
    file = read_features(path, encrypted=kind != "plain")
    paths = [p.decode() if isinstance(p, bytes) else str(p) for p in file.paths]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in labels["file_name"]]
    if paths != names:
        sys.exit(f"error: {path} does not follow {data_dir}'s records")
    return np.asarray(file.features), labels
