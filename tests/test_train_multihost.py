"""Two processes on 127.0.0.1 (two CPU devices each, gloo collectives) train like one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import train_toy as toy

from invfeat.train import mesh, state

NUM_STEPS = 4
WORKER = Path(__file__).with_name("multihost_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_process_params() -> dict[str, np.ndarray]:
    m = mesh.make_mesh()
    tx = optax.adam(1e-2)
    st = state.create_train_state(toy.init_fn, tx, m, seed=3)
    step = jax.jit(state.make_train_step(toy.make_loss_fn(), tx), donate_argnums=0)
    for position in range(NUM_STEPS):
        st, _ = step(st, mesh.shard_batch(toy.global_batch(position, 16), m))
    leaves = jax.tree.leaves_with_path(jax.device_get(st))
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def test_two_processes_match_one(tmp_path):
    port = _free_port()
    procs = []
    for pid in range(2):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": str(pid),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(tmp_path), str(NUM_STEPS)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=120)[0])
    finally:
        for proc in procs:
            proc.kill()
    for pid, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"process {pid} failed:\n{out[-3000:]}"
    expected = _one_process_params()
    results = [dict(np.load(tmp_path / f"params_{pid}.npz")) for pid in range(2)]
    assert set(results[0]) == set(expected)
    for key, want in expected.items():
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)
        np.testing.assert_allclose(results[0][key], want, rtol=2e-5, atol=1e-6, err_msg=key)
    assert int(results[0][".step"]) == NUM_STEPS
