"""The victim recipe: a `ReIDModel` trained with identity cross-entropy (label smoothing) on the
BN-neck logits plus batch-hard triplet loss, over P x K batches, Adam with warm-up and step
decay (FastReID's BoT recipe); resumable bit for bit.

A workdir holds config.json (checked on resume), metrics.jsonl, checkpoints/, and
victim.msgpack + victim.json once training has finished.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from invfeat import losses
from invfeat.data.datasets import open_dataset_split, prepare_dataset
from invfeat.data.pipeline import (
    ArraySource,
    LoaderConfig,
    make_loader,
    materialize,
    read_identities,
)
from invfeat.models.reid import IMAGENET_MEAN, ReIDModel, get_config
from invfeat.train import distributed, optim, precision
from invfeat.train import state as S
from invfeat.train.checkpoint import CheckpointConfig
from invfeat.train.loop import Evaluator
from invfeat.train.mesh import make_mesh
from invfeat.train.run import Refusals, claim_workdir, run_training
from invfeat.victims.config import VictimConfig
from invfeat.victims.evaluation import ReIDEvaluator
from invfeat.victims.trained import TrainedVictim, inference_model, save_victim


def make_loss_fn(
    model: ReIDModel, config: VictimConfig, class_ids: np.ndarray, policy: precision.Policy
) -> S.LossFn:
    """CE (label smoothing) on the neck logits + batch-hard triplet on the pooled features."""
    class_ids = jnp.asarray(class_ids, jnp.int32)

    def loss_fn(params, model_state, batch, rng):
        images = batch["image"]
        if config.random_erasing:
            images = random_erasing(images, rng, config.random_erasing)
        out, new_model_state = model.apply(
            {"params": params, **model_state},
            policy.cast_to_compute(images),
            train=True,
            mutable=["batch_stats"],
        )
        out = policy.cast_to_output(out)
        labels = jnp.searchsorted(class_ids, batch["identity"])
        ce = losses.cross_entropy(out["logits"], labels, config.label_smoothing)
        triplet = losses.batch_hard_triplet(out["global"], labels, config.triplet_margin)
        l2 = sum(jnp.sum(jnp.square(p)) for p in jax.tree.leaves(params))
        loss = ce + config.triplet_weight * triplet + 0.5 * config.weight_decay * l2
        accuracy = jnp.mean(jnp.argmax(out["logits"], axis=-1) == labels)
        return loss, ({"ce": ce, "triplet": triplet, "accuracy": accuracy}, new_model_state)

    return loss_fn


def random_erasing(
    images_BHWC: jax.Array,
    rng: jax.Array,
    prob: float,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: tuple[float, float] = (0.3, 3.33),
) -> jax.Array:
    """Random erasing (Zhong et al.) on device: with probability `prob` per image, one rectangle
    of `area` fraction and `aspect` (h / w) ratio, clipped to the image, set to the pixel mean."""
    b, h, w, _ = images_BHWC.shape
    keys = jax.random.split(rng, 5)
    erase = jax.random.uniform(keys[0], (b,)) < prob
    target = jax.random.uniform(keys[1], (b,), minval=area[0], maxval=area[1]) * h * w
    ratio = jnp.exp(jax.random.uniform(keys[2], (b,), minval=jnp.log(aspect[0]),
                                       maxval=jnp.log(aspect[1])))  # fmt: skip
    eh = jnp.clip(jnp.round(jnp.sqrt(target * ratio)), 1, h).astype(jnp.int32)
    ew = jnp.clip(jnp.round(jnp.sqrt(target / ratio)), 1, w).astype(jnp.int32)
    y0 = jnp.floor(jax.random.uniform(keys[3], (b,)) * (h - eh + 1)).astype(jnp.int32)
    x0 = jnp.floor(jax.random.uniform(keys[4], (b,)) * (w - ew + 1)).astype(jnp.int32)
    ys = jnp.arange(h)[None, :, None]
    xs = jnp.arange(w)[None, None, :]
    inside = (
        (ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
        & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None])
    )  # fmt: skip
    mask_BHW1 = (erase[:, None, None] & inside)[..., None]
    mean = jnp.asarray(IMAGENET_MEAN, images_BHWC.dtype)
    return jnp.where(mask_BHW1, mean, images_BHWC)


def victim_optimizer(config: VictimConfig, steps_per_epoch: int) -> Any:
    """Adam with warm-up and step decay at the config's milestones (epochs made steps)."""
    return optim.make_optimizer(
        optim.OptimizerConfig(
            name="adam",
            learning_rate=config.learning_rate,
            schedule="warmup_multistep",
            warmup_steps=round(config.warmup_epochs * steps_per_epoch),
            milestones=tuple(round(m * steps_per_epoch) for m in config.milestones),
            gamma=config.gamma,
        )
    )


REFUSALS = Refusals(
    other_config="{path}: the run in {workdir} used another config (fields {changed} differ); "
    "resume it with the same config or choose another --workdir",
    old_run="{workdir} already holds a training run; resume it (resume=True), or choose "
    "another workdir",
)


def train_victim(
    config: VictimConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    data_dir: str | Path | None = None,
    hooks: Sequence[Callable[[int, Any], None]] = (),
    progress: bool = True,
) -> TrainedVictim:
    """Train the victim of `config` in `workdir` (resuming its latest checkpoint if asked).

    A synthetic dataset is rendered first if it is not built yet. Under several processes
    (`invfeat.train.distributed`) all of them train; process 0 builds the dataset and writes
    the workdir's files (on a disk they share, as orbax's checkpoints need)."""
    opened = dict(data_dir=data_dir, data_settings=config.data_settings)
    with distributed.primary_first("prepare_dataset"):  # one build on a shared data dir
        prepare_dataset(config.dataset, **opened)
    source = open_dataset_split(config.dataset, "train", **opened)
    evaluators = {}
    if config.eval_every_epochs:
        query, gallery = (
            open_dataset_split(config.dataset, s, **opened) for s in ("query", "gallery")
        )
        evaluators["test"] = ReIDEvaluator(
            inference_model(config), query, gallery, config.input_size
        )
    return train_on_source(
        config, source, workdir, resume=resume, evaluators=evaluators, hooks=hooks,
        progress=progress,
    )  # fmt: skip


def train_on_source(
    config: VictimConfig,
    source: Sequence[Mapping[str, Any]],
    workdir: str | Path,
    *,
    resume: bool = False,
    evaluators: Mapping[str, Evaluator] | None = None,
    hooks: Sequence[Callable[[int, Any], None]] = (),
    progress: bool = True,
) -> TrainedVictim:
    """`train_victim` over any source of train records (e.g. an `ArraySource`)."""
    workdir = Path(workdir)
    claim_workdir(workdir, config.record(), resume=resume, refusals=REFUSALS)
    start = time.perf_counter()
    mesh = make_mesh()
    if config.in_memory and not isinstance(source, ArraySource):
        source = materialize(source, config.input_size)
    class_ids = np.unique(read_identities(source))
    steps_per_epoch = config.steps_per_epoch or max(1, len(source) // config.batch_size)
    num_steps = config.epochs * steps_per_epoch
    recipe = _recipe(json.dumps(config.to_dict()), tuple(class_ids.tolist()), steps_per_epoch)
    loader = make_loader(
        source,
        LoaderConfig(
            batch_size=config.batch_size,
            image_size=config.input_size,
            pk=(config.p, config.k),
            augment=config.augment,
            crop_padding=config.crop_padding,
            seed=config.seed,
        ),
    )
    result = run_training(
        recipe.init_fn,
        recipe.tx,
        recipe.step_fn,
        loader,
        mesh=mesh,
        seed=config.seed,
        num_steps=num_steps,
        steps_per_epoch=steps_per_epoch,
        workdir=workdir,
        checkpoint=CheckpointConfig(keep_last=config.keep_last),
        meta={"victim": config.to_dict()},
        resume=resume,
        evaluators=evaluators,
        eval_every_steps=(config.eval_every_epochs * steps_per_epoch) or None,
        hooks=hooks,
        progress=progress,
    )
    if result.stop_reason:
        raise FloatingPointError(result.stop_reason)
    params = {k: v for k, v in result.state.params.items() if k != "classifier"}
    variables = {"params": params, **result.state.model_state}
    last = next((r for r in reversed(result.history) if r.get("kind") == "epoch"), {})
    summary = {
        "steps": num_steps,
        "steps_per_epoch": steps_per_epoch,
        "num_classes": len(class_ids),
        "train_images": len(source),
        "seconds_this_session": round(time.perf_counter() - start, 1),
        "final": {k: v for k, v in last.items() if "/" in k},
        "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    }
    victim = TrainedVictim(config, inference_model(config), jax.device_get(variables), summary)
    if distributed.is_primary():
        save_victim(workdir, victim)
    return victim


class _Recipe(NamedTuple):
    tx: Any
    init_fn: Callable[[jax.Array], Any]
    step_fn: S.StepFn


@functools.lru_cache(maxsize=4)
def _recipe(config_json: str, class_ids: tuple[int, ...], steps_per_epoch: int) -> _Recipe:
    """Optimizer, initialiser and step of a run; the same objects for the same run, so a
    resumed or repeated run in this process reuses their compiled programs."""
    config = VictimConfig.from_dict(json.loads(config_json))
    policy = precision.get_policy(config.precision)
    model = get_config(config.model).build(num_classes=len(class_ids), dtype=policy.compute_dtype)
    tx = victim_optimizer(config, steps_per_epoch)
    loss_fn = make_loss_fn(model, config, np.asarray(class_ids), policy)
    return _Recipe(tx, make_init_fn(model, config.input_size), S.make_train_step(loss_fn, tx))


def make_init_fn(model: ReIDModel, image_size: tuple[int, int]) -> Callable[[jax.Array], Any]:
    """Initialiser for `create_train_state` (cached by identity: one per model and size).

    The raw threefry key becomes an "rbg" key, which compiles several times faster on CPU.
    """

    def init(rng: jax.Array) -> Any:
        key = jax.random.wrap_key_data(jnp.concatenate([rng, rng]), impl="rbg")
        return model.init(key, jnp.zeros((1, *image_size, 3), jnp.float32), train=False)

    return init
