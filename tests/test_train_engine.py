"""Engine building blocks (invfeat/train/): mesh and batches (mesh.py), state placement and the
step on 1 vs 8 devices (state.py), bfloat16 compute (precision.py), schedules and optimizers
(optim.py), the multi-process environment (distributed.py)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import train_toy as toy

from invfeat.train import distributed, mesh, optim, precision, state


@pytest.fixture(scope="module")
def tx():
    return optax.adam(1e-2)


@pytest.fixture(scope="module")
def step_fn(tx):
    return state.make_train_step(toy.make_loss_fn(), tx)


def _run(step_fn, tx, m, steps=3, min_shard_size=None):
    st = state.create_train_state(toy.init_fn, tx, m, seed=1, min_shard_size=min_shard_size)
    shardings = jax.tree.map(lambda x: x.sharding, st)
    jitted = jax.jit(
        step_fn,
        in_shardings=(shardings, mesh.batch_sharding(m)),
        out_shardings=(shardings, mesh.replicated_sharding(m)),
        donate_argnums=0,
    )
    losses = []
    for position in range(steps):
        st, metrics = jitted(st, mesh.shard_batch(toy.global_batch(position, 16), m))
        losses.append(float(metrics["loss"]))
    return st, losses


def test_mesh_spans_all_devices():
    m = mesh.make_mesh()
    assert m.axis_names == ("data",)
    assert m.devices.size == jax.device_count() == 8


def test_shard_batch_splits_rows_and_drops_host_only_entries():
    m = mesh.make_mesh()
    batch = toy.global_batch(0, 16)
    out = mesh.shard_batch(batch, m)
    assert set(out) == {"x", "y"}
    assert out["x"].sharding == mesh.batch_sharding(m)
    assert out["x"].addressable_shards[0].data.shape == (2, toy.FEATURES)
    np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])


def test_batch_size_errors_are_clear():
    m = mesh.make_mesh()
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        mesh.check_batch_size(12, m, name="train.batch_size")
    with pytest.raises(ValueError, match=r"batch\['x'\] has 12 rows"):
        mesh.shard_batch({"x": np.zeros((12, 2), np.float32)}, m)
    assert mesh.local_batch_size(64, m) == 64


def test_state_is_placed_replicated(tx):
    m = mesh.make_mesh()
    st = state.create_train_state(toy.init_fn, tx, m)
    assert int(st.step) == 0
    assert set(st.model_state) == {"batch_stats"}
    for leaf in jax.tree.leaves(st):
        assert leaf.sharding.is_fully_replicated
        assert len(leaf.sharding.device_set) == 8


def test_large_leaves_can_be_sharded(tx):
    m = mesh.make_mesh()
    st = state.create_train_state(toy.init_fn, tx, m, min_shard_size=64)
    kernel = st.params["Dense_0"]["kernel"]  # [4, 16]: split along its 16 columns
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "data")
    assert st.params["Dense_1"]["bias"].sharding.is_fully_replicated  # 3 < 64 elements


def test_same_step_on_one_and_eight_devices(step_fn, tx):
    st1, losses1 = _run(step_fn, tx, mesh.make_mesh(jax.devices()[:1]))
    st8, losses8 = _run(step_fn, tx, mesh.make_mesh())
    st8s, losses8s = _run(step_fn, tx, mesh.make_mesh(), min_shard_size=64)
    np.testing.assert_allclose(losses1, losses8, rtol=1e-5)
    np.testing.assert_allclose(losses1, losses8s, rtol=1e-5)
    for other in (st8, st8s):
        chex.assert_trees_all_close(
            jax.device_get(st1), jax.device_get(other), rtol=1e-5, atol=1e-6
        )
    assert int(st8.step) == 3


def test_multi_part_state_updates_one_part():
    m = mesh.make_mesh(jax.devices()[:1])
    txs = {"a": optax.sgd(1.0), "b": optax.adam(1e-3)}
    init = lambda r: {"a": toy.init_fn(r), "b": {"params": {"w": jnp.ones(3)}}}
    st = state.create_train_state(init, txs, m)
    assert set(st.params) == set(st.opt_state) == {"a", "b"}
    grads = {"w": jnp.ones(3)}
    new = state.apply_gradients(st, grads, txs["b"], part="b")
    assert not np.allclose(new.params["b"]["w"], 1.0)
    chex.assert_trees_all_equal(new.params["a"], st.params["a"])
    with pytest.raises(ValueError, match="optimizers are given for"):
        state.create_train_state(toy.init_fn, txs, m)


def test_bfloat16_policy_keeps_float32_params():
    policy = precision.get_policy("bfloat16")
    model = toy.ToyNet(dtype=policy.compute_dtype)
    m = mesh.make_mesh(jax.devices()[:1])
    tx = optax.adam(1e-2)
    st = state.create_train_state(lambda r: toy.init_fn(r, model), tx, m)
    step = jax.jit(state.make_train_step(toy.make_loss_fn(model), tx))
    st, metrics = step(st, mesh.shard_batch(toy.global_batch(0, 8), m))
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(st.params))
    assert (
        policy.cast_to_compute({"x": jnp.ones(2), "i": jnp.ones(2, jnp.int32)})["x"].dtype
        == jnp.bfloat16
    )
    assert precision.get_policy("auto").compute_dtype == jnp.float32  # CPU
    with pytest.raises(ValueError, match="unknown precision"):
        precision.get_policy("fp8")


def test_schedules():
    base = dict(learning_rate=1.0, total_steps=100)
    half = optim.make_schedule(optim.OptimizerConfig(schedule="drop_at_half", **base))
    assert float(half(49)) == 1.0 and float(half(50)) == pytest.approx(0.2)
    multi = optim.make_schedule(
        optim.OptimizerConfig(
            schedule="warmup_multistep", warmup_steps=10, milestones=(40, 90), **base
        )
    )
    assert float(multi(0)) == pytest.approx(0.1)
    assert float(multi(10)) == pytest.approx(1.0)
    assert float(multi(39)) == pytest.approx(1.0) and float(multi(40)) == pytest.approx(0.1)
    assert float(multi(95)) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="after the warm-up"):  # refused, not dropped
        optim.make_schedule(
            optim.OptimizerConfig(schedule="warmup_multistep", warmup_steps=10, milestones=(10,))
        )
    cos = optim.make_schedule(
        optim.OptimizerConfig(
            schedule="warmup_cosine", warmup_steps=10, delay_steps=30, final_lr=0.01, **base
        )
    )
    assert float(cos(0)) == pytest.approx(0.1) and float(cos(29)) == pytest.approx(1.0)
    assert float(cos(65)) == pytest.approx(0.505, abs=0.01)
    assert float(cos(100)) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown schedule"):
        optim.make_schedule(optim.OptimizerConfig(schedule="linear"))


def test_optimizer_clipping_and_errors():
    params = {"w": jnp.zeros(4)}
    grads = {"w": jnp.full(4, 100.0)}
    sgd_like = optim.OptimizerConfig(
        name="adamw", learning_rate=1.0, clip_norm=1.0, weight_decay=0.1
    )
    tx = optim.make_optimizer(sgd_like)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert np.all(np.isfinite(updates["w"]))
    clipped = optax.clip_by_global_norm(1.0).update(grads, None)[0]
    assert float(optax.tree.norm(clipped)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="adamw"):
        optim.make_optimizer(optim.OptimizerConfig(weight_decay=0.1))
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.make_optimizer(optim.OptimizerConfig(name="sgd"))


def test_distributed_env(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize_from_env() is False
    assert distributed.is_primary()
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES, JAX_PROCESS_ID missing"):
        distributed.initialize_from_env()
