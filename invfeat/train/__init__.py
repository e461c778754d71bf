"""The training engine: trains any model through a pure `(state, batch) -> (state, metrics)` step.

- `mesh`: the one-axis ("data",) mesh, batch/replicated shardings, `shard_batch`.
- `distributed`: `jax.distributed.initialize` from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
  JAX_PROCESS_ID (gloo collectives on CPU).
- `state`: `TrainState`, `create_train_state` (eval_shape + jit with out_shardings),
  `apply_gradients`, `make_train_step`.
- `optim`: `OptimizerConfig`, `make_optimizer` (Adam/AdamW, paper/FastReID schedules, clipping).
- `precision`: mixed-precision `Policy` (`get_policy("bfloat16")`).
- `checkpoint`: `Checkpointer` over orbax (state + data-iterator state + meta; keep-last/best).
- `evaluators`: registry of evaluators yielding `(name, value)` pairs.
- `loop`: `fit`.

Each submodule loads on first use.
"""

from invfeat import lazy_submodules

SUBMODULES = (
    "checkpoint",
    "distributed",
    "evaluators",
    "loop",
    "mesh",
    "optim",
    "precision",
    "state",
)
__all__ = list(SUBMODULES)
__getattr__, __dir__ = lazy_submodules(__name__, SUBMODULES)
