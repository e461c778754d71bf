"""A new user's mistakes on the command line: exit status 2 and a message naming the input, no
traceback; Ctrl-C stops with status 130 and says how to go on. Nothing here trains or renders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments import data as data_cli
from experiments import study as study_cli
from experiments.__main__ import main

REPO = Path(__file__).resolve().parents[1]


def _error(capsys) -> str:
    return capsys.readouterr().err


def test_interrupted_study_says_to_run_it_again(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study_cli, "run_study", interrupted)
    runs = tmp_path / "my runs"  # a space: the command printed must quote it
    argv = ["run", "tiny", "--runs-dir", str(runs), "--quiet"]
    monkeypatch.setattr(sys, "argv", ["experiments/__main__.py", *argv])
    assert main(argv) == 130
    err = _error(capsys)
    assert f"run `python -m experiments run tiny --runs-dir '{runs}' --quiet` again" in err


def test_a_ctrl_c_that_python_would_drop_still_stops_the_command():
    """A KeyboardInterrupt raised in a garbage-collection callback (JAX has one) goes to
    sys.unraisablehook and is dropped; under the command line's hook it is delivered again."""
    code = (
        "import gc, signal, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal\n"
        "from experiments.__main__ import deliver_dropped_interrupts\n"
        "deliver_dropped_interrupts()\n"
        "fired = []\n"
        "def callback(phase, info):\n"
        "    if not fired:\n"
        "        fired.append(phase)\n"
        "        raise KeyboardInterrupt\n"
        "gc.callbacks.append(callback)\n"
        "gc.collect()\n"
        "try:\n"
        "    time.sleep(20)\n"
        "    print('the Ctrl-C was dropped')\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.stdout.strip() == "stopped", done.stdout + done.stderr[-2000:]


def test_interrupted_command_exits_130_without_traceback(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_cli, "run_preview", interrupted)
    assert main(["data", "preview", "--dataset", "synth_market"]) == 130
    assert "interrupted" in _error(capsys)


def test_runs_dir_that_is_a_file(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    assert main(["run", "tiny", "--runs-dir", str(runs), "--quiet"]) == 2
    assert str(runs) in _error(capsys)


def test_build_without_manual_dir_is_an_error_with_the_instructions(tmp_path, capsys):
    argv = ["data", "build", "--dataset", "market1501", "--data-dir", str(tmp_path / "data")]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: market1501 needs --manual-dir FOLDER")
    assert "Market-1501-v15.09.15" in err  # the download instructions follow


def test_build_with_a_missing_manual_dir(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    argv = ["data", "build", "--dataset", "market1501", "--data-dir", str(tmp_path / "data")]
    assert main([*argv, "--manual-dir", str(missing)]) == 2
    assert f"--manual-dir {missing}" in _error(capsys)


def test_build_with_the_archive_as_manual_dir(tmp_path, capsys):
    archive = tmp_path / "Market-1501-v15.09.15.zip"
    archive.write_bytes(b"PK")
    argv = ["data", "build", "--dataset", "market1501", "--data-dir", str(tmp_path / "data")]
    assert main([*argv, "--manual-dir", str(archive)]) == 2
    assert f"--manual-dir {archive} is a file: unpack it" in _error(capsys)


def test_build_with_a_manual_dir_without_the_dataset(tmp_path, capsys):
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    (unpacked / "README.txt").write_text("something else")
    argv = ["data", "build", "--dataset", "market1501", "--data-dir", str(tmp_path / "data")]
    assert main([*argv, "--manual-dir", str(unpacked)]) == 2
    err = _error(capsys)
    assert "market1501" in err and "bounding_box_train" in err


@pytest.mark.parametrize("dataset", ["synth_market", "market1501"])
def test_build_with_an_unknown_config(dataset, tmp_path, capsys):
    argv = ["data", "build", "--dataset", dataset, "--data-dir", str(tmp_path), "--config", "x"]
    assert main([*argv, "--manual-dir", str(tmp_path)]) == 2
    err = _error(capsys)
    assert "--config" in err and ("128x64" in err if dataset.startswith("synth") else True)


@pytest.mark.parametrize("out", ["sheet.jpgx", "folder"])
def test_preview_refuses_what_is_not_a_png_path(out, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    path = tmp_path / out
    assert main(["data", "preview", "--dataset", "synth_market", "--out", str(path)]) == 2
    assert str(path) in _error(capsys)


def test_extract_refuses_a_batch_size_below_one(tmp_path, capsys):
    argv = ["features", "extract", "--dataset", "synth_market", "--victim", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", str(tmp_path / "f"), "--batch-size", "0"])
    assert exit_.value.code == 2
    assert "--batch-size" in _error(capsys)


@pytest.mark.parametrize(
    "script, option, value",
    [
        ("victim_train.py", "--epochs", "1"),  # the first epoch (the compile) is not timed
        ("victim.py", "--train-batch", "6"),  # PK batches of 4 images per identity
    ],
)
def test_benchmark_refuses_sizes_it_cannot_time(script, option, value):
    path = REPO / "benchmarks" / script
    done = subprocess.run(
        [sys.executable, str(path), option, value], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert option in done.stderr and "Traceback" not in done.stderr


def test_extract_to_an_existing_file_that_is_not_a_folder(tmp_path, capsys):
    import jax
    import numpy as np

    from experiments.configs import get_victim_config
    from invfeat.victims import TrainedVictim, inference_model, save_victim

    settings = {"num_train_identities": 2, "num_test_identities": 2, "train_per_identity": 2}
    config = get_victim_config("tiny", dataset="synth_market", data_settings=settings)
    model = inference_model(config)
    variables = model.init(
        jax.random.key(0, impl="rbg"), np.zeros((1, *config.input_size, 3), np.float32), False
    )
    save_victim(tmp_path / "victim", TrainedVictim(config, model, variables, {}))
    out = tmp_path / "taken"
    out.write_text("a file, not a folder")
    argv = ["features", "extract", "--dataset", "synth_market", "--victim", str(tmp_path / "victim"),
            "--out", str(out), "--splits", "query", "--data-dir", str(tmp_path / "data")]  # fmt: skip
    assert main(argv) == 2
    assert str(out) in _error(capsys)


def test_a_paper_study_names_every_missing_input_at_once(tmp_path, capsys):
    """Run with nothing given, a paper study said one missing input per attempt."""
    argv = ["run", "paper-market-bot", "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    assert main(argv) == 2
    err = _error(capsys)
    assert "--victim-features DIR" in err and "--perceptual-weights FILE.h5" in err
    assert err.count("error:") == 1 and not (tmp_path / "runs").exists()
    missing = tmp_path / "nowhere.h5"
    assert main([*argv, "--victim-features", str(tmp_path / "nothing"),
                 "--perceptual-weights", str(missing)]) == 2  # fmt: skip
    err = _error(capsys)
    assert str(tmp_path / "nothing" / "train.npz") in err and str(missing) in err


def test_a_missing_optional_package_is_an_error_line(tmp_path, monkeypatch, capsys):
    """The paper's GAN reads Keras weights with h5py (the `keras` extra): without it, the
    study stops before it starts, saying what to install."""
    features = tmp_path / "features"
    features.mkdir()
    for split in ("train", "query", "gallery"):
        (features / f"{split}.npz").write_bytes(b"")
    (tmp_path / "resnet50.h5").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` raises ImportError
    argv = ["run", "paper-market-bot", "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    argv += [
        "--victim-features",
        str(features),
        "--perceptual-weights",
        str(tmp_path / "resnet50.h5"),
    ]
    assert main(argv) == 2
    assert "pip install h5py" in _error(capsys)


def test_build_tells_how_to_rebuild_after_files_were_left_out(tmp_path, capsys):
    from helpers import fake_trees

    base = fake_trees.market_tree(tmp_path / "manual")
    (base / "bounding_box_test/0001_c2s1_000976_03.jpg").write_bytes(b"")  # interrupted copy
    argv = ["data", "build", "--dataset", "market1501", "--data-dir", str(tmp_path / "data")]
    with pytest.warns(UserWarning, match="0001_c2s1_000976_03.jpg: left out"):
        assert main([*argv, "--manual-dir", str(tmp_path / "manual")]) == 0
    out = capsys.readouterr().out
    assert "1 files left out" in out and "delete " + str(tmp_path / "data") in out
