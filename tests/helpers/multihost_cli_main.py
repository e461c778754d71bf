"""One process of a multi-process CLI test: `python -m experiments ARGS...`, with the tiny victim
config on a tiny synthetic world (24 + 12 people, as the tiny study's victim).

Started by tests/test_cli_multihost.py with JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
JAX_PROCESS_ID set and two CPU devices per process:
    python tests/helpers/multihost_cli_main.py victim train --config tiny --workdir DIR ...
"""

import dataclasses
import sys

from experiments.__main__ import main
from experiments.configs import VICTIMS

TINY_WORLD = {"num_train_identities": 24, "num_test_identities": 12}

if __name__ == "__main__":
    VICTIMS["tiny"] = dataclasses.replace(VICTIMS["tiny"], data_settings=TINY_WORLD)
    sys.exit(main(sys.argv[1:]))
