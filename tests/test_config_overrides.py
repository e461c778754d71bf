"""`--set a.b=value` on `demo`, `run NAME` and `victim train`: the resolved config with a field
replaced by its dotted path (the study's config.json shows it), or one `error:` line (exit 2)
naming an unknown field with the fields at its level, or a value of the wrong type."""

from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any

import pytest

from experiments.__main__ import main
from experiments.configs import get_study, get_victim_config
from experiments.configs.overrides import OverrideError, apply_overrides
from invfeat import victims as V
from invfeat.study import run as study_run


@dataclasses.dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    sizes: tuple[int, ...] = (1, 2)
    shape: tuple[int, int] | None = None
    label: str = "a"
    on: bool = False


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner = Inner()
    steps: int = 3
    extra: dict[str, Any] | None = None


def test_values_are_json_where_they_parse_and_fit_the_field():
    changed = apply_overrides(
        Outer(),
        [
            "inner.rate=1",
            "inner.sizes=[4, 5, 6]",
            "inner.shape=[8,4]",
            "inner.label=12",
            "inner.on=true",
            "steps=7",
            'extra={"size": [2, 1]}',
        ],
    )
    assert changed == Outer(Inner(1.0, (4, 5, 6), (8, 4), "12", True), 7, {"size": [2, 1]})
    assert isinstance(changed.inner.rate, float)
    assert apply_overrides(changed, ["inner.shape=null", "extra=null"]) == Outer(
        Inner(1.0, (4, 5, 6), None, "12", True), 7
    )
    assert apply_overrides(Outer(), ["inner.label=b c", "inner.label=d"]).inner.label == "d"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (
            "inner.rat=1",
            "inner (Inner) has no field 'rat'; its fields: rate, sizes, shape, label, on",
        ),
        ("step=1", "Outer has no field 'step'; its fields: inner, steps, extra"),
        ("steps=2.5", "steps takes int, got '2.5' (float)"),
        ("steps=true", "steps takes int, got 'true' (bool)"),
        ("inner.on=1", "inner.on takes bool, got '1' (int)"),
        ("inner.shape=[1,2,3]", "inner.shape takes tuple[int, int] | None, got '[1,2,3]' (list)"),
        ("inner.sizes=[1,x]", "inner.sizes takes tuple[int, ...], got '[1,x]' (str)"),
        ("inner=1", "inner (Inner) is a config: set one of its fields: rate, sizes"),
        ("steps.x=1", "steps is a value, not a config with fields"),
        ("steps", "expected FIELD=VALUE"),
        ("inner..rate=1", "expected FIELD=VALUE"),
    ],
)
def test_a_wrong_assignment_is_named(assignment, message):
    with pytest.raises(OverrideError) as info:
        apply_overrides(Outer(), [assignment])
    assert str(info.value).startswith(f"--set {assignment}: {message}"), str(info.value)


def test_the_configs_own_checks_run_on_the_result():
    with pytest.raises(OverrideError, match=r"^--set gan.learning_rate=-1: .*must be positive"):
        apply_overrides(get_study("tiny"), ["gan.learning_rate=-1"])


def _stop(*args, **kwargs):
    raise ValueError("stopped after config.json")


@pytest.mark.parametrize("command", [["demo"], ["run", "tiny"]])
def test_an_override_reaches_the_studys_config_json(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(study_run, "build_data", _stop)  # the first stage: nothing is trained
    sets = ["gan.learning_rate=1e-4", "victim.epochs=3", "attributes.epochs=2"]
    argv = [*command, "--runs-dir", str(tmp_path), "--quiet"]
    assert main(argv + [arg for s in sets for arg in ("--set", s)]) == 2
    assert capsys.readouterr().err == "error: stopped after config.json\n"
    name = command[-1]
    expected = get_study(name).replace_nested(
        gan={"learning_rate": 1e-4}, victim={"epochs": 3}, attributes={"epochs": 2}
    )
    written = json.loads((tmp_path / name / "config.json").read_text())
    assert written == expected.to_dict() != get_study(name).to_dict()


@pytest.mark.parametrize(
    ("assignment", "error"),
    [
        ("gan.learnin_rate=1e-4", "gan (ReconstructionConfig) has no field 'learnin_rate'; "
         "its fields: kind, pixel, feature, "),
        ("victim.epochs=three", "victim.epochs takes int, got 'three' (str)"),
    ],
)  # fmt: skip
def test_a_bad_override_is_one_error_line(assignment, error, tmp_path, capsys):
    argv = ["run", "tiny", "--runs-dir", str(tmp_path / "runs"), "--set", assignment]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --set {assignment}: {error}") and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def _train_config(argv: list[str], monkeypatch) -> V.VictimConfig:
    """The config `victim train ARGV` would train."""
    seen = {}

    def train(config, workdir, *, resume, data_dir):
        seen["config"] = config
        raise ValueError("stop here")

    monkeypatch.setattr(V, "train_victim", train)
    assert main(["victim", "train", *argv]) == 2
    return seen["config"]


def test_victim_train_applies_set_after_its_options(tmp_path, monkeypatch, capsys):
    argv = ["--config", "tiny", "--epochs", "2", "--seed", "5", "--workdir", str(tmp_path)]
    argv += ["--set", "learning_rate=0.01", "--set", "milestones=[1]", "--set", "seed=6"]
    config = _train_config(argv, monkeypatch)
    assert config == get_victim_config(
        "tiny", epochs=2, seed=6, learning_rate=0.01, milestones=(1.0,), dataset="synth_msmt"
    )
    assert main(["victim", "train", "--config", "tiny", "--set", "victim.epochs=3"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: --set victim.epochs=3: VictimConfig has no field 'victim'; its")


def test_the_resume_command_carries_the_overrides(tmp_path, monkeypatch, capsys):
    started = apply_overrides(
        get_victim_config("tiny", epochs=1),
        ["learning_rate=0.01", 'data_settings={"size": [32, 16]}'],
    )
    (tmp_path / V.CONFIG_FILE).write_text(json.dumps(started.record()))
    assert main(["victim", "eval", "--workdir", str(tmp_path)]) == 2
    command = shlex.split(capsys.readouterr().err.split("`")[1])
    assert command.count("--set") == 2
    assert _train_config(command[5:], monkeypatch).record() == started.record()


@pytest.mark.parametrize("command", [["demo"], ["run", "tiny"], ["victim", "train"]])
def test_help_names_set(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    assert "--set FIELD=VALUE" in capsys.readouterr().out
