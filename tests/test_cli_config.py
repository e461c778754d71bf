"""`python -m experiments config NAME`: a study's resolved configuration as JSON (what its run
folder's config.json records), with `--set` overrides shown; an unknown name or field is one
`error:` line (exit 2) that lists what exists."""

from __future__ import annotations

import json

import pytest

from experiments import USAGE_EXIT
from experiments.__main__ import main
from experiments.configs import STUDIES, get_study


@pytest.mark.parametrize("name", ["demo", "tiny", "paper-market-bot"])
def test_prints_the_resolved_config_as_json(name, capsys):
    assert main(["config", name]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == get_study(name).to_dict()
    assert out == json.dumps(get_study(name).to_dict(), indent=2) + "\n"
    assert err == ""


def test_overrides_show_in_the_printed_config(capsys):
    argv = ["config", "tiny", "--set", "gan.learning_rate=1e-4", "--set", "attributes.epochs=7"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["gan"]["learning_rate"] == 1e-4
    assert printed["attributes"]["epochs"] == 7
    expected = get_study("tiny").to_dict()
    expected["gan"]["learning_rate"] = 1e-4
    expected["attributes"]["epochs"] = 7
    assert printed == expected


def test_an_unknown_name_is_one_error_line_listing_the_studies(capsys):
    assert main(["config", "nope"]) == USAGE_EXIT == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: unknown study 'nope'")
    assert all(name in err for name in STUDIES)


def test_an_unknown_field_is_one_error_line_naming_the_fields(capsys):
    assert main(["config", "tiny", "--set", "gan.nope=1"]) == USAGE_EXIT
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: --set gan.nope=1:")
    assert "separate_batches" in err
