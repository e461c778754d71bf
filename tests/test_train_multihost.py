"""Two processes on 127.0.0.1 (two CPU devices each, gloo collectives) train like one process."""

from pathlib import Path

import jax
import numpy as np
import optax
from helpers import multihost_launch
from helpers import train_toy as toy

from invfeat.train import mesh, state

NUM_STEPS = 4
WORKER = Path(__file__).parent / "helpers" / "multihost_worker.py"


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
    procs = multihost_launch.start(WORKER, [str(tmp_path), str(NUM_STEPS)])
    for pid, (status, out, err) in enumerate(multihost_launch.finish(procs, timeout_s=120)):
        assert status == 0, f"process {pid} failed:\n{(out + err)[-3000:]}"
    expected = _one_process_params()
    results = [dict(np.load(tmp_path / f"params_{pid}.npz")) for pid in range(2)]
    assert set(results[0]) == set(expected)
    for key, want in expected.items():
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)
        np.testing.assert_allclose(results[0][key], want, rtol=2e-5, atol=1e-6, err_msg=key)
    assert int(results[0][".step"]) == NUM_STEPS
