"""Significance (invfeat/attacks/significance.py): intervals of the study's figures and the
verdict "leaks" (the interval wholly above chance)."""

import numpy as np
import pytest
import scipy.stats

from invfeat import metrics
from invfeat.attacks import significance as sig


def test_z_for_levels():
    assert sig.z_for(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert sig.z_for(0.95) == pytest.approx(sig.Z_95)
    assert sig.z_for(0.99) == pytest.approx(2.575829, abs=1e-6)
    assert sig.z_for(0.5) < sig.z_for(0.9) < sig.z_for(0.95) < sig.z_for(0.999)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="level"):
            sig.z_for(bad)


def labelled(n: int, seed: int, flip: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Labels [n, 3] (classes 2, 3, 4; some unknown: -1) and predictions that are right but for
    a `flip` share of rows."""
    rng = np.random.default_rng(seed)
    classes = (2, 3, 4)
    labels = np.stack([rng.integers(0, k, n) for k in classes], axis=1)
    predictions = np.where(
        rng.random((n, 3)) < flip, np.stack([rng.integers(0, k, n) for k in classes], 1), labels
    )
    labels[rng.random((n, 3)) < 0.1] = -1
    # an unknown label predicted as anything must not count
    predictions[labels == -1] = 0
    return labels, predictions


def test_balanced_accuracy_interval_value_is_the_metric():
    labels, predictions = labelled(120, seed=0)
    out = sig.balanced_accuracy_interval(labels, predictions, (2, 3, 4), resamples=200)
    expected = np.asarray(metrics.balanced_accuracy(labels, predictions, 4))
    assert len(out["per_attribute"]) == 3
    for a, bounds in enumerate(out["per_attribute"]):
        assert bounds["value"] == pytest.approx(float(expected[a]), abs=1e-6)
        assert bounds["low"] <= bounds["value"] <= bounds["high"]
    assert out["value"] == pytest.approx(float(expected.mean()), abs=1e-6)
    assert out["low"] < out["value"] < out["high"]


def test_balanced_accuracy_interval_ignores_unknown_labels():
    labels, predictions = labelled(80, seed=1)
    wrong = predictions.copy()
    rng = np.random.default_rng(2)
    # changing predictions where the label is unknown changes nothing
    wrong[labels == -1] = rng.integers(0, 2, (labels == -1).sum())
    a = sig.balanced_accuracy_interval(labels, predictions, (2, 3, 4), resamples=50)
    b = sig.balanced_accuracy_interval(labels, wrong, (2, 3, 4), resamples=50)
    assert a == b


def test_balanced_accuracy_interval_is_clipped_to_the_unit_interval():
    labels, _ = labelled(30, seed=3)
    perfect = sig.balanced_accuracy_interval(labels, labels, (2, 3, 4), z=10.0, resamples=50)
    assert perfect["value"] == 1.0 and perfect["high"] == 1.0
    # every prediction wrong: 0, and the interval does not go below it
    wrong = np.where(labels >= 0, (labels + 1) % np.array([2, 3, 4]), -1)
    none = sig.balanced_accuracy_interval(labels, wrong, (2, 3, 4), z=10.0, resamples=50)
    assert none["value"] == 0.0 and none["low"] == 0.0
    # a middling figure under a huge z: clipped at both ends
    labels, predictions = labelled(30, seed=4, flip=0.5)
    wide = sig.balanced_accuracy_interval(labels, predictions, (2, 3, 4), z=100.0, resamples=50)
    for bounds in (wide, *wide["per_attribute"]):
        assert bounds["low"] == 0.0 and bounds["high"] == 1.0
        assert 0.0 < bounds["value"] < 1.0


def test_balanced_accuracy_interval_widens_with_z_and_shrinks_with_rows():
    labels, predictions = labelled(100, seed=5)
    narrow = sig.balanced_accuracy_interval(labels, predictions, (2, 3, 4), z=1.0)
    wide = sig.balanced_accuracy_interval(labels, predictions, (2, 3, 4), z=2.0)
    assert wide["value"] == narrow["value"]
    assert wide["high"] - wide["low"] == pytest.approx(2 * (narrow["high"] - narrow["low"]))
    few = sig.balanced_accuracy_interval(*labelled(50, seed=6), (2, 3, 4))
    many = sig.balanced_accuracy_interval(*labelled(5000, seed=6), (2, 3, 4))
    assert many["high"] - many["low"] < 0.5 * (few["high"] - few["low"])


def test_balanced_accuracy_interval_is_seeded():
    labels, predictions = labelled(60, seed=7)
    a = sig.balanced_accuracy_interval(labels, predictions, (2, 3, 4), seed=1, resamples=100)
    b = sig.balanced_accuracy_interval(labels, predictions, (2, 3, 4), seed=1, resamples=100)
    c = sig.balanced_accuracy_interval(labels, predictions, (2, 3, 4), seed=2, resamples=100)
    assert a == b and a["low"] != c["low"] and a["value"] == c["value"]


def test_balanced_accuracy_interval_refuses_bad_shapes():
    labels, predictions = labelled(20, seed=8)
    with pytest.raises(ValueError, match="one shape"):
        sig.balanced_accuracy_interval(labels, predictions[:, :2], (2, 3, 4))
    with pytest.raises(ValueError, match="one shape"):
        sig.balanced_accuracy_interval(labels[:, 0], predictions[:, 0], (2,))
    with pytest.raises(ValueError, match="num_classes has 2 entries"):
        sig.balanced_accuracy_interval(labels, predictions, (2, 3))
    with pytest.raises(ValueError, match="resamples"):
        sig.balanced_accuracy_interval(labels, predictions, (2, 3, 4), resamples=1)


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99, 1 - 0.05 / 8])
@pytest.mark.parametrize(("hits", "trials"), [(0, 10), (1, 10), (7, 20), (20, 20), (3, 200)])
def test_binomial_interval_is_clopper_pearson(hits, trials, level):
    out = sig.binomial_interval(hits, trials, z=sig.z_for(level))
    exact = scipy.stats.binomtest(hits, trials).proportion_ci(level, method="exact")
    assert out["value"] == hits / trials
    assert out["low"] == pytest.approx(exact.low, abs=1e-9)
    assert out["high"] == pytest.approx(exact.high, abs=1e-9)
    assert 0.0 <= out["low"] <= out["value"] <= out["high"] <= 1.0


def test_binomial_interval_edges_and_refusals():
    zero = sig.binomial_interval(0, 50)
    assert zero["value"] == 0.0 and zero["low"] == 0.0 and 0 < zero["high"] < 0.1
    full = sig.binomial_interval(50, 50)
    assert full["value"] == 1.0 and full["high"] == 1.0 and 0.9 < full["low"] < 1.0
    # more trials, narrower; larger z, wider
    assert (
        sig.binomial_interval(50, 100)["high"] - sig.binomial_interval(50, 100)["low"]
        < sig.binomial_interval(5, 10)["high"] - sig.binomial_interval(5, 10)["low"]
    )
    assert sig.binomial_interval(5, 10, z=3.0)["low"] < sig.binomial_interval(5, 10)["low"]
    for hits, trials in ((1, 0), (0, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError, match="hits <= trials"):
            sig.binomial_interval(hits, trials)


def test_mean_interval():
    x = np.random.default_rng(0).normal(2.0, 1.0, 400)
    out = sig.mean_interval(x)
    half = sig.Z_95 * x.std(ddof=1) / np.sqrt(len(x))
    assert out["value"] == pytest.approx(x.mean())
    assert out["low"] == pytest.approx(x.mean() - half)
    assert out["high"] == pytest.approx(x.mean() + half)
    assert out["low"] < 2.0 < out["high"]
    assert sig.mean_interval(x, z=3.0)["low"] < out["low"]
    # a constant sample: a point interval
    assert sig.mean_interval([0.5, 0.5, 0.5]) == {"value": 0.5, "low": 0.5, "high": 0.5}
    assert sig.mean_interval(np.ones((2, 3)))["value"] == 1.0  # flattened
    for bad in ([1.0], [], [1.0, np.nan], [1.0, np.inf]):
        with pytest.raises(ValueError, match="two finite values"):
            sig.mean_interval(bad)


def test_leaks_only_when_the_interval_is_wholly_above_chance():
    assert sig.leaks({"value": 0.5, "low": 0.2, "high": 0.8}, 0.1)
    assert not sig.leaks({"value": 0.5, "low": 0.1, "high": 0.8}, 0.1)  # touching: no
    assert not sig.leaks({"value": 0.5, "low": 0.05, "high": 0.8}, 0.1)
    assert isinstance(sig.leaks({"value": 0, "low": np.float64(1.0), "high": 1}, 0.5), bool)
    # a rank-1 of 60 / 200 leaks against chance 0.01; one hit in 200 does not
    assert sig.leaks(sig.binomial_interval(60, 200), 0.01)
    assert not sig.leaks(sig.binomial_interval(1, 200), 0.01)


def test_the_null_of_balanced_accuracy_is_what_predictions_score_against_shuffled_labels():
    rng = np.random.default_rng(0)
    labels = np.stack([rng.integers(0, 2, 400), rng.choice(4, 400, p=[0.85, 0.1, 0.04, 0.01])], 1)
    null = sig.balanced_accuracy_null(labels, labels, (2, 4), permutations=300)
    # a perfect predictor of shuffled labels says nothing: about 1 / classes on average
    assert null["per_attribute"][0]["mean"] == pytest.approx(0.5, abs=0.02)
    assert null["per_attribute"][1]["mean"] == pytest.approx(0.25, abs=0.03)
    assert all(a["sd"] > 0.01 for a in null["per_attribute"])  # 400 rows: a visible spread
    assert null["mean"] == pytest.approx(
        np.mean([a["mean"] for a in null["per_attribute"]]), abs=1e-9
    )
    constant = np.zeros_like(labels)
    flat = sig.balanced_accuracy_null(labels, constant, (2, 4), permutations=10)
    assert flat["per_attribute"][0] == {"mean": 0.5, "sd": 0.0}
    with pytest.raises(ValueError, match="permutations >= 2"):
        sig.balanced_accuracy_null(labels, labels, (2, 4), permutations=1)
