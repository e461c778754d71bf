"""The benchmark scripts (benchmarks/): each runs end to end at tiny sizes and prints its tables
(nothing is timed), refuses bad sizes and names with one usage error (exit 2) before any work, and
the helper modules say what they are when run as scripts.

benchmarks/gpu.sh runs on a lent GPU machine with minutes of device time and an image without
grain, tensorflow-datasets or array-record: a crash there wastes the loan. Each script it calls
runs here on CPU with those modules hidden and DeprecationWarnings as errors (as SMOKE=1 does);
the slow test runs `SMOKE=1 bash benchmarks/gpu.sh` itself.
"""

from __future__ import annotations

import importlib
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
HIDDEN = ("grain", "tensorflow_datasets", "array_record")


def _env(hidden_dir: Path | None) -> dict[str, str]:
    """One CPU device (as on the one-GPU machine), warnings as errors, modules hidden."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    path = ([str(hidden_dir)] if hidden_dir else []) + [str(REPO)]
    env.update(
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(path),
        PYTHONWARNINGS="error::DeprecationWarning",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="module")
def hidden_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Packages named like the modules the GPU image lacks, whose import fails."""
    root = tmp_path_factory.mktemp("hidden")
    for name in HIDDEN:
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(f"raise ImportError('{name} hidden')\n")
    return root


def _start(script: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}:\n{output[-4000:]}"
    assert output.startswith("device: cpu backend, jax "), output[:500]
    return output


def _table_rows(output: str, header_start: str) -> list[str]:
    """The rows (separator excluded) of the Markdown table whose header starts `header_start`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    assert set(lines[start + 1]) <= set("|-:"), lines[start + 1]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return rows


def test_gpu_scripts_at_tiny_size_without_grain_or_tfds(hidden_dir: Path, tmp_path: Path) -> None:
    """The four GPU benchmarks (run concurrently) print every table row, numbers in each cell."""
    env = _env(hidden_dir)
    procs = {
        "shufflebits": _start(
            "shufflebits.py",
            ["--mib", "1", "--repeats", "1", "--sample", "200"],  # --formulations: slow test
            env,
        ),
        "resnet": _start(
            "shufflebits_resnet.py",
            ["--config", "cpu-tiny", "--batch", "2", "--height", "32", "--width", "16"]
            + ["--repeats", "2", "--hlo-dir", str(tmp_path / "hlo")],
            env,
        ),
        "stream": _start(
            "stream.py",
            ["--mib", "1", "--width", "256", "--repeats", "1", "--warmup", "0"]
            + ["--serve-config", "cpu-tiny", "--serve-batch", "2"],
            env,
        ),
        "victim": _start(
            "victim.py",
            ["--configs", "cpu-tiny", "--dtypes", "bfloat16", "--train-batch", "4"]
            + ["--infer-batch", "4", "--repeats", "1", "--warmup", "1", "--matmul-size", "32"],
            env,
        ),
    }
    out = {name: _finish(proc) for name, proc in procs.items()}

    rows = _table_rows(out["shufflebits"], "| method | GB/s fresh |")
    names = [row.split(" | ")[0].strip("| ") for row in rows]
    assert len(rows) == 10, rows  # 6 library rows, 4 host rows
    assert "ShuffleBits static key (masked rotations, jit)" in names
    assert all("nan" not in row and "inf" not in row for row in rows), rows
    assert "vs the published string method" in out["shufflebits"]

    rows = _table_rows(out["resnet"], "| forward pass | median ms |")
    assert [row.split(" | ")[0] for row in rows] == [
        "| plain",
        "| + static-key ShuffleBits (fused)",
        "| + one-time ShuffleBits (fused)",
    ]
    assert all(len(row.split("|")) == 9 for row in rows), rows
    assert "added vs plain:" in out["resnet"]
    assert len(list((tmp_path / "hlo").glob("*.hlo.txt"))) == 3

    rows = _table_rows(out["stream"], "| method | best ms |")
    names = [row.split(" | ")[0].strip("| ") for row in rows]
    assert len(rows) == 7 and names[2] == "stream mode (StreamKey, ChaCha20 in jnp)", rows
    assert "every mode decrypts to the input bit for bit" in out["stream"]
    assert all("nan" not in row and "inf" not in row for row in rows), rows
    rows = _table_rows(out["stream"], "| serving step | best ms |")
    assert len(rows) == 3 and "stream mode adds " in out["stream"], rows

    rows = _table_rows(out["victim"], "| config | dtype | input |")
    assert len(rows) == 1 and rows[0].startswith("| cpu-tiny | bfloat16 | 32x16 |"), rows
    assert len(rows[0].split("|")) == 11 and "nan" not in rows[0], rows


def test_data_pipeline_at_tiny_size() -> None:
    """The loader benchmark (host only, needs grain and TFDS) builds its dataset and prints rates."""
    proc = _start(
        "data_pipeline.py",
        ["--images", "32", "--batches", "1", "--batch-size", "8", "--threads", "0", "1"],
        _env(None),
    )
    output = _finish(proc)
    rates = [line.split() for line in output.splitlines() if line.startswith(("array_", "in mem"))]
    assert len(rates) == 4 and all(float(v) > 0 for row in rates for v in row[-2:]), output


def test_gpu_sh_reports_failed_steps_and_exits_nonzero(tmp_path: Path) -> None:
    """A step that fails is named, the next still runs, and the exit status counts failures."""
    env = {**_env(None), "SMOKE": "1", "OUT": str(tmp_path), "PYTHON": "false"}
    result = subprocess.run(
        ["bash", "benchmarks/gpu.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 5, result.stdout + result.stderr
    assert result.stdout.count("!! step failed:") == 5, result.stdout
    assert "5 step(s) failed" in (tmp_path / "gpu.log").read_text()


def test_kernel_count_reads_gpu_hlo() -> None:
    """cuDNN convolutions and multi-output fusions (tuple shapes, with spaces) are kernels too."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from shufflebits_resnet import kernels
    finally:
        sys.path.remove(str(BENCHMARKS))
    hlo = """HloModule m
%fused (p0: f32[2,3]) -> (f32[2,3], f32[2]) {
  %p0 = f32[2,3]{1,0} parameter(0)
  %neg = f32[2,3]{1,0} negate(%p0)
}
ENTRY %main (p: f32[2,3]) -> f32[2,3] {
  %p = f32[2,3]{1,0} parameter(0)
  %conv = (bf16[8,4]{1,0}, u8[0]{0}) custom-call(%p), custom_call_target="__cudnn$convForward"
  %fusion.2 = (f32[2,3]{1,0}, /*index=1*/f32[2]{0}) fusion(%p), kind=kInput, calls=%fused
  ROOT %gte = f32[2,3]{1,0} get-tuple-element(%fusion.2), index=0
}
"""
    assert kernels(hlo) == [
        ("custom-call:__cudnn$convForward", "(bf16[8,4], u8[0])"),
        ("fusion:kInput", "(f32[2,3], f32[2])"),
    ]


@pytest.mark.slow
def test_gpu_sh_smoke_mode(tmp_path: Path) -> None:
    """`SMOKE=1 bash benchmarks/gpu.sh`: every step passes, every table is printed (~1-2 min)."""
    env = {**_env(None), "SMOKE": "1", "OUT": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", "benchmarks/gpu.sh"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    log = result.stdout
    assert result.returncode == 0, log[-6000:] + result.stderr
    assert "0 step(s) failed" in log and "!! step failed" not in log, log
    assert log.count("\n## ") == 5 and log.count("device: cpu backend") == 5, log
    assert log.count("ok   ") == 6 and "FAIL" not in log, log  # selftest: 6 checks
    assert len(_table_rows(log, "| method | GB/s fresh |")) == 16, log
    assert len(_table_rows(log, "| forward pass | median ms |")) == 3, log
    assert len(_table_rows(log, "| method | best ms |")) == 7, log
    assert len(_table_rows(log, "| serving step | best ms |")) == 3, log
    assert len(_table_rows(log, "| config | dtype | input |")) == 2, log  # fp32 and bf16
    assert (tmp_path / "gpu.log").read_text() == log


@pytest.mark.slow
def test_victim_train_at_tiny_size() -> None:
    """The engine benchmark (needs grain) trains the tiny victim and prints its row (~15 s)."""
    proc = _start(
        "victim_train.py",
        ["--configs", "tiny", "--epochs", "2", "--steps-per-epoch", "2", "--identities", "8"],
        _env(None),
    )
    rows = _table_rows(_finish(proc), "| config | precision |")
    assert len(rows) == 1 and rows[0].startswith("| tiny | float32 | 32x16 |"), rows


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
    ("stream", ["--mib", "0"], "--mib must be >= 1: got 0"),
    ("stream", ["--repeats", "0"], "--repeats must be >= 1: got 0"),
    ("stream", ["--warmup", "-1"], "--warmup must be >= 0: got -1"),
    ("stream", ["--mib", "1", "--width", "1000000"], "--mib 1 holds no row of --width 1000000"),
    ("stream", ["--serve-batch", "-1"], "--serve-batch must be >= 0 (0 skips the serving step)"),
    ("stream", ["--serve-config", "nope"], "argument --serve-config: invalid choice: 'nope'"),
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
    ("linkability", ["--study", "nope"], "argument --study: invalid choice: 'nope'"),
    (
        "linkability",
        ["--study", "tiny", "--runs-dir", "/nonexistent/runs"],
        "/nonexistent/runs/tiny holds no finished study (no report.json): run it first",
    ),
    ("ciphertext_inversion", ["--study", "nope"], "argument --study: invalid choice: 'nope'"),
    ("ciphertext_inversion", ["--pairs", "0"], "--pairs, --trials and --max-pairs must be >= 1"),
    (
        "ciphertext_inversion",
        ["--study", "tiny", "--runs-dir", "/nonexistent/runs"],
        "/nonexistent/runs/tiny holds no finished study (no report.json): run it first",
    ),
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
    the study ran elsewhere) is a usage error saying which, not a FileNotFoundError."""
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
