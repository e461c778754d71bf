"""The victim recipe (invfeat/victims/training.py): trains through the engine, writing metrics and
a loadable victim, moves the parameters, resumes a killed run exactly, names a dataset that is
not built; random erasing fills one rectangle per chosen image."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from helpers.worlds import SMALL_MSMT as SETTINGS
from helpers.worlds import SMALL_MSMT_VICTIM as TINY

from experiments.configs import get_victim_config
from invfeat import victims as V
from invfeat.models import reid


class Stop(Exception):
    pass


def _stop_at(step_to_fail: int):
    def hook(step, state):
        if step == step_to_fail:
            raise Stop(f"killed at step {step}")

    return hook


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_training_writes_metrics_and_a_loadable_victim(trained_victim):
    workdir, victim = trained_victim
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in epochs] == [3, 6]
    assert all(np.isfinite(r["train/loss"]) and "train/triplet" in r for r in epochs)
    assert victim.summary["steps"] == 6 and victim.summary["num_classes"] == 8
    assert "classifier" not in victim.variables["params"]
    loaded = V.load_victim(workdir)
    assert loaded.config == TINY
    for a, b in zip(_leaves(loaded.variables), _leaves(victim.variables), strict=True):
        np.testing.assert_array_equal(a, b)
    images = np.random.default_rng(0).integers(0, 256, (5, *TINY.input_size, 3), np.uint8)
    np.testing.assert_array_equal(
        loaded.api(batch_size=8)(images), victim.api(batch_size=8)(images)
    )


def test_training_moves_the_parameters(trained_victim):
    _, victim = trained_victim
    model = V.inference_model(TINY)
    init_rng = jax.random.split(jax.random.PRNGKey(TINY.seed))[0]  # as create_train_state
    init = jax.jit(V.make_init_fn(model, TINY.input_size))(init_rng)
    moved = [
        not np.allclose(a, b)
        for a, b in zip(_leaves(init["params"]), _leaves(victim.variables["params"]), strict=True)
    ]
    assert np.mean(moved) > 0.5


def test_resume_after_a_kill_ends_with_the_same_parameters(
    trained_victim, small_msmt_dir, tmp_path
):
    _, uninterrupted = trained_victim
    with pytest.raises(Stop):
        V.train_victim(TINY, tmp_path, data_dir=small_msmt_dir, hooks=[_stop_at(4)], progress=False)
    assert not (tmp_path / V.VARIABLES_FILE).exists()
    with pytest.raises(FileExistsError, match="resume"):
        V.train_victim(TINY, tmp_path, data_dir=small_msmt_dir, progress=False)
    resumed = V.train_victim(TINY, tmp_path, data_dir=small_msmt_dir, resume=True, progress=False)
    for a, b in zip(_leaves(resumed.variables), _leaves(uninterrupted.variables), strict=True):
        np.testing.assert_array_equal(a, b)
    other = get_victim_config("tiny", data_settings=SETTINGS, learning_rate=0.5)
    with pytest.raises(ValueError, match="learning_rate"):
        V.train_victim(other, tmp_path, data_dir=small_msmt_dir, resume=True, progress=False)


def test_missing_victim_and_dataset_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trained victim"):
        V.load_victim(tmp_path)
    real = get_victim_config("tiny", dataset="market1501")
    with pytest.raises(FileNotFoundError, match="not built"):
        V.train_victim(real, tmp_path / "w", data_dir=tmp_path / "empty", progress=False)


def test_random_erasing_fills_one_rectangle_per_chosen_image():
    images = jax.random.uniform(jax.random.PRNGKey(0), (64, 32, 16, 3))
    out = np.asarray(
        jax.jit(V.random_erasing, static_argnums=2)(images, jax.random.PRNGKey(1), 0.5)
    )
    changed_BHW = np.any(out != np.asarray(images), axis=-1)
    erased = changed_BHW.any(axis=(1, 2))
    assert 16 < erased.sum() < 48  # about half of 64
    for image, mask in zip(out[erased], changed_BHW[erased], strict=True):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = np.zeros_like(mask)
        box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
        np.testing.assert_allclose(
            image[box], np.broadcast_to(reid.IMAGENET_MEAN, image[box].shape)
        )
    assert np.array_equal(V.random_erasing(images, jax.random.PRNGKey(1), 0.0), images)
