"""The line every benchmark prints first: where it ran (backend, JAX version, devices, card).

`python benchmarks/device_info.py` prints it.
"""

from __future__ import annotations

import os
import platform

import jax


def describe() -> str:
    """'device: gpu backend, jax 0.x, 1 x NVIDIA H100 80GB HBM3 (79.1 GiB) [CudaDevice(id=0)]; ...'"""
    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    stats = devices[0].memory_stats() or {}  # None on CPU
    memory = f" ({stats['bytes_limit'] / 2**30:.1f} GiB)" if "bytes_limit" in stats else ""
    return (
        f"device: {jax.default_backend()} backend, jax {jax.__version__}, "
        f"{len(devices)} x {', '.join(kinds)}{memory} {devices}; "
        f"host {platform.machine()} {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    print(describe())
