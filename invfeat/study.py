"""The study end to end: data -> victim -> features -> attacks -> evaluation -> report.

`run_study(config, run_dir)` builds the victim's and the attacker's datasets, trains the victim
(a `VictimConfig`) or reads its feature files (a `FileVictim`: FastReID's outputs, as the paper
attacks), serves the attack domain twice — in plaintext and under ShuffleBits one-time keys —
and runs every attack on both: attribute recognition, an autoencoder and a GAN reconstructing
images from features. Reconstructions are scored by the victim's features of them (its API, or
feature files its own extractor writes: see `invfeat.file_victim`); the legitimate user's re-ID
accuracy after decryption closes the loop. Everything lands in `run_dir`: one folder per stage,
`report.md`/`report.json` and figures at the top.

A killed study resumes where it stopped: finished stages are read back from their
`<stage>/result.json`, and training stages continue from their engine checkpoints. A study that
waits for external features raises `StudyPending` and resumes the same way.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from invfeat import metrics, report, shufflebits
from invfeat.attacks.attributes import run_attribute_attack
from invfeat.attacks.ciphertext import ENCODINGS
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
from invfeat.data.pipeline import materialize, read_labels
from invfeat.features import open_dataset_split, prepare_dataset
from invfeat.file_victim import (
    FileVictim,
    PendingFeatures,
    external_features,
    split_features,
    victim_api,
)
from invfeat.models.perceptual import load_keras_resnet50, white_box_perceptual
from invfeat.models.reid import make_features_fn
from invfeat.stages import Stages
from invfeat.victim import (
    Victim,
    VictimConfig,
    chance_rank1,
    evaluate_victim,
    load_victim,
    train_victim,
)

SPLITS = ("train", "query", "gallery")
SECRET_FILE = "one_time_secret.json"
EXTERNAL_DIR = "external"  # reconstructions waiting for a file victim's features


class StudyPending(Exception):
    """The study waits for features computed outside (`pending`: what, and where they go)."""

    def __init__(self, pending: list[PendingFeatures]):
        super().__init__(f"{len(pending)} sets of reconstructions wait for the victim's features")
        self.pending = pending


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """One study: the victim, the attack domain, and each attack's settings (JSON-able)."""

    name: str
    description: str
    victim: VictimConfig | FileVictim  # trained here, or read from its feature files
    attack_dataset: str = "synth_market"
    attack_data_settings: dict[str, Any] | None = None
    attributes: AttributeAttackConfig = AttributeAttackConfig()
    surrogate: SurrogateConfig = SurrogateConfig()
    autoencoder: ReconstructionConfig = autoencoder_config()
    gan: ReconstructionConfig = gan_config()
    # How the attacker reads ciphertext floats (`invfeat.attacks.ciphertext.ENCODINGS`): the
    # attribute attack runs once per encoding (cheap) and the report gives each; the
    # reconstructions, which cost far more, read the first. One-time keys permute the bit
    # positions of all of a vector's floats alike: `columns` sorts them back by their counts of
    # ones (demo: 53.9 % mean balanced accuracy, against 46.0 % reading the raw bits, plaintext
    # 67.1 %, chance 41.6 %); `popcount` reads what no bit permutation changes (46.4 %).
    ciphertext_encodings: tuple[str, ...] = ("columns", "popcount")
    grid_images: int = 8  # query images shown in the report's reconstruction grid
    api_batch_size: int = 256
    requires: tuple[str, ...] = ()  # what a run needs beyond this machine, e.g. "GPU"

    def __post_init__(self):
        encodings = list(self.ciphertext_encodings)
        if (
            not encodings
            or len(set(encodings)) != len(encodings)
            or set(encodings) - ENCODINGS.keys()
        ):
            raise ValueError(
                f"{self.name}: ciphertext_encodings must name one or more of {list(ENCODINGS)}, "
                f"each once (got {encodings})"
            )

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


def _reid(features: Mapping[str, np.ndarray], domain: Domain) -> dict[str, float]:
    scores = metrics.reid_metrics(
        features["query"], domain.identity["query"], domain.camera["query"],
        features["gallery"], domain.identity["gallery"], domain.camera["gallery"],
    )  # fmt: skip
    return {"rank1": float(scores["rank1"]), "mAP": float(scores["mAP"])}


def _secret(path: Path) -> shufflebits.Secret:
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


ServeFn = Callable[[str, np.ndarray | None, np.ndarray], tuple[np.ndarray, ...]]


def _server(victim: Victim | FileVictim, secret: shufflebits.Secret, batch_size: int) -> ServeFn:
    """(split, uint8 images or None, file names) -> plaintext, one-time ciphertext, nonces."""
    if isinstance(victim, Victim):
        plain_api = victim.api(batch_size=batch_size)
        cipher_api = victim.api(key=secret, batch_size=batch_size)

        def serve_api(split, images, file_names):
            served = cipher_api.serve(images)
            return plain_api(images), served.features, served.nonces

        return serve_api
    encrypt = jax.jit(lambda x, nonces: shufflebits.encrypt(x, secret, nonces))

    def serve_files(split, images, file_names):
        plain = split_features(victim, split, file_names)
        nonces = shufflebits.fresh_nonces(len(plain))
        return plain, np.asarray(encrypt(plain, nonces)), nonces

    return serve_files


def _attack_domain(
    config: StudyConfig,
    victim: Victim | FileVictim,
    secret: shufflebits.Secret,
    stage_dir: Path,
    data_dir: Path | None,
) -> Domain:
    """Decode the attack domain's splits and serve them, in plaintext and encrypted.

    Feature files (FastReID layout) are written once to `stage_dir` and read back on resume.
    """
    serve = _server(victim, secret, config.api_batch_size)
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
        plain_path, cipher_path = (
            stage_dir / f"plain_{split}.npz",
            stage_dir / f"cipher_{split}.npz",
        )
        done = plain_path.exists() and cipher_path.exists()
        images = None
        if split != "gallery" or (isinstance(victim, Victim) and not done):
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
    progress: bool,
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
        progress=progress,
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
    scoring: Callable[[str], Callable[[np.ndarray], np.ndarray]],
    attribute_predict: Callable[[np.ndarray], np.ndarray],
    pending: list[PendingFeatures],
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Path]]:
    """Autoencoder and GAN on `features` (plaintext or ciphertext), each evaluated on the query.

    `scoring(stage)` is the victim's plaintext features function for that stage's
    reconstructions; a stage whose features come from outside and are not there yet is
    added to `pending` and left out of the returned blocks.
    """
    block, grid, logs = {}, {}, {}
    for kind, rec_config in (("autoencoder", config.autoencoder), ("gan", config.gan)):
        stage = f"{kind}_{tag}"

        def attack(workdir: Path, rec_config=rec_config, stage=stage) -> dict[str, Any]:
            result = run_reconstruction(
                domain.images["train"],
                features["train"],
                dataclasses.replace(rec_config, encoding=encoding),
                workdir,
                perceptual_fn=perceptual_fn if rec_config.feature > 0 else None,
                progress=stages.progress,
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
                scoring(stage),
                attribute_predict=attribute_predict,
                query_attributes=domain.attributes["query"],
                grid_images=config.grid_images,
            )
            np.save(workdir / "grid.npy", images)
            return scores

        try:
            block[kind] = stages.run(stage, attack)
        except PendingFeatures as waiting:
            pending.append(waiting)
            continue
        grid[f"{kind} ({tag})"] = np.load(run / stage / "grid.npy")
        logs[f"{kind} ({tag})"] = run / stage / "metrics.jsonl"
    return block, grid, logs


def _build_data(config: StudyConfig, data_dir: Path) -> dict[str, Any]:
    """Render the synthetic datasets the study uses; real ones must be built (clear error)."""
    datasets = [(config.attack_dataset, config.attack_data_settings)]
    if isinstance(config.victim, VictimConfig):
        datasets.insert(0, (config.victim.dataset, config.victim.data_settings))
    built = {}
    for name, settings in datasets:
        prepare_dataset(name, data_dir=data_dir, data_settings=settings)
        built[name] = {
            split: len(open_dataset_split(name, split, data_dir=data_dir, data_settings=settings))
            for split in SPLITS
        }
    return built


def _check_same_data(
    recorded: Mapping[str, Any], current: Mapping[str, Any], run: Path, data_dir: Path
) -> None:
    """A resumed run reads the data it began with: the split sizes it recorded must match."""
    if recorded != current:
        raise ValueError(
            f"{run}: this run was made from other data than {data_dir} holds now (split sizes "
            f"then {json.dumps(recorded)}, now {json.dumps(current)}); use the data it was made "
            "from or another run directory"
        )


def _own_victim(
    config: StudyConfig, stages: Stages, run: Path, data_dir: Path, progress: bool
) -> tuple[Victim, dict[str, Any]]:
    """Train (or resume) the victim of `config.victim`; its scores in and out of its domain."""
    stages.run(
        "victim",
        lambda workdir: (
            train_victim(
                config.victim, workdir, resume=True, data_dir=data_dir, progress=progress
            ).summary
        ),
    )
    victim = load_victim(run / "victim")

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

    scores = stages.run("victim_eval", victim_scores)
    return victim, {
        "rank1": scores["attack_domain"]["rank1"],
        "mAP": scores["attack_domain"]["mAP"],
        "in_domain": scores["in_domain"],
    }


def _perceptual(config: StudyConfig, victim: Victim | FileVictim, surrogate: Any) -> Any:
    """What the feature loss runs through: the surrogate, the victim itself (white-box), or
    None (`resnet50-imagenet`, loaded by the attack from its weights file)."""
    name = config.gan.perceptual
    if name == "victim-surrogate":
        return surrogate
    if name == "white-box":
        if not isinstance(victim, Victim):
            raise ValueError("perceptual 'white-box' needs a victim trained here, not files")
        return white_box_perceptual(make_features_fn(victim.model), victim.variables)
    return None


def check_inputs(config: StudyConfig) -> None:
    """Every file a study reads from outside exists and the weights files load, before any run
    directory is written: they are otherwise first read hours in, when the reconstructions are
    scored or the GAN starts. Every input missing is named in one error (ValueError for an
    option not given, else FileNotFoundError), so a new user learns them all at once."""
    options, needed = [], []
    if isinstance(config.victim, FileVictim):
        try:
            needed += [config.victim.split_file(split) for split in SPLITS]
        except ValueError as err:  # no features folder given
            options.append(str(err))
        needed += [Path(config.victim.weights)] if config.victim.weights else []
    for attack in (config.autoencoder, config.gan):
        if attack.feature > 0 and attack.perceptual == "resnet50-imagenet":
            if attack.perceptual_weights is None:
                options.append(
                    f"the {attack.kind}'s resnet50-imagenet perceptual network needs its Keras "
                    "weights file (--perceptual-weights FILE.h5)"
                )
            else:
                needed.append(Path(attack.perceptual_weights))
    missing = [str(path) for path in dict.fromkeys(needed) if not path.exists()]
    problems = options + ([f"no such file or folder: {', '.join(missing)}"] if missing else [])
    if problems:
        error = ValueError if options else FileNotFoundError
        raise error(f"{config.name}: {'; '.join(problems)}")
    if isinstance(config.victim, FileVictim):
        victim_api(config.victim)
    for attack in (config.autoencoder, config.gan):
        if attack.feature > 0 and attack.perceptual == "resnet50-imagenet":
            load_keras_resnet50(attack.perceptual_weights, attack.perceptual_layer)


def run_study(
    config: StudyConfig,
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Run (or resume) the whole study of `config` in `run_dir`; returns the report's path.

    Raises `StudyPending` when reconstructions wait for a file victim's features (its
    `pending` says which images to embed and where the features go); run it again after.
    """
    check_inputs(config)
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
    recorded = stages.run("data", lambda _: _build_data(config, data_dir))
    _check_same_data(recorded, _build_data(config, data_dir), run, data_dir)

    features_dir = stages.dir("features")
    secret = _secret(features_dir / SECRET_FILE)
    if isinstance(config.victim, VictimConfig):
        victim, victim_block = _own_victim(config, stages, run, data_dir, progress)
        scoring_api = victim.api(batch_size=config.api_batch_size)
    else:
        victim = config.victim
        scoring_api = victim_api(victim, config.api_batch_size)
    domain = stages.timed(
        "features", lambda stage_dir: _attack_domain(config, victim, secret, stage_dir, data_dir)
    )
    if not isinstance(config.victim, VictimConfig):
        victim_block = stages.run("victim_eval", lambda _: _reid(domain.plain, domain))
        victim_block = victim_block | {"source": victim.name}
    legitimate = stages.run("legitimate", lambda _: _legitimate(domain, secret))

    heads = {}
    for tag, features, encoding in (
        ("plain", domain.plain, None),
        *((f"cipher_{e}", domain.cipher, e) for e in config.ciphertext_encodings),
    ):
        heads[tag] = stages.timed(
            f"attributes_{tag}",
            lambda workdir, f=features, e=encoding: _attributes(
                config, domain, f, workdir, e, progress
            ),
        )

    # The attacker's perceptual network imitates the plaintext API on the attacker's own images.
    # The ciphertext attacker is given it too: a stronger attacker than one who only sees
    # ciphertext, so the encrypted figures are conservative.
    surrogate = None
    if config.gan.perceptual == "victim-surrogate":
        surrogate = stages.timed(
            "surrogate",
            lambda workdir: train_surrogate(
                domain.images["train"],
                domain.plain["train"],
                config.surrogate,
                workdir,
                progress=progress,
            ),
        )

    def scoring(stage: str) -> Callable[[np.ndarray], np.ndarray]:
        if scoring_api is not None:
            return scoring_api
        external = run / EXTERNAL_DIR
        return external_features(
            external / stage, external / f"{stage}.npz", domain.file_names["query"]
        )

    real = domain.images["query"][: config.grid_images].astype(np.float32) / 255.0
    blocks, grid, logs, pending = {}, {"real": real}, {}, []
    if isinstance(config.victim, VictimConfig):
        logs["victim"] = run / "victim" / "metrics.jsonl"
    for tag, features, encoding in (
        ("plain", domain.plain, None),
        ("cipher", domain.cipher, config.ciphertext_encodings[0]),
    ):
        blocks[tag], tag_grid, tag_logs = _reconstruction_block(
            config,
            domain,
            features,
            run,
            stages,
            tag=tag,
            encoding=encoding,
            perceptual_fn=_perceptual(config, victim, surrogate),
            scoring=scoring,
            attribute_predict=heads["plain"].predict,
            pending=pending,
        )
        grid |= tag_grid
        logs |= tag_logs
    if pending:
        raise StudyPending(pending)

    results = {
        "name": config.name,
        "victim": victim_block,
        "attributes": heads["plain"].metrics,
        "reconstruction": blocks["plain"],
        "encrypted": {
            "attributes": {e: heads[f"cipher_{e}"].metrics for e in config.ciphertext_encodings},
            "reconstruction": blocks["cipher"],
            "reconstruction_encoding": config.ciphertext_encodings[0],
        },
        "legitimate": legitimate,
        "chance": {
            "rank1": chance_rank1(
                domain.identity["query"],
                domain.camera["query"],
                domain.identity["gallery"],
                domain.camera["gallery"],
            )
        },
        "perceptual": {
            "name": config.gan.perceptual,
            "threat_model_allowed": config.gan.perceptual != "white-box",
        },
        "config": config.to_dict(),
        "timings": stages.timings,
    }
    return report.write_report(results, run, grid_rows=grid, logs=logs)
