"""The command line (experiments/) under two processes on 127.0.0.1 (two CPU devices each, gloo
collectives): `victim train` trains one victim together and writes each file once, `victim eval`
and `features extract` run on process 0 while the other waits for its exit status, and the study
refuses to start."""

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import multihost_cli_main, multihost_launch
from helpers.multihost_cli_main import TINY_WORLD

from experiments.configs import VICTIMS
from invfeat import shufflebits
from invfeat import victims as V
from invfeat.data.feature_files import read_features
from invfeat.victims.extraction import extract_features

MAIN = Path(multihost_cli_main.__file__)
TIMEOUT_S = 240


def _start(argv: list[str], cwd: Path) -> list[subprocess.Popen]:
    return multihost_launch.start(MAIN, argv, cwd=cwd)


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    return multihost_launch.finish(procs, TIMEOUT_S)


def _launch(argv: list[str], cwd: Path) -> list[tuple[int, str, str]]:
    return _finish(_start(argv, cwd))


def _tiny_victim(workdir: Path) -> V.TrainedVictim:
    """A saved, untrained tiny victim (initial weights): enough to serve features."""
    config = dataclasses.replace(VICTIMS["tiny"], data_settings=TINY_WORLD)
    model = V.inference_model(config)
    variables = model.init(jax.random.key(0), jnp.zeros((1, *config.input_size, 3)), train=False)
    victim = V.TrainedVictim(config, model, jax.device_get(variables), {})
    V.save_victim(workdir, victim)
    return victim


def test_study_refuses_several_processes(tmp_path):
    argv = ["run", "tiny", "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path)]
    for status, _, err in _launch(argv, tmp_path):
        assert status == 2, err[-3000:]
        assert err.startswith("error: the study (tiny) runs in one process; unset ")
        assert "JAX_NUM_PROCESSES" in err
    assert not (tmp_path / "runs").exists()


def test_extract_runs_on_process_0(tmp_path):
    victim = _tiny_victim(tmp_path / "victim")
    key_file, data = tmp_path / "secret.key", str(tmp_path / "data")
    argv = ["features", "extract", "--dataset", "synth_msmt", "--victim", str(tmp_path / "victim"),
            "--out", str(tmp_path / "cipher"), "--splits", "query", "--encrypt", "one-time",
            "--key", str(key_file), "--data-dir", data]  # fmt: skip
    (status0, out0, err0), (status1, out1, err1) = _launch(argv, tmp_path)
    assert (status0, status1) == (0, 0), err0[-3000:] + err1[-3000:]
    assert out0.count("created a new one-time key file") == 1 and "query:" in out0
    assert "query:" not in out1 and "key" not in out1  # process 1 did nothing, printed nothing
    # The one key file on disk decrypts what was written to the features of one process.
    plain = extract_features(victim, "synth_msmt", tmp_path / "plain", splits=["query"],
                             data_dir=data, data_settings=TINY_WORLD, progress=False)  # fmt: skip
    cipher = read_features(tmp_path / "cipher" / "query.npz", encrypted=True)
    reference = read_features(plain["query"])
    decrypted = shufflebits.decrypt(cipher.features, shufflebits.load_key(key_file), cipher.nonces)
    np.testing.assert_array_equal(
        np.asarray(decrypted).view(np.uint32), reference.features.view(np.uint32)
    )

    # An error on process 0 is the exit status of both; only process 0 prints it.
    (status0, _, err0), (status1, _, err1) = _launch(argv, tmp_path)
    assert (status0, status1) == (2, 2)
    assert "already exist" in err0 and "error:" not in err1


@pytest.mark.slow
def test_victim_eval_writes_once(tmp_path):
    _tiny_victim(tmp_path / "victim")
    argv = ["victim", "eval", "--workdir", str(tmp_path / "victim"), "--dataset", "synth_msmt",
            "--data-dir", str(tmp_path / "data")]  # fmt: skip
    (status0, out0, err0), (status1, out1, err1) = _launch(argv, tmp_path)
    assert (status0, status1) == (0, 0), err0[-3000:] + err1[-3000:]
    assert out0.count("| synth_msmt | in |") == 1 and "wrote" in out0
    assert "synth_msmt" not in out1 + err1
    assert (tmp_path / "victim" / "eval.json").is_file()


def _metric_steps(workdir: Path) -> list[int]:
    return [
        json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow
def test_victim_train_killed_and_resumed(tmp_path):
    """Two processes train one victim (4 devices), write every file once, and a run killed
    after its second checkpoint resumes, from both restarted, to the uninterrupted run's weights."""
    train = ["victim", "train", "--config", "tiny", "--epochs", "10", "--no-eval",
             "--data-dir", str(tmp_path / "data"), "--workdir"]  # fmt: skip
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    (status0, out0, err0), (status1, out1, err1) = _launch([*train, str(whole)], tmp_path)
    assert (status0, status1) == (0, 0), err0[-3000:] + err1[-3000:]
    assert out0.count("saved the victim") == 1 and '"devices": "4 x cpu"' in out0
    # Process 1 prints nothing of ours; gloo's own "connected to N peer ranks" lines, written
    # from several threads, can arrive split into pieces.
    assert [
        line for line in out1.splitlines() if "Gloo" not in line and "peer ranks" not in line
    ] == []
    assert "step/s" in err0 and "epoch 10 step 30/30" in err0  # progress and log: process 0
    assert "step/s" not in err1 and "epoch" not in err1 and "building" not in err1
    assert _metric_steps(whole) == list(range(3, 31, 3))
    for step in (27, 30):
        data_states = sorted(p.name for p in (whole / "checkpoints" / str(step) / "data").iterdir())
        assert data_states == ["commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]

    procs = _start([*train, str(killed)], tmp_path)
    deadline = time.monotonic() + TIMEOUT_S
    while not (killed / "checkpoints" / "6").is_dir():
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    for proc in reversed(procs):  # a host dies; the job is stopped
        os.killpg(proc.pid, signal.SIGKILL)
    _finish(procs)
    assert not (killed / V.SUMMARY_FILE).exists()
    (status0, out0, err0), (status1, _, err1) = _launch([*train, str(killed), "--resume"], tmp_path)
    assert (status0, status1) == (0, 0), err0[-3000:] + err1[-3000:]
    assert _metric_steps(killed) == list(range(3, 31, 3))
    assert (killed / V.VARIABLES_FILE).read_bytes() == (whole / V.VARIABLES_FILE).read_bytes()


def test_one_process_commands_run_once(tmp_path):
    """Any command that does not work across processes itself runs on process 0 alone: two
    processes launched with `shufflebits keygen` draw one key, not two racing for the file."""
    key_file = tmp_path / "static.key"
    (status0, out0, err0), (status1, out1, err1) = _launch(
        ["shufflebits", "keygen", "--out", str(key_file)], tmp_path
    )
    assert (status0, status1) == (0, 0), err0[-3000:] + err1[-3000:]
    assert str(key_file) in out0 and out1 == ""
    assert isinstance(shufflebits.load_key(key_file), shufflebits.Key)
