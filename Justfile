# Recipes for invfeat; `just --list` shows them.
venv := ".venv"
# the venv `just setup` makes, else the python and ruff on PATH (e.g. another activated venv)
bin := if path_exists(justfile_directory() / venv / "bin/python") == "true" { venv + "/bin/" } else { "" }
py := bin + "python"

# create the venv and install the project with its dev extras
setup:
    python3.11 -m venv {{venv}}
    {{venv}}/bin/pip install -e '.[dev]'

# the test suite (what CI runs); arguments go to pytest, e.g. `just test tests/test_api.py`
test *args:
    {{py}} -m pytest {{args}}

# the main job on the embedded default
demo:
    {{py}} -m experiments demo

# speed tables (printed, never asserted)
bench:
    {{py}} benchmarks/shufflebits.py
    {{py}} benchmarks/data_pipeline.py
    {{py}} benchmarks/victim.py
    {{py}} benchmarks/victim_train.py

# ruff lint and format check (what CI runs)
lint:
    {{bin}}ruff check .
    {{bin}}ruff format --check .
