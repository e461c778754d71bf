"""The import rules of docs/ARCHITECTURE.md, read from the source: each part of invfeat imports
only the parts below it, and the library never imports `experiments`; `import invfeat` imports
no JAX and reaches its submodules lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import invfeat

ROOT = Path(invfeat.__file__).parent
FOUNDATION = {"invfeat.files", "invfeat.losses", "invfeat.metrics", "invfeat.shufflebits"}
BELOW_ATTACKS = FOUNDATION | {
    "invfeat.api",
    "invfeat.data",
    "invfeat.defences",
    "invfeat.models",
    "invfeat.train",
}
# part -> the parts it may import (besides itself and the package root's lazy helpers)
ALLOWED = {
    "invfeat.shufflebits": set(),
    "invfeat.files": set(),
    "invfeat.losses": set(),
    "invfeat.metrics": {"invfeat.losses"},
    "invfeat.selftest": {"invfeat.shufflebits"},
    "invfeat.models": set(),
    "invfeat.data": {"invfeat.files"},
    "invfeat.train": {"invfeat.files", "invfeat.losses", "invfeat.metrics"},
    "invfeat.api": {"invfeat.defences", "invfeat.models", "invfeat.shufflebits", "invfeat.train"},
    "invfeat.defences": {"invfeat.shufflebits"},
    "invfeat.victims": BELOW_ATTACKS,
    "invfeat.attacks": BELOW_ATTACKS,
    "invfeat.study": BELOW_ATTACKS | {"invfeat.attacks", "invfeat.victims"},
}


def part_of(module: str) -> str:
    """`invfeat.<first name>`: the package or top-level module a module belongs to."""
    return ".".join(module.split(".")[:2])


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "invfeat":  # `from invfeat import metrics`: the names are modules
                found |= {f"invfeat.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return found


MODULES = sorted(p for p in ROOT.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = ["invfeat", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_part_has_a_rule():
    parts = {part_of(module_name(p)) for p in MODULES} - {"invfeat"}
    assert parts == set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path):
    name = module_name(path)
    part = part_of(name)
    helpers = {"invfeat.lazy_submodules", "invfeat.lazy_exports"}
    imported = {part_of(m) for m in imports_of(path) if m.startswith("invfeat.")} - helpers
    assert not any(m == "experiments" or m.startswith("experiments.") for m in imports_of(path))
    if part == "invfeat":
        return  # the package root imports only the standard library
    assert imported - {part} <= ALLOWED[part], f"{name} imports {sorted(imported - {part})}"


def test_the_rule_catches_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from invfeat.study.run import run_study\nimport invfeat.attacks\n")
    assert {part_of(m) for m in imports_of(module)} == {"invfeat.study", "invfeat.attacks"}


def test_the_library_never_imports_experiments():
    importers = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "experiments" or n.startswith("experiments.") for n in names):
                importers.append(str(path.relative_to(ROOT)))
    assert not importers


def test_import_invfeat_reaches_submodules_lazily():
    code = (
        "import sys, invfeat\n"
        "assert 'jax' not in sys.modules, 'import invfeat imported jax'\n"
        "assert invfeat.losses.cosine_distance and invfeat.models.reid.ReIDModel\n"
        "assert invfeat.data.builders.build and invfeat.attacks.steps and invfeat.train.loop.fit\n"
        "assert 'losses' in dir(invfeat) and 'reid' in dir(invfeat.models)\n"
        "try:\n"
        "    invfeat.no_such_module\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_module' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


def command_lines_in(path: Path) -> list[int]:
    """Lines of `path` whose string constants (docstrings aside) spell out a CLI command."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and "python -m experiments" in node.value
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_names_no_command(path):
    """Messages that need a command come from `experiments` (e.g. `experiments.describe`)."""
    assert command_lines_in(path) == []


def test_a_command_in_a_message_is_found(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        '"""Run `python -m experiments demo`."""\nHINT = "python -m experiments demo"\n'
    )
    assert command_lines_in(module) == [2]
