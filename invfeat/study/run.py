"""The study end to end: data -> victim -> features -> attacks -> evaluation -> report.

`run_study(config, run_dir)` builds the datasets, gets the victim (trained here, or read from
its feature files), serves the attack domain in plaintext and under one-time keys, and runs
every attack on both: attribute recognition, an autoencoder and a GAN reconstructing images,
scored through the victim. Each stage lands in its own folder of `run_dir`, the report at the
top; a killed study resumes at its first unfinished stage. A study waiting for features made
outside raises `StudyPending` and resumes the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from invfeat.attacks.attributes import run_attribute_attack
from invfeat.attacks.evaluation import evaluate_reconstructions
from invfeat.attacks.perceptual import THREAT_MODEL_ALLOWED
from invfeat.attacks.reconstruction import run_reconstruction, train_surrogate
from invfeat.data import builders
from invfeat.metrics import chance_rank1
from invfeat.models.perceptual import load_keras_resnet50, white_box_perceptual
from invfeat.study import report
from invfeat.study.config import StudyConfig
from invfeat.study.domain import (
    SECRET_FILE,
    AttackDomain,
    build_data,
    check_same_data,
    legitimate_reid,
    one_time_secret,
    reid_scores,
    serve_attack_domain,
)
from invfeat.study.stages import Stages
from invfeat.train.loop import METRICS_FILE
from invfeat.train.run import Refusals, claim_workdir
from invfeat.victims.base import MissingInputError, Victim
from invfeat.victims.from_files import PendingFeatures, external_features

EXTERNAL_DIR = "external"  # reconstructions waiting for a file victim's features
REFUSALS = Refusals(
    other_config="{path}: {workdir} holds a study with another configuration; "
    "choose another run directory or remove it"
)


class StudyInputsError(ValueError):
    """Inputs a study needs and was not given (`missing`: MissingInputError each), or files
    given that do not exist (`absent`)."""

    def __init__(self, name: str, missing: list[MissingInputError], absent: list[str]):
        problems = [str(m) for m in missing]
        problems += [f"no such file or folder: {', '.join(absent)}"] if absent else []
        super().__init__(f"{name}: {'; '.join(problems)}")
        self.name, self.missing, self.absent = name, missing, absent


class StudyPending(Exception):
    """The study waits for features computed outside (`pending`: what, and where they go)."""

    def __init__(self, pending: list[PendingFeatures]):
        super().__init__(f"{len(pending)} sets of reconstructions wait for the victim's features")
        self.pending = pending


def _attributes(
    config: StudyConfig,
    domain: AttackDomain,
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
    domain: AttackDomain,
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
                query_images=domain.images["query"],
                query_features_plain=domain.plain["query"],
                query_ids=domain.identity["query"],
                query_cams=domain.camera["query"],
                gallery_features_plain=domain.plain["gallery"],
                gallery_ids=domain.identity["gallery"],
                gallery_cams=domain.camera["gallery"],
                plain_features_fn=scoring(stage),
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


def _perceptual(config: StudyConfig, victim: Victim, surrogate: Any) -> Any:
    """What the feature loss runs through: the surrogate, the victim itself (white-box), or
    None (`resnet50-imagenet`, loaded by the attack from its weights file)."""
    name = config.gan.perceptual
    if name == "victim-surrogate":
        return surrogate
    if name == "white-box":
        return white_box_perceptual(*victim.white_box())
    return None


def _keras_perceptual(config: StudyConfig) -> list[Any]:
    """The attacks whose feature loss runs through Keras ResNet-50 weights."""
    return [
        attack
        for attack in (config.autoencoder, config.gan)
        if attack.feature > 0 and attack.perceptual == "resnet50-imagenet"
    ]


def check_inputs(config: StudyConfig) -> None:
    """Every file a study reads from outside exists and the weights files load, before any run
    directory is written. Every input missing is named in one error: `StudyInputsError` when an
    input was not given, else FileNotFoundError."""
    missing, needed = config.victim.required_inputs()
    for attack in _keras_perceptual(config):
        if attack.perceptual_weights is None:
            missing.append(
                MissingInputError(
                    f"the {attack.kind}'s resnet50-imagenet perceptual network needs its Keras "
                    "weights file",
                    "perceptual_weights",
                )
            )
        else:
            needed.append(Path(attack.perceptual_weights))
    absent = [str(path) for path in dict.fromkeys(needed) if not path.exists()]
    if missing:
        raise StudyInputsError(config.name, missing, absent)
    if absent:
        raise FileNotFoundError(f"{config.name}: no such file or folder: {', '.join(absent)}")
    config.victim.load_inputs()
    for attack in _keras_perceptual(config):
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
    claim_workdir(run, config.to_dict(), resume=True, refusals=REFUSALS)
    stages = Stages(run, progress)
    data_dir = Path(data_dir) if data_dir is not None else builders.default_data_dir()
    recorded = stages.run("data", lambda _: build_data(config, data_dir))
    check_same_data(recorded, build_data(config, data_dir), run, data_dir)

    secret = one_time_secret(stages.dir("features") / SECRET_FILE)
    opened = dict(data_dir=data_dir, progress=progress)
    victim = config.victim.obtain(stages, **opened)
    scoring_api = victim.scoring_api(config.api_batch_size)
    domain = stages.timed(
        "features",
        lambda stage_dir: serve_attack_domain(config, victim, secret, stage_dir, data_dir),
    )
    evaluated = stages.run(
        "victim_eval",
        lambda _: victim.evaluate(
            (config.attack_dataset, config.attack_data_settings),
            lambda: reid_scores(domain.plain, domain),
            **opened,
        ),
    )
    legitimate = stages.run("legitimate", lambda _: legitimate_reid(domain, secret))

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
    blocks, grid, pending = {}, {"real": real}, []
    logs = {"victim": run / "victim" / METRICS_FILE}  # absent for a victim read from files
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
        "victim": victim.report_block(evaluated),
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
            "threat_model_allowed": THREAT_MODEL_ALLOWED[config.gan.perceptual],
        },
        "config": config.to_dict(),
        "timings": stages.timings,
    }
    return report.write_report(results, run, grid_rows=grid, logs=logs)
