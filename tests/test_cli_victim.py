"""`python -m experiments victim ...` (experiments/victim.py): `victim eval` writes a table and
eval.json for a trained victim; of a workdir without a trained victim it says how to train one,
or gives the command that resumes an unfinished run (which the CLI takes back as the same
config); `victim train` refuses bad numbers before building data and warns about a GPU-sized
victim on CPU."""

from __future__ import annotations

import json
import shlex
import shutil

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


def test_cli_eval_writes_a_table(trained_victim, small_msmt_dir, tmp_path, capsys):
    workdir = tmp_path / "victim"
    shutil.copytree(trained_victim[0], workdir)  # eval writes eval.json beside the victim
    argv = ["victim", "eval", "--workdir", str(workdir), "--dataset", "synth_msmt",
            "--data-dir", str(small_msmt_dir)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| synth_msmt | in |" in out and "chance rank-1 |" in out
    record = json.loads((workdir / "eval.json").read_text())
    assert record["results"]["synth_msmt"]["num_queries"] == 4


@pytest.mark.parametrize("option", ["--epochs=0", "--seed=-1", "--epochs=two"])
def test_cli_rejects_bad_numbers_before_building_data(option, tmp_path, capsys):
    argv = ["victim", "train", "--config", "tiny", option, "--data-dir", str(tmp_path / "d"),
            "--workdir", str(tmp_path / "w")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument {option.split('=')[0]}" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "w").exists()
