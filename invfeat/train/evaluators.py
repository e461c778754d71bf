"""Evaluators: small objects chosen by name, each yielding `(name, value)` pairs.

An evaluator has one method, `run(state) -> Iterable[tuple[str, float]]`; the fit loop calls it on
the current train state and records the pairs under `<evaluator name>/<metric name>` without
knowing what they measure. Libraries register factories with `@register("name")`; configs pick
them with `create("name", **kwargs)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import jax
import numpy as np
from jax.sharding import Mesh

from invfeat.train.mesh import batch_sharding, replicated_sharding, shard_batch


class Evaluator(Protocol):
    def run(self, state: Any) -> Iterable[tuple[str, float]]: ...


_REGISTRY: dict[str, Callable[..., Evaluator]] = {}


def register(name: str) -> Callable[[Callable[..., Evaluator]], Callable[..., Evaluator]]:
    """Class/function decorator: make an evaluator factory available as `name`."""

    def decorator(factory: Callable[..., Evaluator]) -> Callable[..., Evaluator]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"evaluator {name!r} is already registered by {_REGISTRY[name]}")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, **kwargs: Any) -> Evaluator:
    """Build the evaluator registered as `name`."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown evaluator {name!r}; registered: {available()}")
    return _REGISTRY[name](**kwargs)


@register("mean_metrics")
class MeanMetrics:
    """Mean of `eval_step(state, batch) -> {name: scalar}` over a finite set of batches.

    `batches()` returns a fresh iterable of per-process batches (dicts of numpy arrays); each
    batch's metrics are weighted by its number of rows. `eval_step` is jitted once.
    """

    def __init__(
        self,
        eval_step: Callable[[Any, Mapping[str, jax.Array]], Mapping[str, jax.Array]],
        batches: Callable[[], Iterable[Mapping[str, Any]]],
        mesh: Mesh,
    ):
        self._step = jax.jit(
            eval_step,
            in_shardings=(None, batch_sharding(mesh)),
            out_shardings=replicated_sharding(mesh),
        )
        self._batches = batches
        self._mesh = mesh

    def run(self, state: Any) -> Iterable[tuple[str, float]]:
        sums: dict[str, float] = {}
        total = 0
        for batch in self._batches():
            global_batch = shard_batch(batch, self._mesh)
            rows = next(iter(global_batch.values())).shape[0]
            metrics = jax.device_get(self._step(state, global_batch))
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + float(np.asarray(value)) * rows
            total += rows
        if total == 0:
            raise ValueError("mean_metrics evaluator: batches() yielded no batch")
        return [(key, value / total) for key, value in sums.items()]
