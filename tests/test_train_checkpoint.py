"""Checkpoints (invfeat/train/checkpoint.py): round trip into shardings, data state,
keep-last/keep-best, atomic saves; a checkpoint that does not fit the model refused with one
clear error before orbax reads it; a Ctrl-C landing inside orbax held until the call returns,
then delivered."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from helpers import train_toy as toy
from helpers.interrupts import ctrl_c
from orbax.checkpoint import checkpoint_manager

from invfeat.train import mesh, state
from invfeat.train.checkpoint import (
    CheckpointConfig,
    Checkpointer,
    DataStateHandler,
    interrupts_held,
)

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


# ---- checkpoints that do not fit the model ---------------------------------------------------
# The misfit is found before orbax reads: orbax 0.12.8 finds a shape misfit only inside its array
# reads, where the failing read ends the event loop while the other reads still run, and those
# print "Event loop is closed" and "Exception ignored in: <coroutine ...>" tracebacks after the
# error.


def test_misfit_is_refused_before_orbax_reads_and_names_each_leaf(tmp_path, monkeypatch):
    wide = toy.init_fn(jax.random.key(0), toy.ToyNet(hidden=16))
    narrow = toy.init_fn(jax.random.key(0), toy.ToyNet(hidden=8))
    with Checkpointer(tmp_path, SYNC) as ckpt:
        ckpt.save(3, wide, data_state={"position": 3})

        def no_read(*args, **kwargs):
            raise AssertionError("orbax restore was called for a checkpoint that does not fit")

        monkeypatch.setattr(ocp.CheckpointManager, "restore", no_read)
        with pytest.raises(ValueError) as err:
            ckpt.restore(narrow)
    message = str(err.value)
    assert str(tmp_path / "3") in message and "another model or config" in message
    assert "params/Dense_0/kernel: saved (4, 16), wanted (4, 8)" in message
    assert "batch_stats/BatchNorm_0/mean: saved (16,), wanted (8,)" in message
    assert message.count("saved (") == 5 and message.endswith("; and 1 more")  # 6 misfits


def test_fitting_restore_still_casts_dtypes(tmp_path):
    wide = toy.init_fn(jax.random.key(0), toy.ToyNet(hidden=16))
    as_bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), wide)
    with Checkpointer(tmp_path, SYNC) as ckpt:
        ckpt.save(1, wide)
        restored = ckpt.restore(as_bf16).state
    kernel = restored["params"]["Dense_0"]["kernel"]
    assert kernel.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(kernel), np.asarray(wide["params"]["Dense_0"]["kernel"].astype(jnp.bfloat16))
    )


def test_checkpoint_without_tree_metadata_still_restores(tmp_path):
    wide = toy.init_fn(jax.random.key(0), toy.ToyNet(hidden=16))
    with Checkpointer(tmp_path, SYNC) as ckpt:
        ckpt.save(2, wide)
    (tmp_path / "2" / "state" / "_METADATA").unlink()  # orbax restores from the arrays' own
    with Checkpointer(tmp_path, SYNC) as ckpt:
        restored = ckpt.restore(wide).state
    np.testing.assert_array_equal(
        np.asarray(restored["params"]["Dense_0"]["kernel"]),
        np.asarray(wide["params"]["Dense_0"]["kernel"]),
    )


# The misfit "a" is found while the reads of "b" and "c" are in flight: orbax's reads are held
# open (they would finish at random moments otherwise), so a restore that left the misfit for
# orbax to find would print the tracebacks every time, not now and then.
_SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys

    import jax.numpy as jnp
    from orbax.checkpoint._src.serialization import serialization

    from invfeat.train.checkpoint import CheckpointConfig, Checkpointer

    read_shard = serialization._read_shard

    async def held_read_shard(*args, **kwargs):
        await asyncio.Event().wait()
        return await read_shard(*args, **kwargs)

    serialization._read_shard = held_read_shard
    saved = {"a": jnp.zeros((3,)), "b": jnp.ones((16,)), "c": jnp.ones((16,))}
    wanted = {**saved, "a": jnp.zeros((3, 1))}
    with Checkpointer(sys.argv[1], CheckpointConfig(async_save=False)) as ckpt:
        ckpt.save(1, saved)
        try:
            ckpt.restore(wanted)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
    """
)


def test_misfit_prints_only_our_error(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "default"}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "ckpt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "a: saved (3,), wanted (3, 1)" in lines[0]


# ---- Ctrl-C inside orbax ---------------------------------------------------------------------
# The interrupts are real signals sent to the main thread from inside a save (by a hook in the
# data-state handler, which orbax runs in a worker thread while the main thread waits: the
# `ctrl_c_in_data_save` fixture) or while the main thread waits for the previous save (orbax's
# finalize-thread join), so they land at the same point every time, with no timing luck.


def test_ctrl_c_inside_a_save_commits_it_then_interrupts(placed, tmp_path, ctrl_c_in_data_save):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, placed, data_state={"position": 1})
        with pytest.raises(KeyboardInterrupt):
            ckpt.save(2, placed, data_state={"position": 2})
        ckpt.wait()
        assert ckpt.all_steps() == [1, 2]  # 2 committed, not left a temporary directory
        assert ckpt.restore(placed).data_state == {"position": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_while_waiting_for_the_previous_save(placed, tmp_path, monkeypatch, caplog):
    """Held while orbax waits for the previous save: orbax would catch it there, log an ERROR
    traceback and forget the save it waited for."""
    join = checkpoint_manager._FinalizeThread.join
    sent = []

    def join_interrupted(self, *args, **kwargs):
        if not sent:
            sent.append(self.step())
            ctrl_c()
        return join(self, *args, **kwargs)

    monkeypatch.setattr(checkpoint_manager._FinalizeThread, "join", join_interrupted)
    with caplog.at_level(logging.ERROR), Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, placed, data_state={"position": 1})
        with pytest.raises(KeyboardInterrupt):
            ckpt.wait()
        assert sent == [1]
        assert ckpt.all_steps() == [1] and ckpt.latest_step() == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.usefixtures("ctrl_c_raises")
def test_held_interrupt_reaches_the_previous_handler_once():
    calls = []

    def handler(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        with interrupts_held():
            ctrl_c()
            assert calls == []
        assert calls == [signal.SIGINT]
        with interrupts_held():  # a second Ctrl-C is passed on at once, the first not again
            ctrl_c()
            ctrl_c()
            assert calls == [signal.SIGINT] * 2
        assert calls == [signal.SIGINT] * 2
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_held_only_in_the_main_thread():
    errors = []

    def worker():
        try:
            with interrupts_held():
                pass
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert errors == []
