"""Every protection of a study attacked alike (`invfeat.study.security` says by whom and how it
is judged): the attacker's estimates, the attribute heads, linkability, the reconstructions on
the strongest reading, and decryption by the key holder, each a stage of the run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from invfeat.attacks import inversion as inv
from invfeat.files import write_atomic
from invfeat.study import security
from invfeat.study.attack_stages import (
    Reading,
    attribute_stage,
    reconstruction_stages,
    victims,
)
from invfeat.study.config import StudyConfig
from invfeat.study.domain import AttackDomain, legitimate_reid
from invfeat.study.stages import Stages
from invfeat.victims.from_files import PendingFeatures

ESTIMATES_FILE = "estimates.npz"


@dataclasses.dataclass
class Attacker:
    """What every protection's evaluation shares with the plaintext attacks."""

    config: StudyConfig
    domain: AttackDomain
    stages: Stages
    perceptual_fn: Any
    scoring: Callable[[str], Callable[[np.ndarray], np.ndarray]]
    attribute_predict: Callable[[np.ndarray], np.ndarray]  # the plaintext head
    chance_rank1: float
    pending: list[PendingFeatures]


def _inversion(mode: str, key: Any, domain: AttackDomain, workdir: Path) -> dict[str, Any]:
    estimates = security.attacker_estimates(mode, domain.plain["train"], domain.cipher[mode])
    write_atomic(workdir / ESTIMATES_FILE, lambda f: np.savez(f, **estimates))
    cells = {"irreversibility": security.irreversibility_cell(estimates, domain)}
    if mode == "static":
        cells["key_recovery"] = security.key_recovery_cell(
            key,
            victims(domain.plain),
            victims(domain.cipher[mode]),
            inv.learn_profile(domain.plain["train"]),
        )
    return cells


def evaluate_protection(
    mode: str, key: Any, attacker: Attacker
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Path]]:
    """The report's block of one protection, its reconstructions' grid rows and logs."""
    config, domain, stages = attacker.config, attacker.domain, attacker.stages
    base = f"protections/{mode}"
    cells = stages.run(f"{base}/inversion", lambda workdir: _inversion(mode, key, domain, workdir))

    def estimates() -> dict[str, np.ndarray]:
        with np.load(stages.home(f"{base}/inversion") / ESTIMATES_FILE) as saved:
            return {split: saved[split] for split in saved.files}

    readings = security.readings_of(mode, config.readings, domain.cipher[mode], estimates)
    heads = {
        name: attribute_stage(stages, f"{base}/attributes_{name}", config, domain, reading)
        for name, reading in readings.items()
    }
    cells["attributes"] = security.attributes_cell(heads, domain, readings)
    cells["linkability"] = stages.run(
        f"{base}/linkability", lambda _: security.linkability_cell(readings, domain)
    )
    best = security.strongest(heads)
    blocks, grid, logs = reconstruction_stages(
        stages,
        config,
        domain,
        readings[best],
        names={kind: f"{base}/{kind}" for kind in config.protected_reconstructions},
        perceptual_fn=attacker.perceptual_fn,
        scoring=attacker.scoring,
        attribute_predict=attacker.attribute_predict,
        pending=attacker.pending,
    )
    if blocks:
        cells["reconstruction"] = security.reconstruction_cell(blocks, attacker.chance_rank1, best)
    cells["legitimate"] = stages.run(
        f"{base}/legitimate", lambda _: legitimate_reid(domain, mode, key)
    )
    rows = {f"{kind} ({mode}, {best})": images for kind, images in grid.items()}
    return cells, rows, {f"{kind} ({mode})": log for kind, log in logs.items()}


def reference(
    attacker: Attacker, floats: Reading, head: Any, reconstructions: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The plaintext row of the security table: the same cells on the features as floats."""
    cells = {
        "attributes": security.attributes_cell(
            {"floats": head}, attacker.domain, {"floats": floats}
        ),
        "linkability": attacker.stages.run(
            "linkability_plain",
            lambda _: security.linkability_cell({"floats": floats}, attacker.domain),
        ),
    }
    if reconstructions:
        cells["reconstruction"] = security.reconstruction_cell(
            reconstructions, attacker.chance_rank1, None
        )
    return cells
