"""Attack 1: recognise auxiliary attributes from feature vectors.

The attacker trains the published attribute head on its own (API(image), attributes) pairs
through the engine's `fit`, then scores it on the victims' vectors.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from invfeat import metrics as M
from invfeat.attacks.arrays import ArrayBatches, attacker_features, feature_transform, init_key
from invfeat.attacks.ciphertext import encoded_dim
from invfeat.attacks.configs import AttributeAttackConfig
from invfeat.attacks.steps import attribute_class_weights, make_attribute_head_step
from invfeat.data.attributes import Attribute, merge_colour_values
from invfeat.models.attribute_head import AttributeHead
from invfeat.train.checkpoint import CheckpointConfig, Checkpointer
from invfeat.train.loop import CHECKPOINT_DIR, METRICS_FILE
from invfeat.train.mesh import make_mesh
from invfeat.train.optim import OptimizerConfig, make_optimizer
from invfeat.train.predict import BlockPredictor
from invfeat.train.run import claim_workdir, run_training
from invfeat.train.state import abstract_like

_balanced_accuracy = jax.jit(M.balanced_accuracy, static_argnums=2)
_majority = jax.jit(M.majority_balanced_accuracy, static_argnums=1)
EVALUATOR = "victims"
BEST_METRIC = f"{EVALUATOR}/mean_balanced_accuracy"


@dataclasses.dataclass(frozen=True)
class AttributePredictor:
    """`predictor(features [N, D]) -> class ids [N, A]`, reading features as the attack did.

    Carries the head's columns, so a caller holding only `result.predict` can still map raw
    attribute values to them (`prepare_labels`).
    """

    blocks: BlockPredictor
    variables: Any
    encoding: str | None
    attributes: tuple[Attribute, ...]  # the head's columns
    source_attributes: tuple[Attribute, ...]  # the columns of the raw attribute arrays
    merge_colours: bool
    drop_incomplete_records: bool = False

    def __call__(self, features_ND: np.ndarray) -> np.ndarray:
        return self.blocks(
            self.variables, attacker_features(features_ND, self.encoding, "features")
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    @property
    def num_classes(self) -> tuple[int, ...]:
        return tuple(a.num_classes for a in self.attributes)

    def prepare_labels(self, attributes_NA: np.ndarray) -> np.ndarray:
        """Raw attribute values -> the head's columns (colours merged when configured)."""
        return prepare_labels(
            attributes_NA,
            self.source_attributes,
            self.merge_colours,
            drop_incomplete_records=self.drop_incomplete_records,
        )[0]


@dataclasses.dataclass
class AttributeResult:
    """The trained head, what it reaches on the victims, and how to apply it again.

    `metrics`: {attribute: {balanced_accuracy, majority, chance}, ..., "mean": {...}} on the
    victims' split. `predict(features [N, D]) -> class ids [N, A]` (an `AttributePredictor`)
    reads features as the attack did (same encoding); `prepare_labels` maps raw attribute values
    (as given to the attack) to the head's columns (colours merged when configured).
    """

    metrics: dict[str, dict[str, float]]
    variables: Any
    config: AttributeAttackConfig
    predict: AttributePredictor
    best_step: int
    log: Path
    stop_reason: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self.predict.names

    @property
    def num_classes(self) -> tuple[int, ...]:
        return self.predict.num_classes

    def prepare_labels(self, attributes_NA: np.ndarray) -> np.ndarray:
        return self.predict.prepare_labels(attributes_NA)


def attack_schema(
    names: Sequence[str | Attribute],
    labels: Sequence[Sequence[str]] | None,
    *value_arrays: np.ndarray,
) -> tuple[Attribute, ...]:
    """`Attribute`s from names (or Attributes), class labels, or else the largest value seen."""
    if labels is not None and len(labels) != len(names):
        raise ValueError(f"attribute_labels has {len(labels)} entries for {len(names)} names")
    out = []
    for a, name in enumerate(names):
        if isinstance(name, Attribute):
            out.append(name)
        elif labels is not None:
            out.append(Attribute(name, tuple(labels[a])))
        else:
            top = max((int(np.max(v[:, a], initial=-1)) for v in value_arrays), default=-1)
            out.append(Attribute(name, tuple(str(k) for k in range(max(top + 1, 2)))))
    return tuple(out)


def prepare_labels(
    attributes_NA: np.ndarray,
    schema: Sequence[Attribute],
    merge_colours: bool,
    *,
    drop_incomplete_records: bool = False,
) -> tuple[np.ndarray, tuple[Attribute, ...]]:
    """Validated int32 labels [N, A'] in the head's columns, and those columns.

    With `merge_colours` the `up<colour>` / `down<colour>` flags become the class columns
    `up_colour` / `down_colour` (the paper's choice; `merge_colour_values`). With
    `drop_incomplete_records` a record with any label unknown after that (-1: missing, or not
    exactly one colour flag) has all its labels unknown, as the published code drops it.
    """
    values = np.asarray(attributes_NA)
    if values.ndim != 2 or values.shape[1] != len(schema):
        raise ValueError(
            f"attributes must be [N, {len(schema)}] (one column per attribute name), got "
            f"shape {values.shape}"
        )
    for a, attribute in enumerate(schema):
        bad = (values[:, a] < -1) | (values[:, a] >= attribute.num_classes)
        if bad.any():
            raise ValueError(
                f"attribute {attribute.name!r} has values outside -1..{attribute.num_classes - 1}"
            )
    columns = tuple(schema)
    if merge_colours:
        values, columns = merge_colour_values(values, columns)
    if drop_incomplete_records:
        values = np.where((values < 0).any(axis=1, keepdims=True), -1, values)
    return values.astype(np.int32), columns


def attribute_metrics(
    labels_NA: np.ndarray,
    predictions_NA: np.ndarray,
    names: Sequence[str],
    num_classes: Sequence[int],
) -> dict[str, dict[str, float]]:
    """Balanced accuracy, majority and chance per attribute (known labels only), and the mean.

    The baselines are on the same split: chance 1 / classes, majority 1 / classes present.
    Attributes without a single known label in `labels_NA` are left out (with a warning).
    """
    labels_NA = np.asarray(labels_NA, np.int32)
    predictions_NA = np.asarray(predictions_NA, np.int32)
    top = max(num_classes)  # classes beyond an attribute's own are absent: same scores
    bacc = np.asarray(_balanced_accuracy(labels_NA, predictions_NA, top))
    majority = np.asarray(_majority(labels_NA, top))
    out: dict[str, dict[str, float]] = {}
    for a, (name, classes) in enumerate(zip(names, num_classes, strict=True)):
        if not (labels_NA[:, a] >= 0).any():
            warnings.warn(f"attribute {name!r} has no known label: left out", stacklevel=2)
            continue
        out[name] = {
            "balanced_accuracy": float(bacc[a]),
            "majority": float(majority[a]),
            "chance": float(M.chance_balanced_accuracy(classes)),
        }
    if not out:
        raise ValueError("no attribute has a known label on the evaluated split")
    keys = ("balanced_accuracy", "majority", "chance")
    out["mean"] = {k: float(np.mean([v[k] for v in out.values()])) for k in keys}
    return out


def _scored_labels(y_train: np.ndarray, y_victim: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The victims' labels to score: columns the attacker has no known label for are blanked.

    A head trained on no label is its random initialisation; scoring it would put noise into
    the mean (and into the keep-best selection). Refuses victims without any scorable label
    before training starts.
    """
    untrained = [a for a in range(len(names)) if not (y_train[:, a] >= 0).any()]
    if untrained:
        warnings.warn(
            f"attributes {[names[a] for a in untrained]} have no known label in train_attributes: "
            "their heads learn nothing and are left out of the metrics",
            stacklevel=3,
        )
        y_victim = y_victim.copy()
        y_victim[:, untrained] = -1
    if not (y_victim >= 0).any():
        raise ValueError(
            "victim_attributes: no attribute has a known label (-1 everywhere) for an attribute "
            "the attacker can train on: nothing to score"
        )
    return y_victim


def make_class_predictor(
    head: AttributeHead, encoding: str | None, mesh: Mesh, block_size: int
) -> BlockPredictor:
    """(variables, attacker features) -> class ids [N, A], jitted once."""
    transform = feature_transform(encoding)

    def predict(variables: Any, features: jax.Array) -> jax.Array:
        logits = head.apply(variables, transform(features), train=False)
        return jnp.stack([jnp.argmax(x, axis=-1) for x in logits], axis=-1).astype(jnp.int32)

    return BlockPredictor(predict, mesh, block_size)


@dataclasses.dataclass(frozen=True)
class _Program:
    """The head, its optimizer and compiled pieces of one attack configuration."""

    tx: Any
    init_fn: Callable[[jax.Array], Any]
    step: Callable[[Any, Any], Any]
    predictor: BlockPredictor


@functools.lru_cache(maxsize=8)
def _program(
    num_classes: tuple[int, ...],
    feature_dim: int,
    total_steps: int,
    class_weights: tuple[tuple[float, ...], ...],
    config: AttributeAttackConfig,
    mesh: Mesh,
) -> _Program:
    """Built once per configuration, so a resumed or repeated run reuses its compilations."""
    in_dim = encoded_dim(feature_dim, config.encoding) if config.encoding else feature_dim
    head = AttributeHead(
        num_classes,
        block_num=config.block_num,
        dropout_rate=config.dropout,
        kernel_init=config.initializer,
    )
    tx = make_optimizer(
        OptimizerConfig(
            learning_rate=config.learning_rate,
            schedule="drop_at_half",
            total_steps=total_steps,
            drop_factor=config.lr_drop,
            eps=config.adam_epsilon,
        )
    )
    inner = make_attribute_head_step(head, tx, jnp.asarray(class_weights, jnp.float32))
    transform = feature_transform(config.encoding)

    def step(state, batch):
        return inner(state, {**batch, "features": transform(batch["features"])})

    return _Program(
        tx=tx,
        init_fn=lambda rng: head.init(init_key(rng), jnp.zeros((1, in_dim), jnp.float32)),
        step=step,
        predictor=make_class_predictor(head, config.encoding, mesh, config.eval_batch_size),
    )


class AttributeEvaluator:
    """Evaluator for `fit`: the head's mean and per-attribute balanced accuracy on the victims.

    `predictor(variables, features) -> class ids [N, A]` reads the victims' attacker features;
    `labels` [N, A] are in the head's columns `names` (-1 unknown).
    """

    def __init__(
        self,
        predictor: BlockPredictor,
        features: np.ndarray,
        labels: np.ndarray,
        names: Sequence[str],
        num_classes: Sequence[int],
    ):
        self._predictor, self._features, self._labels = predictor, features, labels
        self._names, self._num_classes = names, num_classes

    def run(self, state: Any) -> list[tuple[str, float]]:
        variables = {"params": state.params, **state.model_state}
        predictions = self._predictor(variables, self._features)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = attribute_metrics(self._labels, predictions, self._names, self._num_classes)
        pairs = [("mean_balanced_accuracy", scores.pop("mean")["balanced_accuracy"])]
        return pairs + [
            (f"{k}_balanced_accuracy", v["balanced_accuracy"]) for k, v in scores.items()
        ]


def run_attribute_attack(
    train_features: np.ndarray,
    train_attributes: np.ndarray,
    victim_features: np.ndarray,
    victim_attributes: np.ndarray,
    attribute_names: Sequence[str | Attribute],
    config: AttributeAttackConfig,
    workdir: str | Path,
    *,
    attribute_labels: Sequence[Sequence[str]] | None = None,
    resume: bool = True,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> AttributeResult:
    """Train the head on the attacker's (features, attributes), score it on the victims'.

    Features are [N, D] float32 (plaintext, or ciphertext with `config.encoding` set);
    attributes [N, A] int (class index from 0, -1 unknown), one column per `attribute_names`
    entry (names, or `invfeat.data.attributes.Attribute`s which carry their class labels).
    With `config.keep_best` the epoch is chosen by its mean balanced accuracy on the victims'
    split itself (as published), so on features that carry nothing the figure sits slightly
    above chance, never below.
    """
    mesh = make_mesh() if mesh is None else mesh
    workdir = Path(workdir)
    schema = attack_schema(
        attribute_names,
        attribute_labels,
        np.asarray(train_attributes),
        np.asarray(victim_attributes),
    )
    drop = dict(drop_incomplete_records=config.drop_incomplete_records)
    y_train, columns = prepare_labels(train_attributes, schema, config.merge_colours, **drop)
    y_victim, _ = prepare_labels(victim_attributes, schema, config.merge_colours, **drop)
    x_train = attacker_features(train_features, config.encoding, "train_features")
    x_victim = attacker_features(victim_features, config.encoding, "victim_features")
    if len(x_train) != len(y_train) or len(x_victim) != len(y_victim):
        raise ValueError(
            f"features and attributes differ in rows: train {len(x_train)} vs {len(y_train)}, "
            f"victims {len(x_victim)} vs {len(y_victim)}"
        )
    if x_train.shape[1] != x_victim.shape[1]:
        raise ValueError(
            f"train_features are {x_train.shape[1]}-D but victim_features {x_victim.shape[1]}-D"
        )
    if config.drop_incomplete_records:  # the records dropped leave the training set
        complete = (y_train >= 0).any(axis=1)
        if not complete.any():
            raise ValueError(
                "every training record has an attribute unknown: with drop_incomplete_records "
                "none is left to train on"
            )
        x_train, y_train = x_train[complete], y_train[complete]
    names = tuple(a.name for a in columns)
    num_classes = tuple(a.num_classes for a in columns)
    y_victim = _scored_labels(y_train, y_victim, names)
    record = {"attack": "attributes", **config.to_dict(), "attributes": list(names)}
    claim_workdir(workdir, record, resume=resume, old_runs="clear")

    steps_per_epoch = config.steps_per_epoch_for(len(x_train))
    total = config.epochs * steps_per_epoch
    weights_AC = np.asarray(attribute_class_weights(y_train, num_classes))
    program = _program(
        num_classes, x_train.shape[1], total, tuple(map(tuple, weights_AC.tolist())), config, mesh
    )
    predictor = program.predictor
    evaluator = AttributeEvaluator(predictor, x_victim, y_victim, names, num_classes)
    checkpoint = CheckpointConfig(
        keep_last=1, best_metric=BEST_METRIC if config.keep_best else None, best_mode="max"
    )
    batches = ArrayBatches(
        {"features": x_train, "attributes": y_train},
        config.batch_size,
        mesh=mesh,
        seed=config.seed,
        partial_batches=config.partial_batches,
    )
    result = run_training(
        program.init_fn,
        program.tx,
        program.step,
        batches,
        mesh=mesh,
        seed=config.seed,
        num_steps=total,
        steps_per_epoch=steps_per_epoch,
        workdir=workdir,
        checkpoint=checkpoint,
        meta=record,
        resume=resume,
        evaluators={EVALUATOR: evaluator},
        progress=progress,
    )
    state, best_step = result.state, result.step
    if config.keep_best:
        with Checkpointer(workdir / CHECKPOINT_DIR, checkpoint) as ckpt:
            best = ckpt.best_step()
            if best is not None and best != best_step:
                state, best_step = ckpt.restore(abstract_like(state), best).state, best
    variables = {"params": state.params, **state.model_state}
    scores = attribute_metrics(y_victim, predictor(variables, x_victim), names, num_classes)
    predict = AttributePredictor(
        predictor,
        variables,
        config.encoding,
        columns,
        schema,
        config.merge_colours,
        config.drop_incomplete_records,
    )
    return AttributeResult(
        metrics=scores,
        variables=variables,
        config=config,
        predict=predict,
        best_step=best_step,
        log=workdir / METRICS_FILE,
        stop_reason=result.stop_reason,
    )
