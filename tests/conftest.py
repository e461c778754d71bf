"""Test session setup: CPU only, eight forced host devices (set before JAX is imported); and the
fixtures several test files share, each built once per session (tests only read them)."""

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
def tiny_study_data_dir(tmp_path_factory):
    """A data dir holding the tiny study's attack data: synth_market at `worlds.TINY_STUDY_DATA`."""
    from helpers.worlds import TINY_STUDY_DATA

    from invfeat.data.datasets import prepare_dataset

    root = tmp_path_factory.mktemp("tiny_study_data")
    prepare_dataset("synth_market", data_dir=root, data_settings=TINY_STUDY_DATA)
    return root
