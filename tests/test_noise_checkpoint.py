"""A checkpoint that does not fit the model fails with one clear error, before orbax reads it.

orbax 0.12.8 finds a shape misfit only inside its array reads; the failing read ends the event
loop while the other reads still run, and those print "Event loop is closed" and "Exception
ignored in: <coroutine ...>" tracebacks after our error.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import train_toy as toy

from invfeat.train.checkpoint import CheckpointConfig, Checkpointer

SYNC = CheckpointConfig(async_save=False)


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
# open (they would finish at random moments otherwise), so the old code printed the tracebacks
# every time rather than now and then.
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
