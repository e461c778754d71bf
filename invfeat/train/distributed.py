"""Multi-process start-up through JAX's own runtime, and how the joined processes coordinate
(barriers, process 0 first or alone) through its coordination service.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
# How long a process waits for the others (process 0 building a dataset, extracting) at most.
BARRIER_TIMEOUT_S = 3 * 3600


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def initialize_from_env(*, auto: bool = False, timeout_s: int = 300) -> bool:
    """Join the process group described by the environment; True when multi-process.

    Reads `JAX_COORDINATOR_ADDRESS` (host:port of process 0's coordinator, e.g. 10.0.0.1:1234),
    `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` (0 .. JAX_NUM_PROCESSES-1); JAX itself reads the
    optional `JAX_LOCAL_DEVICE_IDS` (e.g. "0,1"). With none of them set it does nothing (a
    single-process run) unless `auto`, which lets JAX detect a cluster (SLURM, Open MPI, Cloud
    TPU, ...). On CPU the cross-process collectives use gloo. It must run before anything
    touches a JAX device.
    """
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
    """True on the process that writes logs, progress and the files every process would write
    the same (process 0)."""
    return jax.process_index() == 0


def requested_process_count() -> int:
    """The process count the environment asks for (1 when JAX_NUM_PROCESSES is unset), read
    without joining: lets a command that runs in one process refuse before it starts."""
    return _env_int(ENV_NUM_PROCESSES) if os.environ.get(ENV_NUM_PROCESSES) else 1


def _client() -> Any:
    client = jax._src.distributed.global_state.client  # what orbax's barriers use too
    if client is None:
        raise RuntimeError("several processes, but jax.distributed is not initialized")
    return client


_barriers = itertools.count()


def barrier(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
    """Wait until every process reaches this barrier (a no-op in a single process).

    Every process must pass the same barriers in the same order; names are numbered per
    process so a barrier can be passed many times."""
    if jax.process_count() > 1:
        _client().wait_at_barrier(f"invfeat/{name}/{next(_barriers)}", timeout_s * 1000)


@contextlib.contextmanager
def primary_first(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> Iterator[None]:
    """Process 0 runs the block, then the others do (e.g. build a dataset once on a shared
    disk, then open it everywhere); an error in process 0's block still lets the others go."""
    if not is_primary():
        barrier(name, timeout_s)
    try:
        yield
    finally:
        if is_primary():
            barrier(name, timeout_s)


def on_primary(fn: Callable[[], int], name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> int:
    """Run a process-local command `fn` (returning an exit status) on process 0 only; the other
    processes wait for it and return the same status, so each reports how the command ended.
    An exception in `fn` ends it with status 1 everywhere (and is raised on process 0)."""
    if jax.process_count() == 1:
        return fn()
    key = f"invfeat/{name}/{next(_barriers)}/exit_status"
    if not is_primary():
        return int(_client().blocking_key_value_get(key, timeout_s * 1000))
    status = 1
    try:
        status = fn()
    except KeyboardInterrupt:
        status = 130  # what a shell reports for Ctrl-C
        raise
    finally:
        _client().key_value_set(key, str(int(status)))
    return status
