"""`python -m experiments victim ...` (experiments/victim.py): `victim eval` of a workdir without a
trained victim says how to train one, or gives the command that resumes an unfinished run (which
the CLI takes back as the same config); `victim train` warns about a GPU-sized victim on CPU."""

from __future__ import annotations

import json
import shlex

import pytest

from experiments.__main__ import main
from experiments.configs import get_victim_config
from invfeat import victims as V


def test_eval_of_an_unfinished_run_gives_the_command_that_resumes_it(tmp_path, monkeypatch, capsys):
    workdir = tmp_path / "my victim"  # a space: the command must quote it
    workdir.mkdir()
    started = get_victim_config("tiny", epochs=1, seed=3)
    (workdir / V.CONFIG_FILE).write_text(json.dumps(started.record()))
    assert main(["victim", "eval", "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {workdir / V.SUMMARY_FILE}: no trained victim here"), err
    assert "its training has not finished: resume it with `" in err
    command = shlex.split(err.split("`")[1])
    assert command[:5] == ["python", "-m", "experiments", "victim", "train"]

    seen = {}

    def train(config, workdir, *, resume, data_dir):  # what the suggested command would run
        seen.update(config=config, workdir=workdir, resume=resume)
        raise ValueError("stop here")

    monkeypatch.setattr(V, "train_victim", train)
    assert main(command[3:]) == 2
    assert seen["config"].record() == started.record()
    assert seen["resume"] and seen["workdir"] == workdir


def test_eval_of_an_empty_workdir_says_how_to_train_one(tmp_path, capsys):
    assert main(["victim", "eval", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"train one with `python -m experiments victim train --workdir {tmp_path}`" in err


@pytest.mark.parametrize("config,warned", [("resnet50", True), ("tiny", False)])
def test_a_gpu_sized_victim_on_cpu_is_warned_about(tmp_path, monkeypatch, capsys, config, warned):
    def train(config, workdir, *, resume, data_dir):
        raise ValueError("stop here")

    monkeypatch.setattr(V, "train_victim", train)
    assert main(["victim", "train", "--config", config, "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert ("is sized for a GPU" in err) == warned, err
