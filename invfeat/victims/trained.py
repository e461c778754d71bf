"""A victim trained here: its model and variables, saved as victim.msgpack + victim.json."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from invfeat.api import FeatureAPI
from invfeat.files import write_atomic
from invfeat.models.reid import ReIDModel, get_config, make_features_fn
from invfeat.train.run import CONFIG_FILE
from invfeat.victims.base import DatasetRef, Served, ServeFn, VictimNotTrainedError
from invfeat.victims.config import VictimConfig
from invfeat.victims.evaluation import evaluate_victim

VARIABLES_FILE = "victim.msgpack"
SUMMARY_FILE = "victim.json"
FORMAT_VERSION = 1  # of victim.json + victim.msgpack; files without the field are format 1


class VictimFileError(ValueError):
    """A victim file this invfeat cannot read as its victim; the message names the file."""


@dataclasses.dataclass
class TrainedVictim:
    """A victim trained here: its config, the inference model (no classifier), its variables."""

    config: VictimConfig
    model: ReIDModel
    variables: dict[str, Any]
    summary: dict[str, Any]
    embeds_images = True

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.input_size

    def api(self, key: Any = None, batch_size: int = 256) -> FeatureAPI:
        """The black-box API over this victim (plain, or ShuffleBits under `key`)."""
        return FeatureAPI.from_model(self.model, self.variables, batch_size=batch_size, key=key)

    def server(self, keys: Mapping[str, Any], batch_size: int) -> ServeFn:
        """Each protection's ciphertext comes from the model with the encryption fused in."""
        plain_api = self.api(batch_size=batch_size)
        cipher_apis = {mode: self.api(key=key, batch_size=batch_size) for mode, key in keys.items()}

        def serve(split: str, images: np.ndarray, file_names: np.ndarray) -> Served:
            return plain_api(images), {
                mode: tuple(api.serve(images)) for mode, api in cipher_apis.items()
            }

        return serve

    def scoring_api(self, batch_size: int) -> FeatureAPI:
        return self.api(batch_size=batch_size)

    def white_box(self) -> tuple[Any, Any]:
        return make_features_fn(self.model), self.variables

    def evaluate(
        self, attack: DatasetRef, served_reid: Any, **opened: Any
    ) -> dict[str, dict[str, float]]:
        """Figures on its own dataset (`in_domain`) and on the attack dataset, through the API."""
        del served_reid  # the attack domain is scored through the API, as in `victim eval`
        dataset, settings = attack
        return {
            "in_domain": evaluate_victim(
                self, self.config.dataset, data_settings=self.config.data_settings, **opened
            ),
            "attack_domain": evaluate_victim(self, dataset, data_settings=settings, **opened),
        }

    def report_block(self, evaluated: dict[str, Any]) -> dict[str, Any]:
        attack = evaluated["attack_domain"]
        return {"rank1": attack["rank1"], "mAP": attack["mAP"], "in_domain": evaluated["in_domain"]}


def inference_model(config: VictimConfig) -> ReIDModel:
    """The served model: float32, no classifier."""
    return get_config(config.model).build(num_classes=0)


def save_victim(workdir: str | Path, victim: TrainedVictim) -> None:
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


def load_victim(workdir: str | Path) -> TrainedVictim:
    """The victim `train_victim` saved in `workdir` (clear errors when absent or mismatched)."""
    workdir = Path(workdir)
    summary_path, variables_path = workdir / SUMMARY_FILE, workdir / VARIABLES_FILE
    for path in (summary_path, variables_path):
        if not path.is_file():
            raise VictimNotTrainedError(path, _started_config(workdir))
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
    return TrainedVictim(config, model, variables, record.get("summary", {}))


def _started_config(workdir: Path) -> VictimConfig | None:
    """The config of a training run started in `workdir`, or None when there is none of ours."""
    try:
        record = json.loads((workdir / CONFIG_FILE).read_text())
        return VictimConfig.from_dict({k: v for k, v in record.items() if k != "architecture"})
    except (OSError, ValueError, TypeError, AttributeError):
        return None


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
