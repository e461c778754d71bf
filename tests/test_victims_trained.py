"""Victim files (invfeat/victims/trained.py): victim.json + victim.msgpack carry their format and
load back; every bad file is refused naming it, and so is a victim saved by another definition of
its model."""

from __future__ import annotations

import dataclasses
import json

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.worlds import SMALL_MSMT_VICTIM as TINY

from experiments.configs import get_victim_config
from invfeat import victims as V
from invfeat.models import reid


@pytest.fixture(scope="module")
def saved_victim(tmp_path_factory):
    """A cpu-tiny victim with zero variables, saved (no init program compiled)."""
    config = get_victim_config("tiny")
    model = V.inference_model(config)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *config.input_size, 3)), train=False)
    )
    variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    workdir = tmp_path_factory.mktemp("victim")
    V.save_victim(workdir, V.TrainedVictim(config, model, variables, {"steps": 0}))
    return workdir


def _corrupt_summary(record):
    return {
        "not json": b"{config",
        "a list": b"[1, 2]",
        "no config": json.dumps({k: v for k, v in record.items() if k != "config"}).encode(),
        "unknown field": json.dumps(record | {"config": record["config"] | {"lr": 1}}).encode(),
        "unknown model": json.dumps(
            record | {"config": record["config"] | {"model": "x"}}
        ).encode(),
        "format 2": json.dumps(record | {"format": 2}).encode(),
    }


@pytest.mark.parametrize(
    "case, file, message",
    [
        ("not json", "victim.json", "unreadable JSON"),
        ("a list", "victim.json", "no 'config'"),
        ("no config", "victim.json", "no 'config'"),
        ("unknown field", "victim.json", r"unknown VictimConfig fields \['lr'\]"),
        ("unknown model", "victim.json", "unknown victim config 'x'"),
        ("format 2", "victim.json", "victim file format 2, this invfeat reads format 1"),
        ("garbage", "victim.msgpack", "not a victim's variables"),
        ("empty", "victim.msgpack", "not a victim's variables"),
        ("other tree", "victim.msgpack", "do not match model 'cpu-tiny'"),
    ],
)
def test_bad_victim_files_are_refused_naming_the_file(saved_victim, tmp_path, case, file, message):
    for name in (V.SUMMARY_FILE, V.VARIABLES_FILE):
        (tmp_path / name).write_bytes((saved_victim / name).read_bytes())
    record = json.loads((tmp_path / V.SUMMARY_FILE).read_text())
    variables = {
        "garbage": b"\xc1\x00",
        "empty": b"",
        "other tree": flax.serialization.msgpack_serialize({"params": {"a": np.zeros(3)}}),
    }
    content = (_corrupt_summary(record) | variables)[case]
    (tmp_path / file).write_bytes(content)
    with pytest.raises(V.VictimFileError, match=message) as info:
        V.load_victim(tmp_path)
    assert str(tmp_path / file) in str(info.value)


def test_victim_files_carry_their_format_and_load_back(saved_victim):
    assert json.loads((saved_victim / V.SUMMARY_FILE).read_text())["format"] == V.FORMAT_VERSION
    loaded = V.load_victim(saved_victim)
    assert loaded.config == get_victim_config("tiny") and loaded.summary == {"steps": 0}


def test_a_victim_of_another_architecture_is_refused(trained_victim, tmp_path, monkeypatch):
    """Same parameter shapes, another model behind the name (e.g. an added input resize)."""
    workdir, _ = trained_victim
    for name in (V.SUMMARY_FILE, V.VARIABLES_FILE):
        (tmp_path / name).write_bytes((workdir / name).read_bytes())
    changed = dataclasses.replace(reid.CONFIGS[TINY.model], backbone_size=(64, 32))
    monkeypatch.setitem(reid.CONFIGS, TINY.model, changed)
    with pytest.raises(ValueError, match="another definition of model 'cpu-tiny'"):
        V.load_victim(tmp_path)
