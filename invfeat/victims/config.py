"""What defines a victim training run (`VictimConfig`), and the dataset settings it implies."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invfeat.models.reid import get_config
from invfeat.victims.base import DatasetRef, MissingInputError, StageRunner

if TYPE_CHECKING:  # trained.py imports this module
    from invfeat.victims.trained import TrainedVictim


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

    @property
    def datasets(self) -> tuple[DatasetRef, ...]:
        return ((self.dataset, self.data_settings),)

    def required_inputs(self) -> tuple[list[MissingInputError], list[Path]]:
        return [], []  # everything it needs is made here

    def load_inputs(self) -> None:
        return None

    def obtain(self, stages: StageRunner, **opened: Any) -> TrainedVictim:
        """Train (or resume) the victim in the stage `victim`, then load it."""
        from invfeat.victims.trained import load_victim
        from invfeat.victims.training import train_victim

        stages.run(
            "victim",
            lambda workdir: train_victim(self, workdir, resume=True, **opened).summary,
        )
        return load_victim(stages.dir("victim"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VictimConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown VictimConfig fields {sorted(unknown)}")
        return cls(**data)


def settings_for(config: VictimConfig, dataset: str) -> dict[str, Any] | None:
    """Builder settings to open `dataset` with: the config's own for its training dataset;
    for other synthetic datasets only its image size (their default counts otherwise)."""
    if not dataset.startswith("synth_"):
        return None
    if dataset == config.dataset:
        return config.data_settings
    size = (config.data_settings or {}).get("size")
    return {"size": size} if size else None
