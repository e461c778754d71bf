"""Multi-process start-up through JAX's own runtime.

`initialize_from_env()` calls `jax.distributed.initialize` when these variables are set:

- `JAX_COORDINATOR_ADDRESS`  host:port of process 0's coordinator (e.g. 10.0.0.1:1234)
- `JAX_NUM_PROCESSES`        number of processes (an int)
- `JAX_PROCESS_ID`           this process's id, 0 .. JAX_NUM_PROCESSES-1
- `JAX_LOCAL_DEVICE_IDS`     optional, read by JAX itself (e.g. "0,1")

With none of them set it does nothing (a single-process run) unless `auto=True`, which lets JAX
detect a cluster (SLURM, Open MPI, Cloud TPU, ...). On CPU the cross-process collectives use gloo
(`jax_cpu_collectives_implementation`). It must run before anything touches a JAX device.
"""

from __future__ import annotations

import os

import jax

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def initialize_from_env(*, auto: bool = False, timeout_s: int = 300) -> bool:
    """Join the process group described by the environment; True when multi-process."""
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    names = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
    present = [n for n in names if os.environ.get(n)]
    if not present and not auto:
        return False
    if present and len(present) < len(names):
        missing = ", ".join(n for n in names if n not in present)
        raise ValueError(f"distributed set-up: {', '.join(present)} set but {missing} missing")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if present:
        num_processes = _env_int(ENV_NUM_PROCESSES)
        process_id = _env_int(ENV_PROCESS_ID)
        if not 0 <= process_id < num_processes:
            raise ValueError(
                f"{ENV_PROCESS_ID}={process_id} is outside 0..{num_processes - 1} "
                f"({ENV_NUM_PROCESSES}={num_processes})"
            )
        jax.distributed.initialize(
            coordinator_address=os.environ[ENV_COORDINATOR],
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=timeout_s,
        )
    else:
        jax.distributed.initialize(initialization_timeout=timeout_s)
    return jax.process_count() > 1


def is_primary() -> bool:
    """True on the process that writes logs and progress (process 0)."""
    return jax.process_index() == 0
