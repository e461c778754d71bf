"""Every named preset resolves to the config it is recorded with in tests/data/resolved_configs.json
(written once from commit 3489196, where the presets lived in the library and in
experiments/configs.py): a study's dict is its run folder's config.json, a victim's its
config.json less the architecture; the presets keep their order (`list`, `victim configs`)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from experiments.configs import STUDIES, VICTIMS, get_study, get_victim_config

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


def test_the_library_never_imports_experiments():
    importers = []
    for path in sorted((ROOT / "invfeat").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "experiments" or n.startswith("experiments.") for n in names):
                importers.append(str(path.relative_to(ROOT)))
    assert not importers
