"""Every named preset (experiments/configs/) resolves to the config it is recorded with in
tests/data/resolved_configs.json: a study's dict is its run folder's config.json, a victim's its
config.json less the architecture; the presets keep their order (`list`, `victim configs`);
victim presets round-trip through JSON; unknown names list the presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.configs import STUDIES, VICTIMS, get_study, get_victim_config
from invfeat import victims as V

ROOT = Path(__file__).resolve().parents[1]
RESOLVED = json.loads((ROOT / "tests" / "data" / "resolved_configs.json").read_text())


@pytest.mark.parametrize("name", list(RESOLVED["studies"]))
def test_each_study_resolves_as_recorded(name):
    assert get_study(name).to_dict() == RESOLVED["studies"][name]


@pytest.mark.parametrize("name", list(RESOLVED["victims"]))
def test_each_victim_preset_resolves_as_recorded(name):
    assert get_victim_config(name).to_dict() == RESOLVED["victims"][name]


def test_the_presets_are_those_recorded_in_their_order():
    assert list(STUDIES) == list(RESOLVED["studies"])
    assert list(VICTIMS) == list(RESOLVED["victims"])


def test_unknown_names_list_the_presets():
    with pytest.raises(ValueError, match=r"unknown study 'nope'; choose from \['demo'"):
        get_study("nope")
    with pytest.raises(ValueError, match=r"unknown victim config 'nope'; choose from \['cpu'"):
        get_victim_config("nope")


def test_config_json_round_trip_and_names():
    for config in VICTIMS.values():
        assert V.VictimConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    r50 = get_victim_config("resnet50")
    assert (r50.model, r50.input_size, r50.batch_size, r50.epochs) == (
        "resnet50",
        (256, 128),
        64,
        120,
    )
    assert r50.learning_rate == 3.5e-4 and r50.milestones == (40.0, 90.0)
    with pytest.raises(ValueError, match="unknown victim config"):
        get_victim_config("nope")
    with pytest.raises(ValueError, match="unknown VictimConfig fields"):
        V.VictimConfig.from_dict({"lr": 1})
