"""The fit loop (invfeat/train/loop.py): no recompilation, resume equality, NaN stop, interrupts
(a Ctrl-C inside a save included), logs, evaluators."""

import json

import chex
import jax
import numpy as np
import optax
import pytest
from helpers import train_toy as toy

from invfeat.train import mesh, state
from invfeat.train.checkpoint import CheckpointConfig, Checkpointer
from invfeat.train.loop import CHECKPOINT_DIR, METRICS_FILE, fit

TX = optax.adam(1e-2)
# One step function for every run in this module, traced at most once: any recompilation by the
# loop (across steps, checkpoints, evaluations, resumes) fails the test that causes it.
STEP = chex.assert_max_traces(state.make_train_step(toy.make_loss_fn(), TX), n=1)
EVERY_2 = CheckpointConfig(every_steps=2, every_epoch=False, keep_last=5)


@pytest.fixture(scope="module")
def m():
    return mesh.make_mesh()


def _fresh(m):
    return state.create_train_state(toy.init_fn, TX, m, seed=3)


def _params(result):
    return jax.device_get(result.state.params), jax.device_get(result.state.model_state)


class Kill(Exception):
    pass


def _kill_at(step):
    def hook(s, _):
        if s == step:
            raise Kill

    return hook


def _fit(m, workdir, data=None, **kwargs):
    kwargs = {
        "num_steps": 6,
        "steps_per_epoch": 3,
        "checkpoint": EVERY_2,
        "progress": False,
        **kwargs,
    }
    return fit(_fresh(m), STEP, data or toy.ToyData(16), mesh=m, workdir=workdir, **kwargs)


@pytest.fixture(scope="module")
def uninterrupted(m, tmp_path_factory):
    return _fit(m, tmp_path_factory.mktemp("full"))


def test_uninterrupted_run_logs_and_checkpoints(uninterrupted, tmp_path_factory):
    result = uninterrupted
    assert result.step == 6 and result.stop_reason is None
    assert int(result.state.step) == 6
    epochs = [r for r in result.history if r["kind"] == "epoch"]
    assert [r["step"] for r in epochs] == [3, 6]
    assert {"train/loss", "train/accuracy", "train/grad_norm", "steps_per_s"} <= set(epochs[0])


def _epoch_metrics(records):
    return [
        {k: v for k, v in r.items() if k.startswith("train/") or k == "step"}
        for r in records
        if r["kind"] == "epoch"
    ]


def test_resume_after_kill_is_bit_exact(m, tmp_path, uninterrupted):
    with pytest.raises(Kill):
        _fit(m, tmp_path, hooks=[_kill_at(5)])
    ckpt = Checkpointer(tmp_path / CHECKPOINT_DIR)
    assert ckpt.all_steps() == [2, 4]
    ckpt.close()
    with (tmp_path / METRICS_FILE).open("a") as f:
        f.write('{"kind": "step", "st')  # a kill in the middle of a log write
    resumed = _fit(m, tmp_path, resume=True)
    assert resumed.step == 6
    chex.assert_trees_all_equal(_params(resumed), _params(uninterrupted))
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "epoch"] == [3, 6]
    # The epoch cut by the kill (steps 4-6, resumed from step 4) averages all its steps.
    assert _epoch_metrics(records) == _epoch_metrics(uninterrupted.history)
    assert _epoch_metrics(resumed.history) == _epoch_metrics(uninterrupted.history)


def test_resume_with_another_config_is_refused(m, tmp_path):
    _fit(m, tmp_path, num_steps=2, meta={"model": {"width": 16}, "lr": 0.1})
    with pytest.raises(ValueError, match=r"another config \(model.width differ\)") as err:
        _fit(m, tmp_path, resume=True, meta={"model": {"width": 8}, "lr": 0.1})
    assert str(tmp_path / CHECKPOINT_DIR / "2") in str(err.value)
    resumed = _fit(m, tmp_path, num_steps=3, resume=True, meta={"model": {"width": 16}, "lr": 0.1})
    assert resumed.step == 3


def _interrupt_at(step):
    def hook(s, _):
        if s == step:
            raise KeyboardInterrupt

    return hook


def test_keyboard_interrupt_saves_then_reraises(m, tmp_path, uninterrupted):
    no_schedule = CheckpointConfig(every_epoch=False)
    with pytest.raises(KeyboardInterrupt):
        _fit(m, tmp_path, hooks=[_interrupt_at(3)], checkpoint=no_schedule)
    ckpt = Checkpointer(tmp_path / CHECKPOINT_DIR)
    assert ckpt.all_steps() == [3]
    ckpt.close()
    resumed = _fit(m, tmp_path, resume=True, checkpoint=no_schedule)
    chex.assert_trees_all_equal(_params(resumed), _params(uninterrupted))


def test_keyboard_interrupt_inside_a_save_keeps_that_checkpoint(m, tmp_path, monkeypatch):
    """Ctrl-C landing as a save returns is re-raised; the step is not saved twice (orbax would
    fail on the existing step and hide the interrupt)."""
    save = Checkpointer.save

    def save_then_interrupt(self, step, *args, **kwargs):
        save(self, step, *args, **kwargs)
        if step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpointer, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _fit(m, tmp_path, checkpoint=CheckpointConfig(every_steps=2))
    ckpt = Checkpointer(tmp_path / CHECKPOINT_DIR)
    assert ckpt.all_steps() == [2]
    ckpt.close()


def test_fit_interrupted_inside_a_save_names_the_committed_checkpoint(
    m, tmp_path, ctrl_c_in_data_save, capsys
):
    with pytest.raises(KeyboardInterrupt):
        fit(
            state.create_train_state(toy.init_fn, TX, m, seed=3),  # fit donates it
            state.make_train_step(toy.make_loss_fn(), TX),
            toy.ToyData(16),
            mesh=m,
            num_steps=5,
            workdir=tmp_path,
            checkpoint=CheckpointConfig(every_steps=1, every_epoch=False, keep_last=5),
            progress=False,
        )
    assert "interrupted at step 2; checkpoint 2 kept" in capsys.readouterr().err
    with Checkpointer(tmp_path / CHECKPOINT_DIR) as ckpt:
        assert ckpt.all_steps() == [1, 2]


def test_no_recompilation_after_first_step(m, tmp_path):
    every_step = CheckpointConfig(every_steps=1)
    result = _fit(m, tmp_path, num_steps=3, steps_per_epoch=2, checkpoint=every_step)
    resumed = _fit(m, tmp_path, num_steps=5, steps_per_epoch=2, checkpoint=every_step, resume=True)
    assert (result.step, resumed.step) == (3, 5)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(m, tmp_path, capsys):
    result = _fit(m, tmp_path, data=toy.ToyData(16, nan_at=4), progress=True)  # step 5 is NaN
    assert result.stop_reason is not None and "non-finite" in result.stop_reason
    assert "step 5" in result.stop_reason and "last good checkpoint is step 4" in result.stop_reason
    assert "last good checkpoint is step 4" in capsys.readouterr().err
    assert result.step == 4
    ckpt = Checkpointer(tmp_path / CHECKPOINT_DIR)
    assert ckpt.all_steps() == [2, 4]
    good = ckpt.restore(_fresh(m))
    ckpt.close()
    chex.assert_trees_all_equal(jax.device_get(good.state), jax.device_get(result.state))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jax.device_get(result.state)))
    assert result.history[-1]["kind"] == "stopped"


class ScriptedScore:
    """Yields a fixed sequence of scores, one per call."""

    def __init__(self, scores):
        self.scores = list(scores)

    def run(self, state):
        del state
        return [("score", self.scores.pop(0))]


class MeanLoss:
    """The toy loss averaged over two fixed batches, through one jitted evaluation step."""

    def __init__(self, m):
        loss_fn = toy.make_loss_fn()
        self._loss = jax.jit(lambda st, batch: loss_fn(st.params, st.model_state, batch, st.rng)[0])
        self._batches = [mesh.shard_batch(toy.global_batch(100 + i, 8), m) for i in range(2)]

    def run(self, st):
        return [("loss", float(np.mean([self._loss(st, b) for b in self._batches])))]


def test_evaluators_and_keep_best(m, tmp_path):
    val = MeanLoss(m)
    result = fit(
        _fresh(m),
        STEP,
        toy.ToyData(16),
        mesh=m,
        num_steps=5,
        steps_per_epoch=1,
        workdir=tmp_path,
        progress=False,
        evaluators={"val": val, "s": ScriptedScore([0.1, 0.9, 0.2, 0.3, 0.05])},
        checkpoint=CheckpointConfig(keep_last=2, best_metric="s/score", best_mode="max"),
    )
    epochs = [r for r in result.history if r["kind"] == "epoch"]
    assert [r["s/score"] for r in epochs] == [0.1, 0.9, 0.2, 0.3, 0.05]
    assert all(np.isfinite(r["val/loss"]) for r in epochs)
    ckpt = Checkpointer(tmp_path / CHECKPOINT_DIR, CheckpointConfig(best_metric="s/score"))
    assert ckpt.all_steps() == [2, 4, 5]
    assert ckpt.best_step() == 2
    assert ckpt.restore(_fresh(m), step=2).meta["metrics"]["s/score"] == 0.9
    ckpt.close()


TWO_PARTS = {"g": optax.adam(1e-2), "d": optax.sgd(0.1)}


def _two_part_init(rng):
    return {"g": toy.init_fn(rng), "d": {"params": {"w": jax.numpy.ones(toy.CLASSES)}}}


@chex.assert_max_traces(n=1)
def _alternating_step(st, batch):
    """A GAN-like user-written step: update part "d", then part "g", then advance the step."""
    g_loss_fn = toy.make_loss_fn()
    g_vars = {"params": st.params["g"], **st.model_state["g"]}

    def d_loss(d_params):
        logits = toy.ToyNet().apply(g_vars, batch["x"], train=False)
        return jax.numpy.mean((logits @ d_params["w"] - 1.0) ** 2)

    loss_d, grads_d = jax.value_and_grad(d_loss)(st.params["d"])
    st = state.apply_gradients(st, grads_d, TWO_PARTS["d"], part="d")
    grad_fn = jax.value_and_grad(g_loss_fn, has_aux=True)
    (loss_g, (_, updates)), grads_g = grad_fn(
        st.params["g"], st.model_state["g"], batch, st.step_rng()
    )
    st = state.apply_gradients(st, grads_g, TWO_PARTS["g"], part="g", model_state=updates)
    return st.replace(step=st.step + 1), {"d_loss": loss_d, "g_loss": loss_g}


def test_user_written_two_part_step_resumes_exactly(m, tmp_path):
    def run(workdir, **kwargs):
        st = state.create_train_state(_two_part_init, TWO_PARTS, m, seed=1)
        return fit(
            st,
            _alternating_step,
            toy.ToyData(16),
            mesh=m,
            num_steps=4,
            workdir=workdir,
            checkpoint=EVERY_2,
            progress=False,
            **kwargs,
        )

    full = run(tmp_path / "full")
    with pytest.raises(Kill):
        run(tmp_path / "killed", hooks=[_kill_at(3)])
    resumed = run(tmp_path / "killed", resume=True)
    assert {"train/d_loss", "train/g_loss"} <= set(full.history[-1])
    assert not np.allclose(jax.device_get(full.state.params["d"]["w"]), 1.0)
    chex.assert_trees_all_equal(jax.device_get(resumed.state), jax.device_get(full.state))


def test_resuming_a_finished_run_draws_no_progress_bar(m, tmp_path, capsys):
    _fit(m, tmp_path)
    capsys.readouterr()
    result = _fit(m, tmp_path, resume=True, progress=True)
    assert result.step == 6
    assert "6/6" not in capsys.readouterr().err  # no bar, not even one full at once
