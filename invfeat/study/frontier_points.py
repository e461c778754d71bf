"""The points of a frontier, each a group of resumable stages: a defence served inside the
victim's program (`invfeat.api.FeatureAPI`), what the key holder's re-ID keeps of it, and what an
adaptive attacker trained on its outputs gets (`defence_point`); the plaintext and the
encryption modes as the study measures them, with the optimisation attack added
(`plaintext_point`, `encryption_point`); and each point's headline figures (`summarise`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from invfeat.api import FeatureAPI
from invfeat.attacks.attributes import AttributeResult
from invfeat.attacks.reconstruction import SurrogateResult, train_surrogate
from invfeat.data.datasets import SPLITS
from invfeat.defences import Defence, ProjectionKey, Transform, build
from invfeat.files import write_atomic
from invfeat.study import security
from invfeat.study.attack_stages import (
    Reading,
    attribute_stage,
    reconstruction_stages,
)
from invfeat.study.attack_stages import optimisation_stage as inversion_stage
from invfeat.study.domain import reid_scores
from invfeat.study.protections import ESTIMATES_FILE, Attacker, evaluate_protection, reference
from invfeat.study.stages import Stages

if TYPE_CHECKING:
    from invfeat.study.frontier import FrontierConfig

SERVED_FILE = "served.npz"
NEW_KEY = "query_new_key"  # the projection's queries served again under a new key
SAME, RENEWED = "defended", "new key"  # the attacker's readings of a defended point


@dataclasses.dataclass
class Frontier:
    """What every point shares: the configs, the stages, the served attack domain (its
    `attacker`, as the study's), the plaintext attribute head and the victim's program."""

    config: FrontierConfig
    attacker: Attacker
    head: AttributeResult
    plain_surrogate: SurrogateResult | None  # the attacker's surrogate of the plaintext API
    white_box: tuple[Callable[..., Any], Any]  # the victim's (features_fn, variables)
    images: Callable[[str], np.ndarray]  # split -> the attack domain's uint8 images

    @property
    def stages(self) -> Stages:
        return self.attacker.stages

    @property
    def domain(self) -> Any:
        return self.attacker.domain


def _attacker_view(defence: Defence | None, dim: int) -> Transform | None:
    """What the attacker composes after its surrogate: the defence where it needs no secret
    and is idempotent, so the composition is the defended API's form (quantise, straight-through;
    drop, its public mask); None (the surrogate alone) for noise (drawn afresh per vector, no
    draw to reproduce) and the projection (its key is secret; the surrogate regressed the
    projected vectors themselves)."""
    if defence is None or defence.name not in ("quantise", "drop"):
        return None
    if defence.name == "drop" and defence.strength == 0:
        return None
    return build(defence, dim)


def surrogate_stage(frontier: Frontier, name: str, reading: Reading) -> SurrogateResult:
    """The attacker's surrogate of the API as it serves `reading`, trained on its own images."""
    config = dataclasses.replace(frontier.config.surrogate, encoding=reading.encoding)
    settings = {"attack": "surrogate", "config": config.to_dict()}
    stages, domain = frontier.stages, frontier.domain
    return stages.timed(
        name,
        lambda workdir: train_surrogate(
            domain.images["train"], reading.features["train"], config, workdir,
            progress=stages.progress,
        ),
        inputs=reading.digest(("train",), settings),
    )  # fmt: skip


def optimisation_stage(
    frontier: Frontier,
    name: str,
    reading: Reading,
    surrogate: SurrogateResult,
    view: Transform | None,
    view_name: str,
) -> dict[str, Any]:
    """The study's `optimisation_stage` on the first `inverted_queries` victims' queries,
    through `view`(surrogate)."""
    config, attacker = frontier.config, frontier.attacker
    return inversion_stage(
        frontier.stages,
        name,
        config.optimisation,
        frontier.domain,
        reading,
        surrogate,
        queries=config.inverted_queries,
        scoring=attacker.scoring,
        attribute_predict=attacker.attribute_predict,
        grid_images=config.grid_images,
        view=view,
        view_name=view_name,
    )


def _reconstructions(
    frontier: Frontier, base: str, reading: Reading, **names: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The decoders of the config on one reading (`reconstruction_stages`; the GAN's feature
    loss through the attacker's perceptual network, the study's): (blocks, grid rows)."""
    kinds = frontier.config.reconstructions
    attacker = frontier.attacker
    blocks, grid, _ = reconstruction_stages(
        frontier.stages,
        attacker.config,
        frontier.domain,
        reading,
        names={k: names.get(k, f"{base}/{k}") for k in ("autoencoder", "gan") if k in kinds},
        perceptual_fn=attacker.perceptual_fn,
        scoring=attacker.scoring,
        attribute_predict=attacker.attribute_predict,
        pending=attacker.pending,
    )
    return blocks, grid


def plain_surrogate_needed(config: FrontierConfig) -> bool:
    """Whether an attack runs through the attacker's surrogate of the plaintext API: the
    optimisation at the plaintext point, or every GAN's feature loss (`victim-surrogate`)."""
    kinds = config.reconstructions
    return "optimisation" in kinds or (
        "gan" in kinds and config.gan.perceptual == "victim-surrogate"
    )


def plaintext_point(frontier: Frontier) -> dict[str, Any]:
    """The plaintext row of the study (`reference`), with the optimisation attack."""
    domain, attacker = frontier.domain, frontier.attacker
    reading = Reading("plaintext", domain.plain)
    surrogate = frontier.plain_surrogate
    blocks, grid = _reconstructions(
        frontier, "", reading, autoencoder="autoencoder_plain", gan="gan_plain"
    )
    if "optimisation" in frontier.config.reconstructions:
        blocks["optimisation"] = optimisation_stage(
            frontier, "optimisation_plain", reading, surrogate, None, "none"
        )
        grid["optimisation"] = _grid(frontier, "optimisation_plain")
    cells = reference(attacker, reading, frontier.head, blocks)
    utility = reid_scores(domain.plain, domain)
    return _point("plaintext", None, "plaintext", utility, cells, grid)


def encryption_point(frontier: Frontier, mode: str, key: Any) -> dict[str, Any]:
    """An encryption mode as the study measures it (`evaluate_protection`: every reading, the
    decoders on the strongest), with the optimisation attack on the strongest reading."""
    stages, domain, attacker = frontier.stages, frontier.domain, frontier.attacker
    cells, _, _ = evaluate_protection(mode, key, attacker)
    readings_block = cells["attributes"]["readings"]
    best = max(readings_block, key=lambda r: readings_block[r]["mean"]["balanced_accuracy"])
    if "optimisation" in frontier.config.reconstructions:
        with np.load(stages.home(f"protections/{mode}/inversion") / ESTIMATES_FILE) as saved:
            estimates = {split: saved[split] for split in saved.files}
        cipher = domain.cipher[mode]
        reading = security.readings_of(mode, (best,), cipher, lambda: estimates)[best]
        surrogate = surrogate_stage(frontier, f"protections/{mode}/surrogate", reading)
        blocks = dict(cells.get("reconstruction", {}).get("attacks", {}))
        blocks["optimisation"] = optimisation_stage(
            frontier, f"protections/{mode}/optimisation", reading, surrogate, None, "none"
        )
        cells["reconstruction"] = security.reconstruction_cell(blocks, attacker.chance_rank1, best)
    kinds = cells.get("reconstruction", {}).get("attacks", {})
    grid = {kind: _grid(frontier, f"protections/{mode}/{kind}") for kind in kinds}
    legit = cells["legitimate"]
    utility = {"rank1": legit["rank1"], "mAP": legit["mAP"], "bit_exact": legit["bit_exact"]}
    return _point(mode, None, "encryption", utility, cells, grid)


def _serve(frontier: Frontier, defence: Defence, workdir: Path) -> dict[str, Any]:
    """Serve the attack domain's splits under `defence` (under a projection, the queries again
    under a new key), saved to `SERVED_FILE`."""
    features_fn, variables = frontier.white_box
    batch = frontier.config.api_batch_size

    def server(key: ProjectionKey | None) -> FeatureAPI:
        return FeatureAPI(features_fn, variables, batch, defence=defence, projection_key=key)

    key = ProjectionKey.generate() if defence.needs_key else None  # held in memory alone
    serve = server(key)
    served = {split: serve(frontier.images(split)) for split in SPLITS}
    if defence.needs_key:
        served[NEW_KEY] = server(ProjectionKey.generate())(frontier.images("query"))
    write_atomic(workdir / SERVED_FILE, lambda f: np.savez(f, **served))
    return {"width": int(served["train"].shape[1]), "rows": {s: len(x) for s, x in served.items()}}


def defence_point(frontier: Frontier, defence: Defence) -> dict[str, Any]:
    """One defence at one strength: served, its key holder's re-ID, and the adaptive attacker's
    attribute head, reconstructions and linkability on what the API returns."""
    stages, domain, attacker = frontier.stages, frontier.domain, frontier.attacker
    base = f"defences/{defence.label}"
    stages.run(f"{base}/served", lambda workdir: _serve(frontier, defence, workdir))
    with np.load(stages.home(f"{base}/served") / SERVED_FILE) as saved:
        served = {name: saved[name] for name in saved.files}
    reading = Reading(defence.label, {split: served[split] for split in SPLITS})
    utility = stages.run(f"{base}/utility", lambda _: reid_scores(reading.features, domain))
    head = attribute_stage(stages, f"{base}/attributes", attacker.config, domain, reading)
    cells = {"attributes": security.attributes_cell({SAME: head}, domain, {SAME: reading})}
    linked = {SAME: reading}
    if NEW_KEY in served:  # renewability: the same people enrolled again under a new key
        cells["linkability_same_key"] = stages.run(
            f"{base}/linkability_same_key",
            lambda _: security.linkability_cell({SAME: reading}, domain),
        )
        renewed = dict(reading.features, query=served[NEW_KEY])
        linked = {RENEWED: Reading(f"{defence.label} {RENEWED}", renewed)}
    cells["linkability"] = stages.run(
        f"{base}/linkability", lambda _: security.linkability_cell(linked, domain)
    )
    blocks, grid = _reconstructions(frontier, base, reading)
    if "optimisation" in frontier.config.reconstructions:
        surrogate = surrogate_stage(frontier, f"{base}/surrogate", reading)
        dim = domain.plain["train"].shape[1]
        view = _attacker_view(defence, dim)
        view_name = "none" if view is None else defence.label
        blocks["optimisation"] = optimisation_stage(
            frontier, f"{base}/optimisation", reading, surrogate, view, view_name
        )
        grid["optimisation"] = _grid(frontier, f"{base}/optimisation")
    cells["reconstruction"] = security.reconstruction_cell(blocks, attacker.chance_rank1, SAME)
    return _point(defence.label, defence, "defence", utility, cells, grid)


def _grid(frontier: Frontier, stage: str) -> np.ndarray:
    """The reconstructions of the first query images a finished attack stage kept."""
    return np.load(frontier.stages.home(stage) / "grid.npy")


def _point(
    label: str,
    defence: Defence | None,
    kind: str,
    utility: dict[str, Any],
    cells: dict[str, Any],
    grid: dict[str, np.ndarray],
) -> dict[str, Any]:
    """A point of the report: what it is, its utility, its headline leakage and every cell."""
    point = {
        "point": label,
        "kind": kind,
        "defence": defence.name if defence is not None else label,
        "strength": defence.strength if defence is not None else None,
        "utility": utility,
        "leakage": summarise(cells),
        "cells": cells,
    }
    return point | {"grid": grid}  # the grid rows stay out of report.json


def summarise(cells: dict[str, Any]) -> dict[str, Any]:
    """A point's headline leakage from its cells: the attribute head's lead over chance (mean
    balanced accuracy minus the mean of 1 / classes, the best reading), the best reconstruction
    rank-1 and the best linkability rank-1 (over readings, raw and learned metric); each with
    the cell's verdict."""
    readings = cells["attributes"]["readings"]
    reading = max(
        readings,
        key=lambda r: readings[r]["mean"]["balanced_accuracy"] - readings[r]["mean"]["chance"],
    )
    mean = readings[reading]["mean"]
    out: dict[str, Any] = {
        "attributes": {
            "lead": mean["balanced_accuracy"] - mean["chance"],
            "balanced_accuracy": mean["balanced_accuracy"],
            "chance": mean["chance"],
            "reading": reading,
            "leaks": cells["attributes"]["leaks"],
        }
    }
    if "reconstruction" in cells:
        attacks = cells["reconstruction"]["attacks"]
        best = max(attacks, key=lambda k: attacks[k]["rank1"])
        out["reconstruction"] = {
            "rank1": attacks[best]["rank1"],
            "attack": best,
            "rank1_per_attack": {k: a["rank1"] for k, a in attacks.items()},
            "reading": cells["reconstruction"].get("reading"),
            "leaks": cells["reconstruction"]["leaks"],
        }
    link = cells["linkability"]["readings"]
    pairs = [(r, v) for r in link for v in link[r]]
    r, v = max(pairs, key=lambda rv: link[rv[0]][rv[1]]["rank1"])
    out["linkability"] = {
        "rank1": link[r][v]["rank1"],
        "mAP": link[r][v]["mAP"],
        "chance_rank1": link[r][v]["chance_rank1"],
        "reading": r,
        "variant": v,
        "leaks": cells["linkability"]["leaks"],
    }
    return out
