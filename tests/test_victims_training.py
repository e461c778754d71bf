"""The victim recipe: trains through the engine, resumes exactly, saves/loads, evaluates, CLI."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from experiments.configs import VICTIMS, get_victim_config
from invfeat import victims as V
from invfeat.data.builders import build
from invfeat.data.builders.synth import builder_config
from invfeat.models import reid

# 8 train people x 2 images, 4 test people (1 query + 2 gallery images each).
SETTINGS = {
    "num_train_identities": 8,
    "num_test_identities": 4,
    "train_per_identity": 2,
    "gallery_per_identity": 2,
}
TINY = get_victim_config("tiny", data_settings=SETTINGS)  # 2 epochs x 3 steps, batch 4 x 2


class Stop(Exception):
    pass


def _stop_at(step_to_fail: int):
    def hook(step, state):
        if step == step_to_fail:
            raise Stop(f"killed at step {step}")

    return hook


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build("synth_msmt", data_dir=root, config=builder_config(**SETTINGS))
    return root


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("victim")
    victim = V.train_victim(TINY, workdir, data_dir=data_dir, progress=False)
    return workdir, victim


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_training_writes_metrics_and_a_loadable_victim(trained):
    workdir, victim = trained
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


def test_a_victim_of_another_architecture_is_refused(trained, tmp_path, monkeypatch):
    """Same parameter shapes, another model behind the name (e.g. an added input resize)."""
    workdir, _ = trained
    for name in (V.SUMMARY_FILE, V.VARIABLES_FILE):
        (tmp_path / name).write_bytes((workdir / name).read_bytes())
    changed = dataclasses.replace(reid.CONFIGS[TINY.model], backbone_size=(64, 32))
    monkeypatch.setitem(reid.CONFIGS, TINY.model, changed)
    with pytest.raises(ValueError, match="another definition of model 'cpu-tiny'"):
        V.load_victim(tmp_path)


def test_training_moves_the_parameters(trained):
    _, victim = trained
    model = V.inference_model(TINY)
    init_rng = jax.random.split(jax.random.PRNGKey(TINY.seed))[0]  # as create_train_state
    init = jax.jit(V.make_init_fn(model, TINY.input_size))(init_rng)
    moved = [
        not np.allclose(a, b)
        for a, b in zip(_leaves(init["params"]), _leaves(victim.variables["params"]), strict=True)
    ]
    assert np.mean(moved) > 0.5


def test_resume_after_a_kill_ends_with_the_same_parameters(trained, data_dir, tmp_path):
    _, uninterrupted = trained
    with pytest.raises(Stop):
        V.train_victim(TINY, tmp_path, data_dir=data_dir, hooks=[_stop_at(4)], progress=False)
    assert not (tmp_path / V.VARIABLES_FILE).exists()
    with pytest.raises(FileExistsError, match="resume"):
        V.train_victim(TINY, tmp_path, data_dir=data_dir, progress=False)
    resumed = V.train_victim(TINY, tmp_path, data_dir=data_dir, resume=True, progress=False)
    for a, b in zip(_leaves(resumed.variables), _leaves(uninterrupted.variables), strict=True):
        np.testing.assert_array_equal(a, b)
    other = get_victim_config("tiny", data_settings=SETTINGS, learning_rate=0.5)
    with pytest.raises(ValueError, match="learning_rate"):
        V.train_victim(other, tmp_path, data_dir=data_dir, resume=True, progress=False)


def test_evaluation_reports_cmc_and_map(trained, data_dir):
    _, victim = trained
    scores = V.evaluate_victim(victim, "synth_msmt", data_dir=data_dir, data_settings=SETTINGS,
                               progress=False)  # fmt: skip
    assert scores["num_queries"] == 4
    assert 0.0 <= scores["rank1"] <= scores["rank5"] <= scores["rank10"] <= 1.0
    assert 0.0 < scores["mAP"] <= 1.0
    assert 0.0 < scores["chance_rank1"] <= 1.0


def test_config_json_round_trip_and_names():
    for config in VICTIMS.values():
        assert V.VictimConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    r50 = get_victim_config("resnet50")
    assert (r50.model, r50.input_size, r50.batch_size, r50.epochs) == (
        "resnet50",
        (256, 128),
        64,
        120,
    )
    assert r50.learning_rate == 3.5e-4 and r50.milestones == (40.0, 90.0)
    with pytest.raises(ValueError, match="unknown victim config"):
        get_victim_config("nope")
    with pytest.raises(ValueError, match="unknown VictimConfig fields"):
        V.VictimConfig.from_dict({"lr": 1})


def test_missing_victim_and_dataset_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trained victim"):
        V.load_victim(tmp_path)
    real = get_victim_config("tiny", dataset="market1501")
    with pytest.raises(FileNotFoundError, match="not built"):
        V.train_victim(real, tmp_path / "w", data_dir=tmp_path / "empty", progress=False)


def test_cli_eval_writes_a_table(trained, data_dir, capsys):
    from experiments.__main__ import main

    workdir, _ = trained
    argv = ["victim", "eval", "--workdir", str(workdir), "--dataset", "synth_msmt",
            "--data-dir", str(data_dir)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| synth_msmt | in |" in out and "chance rank-1 |" in out
    record = json.loads((workdir / "eval.json").read_text())
    assert record["results"]["synth_msmt"]["num_queries"] == 4


@pytest.mark.parametrize("option", ["--epochs=0", "--seed=-1", "--epochs=two"])
def test_cli_rejects_bad_numbers_before_building_data(option, tmp_path, capsys):
    from experiments.__main__ import main

    argv = ["victim", "train", "--config", "tiny", option, "--data-dir", str(tmp_path / "d"),
            "--workdir", str(tmp_path / "w")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument {option.split('=')[0]}" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "w").exists()


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
