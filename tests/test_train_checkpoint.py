"""Checkpoints: round trip into shardings, data state, keep-last/keep-best, atomic saves."""

import os

import chex
import jax
import numpy as np
import optax
import pytest
import train_toy as toy

from invfeat.train import mesh, state
from invfeat.train.checkpoint import CheckpointConfig, Checkpointer, DataStateHandler

SYNC = CheckpointConfig(keep_last=2, async_save=False)


@pytest.fixture(scope="module")
def placed():
    m = mesh.make_mesh()
    return state.create_train_state(toy.init_fn, optax.adam(1e-3), m, seed=5, min_shard_size=64)


def _bumped(st, k):
    return st.replace(step=st.step + k, params=jax.tree.map(lambda x: x + k, st.params))


def test_round_trip_into_target_shardings(placed, tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(7, placed, data_state={"position": 7}, meta={"epoch": 1.5})
        ckpt.save(8, placed, data_state=b"\x00grain\xff", meta={})
        ckpt.wait()
        abstract = jax.eval_shape(lambda: placed)
        abstract = jax.tree.map(
            lambda a, x: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=x.sharding),
            abstract,
            placed,
        )
        first = ckpt.restore(abstract, step=7)
        latest = ckpt.restore(placed)
    assert first.step == 7 and first.data_state == {"position": 7}
    assert first.meta == {"epoch": 1.5}
    assert latest.step == 8 and latest.data_state == b"\x00grain\xff"
    chex.assert_trees_all_equal(jax.device_get(first.state), jax.device_get(placed))
    for got, want in zip(jax.tree.leaves(first.state), jax.tree.leaves(placed), strict=True):
        assert got.sharding == want.sharding
    assert not first.state.params["Dense_0"]["kernel"].sharding.is_fully_replicated


def test_keep_last_and_keep_best(placed, tmp_path):
    config = CheckpointConfig(
        keep_last=2, best_metric="val/loss", best_mode="min", async_save=False
    )
    scores = {1: 0.5, 2: 0.2, 3: 0.9, 4: None, 5: 0.7, 6: 0.8}
    with Checkpointer(tmp_path, config) as ckpt:
        for step, score in scores.items():
            metrics = None if score is None else {"val/loss": score, "other": 1.0}
            ckpt.save(step, _bumped(placed, step), metrics=metrics)
        assert ckpt.all_steps() == [2, 5, 6]
        assert ckpt.best_step() == 2
        best = ckpt.restore(placed, step=ckpt.best_step())
    assert int(best.state.step) == 2
    with Checkpointer(tmp_path, SYNC) as reopened:
        assert reopened.all_steps() == [2, 5, 6] and reopened.latest_step() == 6
        with pytest.raises(FileNotFoundError, match="no checkpoint for step 3"):
            reopened.restore(placed, step=3)


def test_save_failing_midway_leaves_previous_checkpoint(placed, tmp_path, monkeypatch):
    with Checkpointer(tmp_path, SYNC) as ckpt:
        ckpt.save(1, placed, data_state={"position": 1})

    def crash(self, directory, args):
        (directory / "partial.json").write_text("{")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(DataStateHandler, "save", crash)
    with Checkpointer(tmp_path, SYNC) as ckpt, pytest.raises(OSError, match="simulated"):
        ckpt.save(2, _bumped(placed, 2), data_state={"position": 2})
    monkeypatch.undo()
    assert any("tmp" in name for name in os.listdir(tmp_path))  # the killed save's leftovers
    with Checkpointer(tmp_path, SYNC) as ckpt:
        assert ckpt.all_steps() == [1]
        restored = ckpt.restore(placed)
    assert restored.step == 1 and restored.data_state == {"position": 1}
    chex.assert_trees_all_equal(jax.device_get(restored.state), jax.device_get(placed))
    assert sorted(os.listdir(tmp_path)) == ["1"]  # leftovers removed on open


def test_leftover_tmp_dir_from_a_killed_process_is_ignored(placed, tmp_path):
    with Checkpointer(tmp_path, SYNC) as ckpt:
        ckpt.save(3, placed)
    junk = tmp_path / "4.orbax-checkpoint-tmp-1234567"
    (junk / "state").mkdir(parents=True)
    (junk / "state" / "half-written").write_bytes(os.urandom(16))
    with Checkpointer(tmp_path, SYNC) as ckpt:
        assert ckpt.latest_step() == 3
        restored = ckpt.restore(placed)
    assert restored.step == 3 and not junk.exists()
    assert np.asarray(restored.state.step) == np.asarray(placed.step)


def test_restoring_into_another_model_names_the_checkpoint(placed, tmp_path):
    narrow = toy.ToyNet(hidden=8)
    other = state.create_train_state(
        lambda r: toy.init_fn(r, narrow), optax.adam(1e-3), mesh.make_mesh()
    )
    with Checkpointer(tmp_path, SYNC) as ckpt:
        ckpt.save(3, placed)
        with pytest.raises(ValueError, match="another model or config") as err:
            ckpt.restore(other)
    assert str(tmp_path / "3") in str(err.value)


def test_bad_config_and_missing_checkpoint(placed, tmp_path):
    with pytest.raises(ValueError, match="best_mode"):
        CheckpointConfig(best_mode="largest")
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointConfig(keep_last=0)
    with (
        Checkpointer(tmp_path, SYNC) as ckpt,
        pytest.raises(FileNotFoundError, match="no checkpoint"),
    ):
        ckpt.restore(placed)
