"""The victim recipe: train a re-ID model through the engine, evaluate it, save and load it.

A run is one `VictimConfig` (JSON-able, chosen by name from `CONFIGS`): a `ReIDModel` trained
on a dataset's train split with identity cross-entropy (label smoothing) on the BN-neck logits
plus batch-hard triplet loss on the pooled features, over identity-balanced P x K batches,
Adam with warm-up and step decay (FastReID's BoT recipe; coupled L2 weight decay as PyTorch's
Adam `weight_decay`). `train_victim` runs it with `invfeat.train.fit` (progress bar, metrics in
`<workdir>/metrics.jsonl`, checkpoints under `<workdir>/checkpoints`, `resume=True` continues a
killed run bit for bit) and then writes the trained victim (`victim.msgpack`: the variables
without the classifier; `victim.json`: config and summary) for the later stages, which
`load_victim` reads back. `evaluate_victim` reports CMC rank-1/5/10 and mAP on a dataset's
query/gallery, through the black-box API.

Layout of a workdir: config.json (the run's config, checked on resume), metrics.jsonl,
checkpoints/, victim.msgpack and victim.json (once training has finished).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from invfeat import losses, metrics
from invfeat.api import FeatureAPI
from invfeat.data.pipeline import (
    ArraySource,
    LoaderConfig,
    make_loader,
    materialize,
    read_identities,
)
from invfeat.features import (
    Embedded,
    api_embed,
    embed_split,
    open_dataset_split,
    prepare_dataset,
)
from invfeat.files import write_atomic
from invfeat.models.reid import IMAGENET_MEAN, ReIDModel, get_config, make_features_fn
from invfeat.train import distributed, optim, precision
from invfeat.train import state as S
from invfeat.train.checkpoint import CheckpointConfig
from invfeat.train.loop import CHECKPOINT_DIR, fit
from invfeat.train.mesh import make_mesh

CONFIG_FILE = "config.json"
VARIABLES_FILE = "victim.msgpack"
SUMMARY_FILE = "victim.json"
FORMAT_VERSION = 1  # of victim.json + victim.msgpack; files without the field are format 1


class VictimFileError(ValueError):
    """A victim file this invfeat cannot read as its victim; the message names the file."""


@dataclasses.dataclass(frozen=True)
class VictimConfig:
    """Everything that defines a victim training run; `to_dict`/`from_dict` round-trip JSON."""

    name: str = "cpu"
    model: str = "cpu-small"  # a name of invfeat.models.reid.CONFIGS
    image_size: tuple[int, int] | None = None  # (H, W); None: the model config's
    dataset: str = "synth_msmt"
    data_settings: dict[str, Any] | None = None  # SynthConfig fields of a synthetic `dataset`
    p: int = 16  # identities per batch
    k: int = 4  # images per identity
    epochs: int = 20
    steps_per_epoch: int | None = None  # None: train images // batch size
    learning_rate: float = 3.5e-4
    warmup_epochs: float = 2.0
    milestones: tuple[float, ...] = (12.0, 17.0)  # epochs where the rate drops by `gamma`
    gamma: float = 0.1
    weight_decay: float = 5e-4  # coupled L2 (gradient += wd * param)
    label_smoothing: float = 0.1
    triplet_margin: float | None = 0.3  # None: soft margin
    triplet_weight: float = 1.0
    augment: bool = True  # flip + shifted crop
    crop_padding: int = 4
    random_erasing: float = 0.0  # probability of erasing a rectangle per image (BoT: 0.5)
    precision: str = "auto"
    seed: int = 0
    in_memory: bool = True  # decode the train split once (small data) instead of every step
    eval_every_epochs: int = 0  # 0: no re-ID evaluation during training
    keep_last: int = 2

    def __post_init__(self) -> None:  # normal form: tuples, JSON-shaped settings
        for key in ("image_size", "milestones"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, tuple(value))
        if self.data_settings is not None:
            object.__setattr__(self, "data_settings", json.loads(json.dumps(self.data_settings)))

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def record(self) -> dict[str, Any]:
        """The config plus the architecture its model name stands for today, so a run or a
        saved victim made under another definition of that name is refused, not misread."""
        architecture = json.loads(json.dumps(dataclasses.asdict(get_config(self.model))))
        return self.to_dict() | {"architecture": architecture}

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.image_size or get_config(self.model).image_size)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VictimConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown VictimConfig fields {sorted(unknown)}")
        return cls(**data)


CONFIGS: dict[str, VictimConfig] = {
    c.name: c
    for c in (
        # Unit tests: a few steps of the smallest net on a hand-sized dataset.
        VictimConfig(
            name="tiny", model="cpu-tiny", p=4, k=2, epochs=2, steps_per_epoch=3,
            warmup_epochs=0.0, milestones=(), learning_rate=1e-3, crop_padding=2,
        ),
        # The CPU default: 2500 steps of batch 64 at 64x32 on synth_msmt with 8 images per
        # person (the default world has 4; more views generalise better): about 4 minutes on
        # 2 idle cores. Adam at 2e-3 (3.5e-4 learns far too slowly from scratch at this size);
        # no random erasing (it cost 9 points of rank-1 at this short schedule). cpu-small's
        # backbone sees the input upsampled to 96x48, at the same step time. Seeds 0/1/2:
        # synth_msmt rank-1 82.8/79.6/78.0 (mAP 76.0/74.1/72.9), synth_market 74.8/67.6/68.4,
        # synth_duke 52.5/48.3/51.2 (seed 0 without the upsampling: 71.4, mAP 64.7, 63.7, 42.0).
        # Not better: 4000 people x 4 views (71.6 at 64x32), cosine decay from 3e-3 (77.2),
        # 2000 steps (77.4), GeM pooling (82.0/82.4/77.8, cross-domain no better).
        VictimConfig(
            name="cpu", epochs=20, learning_rate=2e-3, warmup_epochs=1.0, milestones=(14.0, 18.0),
            data_settings={"train_per_identity": 8},
        ),
        # FastReID BoT (Base-bagtricks) on GPUs: ResNet-50 at 256x128, batch 64 = 16 x 4,
        # Adam 3.5e-4, warm-up 10 epochs, x0.1 at epochs 40 and 90, 120 epochs, erasing 0.5.
        VictimConfig(
            name="resnet50", model="resnet50", epochs=120, warmup_epochs=10.0,
            milestones=(40.0, 90.0), crop_padding=10, in_memory=False, eval_every_epochs=10,
            random_erasing=0.5, data_settings={"size": (256, 128)},
        ),
    )
}  # fmt: skip


def settings_for(config: VictimConfig, dataset: str) -> dict[str, Any] | None:
    """Builder settings to open `dataset` with: the config's own for its training dataset;
    for other synthetic datasets only its image size (their default counts otherwise)."""
    if not dataset.startswith("synth_"):
        return None
    if dataset == config.dataset:
        return config.data_settings
    size = (config.data_settings or {}).get("size")
    return {"size": size} if size else None


def get_victim_config(name: str, **overrides: Any) -> VictimConfig:
    """The named config, with fields replaced by `overrides` (e.g. epochs=3)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown victim config {name!r}; choose from {sorted(CONFIGS)}")
    return dataclasses.replace(CONFIGS[name], **overrides)


# ---------------------------------------------------------------------------------------------
# Re-ID evaluation


def reid_scores(query: Embedded, gallery: Embedded) -> dict[str, float]:
    """rank1/rank5/rank10/mAP (fractions), num_queries and chance_rank1 of embedded query vs
    gallery."""
    scores = metrics.reid_metrics(
        query.features, query.identity, query.camera,
        gallery.features, gallery.identity, gallery.camera,
    )  # fmt: skip
    return scores | {
        "chance_rank1": chance_rank1(query.identity, query.camera, gallery.identity, gallery.camera)
    }


def chance_rank1(
    query_ids: np.ndarray, query_cams: np.ndarray, gallery_ids: np.ndarray, gallery_cams: np.ndarray
) -> float:
    """Expected rank-1 of a uniformly random gallery ranking, under the evaluation's protocol:
    same-identity-same-camera entries excluded, queries without a true match left out."""
    rates = []
    for start in range(0, len(query_ids), 512):
        same_id = query_ids[start : start + 512, None] == gallery_ids[None]
        junk = same_id & (query_cams[start : start + 512, None] == gallery_cams[None])
        matches, kept = (same_id & ~junk).sum(1), len(gallery_ids) - junk.sum(1)
        rates.append((matches / np.maximum(kept, 1))[matches > 0])
    return float(np.mean(np.concatenate(rates)))


class ReIDEvaluator:
    """Evaluator for `fit`: rank-1 and mAP of the train state's features on query/gallery."""

    def __init__(self, model: ReIDModel, query: Any, gallery: Any, size: tuple[int, int]):
        self._features = jax.jit(make_features_fn(model))
        self._sources, self._size = (query, gallery), size

    def run(self, state: S.TrainState) -> Iterable[tuple[str, float]]:
        variables = {"params": state.params, **state.model_state}
        embed = lambda images: (self._features(variables, images), None)
        query, gallery = (embed_split(embed, s, self._size, 128) for s in self._sources)
        scores = reid_scores(query, gallery)
        return [(k, scores[k]) for k in ("rank1", "mAP")]


# ---------------------------------------------------------------------------------------------
# The trained victim


@dataclasses.dataclass
class Victim:
    """A trained victim: its config, the inference model (no classifier) and its variables."""

    config: VictimConfig
    model: ReIDModel
    variables: dict[str, Any]
    summary: dict[str, Any]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.input_size

    def api(self, key: Any = None, batch_size: int = 256) -> FeatureAPI:
        """The black-box API over this victim (plain, or ShuffleBits under `key`)."""
        return FeatureAPI.from_model(self.model, self.variables, batch_size=batch_size, key=key)


def inference_model(config: VictimConfig) -> ReIDModel:
    """The served model: float32, no classifier."""
    return get_config(config.model).build(num_classes=0)


def save_victim(workdir: str | Path, victim: Victim) -> None:
    """Write victim.msgpack (variables) and victim.json (config + summary) into `workdir`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    host = jax.tree.map(np.asarray, jax.device_get(victim.variables))
    variables_bytes = flax.serialization.msgpack_serialize(host)
    write_atomic(workdir / VARIABLES_FILE, lambda f: f.write(variables_bytes))
    record = {
        "format": FORMAT_VERSION,
        "config": victim.config.to_dict(),
        "summary": victim.summary,
        "architecture": victim.config.record()["architecture"],
    }
    write_atomic(workdir / SUMMARY_FILE, lambda f: f.write(json.dumps(record, indent=2).encode()))


def load_victim(workdir: str | Path) -> Victim:
    """The victim `train_victim` saved in `workdir` (clear errors when absent or mismatched)."""
    workdir = Path(workdir)
    summary_path, variables_path = workdir / SUMMARY_FILE, workdir / VARIABLES_FILE
    for path in (summary_path, variables_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no trained victim here ({_how_to_train(workdir)})")
    record, config = _read_summary(summary_path)
    model = inference_model(config)
    try:
        variables = flax.serialization.msgpack_restore(variables_path.read_bytes())
    except (ValueError, TypeError) as err:
        raise VictimFileError(f"{variables_path}: not a victim's variables ({err})") from None
    expected = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *config.input_size, 3)), train=False)
    )
    got = jax.tree.map(lambda x: (np.shape(x), np.asarray(x).dtype), variables)
    want = jax.tree.map(lambda x: (x.shape, x.dtype), expected)
    if got != want:
        raise VictimFileError(f"{variables_path}: variables do not match model {config.model!r}")
    return Victim(config, model, variables, record.get("summary", {}))


def _how_to_train(workdir: Path) -> str:
    """The command that finishes the run started in `workdir`, or that starts one there."""
    command = ["python", "-m", "experiments", "victim", "train", "--workdir", str(workdir)]
    try:
        started = VictimConfig.from_dict(
            {k: v for k, v in json.loads((workdir / CONFIG_FILE).read_text()).items()
             if k != "architecture"}
        )  # fmt: skip
    except (OSError, ValueError, TypeError, AttributeError):  # no run there, or not ours
        return f"train one with `{shlex.join(command)}`"
    command += ["--resume", "--config", started.name, "--dataset", started.dataset]
    named = CONFIGS.get(started.name)
    for field in ("epochs", "seed"):
        if named is None or getattr(named, field) != getattr(started, field):
            command += [f"--{field}", str(getattr(started, field))]
    return f"its training has not finished: resume it with `{shlex.join(command)}`"


def _read_summary(path: Path) -> tuple[dict[str, Any], VictimConfig]:
    """victim.json's record and config, checked: format version, config fields, architecture."""
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise VictimFileError(f"{path}: not a victim summary (unreadable JSON: {err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise VictimFileError(f"{path}: not a victim summary (no 'config' object)")
    version = record.get("format", FORMAT_VERSION)  # files written before the field: format 1
    if version != FORMAT_VERSION:
        raise VictimFileError(
            f"{path}: victim file format {version!r}, this invfeat reads format "
            f"{FORMAT_VERSION}; train the victim again with this invfeat"
        )
    try:
        config = VictimConfig.from_dict(record["config"])
        architecture = config.record()["architecture"]
    except (TypeError, ValueError) as err:
        raise VictimFileError(f"{path}: bad victim config ({err})") from None
    if record.get("architecture") != architecture:
        raise VictimFileError(
            f"{path}: this victim was trained with another definition of model "
            f"{config.model!r} than this invfeat's; train it again"
        )
    return record, config


def evaluate_victim(
    victim: Victim,
    dataset: str,
    *,
    data_dir: str | Path | None = None,
    data_settings: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, float]:
    """rank1/rank5/rank10/mAP (fractions), num_queries and chance_rank1 on `dataset`'s query
    vs gallery."""
    prepare_dataset(dataset, data_dir=data_dir, data_settings=data_settings)
    api = victim.api(batch_size=batch_size)
    query, gallery = (
        embed_split(
            api_embed(api),
            open_dataset_split(dataset, split, data_dir=data_dir, data_settings=data_settings),
            victim.image_size,
            api.batch_size,
            desc=f"{dataset}/{split}" if progress else None,
        )
        for split in ("query", "gallery")
    )
    return reid_scores(query, gallery)


# ---------------------------------------------------------------------------------------------
# Training


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


def make_optimizer(config: VictimConfig, steps_per_epoch: int) -> Any:
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


def _check_workdir(workdir: Path, config: VictimConfig, resume: bool) -> None:
    """Write config.json; refuse to mix runs (resume with another config, restart over one)."""
    path = workdir / CONFIG_FILE
    has_run = (workdir / CHECKPOINT_DIR).exists() and any((workdir / CHECKPOINT_DIR).iterdir())
    if path.exists() and resume:
        stored = json.loads(path.read_text())
        if stored != config.record():
            changed = sorted(k for k in stored.keys() | config.record().keys()
                             if stored.get(k) != config.record().get(k))  # fmt: skip
            raise ValueError(
                f"{path}: the run in {workdir} used another config (fields {changed} differ); "
                "resume it with the same config or choose another --workdir"
            )
    elif has_run and not resume:
        raise FileExistsError(
            f"{workdir} already holds a training run; pass resume=True (--resume) to continue "
            "it, or choose another workdir"
        )
    if distributed.is_primary():  # every process checked the same files; one writes
        workdir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: f.write(json.dumps(config.record(), indent=2).encode()))


def train_victim(
    config: VictimConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    data_dir: str | Path | None = None,
    hooks: Sequence[Callable[[int, Any], None]] = (),
    progress: bool = True,
) -> Victim:
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
    evaluators: Mapping[str, Any] | None = None,
    hooks: Sequence[Callable[[int, Any], None]] = (),
    progress: bool = True,
) -> Victim:
    """`train_victim` over any source of train records (e.g. an `ArraySource`)."""
    workdir = Path(workdir)
    _check_workdir(workdir, config, resume)
    start = time.perf_counter()
    mesh = make_mesh()
    if config.in_memory and not isinstance(source, ArraySource):
        source = materialize(source, config.input_size)
    class_ids = np.unique(read_identities(source))
    steps_per_epoch = config.steps_per_epoch or max(1, len(source) // config.batch_size)
    num_steps = config.epochs * steps_per_epoch
    recipe = _recipe(json.dumps(config.to_dict()), tuple(class_ids.tolist()), steps_per_epoch)
    state = S.create_train_state(recipe.init_fn, recipe.tx, mesh, seed=config.seed)
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
    result = fit(
        state,
        recipe.step_fn,
        iter(loader),
        mesh=mesh,
        num_steps=num_steps,
        steps_per_epoch=steps_per_epoch,
        workdir=workdir,
        resume=resume,
        evaluators=evaluators,
        eval_every_steps=(config.eval_every_epochs * steps_per_epoch) or None,
        meta={"victim": config.to_dict()},
        checkpoint=CheckpointConfig(keep_last=config.keep_last),
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
    victim = Victim(config, inference_model(config), jax.device_get(variables), summary)
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
    tx = make_optimizer(config, steps_per_epoch)
    loss_fn = make_loss_fn(model, config, np.asarray(class_ids), policy)
    return _Recipe(tx, _init_fn(model, config.input_size), S.make_train_step(loss_fn, tx))


def _init_fn(model: ReIDModel, image_size: tuple[int, int]) -> Callable[[jax.Array], Any]:
    """Initialiser for `create_train_state` (cached by identity: one per model and size).

    The raw threefry key becomes an "rbg" key, which compiles several times faster on CPU.
    """

    def init(rng: jax.Array) -> Any:
        key = jax.random.wrap_key_data(jnp.concatenate([rng, rng]), impl="rbg")
        return model.init(key, jnp.zeros((1, *image_size, 3), jnp.float32), train=False)

    return init
