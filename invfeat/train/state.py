"""Train state, its placement on the mesh, and the standard supervised step."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from invfeat.train.mesh import DATA_AXIS

PyTree = Any
Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]
Optimizers = optax.GradientTransformation | Mapping[str, optax.GradientTransformation]
StepFn = Callable[[Any, Batch], tuple[Any, Metrics]]
LossFn = Callable[[PyTree, PyTree, Batch, jax.Array], tuple[jax.Array, tuple[Metrics, PyTree]]]


@flax.struct.dataclass
class TrainState:
    """A pytree: `step` (int32 scalar, steps done), `params`, `opt_state`, `model_state`
    (non-trained collections such as `batch_stats`; `{}` when none) and `rng` (a raw uint32 key).

    The optimizer is not part of the state: a step function closes over it, so the state is
    data only and checkpoints hold nothing else. Several optimised parts (a GAN's generator and
    discriminator) make `params`, `opt_state` and `model_state` dicts keyed by part name.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    model_state: PyTree
    rng: jax.Array

    def step_rng(self) -> jax.Array:
        """The random key of the current step (differs every step, same after a resume)."""
        return jax.random.fold_in(self.rng, self.step)


def split_variables(variables: Mapping[str, PyTree]) -> tuple[PyTree, dict[str, PyTree]]:
    """Flax variables -> (params, every other collection)."""
    if "params" not in variables:
        raise ValueError(f"init_fn must return flax variables with 'params'; got {list(variables)}")
    return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def _init_state(init_fn: Callable[[jax.Array], PyTree], tx: Optimizers, rng: jax.Array):
    init_rng, state_rng = jax.random.split(rng)
    variables = init_fn(init_rng)
    if isinstance(tx, optax.GradientTransformation):
        params, model_state = split_variables(variables)
        opt_state = tx.init(params)
    else:
        if set(variables) != set(tx):
            raise ValueError(
                f"init_fn returned parts {sorted(variables)} but optimizers are given for "
                f"{sorted(tx)}"
            )
        split = {name: split_variables(variables[name]) for name in tx}
        params = {name: p for name, (p, _) in split.items()}
        model_state = {name: s for name, (_, s) in split.items()}
        opt_state = {name: tx[name].init(params[name]) for name in tx}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=opt_state,
        model_state=model_state,
        rng=state_rng,
    )


def _leaf_sharding(leaf: Any, mesh: Mesh, min_shard_size: int | None) -> NamedSharding:
    n = mesh.devices.size
    shape = getattr(leaf, "shape", ())
    if min_shard_size is not None and n > 1 and shape and leaf.size >= min_shard_size:
        axes = sorted(range(len(shape)), key=lambda i: -shape[i])
        for axis in axes:
            if shape[axis] % n == 0:
                spec = [None] * len(shape)
                spec[axis] = DATA_AXIS
                return NamedSharding(mesh, P(*spec))
    return NamedSharding(mesh, P())


def state_shardings(abstract: PyTree, mesh: Mesh, min_shard_size: int | None = None) -> PyTree:
    """Shardings for a (abstract) state: replicated, or large leaves split along "data".

    With `min_shard_size`, leaves of at least that many elements are split along their largest
    axis that divides evenly over the mesh.
    """
    return jax.tree.map(lambda leaf: _leaf_sharding(leaf, mesh, min_shard_size), abstract)


def create_train_state(
    init_fn: Callable[[jax.Array], PyTree],
    tx: Optimizers,
    mesh: Mesh,
    *,
    seed: int = 0,
    min_shard_size: int | None = None,
) -> TrainState:
    """Initialise a `TrainState` directly on the mesh, without a host copy.

    `init_fn(rng)` returns flax variables (e.g. `lambda r: model.init(r, dummy_batch)`), or, with
    a mapping of optimizers, a mapping of variables by the same part names. The abstract state
    comes from `jax.eval_shape` and `jax.jit(init, out_shardings=...)` creates it in place; the
    compiled initialiser is reused for the same (init_fn, tx, mesh, min_shard_size).
    """
    txs = tx if isinstance(tx, optax.GradientTransformation) else tuple(sorted(tx.items()))
    return _placed_init(init_fn, txs, mesh, min_shard_size)(jax.random.PRNGKey(seed))


@functools.lru_cache(maxsize=16)
def _placed_init(
    init_fn: Callable[[jax.Array], PyTree],
    txs: optax.GradientTransformation | tuple[tuple[str, optax.GradientTransformation], ...],
    mesh: Mesh,
    min_shard_size: int | None,
) -> Callable[[jax.Array], TrainState]:
    tx = txs if isinstance(txs, optax.GradientTransformation) else dict(txs)
    init = lambda r: _init_state(init_fn, tx, r)
    abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
    return jax.jit(init, out_shardings=state_shardings(abstract, mesh, min_shard_size))


def abstract_like(state: PyTree) -> PyTree:
    """ShapeDtypeStructs with the shardings of a placed state (a restore target)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )


def apply_gradients(
    state: TrainState,
    grads: PyTree,
    tx: optax.GradientTransformation,
    *,
    part: str | None = None,
    model_state: PyTree | None = None,
) -> TrainState:
    """One optimizer update of all params, or of `params[part]` in a multi-part state.

    `model_state` (if given) replaces the part's model state. `step` is not advanced: a
    multi-part step updates one part at a time and advances `step` once.
    """
    params = state.params if part is None else state.params[part]
    opt_state = state.opt_state if part is None else state.opt_state[part]
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if part is None:
        new_model_state = state.model_state if model_state is None else model_state
        return state.replace(params=params, opt_state=opt_state, model_state=new_model_state)
    new_model_state = dict(state.model_state)
    if model_state is not None:
        new_model_state[part] = model_state
    return state.replace(
        params={**state.params, part: params},
        opt_state={**state.opt_state, part: opt_state},
        model_state=new_model_state,
    )


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation) -> StepFn:
    """The standard supervised step: grads of `loss_fn`, one update, step + 1.

    `loss_fn(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))` computes
    the mean loss over the global batch. The returned metrics are `loss`, `grad_norm` and the
    loss function's own metrics.
    """

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (metrics, model_state)), grads = grad_fn(
            state.params, state.model_state, batch, state.step_rng()
        )
        new_state = apply_gradients(state, grads, tx, model_state=model_state)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **metrics}
        return new_state.replace(step=state.step + 1), metrics

    return train_step
