"""The `paper-*` studies hold the published attack hyper-parameters: every value transcribed from
the published scripts (tests/data/published_hyperparameters.json) that maps to a config field is
the value of that field in each resolved paper study, so a later change of a default cannot
drift from the paper silently; every transcribed value names where it was read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.configs import STUDIES, get_study

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = json.loads((ROOT / "tests" / "data" / "published_hyperparameters.json").read_text())
ENTRIES = PUBLISHED["entries"]
MAPPED = [e for e in ENTRIES if e["field"] is not None]
PAPER = [name for name in STUDIES if name.startswith("paper-")]


def at(config: dict[str, Any], path: str) -> Any:
    """The value at the dotted `path` of a resolved config dict."""
    node: Any = config
    for key in path.split("."):
        assert isinstance(node, dict) and key in node, f"{path}: no field {key!r}"
        node = node[key]
    return node


def test_there_are_paper_studies_and_transcribed_fields():
    assert len(PAPER) == 6
    assert len(MAPPED) >= 30


@pytest.mark.parametrize("name", PAPER)
@pytest.mark.parametrize("entry", MAPPED, ids=[e["field"] for e in MAPPED])
def test_paper_studies_hold_the_published_values(name, entry):
    value = at(get_study(name).to_dict(), entry["field"])
    assert value == entry["value"] and type(value) is type(entry["value"]), (
        f"{name}: {entry['field']} is {value!r}, published {entry['value']!r} ({entry['source']})"
    )


def test_every_entry_names_its_source_and_unmapped_ones_what_invfeat_does():
    for entry in ENTRIES:
        assert set(entry) <= {"field", "value", "source", "note"}, entry
        assert isinstance(entry["source"], str) and entry["source"].strip(), entry
        assert entry["source"].split(":")[0].split(" ")[0] in {
            "scripts/reconstruction_attributes.py",
            "scripts/reconstruction_GAN.py",
            "scripts/reconstruction_autoencoder.py",
            "scripts/reconstruction_utils.py",
            "scripts/evaluation.py",
            "README.md",
            "Keras",
        }, entry["source"]
        if entry["field"] is None:
            assert entry.get("note", "").strip(), entry


def test_each_field_is_transcribed_once():
    fields = [e["field"] for e in MAPPED]
    assert len(fields) == len(set(fields))
