"""The study end to end: data -> victim -> features -> attacks -> evaluation -> report.

`run_study(config, run_dir)` builds the victim's and the attacker's datasets, trains the victim
(or loads it), serves the attack domain through the black-box API twice — in plaintext and under
ShuffleBits one-time keys — and runs every attack on both: attribute recognition, an
autoencoder and a GAN reconstructing images from features. Reconstructions are scored by
sending them back through the API; the legitimate user's re-ID accuracy after decryption closes
the loop. Everything lands in `run_dir`: one folder per stage, `report.md`/`report.json` and
figures at the top.

A killed study resumes where it stopped: finished stages are read back from their
`<stage>/result.json`, and training stages continue from their engine checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from invfeat import metrics, report, shufflebits
from invfeat.attacks.attributes import run_attribute_attack
from invfeat.attacks.configs import (
    AttributeAttackConfig,
    ReconstructionConfig,
    SurrogateConfig,
    autoencoder_config,
    gan_config,
)
from invfeat.attacks.evaluation import evaluate_reconstructions
from invfeat.attacks.reconstruction import run_reconstruction, train_surrogate
from invfeat.data import builders
from invfeat.data.attributes import Attribute
from invfeat.data.feature_files import FeatureFile, read_features, write_features
from invfeat.data.pipeline import materialize
from invfeat.features import open_dataset_split
from invfeat.victim import (
    Victim,
    VictimConfig,
    evaluate_victim,
    load_victim,
    train_victim,
)

SPLITS = ("train", "query", "gallery")
SECRET_FILE = "one_time_secret.json"


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """One study: the victim, the attack domain, and each attack's settings (JSON-able)."""

    name: str
    description: str
    victim: VictimConfig
    attack_dataset: str = "synth_market"
    attack_data_settings: dict[str, Any] | None = None
    attributes: AttributeAttackConfig = AttributeAttackConfig()
    surrogate: SurrogateConfig = SurrogateConfig()
    autoencoder: ReconstructionConfig = autoencoder_config()
    gan: ReconstructionConfig = gan_config()
    ciphertext_encoding: str = "bits"  # how the attacker reads ciphertext floats
    grid_images: int = 8  # query images shown in the report's reconstruction grid
    api_batch_size: int = 256
    requires: tuple[str, ...] = ()  # what a run needs beyond this machine, e.g. "GPU"

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace_nested(self, **overrides: Mapping[str, Any]) -> StudyConfig:
        """A copy with fields of the nested configs replaced: `victim={"epochs": 1}`."""
        changes = {}
        for field, values in overrides.items():
            current = getattr(self, field)
            changes[field] = (
                dataclasses.replace(current, **values)
                if dataclasses.is_dataclass(current)
                else values
            )
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass
class Domain:
    """The attack domain in memory: each split's images, labels and served features."""

    images: dict[str, np.ndarray]  # split -> float32 [N, H, W, 3] in [0, 1]
    identity: dict[str, np.ndarray]
    camera: dict[str, np.ndarray]
    attributes: dict[str, np.ndarray]  # split -> [N, A] raw columns (-1 unknown)
    file_names: dict[str, np.ndarray]
    schema: tuple[Attribute, ...]  # the raw columns; the attack merges colours if asked
    plain: dict[str, np.ndarray]  # split -> plaintext features [N, D]
    cipher: dict[str, np.ndarray]  # split -> one-time-key ciphertext [N, D]
    nonces: dict[str, np.ndarray]  # split -> [N, 3] uint32


class Stages:
    """Runs named stages once: a finished stage's JSON result is read back, not recomputed."""

    def __init__(self, run_dir: Path, progress: bool = True):
        self.run_dir, self.progress = run_dir, progress
        self.timings: dict[str, float] = {}

    def dir(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, name: str, fn: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        done = self.run_dir / name / "result.json"
        if done.exists():
            record = json.loads(done.read_text())
            self._say(f"[{name}] done earlier ({record['seconds']:.1f} s), read back")
        else:
            self._say(f"[{name}] running")
            start = time.perf_counter()
            result = fn(self.dir(name))
            record = {"seconds": round(time.perf_counter() - start, 2), "result": result}
            report.write_json(record, done)
            self._say(f"[{name}] finished in {record['seconds']:.1f} s")
        self.timings[name] = record["seconds"]
        return record["result"]

    def timed(self, name: str, fn: Callable[[Path], Any]) -> Any:
        """Runs a stage that returns live objects (a trained model) every time; engine
        checkpoints make a finished one cheap. Its time is that of the run that finished it."""
        record_path = self.run_dir / name / "timing.json"
        self._say(f"[{name}] running (resumes from its checkpoints)")
        start = time.perf_counter()
        value = fn(self.dir(name))
        if not record_path.exists():
            report.write_json({"seconds": round(time.perf_counter() - start, 2)}, record_path)
        self.timings[name] = json.loads(record_path.read_text())["seconds"]
        return value

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)


def _reid(features: Mapping[str, np.ndarray], domain: Domain) -> dict[str, float]:
    scores = metrics.reid_metrics(
        features["query"], domain.identity["query"], domain.camera["query"],
        features["gallery"], domain.identity["gallery"], domain.camera["gallery"],
    )  # fmt: skip
    return {"rank1": float(scores["rank1"]), "mAP": float(scores["mAP"])}


def _secret(path: Path) -> shufflebits.Secret:
    """The study's one-time-key secret: made once (os.urandom), mode 0600, read back on resume."""
    if path.exists():
        return shufflebits.Secret.load(path)
    secret = shufflebits.Secret.generate()
    secret.save(path)
    return secret


def _attack_domain(
    config: StudyConfig,
    victim: Victim,
    secret: shufflebits.Secret,
    stage_dir: Path,
    data_dir: Path | None,
) -> Domain:
    """Decode the attack domain's splits and serve them through the API, plain and encrypted.

    Feature files (FastReID layout) are written once to `stage_dir` and read back on resume.
    """
    plain_api = victim.api(batch_size=config.api_batch_size)
    cipher_api = victim.api(key=secret, batch_size=config.api_batch_size)
    schema = tuple(builders.builder_class(config.attack_dataset).ATTRIBUTES)
    fields = [f.name for f in dataclasses.fields(Domain) if f.name != "schema"]
    parts: dict[str, dict[str, np.ndarray]] = {name: {} for name in fields}
    for split in SPLITS:
        source = open_dataset_split(
            config.attack_dataset,
            split,
            data_dir=data_dir,
            data_settings=config.attack_data_settings,
        )
        arrays = materialize(source, victim.image_size)
        images = arrays.column("image").astype(np.float32) / 255.0
        file_names = np.asarray([str(n) for n in arrays.column("file_name")])
        plain_path, cipher_path = (
            stage_dir / f"plain_{split}.npz",
            stage_dir / f"cipher_{split}.npz",
        )
        if not (plain_path.exists() and cipher_path.exists()):
            write_features(plain_path, FeatureFile(file_names, plain_api(images)))
            served = cipher_api.serve(images)
            write_features(
                cipher_path, FeatureFile(file_names, served.features, "one-time", served.nonces)
            )
        plain = read_features(plain_path)
        cipher = read_features(cipher_path, encrypted=True)
        parts["images"][split] = images
        parts["identity"][split] = arrays.column("identity").astype(np.int32)
        parts["camera"][split] = arrays.column("camera").astype(np.int32)
        parts["attributes"][split] = arrays.column("attributes").astype(np.int32)
        parts["file_names"][split] = file_names
        parts["plain"][split] = plain.features
        parts["cipher"][split] = cipher.features
        parts["nonces"][split] = cipher.nonces
    return Domain(**parts, schema=schema)


def _legitimate(domain: Domain, secret: shufflebits.Secret) -> dict[str, Any]:
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
    return _reid(decrypted, domain) | {"bit_exact": exact}


def _attributes(
    config: StudyConfig,
    domain: Domain,
    features: Mapping[str, np.ndarray],
    workdir: Path,
    encoding: str | None,
):
    victims = np.concatenate([features["query"], features["gallery"]])
    victim_attrs = np.concatenate([domain.attributes["query"], domain.attributes["gallery"]])
    return run_attribute_attack(
        features["train"],
        domain.attributes["train"],
        victims,
        victim_attrs,
        domain.schema,
        dataclasses.replace(config.attributes, encoding=encoding),
        workdir,
    )


def _reconstruction_block(
    config: StudyConfig,
    domain: Domain,
    features: Mapping[str, np.ndarray],
    run: Path,
    stages: Stages,
    *,
    tag: str,
    encoding: str | None,
    perceptual_fn: Any,
    plain_features_fn: Callable[[np.ndarray], np.ndarray],
    attribute_predict: Callable[[np.ndarray], np.ndarray],
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Path]]:
    """Autoencoder and GAN on `features` (plaintext or ciphertext), each evaluated on the query."""
    block, grid, logs = {}, {}, {}
    for kind, rec_config in (("autoencoder", config.autoencoder), ("gan", config.gan)):
        stage = f"{kind}_{tag}"

        def attack(workdir: Path, rec_config=rec_config) -> dict[str, Any]:
            result = run_reconstruction(
                domain.images["train"],
                features["train"],
                dataclasses.replace(rec_config, encoding=encoding),
                workdir,
                perceptual_fn=perceptual_fn if rec_config.feature > 0 else None,
            )
            scores, images = evaluate_reconstructions(
                result.reconstruct,
                features["query"],
                domain.images["query"],
                domain.plain["query"],
                domain.identity["query"],
                domain.camera["query"],
                domain.plain["gallery"],
                domain.identity["gallery"],
                domain.camera["gallery"],
                plain_features_fn,
                attribute_predict=attribute_predict,
                query_attributes=domain.attributes["query"],
                grid_images=config.grid_images,
            )
            np.save(workdir / "grid.npy", images)
            return scores

        block[kind] = stages.run(stage, attack)
        grid[f"{kind} ({tag})"] = np.load(run / stage / "grid.npy")
        logs[f"{kind} ({tag})"] = run / stage / "metrics.jsonl"
    return block, grid, logs


def run_study(
    config: StudyConfig,
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Run (or resume) the whole study of `config` in `run_dir`; returns the report's path."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    config_path = run / "config.json"
    if config_path.exists() and json.loads(config_path.read_text()) != config.to_dict():
        raise ValueError(
            f"{config_path}: {run} holds a study with another configuration; "
            "choose another run directory or remove it"
        )
    report.write_json(config.to_dict(), config_path)
    stages = Stages(run, progress)
    data_dir = Path(data_dir) if data_dir is not None else builders.default_data_dir()

    def build_data(_: Path) -> dict[str, Any]:
        built = {}
        for name, settings in (
            (config.victim.dataset, config.victim.data_settings),
            (config.attack_dataset, config.attack_data_settings),
        ):
            kwargs = {}
            if settings:
                from invfeat.data.builders.synth import builder_config

                kwargs["config"] = builder_config(
                    **{k: tuple(v) if k == "size" else v for k, v in settings.items()}
                )
            b = builders.build(name, data_dir=data_dir, **kwargs)
            built[name] = {s: info.num_examples for s, info in b.info.splits.items()}
        return built

    stages.run("data", build_data)

    victim_dir = run / "victim"
    stages.run(
        "victim",
        lambda workdir: (
            train_victim(
                config.victim, workdir, resume=True, data_dir=data_dir, progress=progress
            ).summary
        ),
    )
    victim = load_victim(victim_dir)

    def victim_scores(_: Path) -> dict[str, Any]:
        opened = dict(data_dir=data_dir, progress=progress)
        return {
            "in_domain": evaluate_victim(
                victim, config.victim.dataset, data_settings=config.victim.data_settings, **opened
            ),
            "attack_domain": evaluate_victim(
                victim, config.attack_dataset, data_settings=config.attack_data_settings, **opened
            ),
        }

    victim_block = stages.run("victim_eval", victim_scores)
    features_dir = stages.dir("features")
    secret = _secret(features_dir / SECRET_FILE)
    domain = _attack_domain(config, victim, secret, features_dir, data_dir)
    legitimate = stages.run("legitimate", lambda _: _legitimate(domain, secret))

    plain_api = victim.api(batch_size=config.api_batch_size)
    heads = {}
    for tag, features, encoding in (
        ("plain", domain.plain, None),
        ("cipher", domain.cipher, config.ciphertext_encoding),
    ):
        heads[tag] = stages.timed(
            f"attributes_{tag}",
            lambda workdir, f=features, e=encoding: _attributes(config, domain, f, workdir, e),
        )

    # The attacker's perceptual network imitates the plaintext API on the attacker's own images.
    # The ciphertext attacker is given it too: a stronger attacker than one who only sees
    # ciphertext, so the encrypted figures are conservative.
    surrogate = stages.timed(
        "surrogate",
        lambda workdir: train_surrogate(
            domain.images["train"], domain.plain["train"], config.surrogate, workdir
        ),
    )
    blocks, grid, logs = {}, {"real": domain.images["query"][: config.grid_images]}, {}
    logs["victim"] = victim_dir / "metrics.jsonl"
    for tag, features, encoding in (
        ("plain", domain.plain, None),
        ("cipher", domain.cipher, config.ciphertext_encoding),
    ):
        blocks[tag], tag_grid, tag_logs = _reconstruction_block(
            config,
            domain,
            features,
            run,
            stages,
            tag=tag,
            encoding=encoding,
            perceptual_fn=surrogate,
            plain_features_fn=plain_api,
            attribute_predict=heads["plain"].predict,
        )
        grid |= tag_grid
        logs |= tag_logs

    results = {
        "name": config.name,
        "victim": {
            "rank1": victim_block["attack_domain"]["rank1"],
            "mAP": victim_block["attack_domain"]["mAP"],
            "in_domain": victim_block["in_domain"],
        },
        "attributes": heads["plain"].metrics,
        "reconstruction": blocks["plain"],
        "encrypted": {"attributes": heads["cipher"].metrics, "reconstruction": blocks["cipher"]},
        "legitimate": legitimate,
        "perceptual": {
            "name": config.gan.perceptual,
            "threat_model_allowed": config.gan.perceptual != "white-box",
        },
        "config": config.to_dict(),
        "timings": stages.timings,
    }
    return report.write_report(results, run, grid_rows=grid, logs=logs)
