"""The training engine: trains any model through a pure `(state, batch) -> (state, metrics)` step.

A state placed on a one-axis ("data",) mesh, the fit loop with checkpoints and resume, batched
prediction, multi-process start-up; each submodule loads on first use.
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
