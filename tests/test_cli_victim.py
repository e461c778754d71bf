"""Paths a user takes from the command line that stopped with a misleading or noisy error.

`victim eval` on a workdir whose training was interrupted said "train one with `victim train
--workdir W`", which refuses a workdir holding a run; it now gives the resume command, which
the CLI takes back as the same config. Opening a dataset never built under the data dir went
through TFDS, which logged a WARNING line and raised a KeyError whose text ended the message;
it is now a FileNotFoundError naming the folder."""

from __future__ import annotations

import json
import logging
import shlex

import pytest

from experiments import describe
from experiments.__main__ import main
from experiments.configs import get_victim_config
from invfeat import victims as V
from invfeat.data import builders
from invfeat.data.datasets import DatasetNotBuiltError, open_dataset_split


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


def test_a_dataset_never_built_there_is_named_without_tfds_noise(tmp_path, caplog):
    with caplog.at_level(logging.WARNING), pytest.raises(FileNotFoundError) as info:
        builders.open_split("dukemtmc_reid", "train", data_dir=tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'dukemtmc_reid'}: no such folder, dukemtmc_reid is not built there"
    )
    assert not caplog.records
    with pytest.raises(DatasetNotBuiltError) as info:
        open_dataset_split("dukemtmc_reid", "train", data_dir=tmp_path)
    assert "python -m experiments" not in str(info.value)  # the library names no command
    message = describe(info.value)
    assert "data build --dataset dukemtmc_reid" in message
    assert message.endswith("dukemtmc_reid is not built there")


@pytest.mark.parametrize("config,warned", [("resnet50", True), ("tiny", False)])
def test_a_gpu_sized_victim_on_cpu_is_warned_about(tmp_path, monkeypatch, capsys, config, warned):
    def train(config, workdir, *, resume, data_dir):
        raise ValueError("stop here")

    monkeypatch.setattr(V, "train_victim", train)
    assert main(["victim", "train", "--config", config, "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert ("is sized for a GPU" in err) == warned, err
