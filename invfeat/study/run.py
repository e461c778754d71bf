"""The study end to end: data -> victim -> features -> attacks -> evaluation -> report.

`run_study(config, run_dir)` builds the datasets, gets the victim (trained here, or read from
its feature files), serves the attack domain in plaintext and under each protection's key, and
runs every attack on the plaintext (the reference) and on each protection's ciphertext
(`invfeat.study.protections`): attribute recognition, linkability, an autoencoder and a GAN
reconstructing images, scored through the victim. Each stage lands in its own folder of
`run_dir`, the report at the top; a killed study resumes at its first unfinished stage. A study
waiting for features made outside raises `StudyPending` and resumes the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from invfeat.attacks.perceptual import THREAT_MODEL_ALLOWED
from invfeat.attacks.reconstruction import train_surrogate
from invfeat.data import builders
from invfeat.metrics import chance_rank1
from invfeat.models.perceptual import KERAS_LOADERS, white_box_perceptual
from invfeat.study import report
from invfeat.study.attack_stages import (
    Reading,
    attribute_stage,
    optimisation_stage,
    query_reconstructions,
    reconstruction_stages,
)
from invfeat.study.config import StudyConfig
from invfeat.study.domain import (
    build_data,
    check_same_data,
    protection_keys,
    reid_scores,
    serve_attack_domain,
)
from invfeat.study.protections import Attacker, evaluate_protection, reference
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


def _perceptual(config: StudyConfig, victim: Victim, surrogate: Any) -> Any:
    """What the feature loss runs through: the surrogate, the victim itself (white-box), or
    None (`resnet50-imagenet`, `vgg16-imagenet`: loaded by the attack from its weights file)."""
    name = config.gan.perceptual
    if name == "victim-surrogate":
        return surrogate
    if name == "white-box":
        return white_box_perceptual(*victim.white_box())
    return None


def _keras_perceptual(config: StudyConfig) -> list[Any]:
    """The attacks whose feature loss runs through Keras weights (resnet50- or vgg16-imagenet)."""
    return [
        attack
        for attack in (config.autoencoder, config.gan)
        if attack.feature > 0 and attack.perceptual in KERAS_LOADERS
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
                    f"the {attack.kind}'s {attack.perceptual} perceptual network needs its Keras "
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
        KERAS_LOADERS[attack.perceptual](attack.perceptual_weights, attack.perceptual_layer)


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

    keys = protection_keys(stages.dir("features"), config.protections)
    opened = dict(data_dir=data_dir, progress=progress)
    victim = config.victim.obtain(stages, **opened)
    scoring_api = victim.scoring_api(config.api_batch_size)
    domain = stages.timed(
        "features",
        lambda stage_dir: serve_attack_domain(config, victim, keys, stage_dir, data_dir),
    )
    evaluated = stages.run(
        "victim_eval",
        lambda _: victim.evaluate(
            (config.attack_dataset, config.attack_data_settings),
            lambda: reid_scores(domain.plain, domain),
            **opened,
        ),
    )
    plaintext = Reading("plaintext", domain.plain)  # the floats as they are: the reference
    head = attribute_stage(stages, "attributes_plain", config, domain, plaintext)

    # The attacker's perceptual network imitates the plaintext API on the attacker's own images.
    # The ciphertext attacker is given it too: a stronger attacker than one who only sees
    # ciphertext, so the encrypted figures are conservative.
    surrogate = None
    if config.gan.perceptual == "victim-surrogate" or config.optimisation is not None:
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

    def scoring(
        stage: str, splits: tuple[str, ...] = config.reconstructed_splits
    ) -> Callable[[np.ndarray], np.ndarray]:
        if scoring_api is not None:
            return scoring_api
        external = run / EXTERNAL_DIR
        names = np.concatenate([domain.file_names[s] for s in splits])
        return external_features(external / stage, external / f"{stage}.npz", names)

    chance = chance_rank1(
        domain.identity["query"],
        domain.camera["query"],
        domain.identity["gallery"],
        domain.camera["gallery"],
    )
    attacker = Attacker(
        config,
        domain,
        stages,
        _perceptual(config, victim, surrogate),
        scoring,
        head.predict,
        chance,
        pending=[],
    )
    real = domain.images["query"][: config.grid_images].astype(np.float32) / 255.0
    refine_gan = config.optimisation is not None and config.optimisation.init == "given"
    plain, grid, logs = reconstruction_stages(
        stages,
        config,
        domain,
        plaintext,
        names={"autoencoder": "autoencoder_plain", "gan": "gan_plain"},
        perceptual_fn=attacker.perceptual_fn,
        scoring=scoring,
        attribute_predict=head.predict,
        pending=attacker.pending,
        keep_queries=("gan",) if refine_gan else (),
    )
    # Through the surrogate, the threat model's own; "given" refines the GAN's reconstructions.
    starts = query_reconstructions(stages, "gan_plain") if refine_gan else None
    if config.optimisation is not None and (not refine_gan or starts is not None):
        try:
            plain["optimisation"] = optimisation_stage(
                stages,
                "optimisation_plain",
                config.optimisation,
                domain,
                plaintext,
                surrogate,
                queries=None,
                scoring=lambda stage: scoring(stage, ("query",)),
                attribute_predict=head.predict,
                grid_images=config.grid_images,
                starts=starts,
            )
            grid["optimisation"] = np.load(stages.home("optimisation_plain") / "grid.npy")
        except PendingFeatures as waiting:
            attacker.pending.append(waiting)
    grid = {"real": real} | {f"{kind} (plaintext)": images for kind, images in grid.items()}
    logs = {"victim": run / "victim" / METRICS_FILE} | {
        f"{kind} (plaintext)": log for kind, log in logs.items()
    }  # the victim's log is absent for a victim read from files
    reference_cells = reference(attacker, plaintext, head, plain)
    protections = {}
    for mode, key in keys.items():
        protections[mode], mode_grid, mode_logs = evaluate_protection(mode, key, attacker)
        grid |= mode_grid
        logs |= mode_logs
    if attacker.pending:
        raise StudyPending(attacker.pending)

    results = {
        "name": config.name,
        "victim": victim.report_block(evaluated),
        "attributes": head.metrics,
        "reconstruction": plain,
        "reference": reference_cells,
        "protections": protections,
        "chance": {"rank1": chance},
        "perceptual": {
            "name": config.gan.perceptual,
            "threat_model_allowed": THREAT_MODEL_ALLOWED[config.gan.perceptual],
        },
        "config": config.to_dict(),
        "timings": stages.timings,
    }
    return report.write_report(results, run, grid_rows=grid, logs=logs)
