"""The one-axis ("data",) device mesh, its shardings, and global batches from per-process data.

Every device of every process sits on the one axis; batches are split along their leading axis
over it, parameters and optimizer state replicated unless `invfeat.train.state` shards them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ("data",) mesh over `devices` (default: all devices of all processes).

    Devices are ordered by (process, id) so that each process owns a contiguous slice of the
    batch axis, which `jax.make_array_from_process_local_data` relies on.
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: no devices given")
    devices.sort(key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the "data" axis, all other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, P())


def local_device_count(mesh: Mesh) -> int:
    """Number of this process's devices on `mesh`."""
    return sum(d.process_index == jax.process_index() for d in mesh.devices.flat)


def check_batch_size(global_batch_size: int, mesh: Mesh, name: str = "batch_size") -> None:
    """Raise a clear error unless the global batch splits evenly over the mesh and processes."""
    n_devices = mesh.devices.size
    n_processes = len({d.process_index for d in mesh.devices.flat})
    if global_batch_size <= 0 or global_batch_size % n_devices:
        raise ValueError(
            f"{name}={global_batch_size} must be a positive multiple of the number of devices "
            f"on the mesh ({n_devices} over {n_processes} process(es)); "
            f"e.g. use {max(1, global_batch_size // n_devices) * n_devices}"
        )


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """The part of `global_batch_size` this process must load (checked to divide evenly)."""
    check_batch_size(global_batch_size, mesh)
    return global_batch_size // mesh.devices.size * local_device_count(mesh)


def _is_device_data(x: Any) -> bool:
    return not (isinstance(x, np.ndarray) and x.dtype.kind in "OSU")


def shard_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Per-process batch (dict of numpy arrays) -> global arrays sharded along the batch axis.

    Each process passes only its own part; no data moves between processes. Host-only entries
    (string or object arrays such as "file_name") are dropped. The local
    batch of every process must have the same size, a multiple of its local device count.
    """
    n_local = local_device_count(mesh)
    sharding = batch_sharding(mesh)
    out = {}
    for key, value in batch.items():
        if not _is_device_data(value):
            continue
        value = np.asarray(value) if not isinstance(value, jax.Array) else value
        if value.ndim == 0:
            raise ValueError(
                f"shard_batch: batch[{key!r}] is a scalar; every entry needs a batch axis"
            )
        if value.shape[0] % n_local:
            raise ValueError(
                f"shard_batch: batch[{key!r}] has {value.shape[0]} rows on process "
                f"{jax.process_index()}, not a multiple of its {n_local} local devices"
            )
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out
