"""The attribute attack through the engine (invfeat/attacks/attributes.py): it learns attributes
that features encode linearly, sits at chance on random ciphertext bit patterns, and resumes a
killed run exactly; on a tiny set, an attribute without training labels is left out, and victims
without any label are refused before training."""

import dataclasses
import json
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from invfeat.attacks import attributes as A
from invfeat.attacks.configs import AttributeAttackConfig
from invfeat.train.mesh import make_mesh
from invfeat.train.predict import BlockPredictor

D = 16
NAMES = ("gender", "age", "upblack", "upwhite", "upred")
# The thresholds below were measured with Flax's initialiser and optax's epsilon.
CONFIG = AttributeAttackConfig(
    learning_rate=1e-2, batch_size=64, epochs=4, steps_per_epoch=10, partial_batches=False,
    dropout=0.1, block_num=2, drop_incomplete_records=False, initializer="lecun_normal",
    adam_epsilon=1e-8,
)  # fmt: skip


def world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Attributes (gender 2 classes, age 3, one-hot colour flags) and features linear in them."""
    rng = np.random.default_rng(seed)
    gender = rng.integers(0, 2, n)
    age = rng.integers(0, 3, n)
    colour = rng.integers(0, 3, n)
    flags = np.eye(3, dtype=np.int64)[colour]
    attributes = np.column_stack([gender, age, flags])
    attributes[:10, 1] = -1  # unknown labels are ignored
    codes = np.concatenate([np.eye(2)[gender], np.eye(3)[age], np.eye(3)[colour]], axis=1)
    mixing = np.random.default_rng(99).normal(size=(8, D))  # the same "API" for every split
    features = codes @ mixing + 0.3 * rng.normal(size=(n, D))
    return features.astype(np.float32), attributes


def ciphertext(n: int, seed: int) -> np.ndarray:
    """Random 32-bit patterns read as float32 (NaN, inf, huge values included)."""
    words = np.random.default_rng(seed).integers(0, 2**32, size=(n, D), dtype=np.uint64)
    return words.astype(np.uint32).view(np.float32)


@pytest.fixture(scope="module")
def data():
    return world(512, 0), world(256, 1)


@pytest.fixture(scope="module")
def plain(tmp_path_factory, data, one_device):
    (x_train, y_train), (x_victim, y_victim) = data
    workdir = tmp_path_factory.mktemp("plain")
    result = A.run_attribute_attack(
        x_train,
        y_train,
        x_victim,
        y_victim,
        NAMES,
        CONFIG,
        workdir,
        mesh=one_device,
        progress=False,
    )
    return result, workdir


def test_attack_beats_majority_on_linearly_encoded_attributes(plain, data):
    result, workdir = plain
    assert result.names == ("gender", "age", "up_colour")  # colour flags merged
    assert result.num_classes == (2, 3, 3)
    for name in result.names:
        m = result.metrics[name]
        assert m["balanced_accuracy"] > m["majority"] + 0.25, (name, m)
    mean = result.metrics["mean"]
    assert mean["chance"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 3) / 3)
    assert mean["balanced_accuracy"] > 0.85
    # the kept checkpoint is the best epoch by the evaluator's mean balanced accuracy
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in epochs] == [10, 20, 30, 40]
    scores = [r[A.BEST_METRIC] for r in epochs]
    assert result.best_step == epochs[int(np.argmax(scores))]["step"]
    assert result.metrics["mean"]["balanced_accuracy"] == pytest.approx(max(scores), abs=1e-6)
    # predict reads features as the attack did; prepare_labels maps raw columns to the head's
    (x_victim, y_victim) = data[1]
    predictions = result.predict(x_victim)
    assert predictions.shape == (256, 3) and predictions.dtype == np.int32
    labels = result.prepare_labels(y_victim)
    np.testing.assert_array_equal(labels[:, 2], np.argmax(y_victim[:, 2:], axis=1))
    np.testing.assert_array_equal(result.predict.prepare_labels(y_victim), labels)


def test_attack_on_random_ciphertext_sits_at_chance(tmp_path, data):
    (_, y_train), (_, y_victim) = data
    config = AttributeAttackConfig(**{**CONFIG.to_dict(), "encoding": "bits"})
    mesh = make_mesh()  # all eight forced CPU devices: batches sharded over the mesh
    x_train, x_victim = ciphertext(512, 2), ciphertext(256, 3)
    assert not np.isfinite(x_train).all()
    result = A.run_attribute_attack(
        x_train, y_train, x_victim, y_victim, NAMES, config, tmp_path, mesh=mesh, progress=False
    )
    assert result.stop_reason is None
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["train/loss"]) for r in records if r["kind"] == "epoch")
    mean = result.metrics["mean"]
    assert abs(mean["balanced_accuracy"] - mean["chance"]) < 0.08, mean
    with pytest.raises(ValueError, match="encoding"):
        A.run_attribute_attack(
            x_train, y_train, x_victim, y_victim, NAMES, CONFIG, tmp_path / "x", mesh=mesh
        )


def test_killed_attack_resumes_to_the_same_result(tmp_path, monkeypatch, plain, data, one_device):
    (x_train, y_train), (x_victim, y_victim) = data
    reference, _ = plain
    real_fit = A.run_training

    def interrupt(step, state):
        if step == 15:
            raise KeyboardInterrupt

    monkeypatch.setattr(A, "run_training", lambda *a, **kw: real_fit(*a, **kw, hooks=[interrupt]))
    args = (x_train, y_train, x_victim, y_victim, NAMES, CONFIG, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        A.run_attribute_attack(*args, mesh=one_device, progress=False)
    monkeypatch.setattr(A, "run_training", real_fit)
    resumed = A.run_attribute_attack(*args, mesh=one_device, progress=False)
    assert resumed.metrics == reference.metrics
    assert resumed.best_step == reference.best_step
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        resumed.variables,
        reference.variables,
    )
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [10, 20, 30, 40]
    other = AttributeAttackConfig(**{**CONFIG.to_dict(), "learning_rate": 1e-3})
    with pytest.raises(ValueError, match="different config"):
        A.run_attribute_attack(*args[:5], other, tmp_path, mesh=one_device)


def test_bad_attribute_values_are_named(data, tmp_path, one_device):
    (x, y), _ = data
    bad = y.copy()
    bad[0, 1] = 3  # age has 3 classes
    labels = [("male", "female"), ("young", "adult", "old"), *[("no", "yes")] * 3]
    with pytest.raises(ValueError, match="'age' has values outside -1..2"):
        A.run_attribute_attack(
            x, bad, x, y, NAMES, CONFIG, tmp_path, attribute_labels=labels, mesh=one_device
        )


def test_attribute_evaluator_yields_the_mean_then_each_attribute(one_device):
    """The evaluator `fit` runs on the victims each epoch, here with a head that always says 0."""
    labels = np.array([[0, 1], [1, 0], [0, 2], [1, 1]], np.int32)
    zeros = BlockPredictor(lambda v, f: jnp.zeros((f.shape[0], 2), jnp.int32), one_device, 4)
    features = np.zeros((4, 3), np.float32)
    evaluator = A.AttributeEvaluator(zeros, features, labels, ("gender", "colour"), (2, 3))
    pairs = evaluator.run(types.SimpleNamespace(params={}, model_state={}))
    names = [name for name, _ in pairs]
    assert names == [
        "mean_balanced_accuracy",
        "gender_balanced_accuracy",
        "colour_balanced_accuracy",
    ]
    scores = dict(pairs)
    assert scores["gender_balanced_accuracy"] == 0.5
    assert scores["colour_balanced_accuracy"] == pytest.approx(1 / 3)
    assert scores["mean_balanced_accuracy"] == pytest.approx((0.5 + 1 / 3) / 2)


# ---- tiny attack sets ------------------------------------------------------------------------

TINY_CONFIG = AttributeAttackConfig(
    learning_rate=1e-2, batch_size=16, epochs=1, steps_per_epoch=2, partial_batches=False,
    eval_batch_size=16, block_num=2, dropout=0.5, drop_incomplete_records=False,
    initializer="lecun_normal", adam_epsilon=1e-8,
)  # fmt: skip
TINY_NAMES = ("gender", "bag", "hat")


def tiny_world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three attributes (2, 2 and 3 classes) whose labels are the first features."""
    rng = np.random.default_rng(seed)
    labels = np.column_stack([rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 3, n)])
    features = np.concatenate([labels, rng.normal(size=(n, 5))], axis=1).astype(np.float32)
    return features, labels


def test_attribute_without_training_labels_is_left_out_on_a_tiny_set(tmp_path, one_device):
    """10 training rows (< batch 16); 'bag' unknown in every training row, 'hat' one class."""
    x_train, y_train = tiny_world(10, 0)
    x_victim, y_victim = tiny_world(7, 1)
    y_train[:, 1] = -1
    y_train[:, 2] = 1
    with pytest.warns(UserWarning, match=r"\['bag'\] have no known label in train_attributes"):
        result = A.run_attribute_attack(
            x_train,
            y_train,
            x_victim,
            y_victim,
            TINY_NAMES,
            TINY_CONFIG,
            tmp_path,
            mesh=one_device,
            progress=False,
        )
    assert set(result.metrics) == {"gender", "hat", "mean"}
    # One class seen in training: the balanced head predicts it, the majority baseline's score.
    assert result.metrics["hat"]["balanced_accuracy"] == pytest.approx(1 / 3)
    assert result.predict(x_victim).shape == (7, 3)


def test_victims_without_any_label_are_refused_before_training(tmp_path, one_device):
    x_train, y_train = tiny_world(10, 0)
    x_victim, y_victim = tiny_world(7, 1)
    workdir = tmp_path / "run"
    with warnings.catch_warnings(), pytest.raises(ValueError, match="victim_attributes"):
        warnings.simplefilter("ignore")
        A.run_attribute_attack(
            x_train,
            y_train,
            x_victim,
            np.full_like(y_victim, -1),
            TINY_NAMES,
            TINY_CONFIG,
            workdir,
            mesh=one_device,
            progress=False,
        )
    assert not workdir.exists()  # refused before anything was written or trained


def test_incomplete_records_are_dropped_as_published():
    """`drop_incomplete_records`: a record with any label unknown after merging the colours
    (missing, or not exactly one colour flag) is unknown throughout; else only that column."""
    from invfeat.attacks.attributes import prepare_labels
    from invfeat.data.attributes import Attribute

    schema = (
        Attribute("gender", ("male", "female")),
        Attribute("upred", ("no", "yes")),
        Attribute("upblue", ("no", "yes")),
    )
    values = np.array([[0, 1, 0], [1, 1, 1], [-1, 0, 1], [1, 0, 1]])
    kept, columns = prepare_labels(values, schema, merge_colours=True)
    assert [c.name for c in columns] == ["gender", "up_colour"]
    np.testing.assert_array_equal(kept, [[0, 0], [1, -1], [-1, 1], [1, 1]])
    dropped, _ = prepare_labels(values, schema, merge_colours=True, drop_incomplete_records=True)
    np.testing.assert_array_equal(dropped, [[0, 0], [-1, -1], [-1, -1], [1, 1]])


def test_dropping_incomplete_records_that_leaves_none_to_train_on_is_refused(tmp_path, one_device):
    x_train, y_train = tiny_world(10, 0)
    x_victim, y_victim = tiny_world(7, 1)
    y_train[:, 1] = -1  # every training record lacks 'bag'
    config = dataclasses.replace(TINY_CONFIG, drop_incomplete_records=True)
    with pytest.raises(ValueError, match="none is left to train on"):
        A.run_attribute_attack(
            x_train, y_train, x_victim, y_victim, TINY_NAMES, config, tmp_path,
            mesh=one_device, progress=False,
        )  # fmt: skip


def test_published_epochs_run_ceil_batches_with_the_last_partial(tmp_path, one_device):
    """The published defaults (Keras' fit): 10 rows in batches of 4 are 3 steps an epoch."""
    x_train, y_train = tiny_world(10, 0)
    x_victim, y_victim = tiny_world(7, 1)
    config = AttributeAttackConfig(batch_size=4, epochs=2, eval_batch_size=16)
    assert config.partial_batches and config.steps_per_epoch_for(10) == 3
    A.run_attribute_attack(
        x_train, y_train, x_victim, y_victim, TINY_NAMES, config, tmp_path,
        mesh=one_device, progress=False,
    )  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "epoch"] == [3, 6]
    assert all(np.isfinite(r["train/loss"]) for r in records if r["kind"] == "epoch")
    with pytest.raises(ValueError, match="partial_batches counts an epoch's batches itself"):
        AttributeAttackConfig(steps_per_epoch=5)
