"""Test session setup: CPU only, eight forced host devices (set before JAX is imported); and the
fixtures several test files share: data dirs and victims built once per session (tests only read
them), and Ctrl-C set-ups for the tests of interrupts."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()


@pytest.fixture(scope="session")
def one_device():
    """A ("data",) mesh over the first CPU device alone."""
    import jax

    from invfeat.train.mesh import make_mesh

    return make_mesh(jax.devices()[:1])


@pytest.fixture(scope="session")
def tiny_market_dir(tmp_path_factory):
    """A data dir holding synth_market at `worlds.TINY_MARKET` (3 + 2 people, 2 images each)."""
    from helpers.worlds import TINY_MARKET

    from invfeat.data.builders import build
    from invfeat.data.builders.synth import builder_config

    root = tmp_path_factory.mktemp("tiny_market")
    build("synth_market", data_dir=root, config=builder_config(**TINY_MARKET))
    return root


@pytest.fixture(scope="session")
def untrained_victim():
    """The tiny victim of `worlds.TINY_MARKET_VICTIM`, initialised and never trained: enough to
    serve and extract features."""
    import jax
    import numpy as np
    from helpers.worlds import TINY_MARKET_VICTIM as config

    from invfeat.victims import TrainedVictim, inference_model

    model = inference_model(config)
    variables = model.init(
        jax.random.key(0, impl="rbg"), np.zeros((1, *config.input_size, 3), np.float32), False
    )
    return TrainedVictim(config, model, variables, {})


@pytest.fixture(scope="session")
def small_msmt_dir(tmp_path_factory):
    """A data dir holding synth_msmt at `worlds.SMALL_MSMT` (8 + 4 people)."""
    from helpers.worlds import SMALL_MSMT

    from invfeat.data.builders import build
    from invfeat.data.builders.synth import builder_config

    root = tmp_path_factory.mktemp("small_msmt")
    build("synth_msmt", data_dir=root, config=builder_config(**SMALL_MSMT))
    return root


@pytest.fixture(scope="session")
def trained_victim(small_msmt_dir, tmp_path_factory):
    """(workdir, TrainedVictim): the victim of `worlds.SMALL_MSMT_VICTIM` trained on
    `small_msmt_dir` through `train_victim`, its workdir as training left it."""
    from helpers.worlds import SMALL_MSMT_VICTIM

    from invfeat.victims import train_victim

    workdir = tmp_path_factory.mktemp("trained_victim")
    victim = train_victim(SMALL_MSMT_VICTIM, workdir, data_dir=small_msmt_dir, progress=False)
    return workdir, victim


@pytest.fixture(scope="session")
def tiny_study_data_dir(tmp_path_factory):
    """A data dir holding the tiny study's attack data: synth_market at `worlds.TINY_STUDY_DATA`."""
    from helpers.worlds import TINY_STUDY_DATA

    from invfeat.data.datasets import prepare_dataset

    root = tmp_path_factory.mktemp("tiny_study_data")
    prepare_dataset("synth_market", data_dir=root, data_settings=TINY_STUDY_DATA)
    return root


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler, as in a terminal: a process started in the background by a
    non-interactive shell (as CI may be) inherits SIGINT ignored, and Python then keeps it so."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def ctrl_c_in_data_save(ctrl_c_raises, monkeypatch):
    """Ctrl-C while orbax writes the data state of position 2 (the main thread waits on it): a real
    SIGINT sent from the data-state handler, which orbax runs in a worker thread."""
    from helpers.interrupts import ctrl_c

    from invfeat.train.checkpoint import DataStateHandler

    save = DataStateHandler.save

    def save_interrupted(self, directory, args):
        if args.state == {"position": 2}:
            ctrl_c()
        save(self, directory, args)

    monkeypatch.setattr(DataStateHandler, "save", save_interrupted)
