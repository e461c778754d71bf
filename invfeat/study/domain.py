"""The attack domain: its splits decoded and served by the victim, in plaintext and under each
protection's key, written once as FastReID-layout feature files and read back on resume."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from invfeat import metrics, shufflebits
from invfeat.data import builders
from invfeat.data.attributes import Attribute
from invfeat.data.datasets import SPLITS, open_dataset_split, prepare_dataset
from invfeat.data.feature_files import FeatureFile, read_features, write_features
from invfeat.data.pipeline import materialize, read_labels
from invfeat.shufflebits.aead import check_stream_tags, stream_tags
from invfeat.study.config import StudyConfig
from invfeat.victims.base import Victim

KEYS_DIR = "keys"  # in the features stage: one key file per protection, mode 0600
KEY_TYPES = {
    "static": shufflebits.Key,
    "one-time": shufflebits.Secret,
    "stream": shufflebits.StreamKey,
}  # the protections a study evaluates, by the key each takes


@dataclasses.dataclass
class AttackDomain:
    """The attack domain in memory: labels and served features of each split, and the images
    the attacks need (train and query; the gallery is only ranked against)."""

    images: dict[
        str, np.ndarray
    ]  # "train", "query" (and "gallery" when needed) -> uint8 [N, H, W, 3]
    identity: dict[str, np.ndarray]
    camera: dict[str, np.ndarray]
    attributes: dict[str, np.ndarray]  # split -> [N, A] raw columns (-1 unknown)
    file_names: dict[str, np.ndarray]
    schema: tuple[Attribute, ...]  # the raw columns; the attack merges colours if asked
    plain: dict[str, np.ndarray]  # split -> plaintext features [N, D]
    cipher: dict[str, dict[str, np.ndarray]]  # protection -> split -> ciphertext [N, D]
    nonces: dict[str, dict[str, np.ndarray | None]]  # protection -> split -> [N, 3] uint32


def reid_scores(features: Mapping[str, np.ndarray], domain: AttackDomain) -> dict[str, float]:
    scores = metrics.reid_metrics(
        features["query"], domain.identity["query"], domain.camera["query"],
        features["gallery"], domain.identity["gallery"], domain.camera["gallery"],
    )  # fmt: skip
    return {"rank1": float(scores["rank1"]), "mAP": float(scores["mAP"])}


def protection_keys(stage_dir: Path, protections: tuple[str, ...]) -> dict[str, Any]:
    """Each protection's key: made once (`secrets`/`os.urandom`), mode 0600, read back on
    resume; ciphertext already served without its key is refused, not paired with a new key."""
    keys = {}
    for mode in protections:
        path = stage_dir / KEYS_DIR / f"{mode}.json"
        if path.exists():
            keys[mode] = shufflebits.load_key(path)
            if not isinstance(keys[mode], KEY_TYPES[mode]):
                raise ValueError(f"{path}: holds a {type(keys[mode]).__name__}, not a {mode} key")
            continue
        served = sorted(p.name for p in stage_dir.glob(f"{mode}_*.npz"))
        if served:
            raise FileNotFoundError(
                f"{path}: the {mode} key of {', '.join(served)} in {stage_dir} is missing, so "
                f"they cannot be decrypted; remove {stage_dir} to serve the features again"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        keys[mode] = KEY_TYPES[mode].generate()
        keys[mode].save(path)
    return keys


def _served_file(mode: str, key: Any, names: np.ndarray, cipher: np.ndarray, nonces: Any):
    tags = stream_tags(cipher, key, nonces) if mode == "stream" else None
    return FeatureFile(names, cipher, mode, nonces, tags=tags)


def gallery_images_needed(config: StudyConfig) -> bool:
    """Whether the attacks read the gallery's images: to reconstruct them, or to pick a
    decoder's epoch on query and gallery (`keep_best`); else they stay on disk."""
    keep_best = config.autoencoder.keep_best or config.gan.keep_best
    return "gallery" in config.reconstructed_splits or bool(keep_best)


def serve_attack_domain(
    config: StudyConfig,
    victim: Victim,
    keys: Mapping[str, Any],
    stage_dir: Path,
    data_dir: Path | None,
) -> AttackDomain:
    """Decode the attack domain's splits and serve them, in plaintext and under every key.

    Feature files (FastReID layout: `plain_<split>.npz`, `<protection>_<split>.npz`, stream
    files with their Poly1305 tags) are written once to `stage_dir` and read back on resume.
    """
    serve = victim.server(keys, config.api_batch_size)
    schema = tuple(builders.builder_class(config.attack_dataset).ATTRIBUTES)
    fields = [f.name for f in dataclasses.fields(AttackDomain) if f.name != "schema"]
    parts: dict[str, dict[str, Any]] = {name: {} for name in fields}
    parts["cipher"] = {mode: {} for mode in keys}
    parts["nonces"] = {mode: {} for mode in keys}
    for split in SPLITS:
        source = open_dataset_split(
            config.attack_dataset,
            split,
            data_dir=data_dir,
            data_settings=config.attack_data_settings,
        )
        paths = {None: stage_dir / f"plain_{split}.npz"}
        paths |= {mode: stage_dir / f"{mode}_{split}.npz" for mode in keys}
        done = all(path.exists() for path in paths.values())
        images = None
        keep_images = split != "gallery" or gallery_images_needed(config)
        if keep_images or (victim.embeds_images and not done):
            arrays = materialize(source, victim.image_size)
            images = arrays.column("image")
            labels = {k: arrays.column(k) for k in ("identity", "camera", "attributes")}
            labels["file_name"] = np.char.decode(arrays.column("file_name").astype(bytes))
        else:
            labels = read_labels(source)
        file_names = labels["file_name"]
        if not done:
            plain, ciphers = serve(split, images, file_names)
            write_features(paths[None], FeatureFile(file_names, plain))
            for mode, (cipher, nonces) in ciphers.items():
                file = _served_file(mode, keys[mode], file_names, cipher, nonces)
                write_features(paths[mode], file)
        for mode, path in paths.items():
            served = read_features(path, encrypted=mode is not None)
            if not np.array_equal(served.paths.astype(str), file_names.astype(str)):
                raise ValueError(
                    f"{path}: served from other records than {config.attack_dataset} {split!r} "
                    f"holds now ({len(served)} rows, {len(file_names)} records): the data "
                    "changed since this run began; use the data it was made from or another "
                    "run directory"
                )
            if mode is None:
                parts["plain"][split] = served.features
                continue
            if mode == "stream":
                check_stream_tags(
                    served.features, keys[mode], served.nonces, served.tags, names=served.paths
                )
            parts["cipher"][mode][split] = served.features
            parts["nonces"][mode][split] = served.nonces
        if keep_images:
            parts["images"][split] = images
        parts["identity"][split] = labels["identity"].astype(np.int32)
        parts["camera"][split] = labels["camera"].astype(np.int32)
        parts["attributes"][split] = labels["attributes"].astype(np.int32)
        parts["file_names"][split] = file_names
    return AttackDomain(**parts, schema=schema)


def legitimate_reid(domain: AttackDomain, mode: str, key: Any) -> dict[str, Any]:
    """Re-ID by the key holder: decrypt the ciphertext, then rank; must equal the plaintext."""
    decrypted = {
        split: np.asarray(
            shufflebits.decrypt(domain.cipher[mode][split], key, domain.nonces[mode][split])
        )
        for split in ("query", "gallery")
    }
    exact = all(
        np.array_equal(decrypted[s].view(np.uint32), domain.plain[s].view(np.uint32))
        for s in decrypted
    )
    if not exact:
        raise AssertionError(f"{mode}: decrypted features differ from the plaintext features")
    return reid_scores(decrypted, domain) | {"bit_exact": exact}


def build_data(config: StudyConfig, data_dir: Path) -> dict[str, Any]:
    """Render the synthetic datasets the study uses; real ones must be built (clear error).
    Returns each dataset's split sizes."""
    datasets = [*config.victim.datasets, (config.attack_dataset, config.attack_data_settings)]
    built = {}
    for name, settings in datasets:
        prepare_dataset(name, data_dir=data_dir, data_settings=settings)
        built[name] = {
            split: len(open_dataset_split(name, split, data_dir=data_dir, data_settings=settings))
            for split in SPLITS
        }
    return built


def check_same_data(
    recorded: Mapping[str, Any], current: Mapping[str, Any], run: Path, data_dir: Path
) -> None:
    """A resumed run reads the data it began with: the split sizes it recorded must match."""
    if recorded != current:
        raise ValueError(
            f"{run}: this run was made from other data than {data_dir} holds now (split sizes "
            f"then {json.dumps(recorded)}, now {json.dumps(current)}); use the data it was made "
            "from or another run directory"
        )
