"""A study over seeds (invfeat/study/seeds.py): every seed field set, figures summarised with
their spread, verdicts counted."""

import dataclasses

import pytest

from experiments.configs import get_study
from invfeat.study import seeds


def test_with_seed_sets_every_seed_and_nothing_else():
    config = get_study("tiny")
    seeded = seeds.with_seed(config, 7)
    for name in seeds.SEEDED:
        assert getattr(seeded, name).seed == 7
        assert dataclasses.replace(getattr(seeded, name), seed=0) == getattr(config, name)
    assert seeded.attack_data_settings == config.attack_data_settings  # the data stays
    with pytest.raises(ValueError, match="non-negative"):
        seeds.with_seed(config, -1)


def test_a_file_victim_has_no_seed_to_set():
    paper = get_study("paper-market-bot")
    assert seeds.with_seed(paper, 3).victim == paper.victim
    assert seeds.with_seed(paper, 3).gan.seed == 3


def _report(rank1: float, leaks: bool) -> dict:
    test = {"figure": "gan: rank-1", "value": rank1, "low": 0.0, "high": 1.0, "chance": 0.001,
            "leaks": leaks}  # fmt: skip
    attr = {"figure": "floats: mean", "value": 0.6, "low": 0.5, "high": 0.7, "chance": 0.4,
            "leaks": True}  # fmt: skip
    per_attribute = dict(attr, figure="floats: gender")
    return {
        "victim": {"rank1": 0.7, "mAP": 0.6},
        "reference": {
            "attributes": {"tests": [per_attribute, attr], "leaks": True},
            "reconstruction": {"tests": [test], "leaks": leaks},
        },
        "protections": {"stream": {"reconstruction": {"tests": [test], "leaks": leaks}}},
    }


def test_aggregate_gives_each_figure_its_spread_and_counts_verdicts():
    summary = seeds.aggregate({2: _report(0.3, True), 0: _report(0.1, False)})
    assert summary["seeds"] == [0, 2]
    gan = summary["figures"]["stream / reconstruction / gan: rank-1"]
    assert gan["values"] == [0.1, 0.3]
    assert gan["mean"] == pytest.approx(0.2) and gan["sd"] == pytest.approx(0.1414, abs=1e-4)
    assert (gan["min"], gan["max"]) == (0.1, 0.3)
    assert "plaintext / attributes / floats: gender" not in summary["figures"]  # the mean stands
    assert summary["figures"]["plaintext / attributes / floats: mean"]["sd"] == 0.0
    assert summary["verdicts"]["stream / reconstruction"] == {"leaks": 1, "of": 2}
    assert summary["verdicts"]["plaintext / attributes"] == {"leaks": 2, "of": 2}
    assert "stream / attributes" not in summary["verdicts"]  # a cell not measured


def test_write_summary_refuses_an_unfinished_seed(tmp_path):
    with pytest.raises(FileNotFoundError, match="seed 1's study has not finished"):
        seeds.write_summary("x", {1: tmp_path / "x-seed1"}, tmp_path / "x-seeds")
