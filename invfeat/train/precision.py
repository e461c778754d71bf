"""Mixed precision: parameters and losses in float32, the model's computation in `compute_dtype`."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

PRECISIONS = ("float32", "bfloat16", "auto")


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which dtypes a model's parameters, computation and outputs use.

    Models take a `dtype` argument (flax.linen convention: the computation dtype, with
    `param_dtype` float32); build them with `dtype=policy.compute_dtype`, feed inputs through
    `policy.cast_to_compute`, and bring logits/features back with `policy.cast_to_output` before
    the loss. Optimizer state and updates are float32 because the params are.
    """

    param_dtype: Any = jnp.float32
    compute_dtype: Any = jnp.float32
    output_dtype: Any = jnp.float32

    def cast_to_compute(self, tree: Any) -> Any:
        return _cast_floating(tree, self.compute_dtype)

    def cast_to_output(self, tree: Any) -> Any:
        return _cast_floating(tree, self.output_dtype)


def _cast_floating(tree: Any, dtype: Any) -> Any:
    def cast(x):
        return x.astype(dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x

    return jax.tree.map(cast, tree)


def get_policy(precision: str = "float32") -> Policy:
    """`float32`, `bfloat16` (compute in bf16), or `auto` (bfloat16 on GPU/TPU, else float32)."""
    if precision == "auto":
        precision = "float32" if jax.default_backend() == "cpu" else "bfloat16"
    if precision == "float32":
        return Policy()
    if precision == "bfloat16":
        return Policy(compute_dtype=jnp.bfloat16)
    raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
