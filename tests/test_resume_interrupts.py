"""Ctrl-C (SIGINT) landing inside orbax: held until the call returns, then delivered.

The interrupts are real signals sent to the main thread from inside a save (by a hook in the
data-state handler, which orbax runs in a worker thread while the main thread waits) or while
the main thread waits for the previous save (orbax's finalize-thread join), so they land at
the same point every time, with no timing luck.
"""

import logging
import signal
import threading

import optax
import pytest
import train_toy as toy
from orbax.checkpoint import checkpoint_manager

from invfeat.train import mesh, state
from invfeat.train.checkpoint import (
    CheckpointConfig,
    Checkpointer,
    DataStateHandler,
    interrupts_held,
)
from invfeat.train.loop import CHECKPOINT_DIR, fit

TX = optax.adam(1e-2)


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Python's own SIGINT handler, as in a terminal: a process started in the background by a
    non-interactive shell (as CI may be) inherits SIGINT ignored, and Python then keeps it so."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def m():
    return mesh.make_mesh()


@pytest.fixture(scope="module")
def placed(m):
    return state.create_train_state(toy.init_fn, TX, m, seed=3)


def _ctrl_c() -> None:
    """What a Ctrl-C does: SIGINT to the main thread (from any thread)."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


@pytest.fixture
def ctrl_c_in_data_save(monkeypatch):
    """Ctrl-C while orbax writes the data state of position 2 (the main thread waits on it)."""
    save = DataStateHandler.save

    def save_interrupted(self, directory, args):
        if args.state == {"position": 2}:
            _ctrl_c()
        save(self, directory, args)

    monkeypatch.setattr(DataStateHandler, "save", save_interrupted)


def test_ctrl_c_inside_a_save_commits_it_then_interrupts(placed, tmp_path, ctrl_c_in_data_save):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, placed, data_state={"position": 1})
        with pytest.raises(KeyboardInterrupt):
            ckpt.save(2, placed, data_state={"position": 2})
        ckpt.wait()
        assert ckpt.all_steps() == [1, 2]  # before: 2 was left a temporary directory
        assert ckpt.restore(placed).data_state == {"position": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


def test_ctrl_c_while_waiting_for_the_previous_save(placed, tmp_path, monkeypatch, caplog):
    """orbax caught it there, logged an ERROR traceback and forgot the save it waited for."""
    join = checkpoint_manager._FinalizeThread.join
    sent = []

    def join_interrupted(self, *args, **kwargs):
        if not sent:
            sent.append(self.step())
            _ctrl_c()
        return join(self, *args, **kwargs)

    monkeypatch.setattr(checkpoint_manager._FinalizeThread, "join", join_interrupted)
    with caplog.at_level(logging.ERROR), Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, placed, data_state={"position": 1})
        with pytest.raises(KeyboardInterrupt):
            ckpt.wait()
        assert sent == [1]
        assert ckpt.all_steps() == [1] and ckpt.latest_step() == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


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


def test_held_interrupt_reaches_the_previous_handler_once():
    calls = []

    def handler(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        with interrupts_held():
            _ctrl_c()
            assert calls == []
        assert calls == [signal.SIGINT]
        with interrupts_held():  # a second Ctrl-C is passed on at once, the first not again
            _ctrl_c()
            _ctrl_c()
            assert calls == [signal.SIGINT] * 2
        assert calls == [signal.SIGINT] * 2
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, previous)


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
