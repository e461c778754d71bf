"""The attack domain: its splits decoded and served by the victim, in plaintext and under
one-time keys, written once as FastReID-layout feature files and read back on resume."""

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
from invfeat.study.config import StudyConfig
from invfeat.victims.base import Victim

SECRET_FILE = "one_time_secret.json"


@dataclasses.dataclass
class AttackDomain:
    """The attack domain in memory: labels and served features of each split, and the images
    the attacks need (train and query; the gallery is only ranked against)."""

    images: dict[str, np.ndarray]  # "train", "query" -> uint8 [N, H, W, 3]
    identity: dict[str, np.ndarray]
    camera: dict[str, np.ndarray]
    attributes: dict[str, np.ndarray]  # split -> [N, A] raw columns (-1 unknown)
    file_names: dict[str, np.ndarray]
    schema: tuple[Attribute, ...]  # the raw columns; the attack merges colours if asked
    plain: dict[str, np.ndarray]  # split -> plaintext features [N, D]
    cipher: dict[str, np.ndarray]  # split -> one-time-key ciphertext [N, D]
    nonces: dict[str, np.ndarray]  # split -> [N, 3] uint32


def reid_scores(features: Mapping[str, np.ndarray], domain: AttackDomain) -> dict[str, float]:
    scores = metrics.reid_metrics(
        features["query"], domain.identity["query"], domain.camera["query"],
        features["gallery"], domain.identity["gallery"], domain.camera["gallery"],
    )  # fmt: skip
    return {"rank1": float(scores["rank1"]), "mAP": float(scores["mAP"])}


def one_time_secret(path: Path) -> shufflebits.Secret:
    """The study's one-time-key secret: made once (os.urandom), mode 0600, read back on resume;
    ciphertext already served without it is refused, not paired with a new secret."""
    if path.exists():
        return shufflebits.Secret.load(path)
    served = sorted(p.name for p in path.parent.glob("cipher_*.npz"))
    if served:
        raise FileNotFoundError(
            f"{path}: the one-time secret of {', '.join(served)} in {path.parent} is missing, "
            f"so they cannot be decrypted; remove {path.parent} to serve the features again"
        )
    secret = shufflebits.Secret.generate()
    secret.save(path)
    return secret


def serve_attack_domain(
    config: StudyConfig,
    victim: Victim,
    secret: shufflebits.Secret,
    stage_dir: Path,
    data_dir: Path | None,
) -> AttackDomain:
    """Decode the attack domain's splits and serve them, in plaintext and encrypted.

    Feature files (FastReID layout) are written once to `stage_dir` and read back on resume.
    """
    serve = victim.server(secret, config.api_batch_size)
    schema = tuple(builders.builder_class(config.attack_dataset).ATTRIBUTES)
    fields = [f.name for f in dataclasses.fields(AttackDomain) if f.name != "schema"]
    parts: dict[str, dict[str, np.ndarray]] = {name: {} for name in fields}
    for split in SPLITS:
        source = open_dataset_split(
            config.attack_dataset,
            split,
            data_dir=data_dir,
            data_settings=config.attack_data_settings,
        )
        plain_path, cipher_path = (
            stage_dir / f"plain_{split}.npz",
            stage_dir / f"cipher_{split}.npz",
        )
        done = plain_path.exists() and cipher_path.exists()
        images = None
        if split != "gallery" or (victim.embeds_images and not done):
            arrays = materialize(source, victim.image_size)
            images = arrays.column("image")
            labels = {k: arrays.column(k) for k in ("identity", "camera", "attributes")}
            labels["file_name"] = np.char.decode(arrays.column("file_name").astype(bytes))
        else:
            labels = read_labels(source)
        file_names = labels["file_name"]
        if not done:
            plain, cipher, nonces = serve(split, images, file_names)
            write_features(plain_path, FeatureFile(file_names, plain))
            write_features(cipher_path, FeatureFile(file_names, cipher, "one-time", nonces))
        plain = read_features(plain_path)
        cipher = read_features(cipher_path, encrypted=True)
        for path, served in ((plain_path, plain), (cipher_path, cipher)):
            if not np.array_equal(served.paths.astype(str), file_names.astype(str)):
                raise ValueError(
                    f"{path}: served from other records than {config.attack_dataset} {split!r} "
                    f"holds now ({len(served)} rows, {len(file_names)} records): the data "
                    "changed since this run began; use the data it was made from or another "
                    "run directory"
                )
        if split != "gallery":
            parts["images"][split] = images
        parts["identity"][split] = labels["identity"].astype(np.int32)
        parts["camera"][split] = labels["camera"].astype(np.int32)
        parts["attributes"][split] = labels["attributes"].astype(np.int32)
        parts["file_names"][split] = file_names
        parts["plain"][split] = plain.features
        parts["cipher"][split] = cipher.features
        parts["nonces"][split] = cipher.nonces
    return AttackDomain(**parts, schema=schema)


def legitimate_reid(domain: AttackDomain, secret: shufflebits.Secret) -> dict[str, Any]:
    """Re-ID by the key holder: decrypt the ciphertext, then rank; must equal the plaintext."""
    decrypted = {
        split: np.asarray(shufflebits.decrypt(domain.cipher[split], secret, domain.nonces[split]))
        for split in ("query", "gallery")
    }
    exact = all(
        np.array_equal(decrypted[s].view(np.uint32), domain.plain[s].view(np.uint32))
        for s in decrypted
    )
    if not exact:
        raise AssertionError("decrypted features differ from the plaintext features")
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
