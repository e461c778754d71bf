"""One process of the two-process test: train the toy model through `fit`, resume, save params.

Run by tests/test_train_multihost.py with JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
JAX_PROCESS_ID set, two CPU devices per process and tests/ on PYTHONPATH (`multihost_launch`):
    python tests/helpers/multihost_worker.py OUT_DIR NUM_STEPS
Trains NUM_STEPS // 2 steps, then resumes from the checkpoint to NUM_STEPS (as a killed and
restarted job would), and writes this process's copy of the final params to
OUT_DIR/params_<process>.npz.
"""

import sys
from pathlib import Path

import jax
import numpy as np
import optax

from helpers import train_toy as toy
from invfeat.train import distributed, mesh, state
from invfeat.train.checkpoint import CheckpointConfig
from invfeat.train.loop import fit

GLOBAL_BATCH = 16


def main(out_dir: Path, num_steps: int) -> None:
    assert distributed.initialize_from_env(), "the environment does not describe several processes"
    m = mesh.make_mesh()
    tx = optax.adam(1e-2)
    step_fn = state.make_train_step(toy.make_loss_fn(), tx)
    config = CheckpointConfig(every_epoch=False, async_save=False)  # saves at the end
    for steps, resume in ((num_steps // 2, False), (num_steps, True)):
        data = toy.ToyData(GLOBAL_BATCH, jax.process_index(), jax.process_count())
        result = fit(
            state.create_train_state(toy.init_fn, tx, m, seed=3),
            step_fn,
            data,
            mesh=m,
            num_steps=steps,
            workdir=out_dir / "run",
            checkpoint=config,
            resume=resume,
            progress=False,
        )
    assert result.step == num_steps and data.position == num_steps  # resumed at the middle
    local = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), result.state)
    flat = {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree.leaves_with_path(local)}
    np.savez(out_dir / f"params_{jax.process_index()}.npz", **flat)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
