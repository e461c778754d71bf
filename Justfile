# Recipes for invfeat; `just --list` shows them.
venv := ".venv"
py := venv + "/bin/python"

# create the venv and install the project with its dev extras
setup:
    python3.11 -m venv {{venv}}
    {{venv}}/bin/pip install -e '.[dev]'

# the test suite (what CI runs)
test:
    {{py}} -m pytest

# the main job on the embedded default
demo:
    {{py}} -m experiments demo

# speed tables (printed, never asserted)
bench:
    {{py}} benchmarks/shufflebits.py
    {{py}} benchmarks/data_pipeline.py
    {{py}} benchmarks/victim.py
    {{py}} benchmarks/victim_train.py

# ruff lint
lint:
    {{venv}}/bin/ruff check .
