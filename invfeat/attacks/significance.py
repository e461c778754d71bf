"""Whether an attack beats chance, decided by a test: intervals for the study's figures.

Each interval function returns `{value, low, high}`, an interval of z standard errors (95 % by
default; `z_for(level)` for others), and a figure leaks when its interval lies wholly above what
an attacker gets without the features (`leaks`). `balanced_accuracy_null` gives that level for a
classifier: the same predictions scored against shuffled labels. Attribute accuracy: the bootstrap standard error
over the victims; rank-1: the exact binomial interval of the hits; a mean of per-vector scores
(an estimate's cosine to its own plaintext minus to another's): the normal interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.stats

Z_95 = float(scipy.stats.norm.ppf(0.975))


def z_for(level: float) -> float:
    """The z of a two-sided interval at confidence `level` (0.95 -> 1.96)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(scipy.stats.norm.ppf(0.5 + level / 2))


def _recall_inputs(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """[N, K] one-hot of the known labels, and [N, K] of the correct predictions among them."""
    known = labels >= 0
    onehot = np.zeros((len(labels), num_classes))
    onehot[np.flatnonzero(known), labels[known]] = 1.0
    return onehot, onehot * (predictions == labels)[:, None]


def _balanced(weights: np.ndarray, onehot: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Balanced accuracy of one attribute under row weights [R, N] (a resample each): [R]."""
    count = weights @ onehot  # [R, K]
    hits = weights @ correct
    present = count > 0
    recall = np.where(present, hits / np.maximum(count, 1), 0.0)
    classes = present.sum(axis=1)
    return np.where(classes > 0, recall.sum(axis=1) / np.maximum(classes, 1), np.nan)


def balanced_accuracy_interval(
    labels_NA: Any,
    predictions_NA: Any,
    num_classes: tuple[int, ...],
    *,
    z: float = Z_95,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Balanced accuracy per attribute and its mean over attributes (as
    `invfeat.metrics.balanced_accuracy`, labels -1 ignored; NaN for an attribute no victim has a
    label of, left out of the mean), each with the interval value +- z times its bootstrap
    standard error over the N victims (rows resampled with replacement; a resample without a
    label of an attribute leaves that attribute out of its spread): {value, low, high,
    per_attribute: [{value, low, high}, ...]}."""
    labels = np.asarray(labels_NA, np.int64)
    predictions = np.asarray(predictions_NA, np.int64)
    if labels.shape != predictions.shape or labels.ndim != 2:
        raise ValueError(
            f"labels and predictions must be two [N, A] arrays of one shape, got {labels.shape} "
            f"and {predictions.shape}"
        )
    if len(num_classes) != labels.shape[1]:
        raise ValueError(f"num_classes has {len(num_classes)} entries for {labels.shape[1]}")
    if resamples < 2:
        raise ValueError(f"need resamples >= 2, got {resamples}")
    n = len(labels)
    rng = np.random.default_rng(seed)
    weights = np.vstack(
        [np.ones(n), rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)]
    )  # row 0: the sample itself
    per_attribute = np.stack(
        [
            _balanced(weights, *_recall_inputs(labels[:, a], predictions[:, a], k))
            for a, k in enumerate(num_classes)
        ]
    )  # [A, 1 + R]

    def summary(values: np.ndarray) -> dict[str, float]:
        value = float(values[0])
        if not np.isfinite(value):
            return {"value": value, "low": value, "high": value}
        half = z * float(np.nanstd(values[1:], ddof=1))
        return {"value": value, "low": max(0.0, value - half), "high": min(1.0, value + half)}

    known = np.isfinite(per_attribute[:, 0])  # attributes with a known label among the victims
    with np.errstate(invalid="ignore"):
        out = summary(np.nanmean(per_attribute[known], axis=0))
    return out | {"per_attribute": [summary(row) for row in per_attribute]}


def balanced_accuracy_null(
    labels_NA: Any,
    predictions_NA: Any,
    num_classes: tuple[int, ...],
    *,
    permutations: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """What the same predictions score where they say nothing of the labels: balanced accuracy
    per attribute and its mean over attributes (as `balanced_accuracy_interval`) with the
    victims' label rows shuffled against the predictions, `permutations` times (each class's
    count and each prediction's kept). {mean, sd, per_attribute: [{mean, sd}, ...]}."""
    labels = np.asarray(labels_NA, np.int64)
    predictions = np.asarray(predictions_NA, np.int64)
    if labels.shape != predictions.shape or labels.ndim != 2 or permutations < 2:
        raise ValueError(
            f"need two [N, A] arrays of one shape and permutations >= 2, got {labels.shape}, "
            f"{predictions.shape}, {permutations}"
        )
    rng = np.random.default_rng(seed)
    ones = np.ones((1, len(labels)))
    scores = np.empty((permutations, labels.shape[1]))
    for p in range(permutations):
        shuffled = labels[rng.permutation(len(labels))]
        for a, k in enumerate(num_classes):
            onehot, correct = _recall_inputs(shuffled[:, a], predictions[:, a], k)
            scores[p, a] = _balanced(ones, onehot, correct)[0]
    known = np.isfinite(scores).all(axis=0)
    mean = scores[:, known].mean(axis=1)
    return {
        "mean": float(mean.mean()),
        "sd": float(mean.std(ddof=1)),
        "per_attribute": [
            {"mean": float(np.mean(col)), "sd": float(np.std(col, ddof=1))} for col in scores.T
        ],
    }


def binomial_interval(hits: int, trials: int, *, z: float = Z_95) -> dict[str, float]:
    """{value, low, high}: the rate hits / trials and its exact (Clopper-Pearson) interval at the
    two-sided level of `z`, which holds for few trials too."""
    if trials < 1 or not 0 <= hits <= trials:
        raise ValueError(f"need 0 <= hits <= trials and trials >= 1, got {hits} / {trials}")
    tail = float(scipy.stats.norm.sf(z))
    low = scipy.stats.beta.ppf(tail, hits, trials - hits + 1) if hits > 0 else 0.0
    high = scipy.stats.beta.ppf(1 - tail, hits + 1, trials - hits) if hits < trials else 1.0
    return {"value": hits / trials, "low": float(low), "high": float(high)}


def mean_interval(values: Any, *, z: float = Z_95) -> dict[str, float]:
    """{value, low, high}: the mean of `values` [N >= 2] and its normal interval."""
    x = np.asarray(values, np.float64).ravel()
    if len(x) < 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"need at least two finite values, got {len(x)}")
    mean = float(x.mean())
    half = z * float(x.std(ddof=1)) / np.sqrt(len(x))
    return {"value": mean, "low": mean - half, "high": mean + half}


def leaks(interval: dict[str, float], chance: float) -> bool:
    """Whether the figure is above `chance` beyond doubt: its interval's low end is above it."""
    return bool(interval["low"] > chance)
