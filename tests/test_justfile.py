"""The Justfile's recipes run with whatever Python the user has: the `.venv` that `just setup`
makes when it exists, else the `python` and `ruff` on PATH (an activated venv, CI's image); `just
test` passes its arguments to pytest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JUST = shutil.which("just") or str(Path(sys.executable).parent / "just")


def _dry_run(folder: Path, *recipe: str) -> str:
    """The commands `just RECIPE` would run in `folder` (a copy of the Justfile), one per line."""
    shutil.copy(REPO / "Justfile", folder / "Justfile")
    result = subprocess.run(
        [JUST, "--dry-run", *recipe], cwd=folder, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return "\n".join(line.rstrip() for line in result.stderr.splitlines())


@pytest.fixture
def just() -> str:
    if not Path(JUST).is_file():
        pytest.skip("just is not installed (the dev extra installs it)")
    return JUST


def test_recipes_use_the_python_on_path_without_a_project_venv(just, tmp_path):
    assert _dry_run(tmp_path, "test").splitlines() == ["python -m pytest"]
    assert _dry_run(tmp_path, "lint").splitlines() == ["ruff check .", "ruff format --check ."]
    assert _dry_run(tmp_path, "demo").splitlines() == ["python -m experiments demo"]
    bench = _dry_run(tmp_path, "bench").splitlines()
    assert len(bench) == 4 and all(line.startswith("python benchmarks/") for line in bench)


def test_recipes_use_the_project_venv_when_setup_made_one(just, tmp_path):
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    assert _dry_run(tmp_path, "test").splitlines() == [".venv/bin/python -m pytest"]
    assert _dry_run(tmp_path, "lint").splitlines() == [
        ".venv/bin/ruff check .",
        ".venv/bin/ruff format --check .",
    ]


def test_test_recipe_passes_its_arguments_to_pytest(just, tmp_path):
    out = _dry_run(tmp_path, "test", "tests/test_api.py", "-q")
    assert out.splitlines() == ["python -m pytest tests/test_api.py -q"]
