"""The training engine: trains any model through a pure `(state, batch) -> (state, metrics)` step.

- `mesh`: the one-axis ("data",) mesh, batch/replicated shardings, `shard_batch`.
- `distributed`: `jax.distributed.initialize` from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
  JAX_PROCESS_ID (gloo collectives on CPU).
- `state`: `TrainState`, `create_train_state` (eval_shape + jit with out_shardings),
  `apply_gradients`, `make_train_step`.
- `optim`: `OptimizerConfig`, `make_optimizer` (Adam/AdamW, paper/FastReID schedules, clipping).
- `precision`: mixed-precision `Policy` (`get_policy("bfloat16")`).
- `checkpoint`: `Checkpointer` over orbax (state + data-iterator state + meta; keep-last/best).
- `records`: step metrics read one step late, epoch means, `metrics.jsonl` and console lines.
- `loop`: `fit`, and the `Evaluator` protocol of what it runs at epoch ends.
- `predict`: `BlockPredictor` (a pure function over padded, sharded fixed-size blocks).
- `run`: `claim_workdir` (config.json, and what a fresh run does with old checkpoints) and
  `run_training` (create a state from a seed, then `fit` it).

Each submodule loads on first use.
"""

from invfeat import lazy_submodules

SUBMODULES = (
    "checkpoint",
    "distributed",
    "loop",
    "mesh",
    "optim",
    "precision",
    "predict",
    "records",
    "run",
    "state",
)
__all__ = list(SUBMODULES)
__getattr__, __dir__ = lazy_submodules(__name__, SUBMODULES)
