"""Every benchmark script refuses bad sizes and names with one usage error (exit 2), before any
work: a zero or negative count, an unknown config, study or precision crashed with a traceback
(ZeroDivisionError, StatisticsError, ValueError) or, for `--batch 0`, timed nothing silently.
The two helper modules say what they are when run as scripts."""

from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

REFUSED = [
    ("shufflebits", ["--mib", "1", "--repeats", "1", "--sample", "0"], "--sample must be >= 1"),
    ("shufflebits_resnet", ["--config", "nope"], "argument --config: invalid choice: 'nope'"),
    (
        "shufflebits_resnet",
        [
            "--config",
            "cpu-tiny",
            "--batch",
            "0",
            "--height",
            "32",
            "--width",
            "16",
            "--repeats",
            "1",
        ],
        "--batch must be >= 1: got 0",
    ),
    ("shufflebits_resnet", ["--config", "cpu-tiny", "--repeats", "0"], "--repeats must be >= 1"),
    ("data_pipeline", ["--images", "0"], "--images must be >= 1: got 0"),
    ("data_pipeline", ["--images", "8", "--batch-size", "0"], "--batch-size must be >= 1"),
    ("data_pipeline", ["--images", "8", "--threads", "0", "-1"], "--threads must be >= 0"),
    (
        "victim",
        ["--configs", "cpu-tiny", "--train-batch", "4", "--infer-batch", "4", "--repeats", "0"]
        + ["--warmup", "0", "--matmul-size", "8"],
        "--repeats must be >= 1: got 0",
    ),
    ("victim_train", ["--configs", "nope"], "--configs: unknown victim config 'nope'"),
    ("victim_train", ["--configs", "tiny", "--precisions", "fp8"], "--precisions: unknown ['fp8']"),
    ("victim_train", ["--configs", "tiny", "--identities", "2"], "--identities 2: tiny batches 4"),
    ("victim_train", ["--configs", "tiny", "--steps-per-epoch", "0"], "--steps-per-epoch must be"),
    ("attribute_encodings", ["--study", "nope"], "argument --study: invalid choice: 'nope'"),
]


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch):
    """Import benchmarks/NAME.py as the script does (its folder on sys.path) and call main with
    argv; returns the exit status and stderr."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def call(name: str, argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
        module = importlib.import_module(name)
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
        with pytest.raises(SystemExit) as exit_info:
            module.main()
        return exit_info.value.code, capsys.readouterr().err

    yield call
    for module in [m for m in sys.modules.values() if getattr(m, "__file__", None)]:
        if Path(module.__file__).parent == BENCHMARKS:  # `victim`, `shufflebits`: not ours
            del sys.modules[module.__name__]


@pytest.mark.parametrize(("name", "argv", "message"), REFUSED)
def test_bad_arguments_are_one_usage_error(script, capsys, name, argv, message):
    code, err = script(name, argv, capsys)
    assert code == 2
    assert f"{name}.py: error: " in err and message in err, err
    assert "Traceback" not in err


def test_attribute_encodings_names_the_data_dir_it_lacks(script, capsys, tmp_path, monkeypatch):
    """A finished run read against a data dir that lacks its dataset (the default ./data when
    the study ran elsewhere) is a usage error saying which; it was a FileNotFoundError."""
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    (tmp_path / "runs" / "tiny" / "report.json").write_text("{}")
    monkeypatch.setenv("INVFEAT_DATA_DIR", str(tmp_path / "elsewhere"))
    code, err = script(
        "attribute_encodings", ["--study", "tiny", "--runs-dir", str(tmp_path / "runs")], capsys
    )
    assert code == 2
    assert f"{tmp_path / 'elsewhere' / 'synth_market'}: no such folder" in err, err
    assert "(--data-dir: the folder the study ran on)" in err


def test_helper_modules_run_as_scripts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(BENCHMARKS / "benes.py"), run_name="__main__")
    assert exit_info.value.code == 2
    assert "shufflebits.py --formulations" in capsys.readouterr().err
    runpy.run_path(str(BENCHMARKS / "device_info.py"), run_name="__main__")
    assert capsys.readouterr().out.startswith("device: cpu backend, jax ")
