"""The study's attacks as stages: the attribute head and the reconstructions on one reading of
the attack domain's features, each keyed by a digest of the numbers it reads, so that two
readings that are equal bit for bit (a key recovered exactly; counts of ones, which no bit
permutation changes) share one run."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from invfeat.attacks.attributes import AttributeResult, run_attribute_attack
from invfeat.attacks.ciphertext import encode_features, encoded_dim
from invfeat.attacks.evaluation import evaluate_reconstructions
from invfeat.attacks.optimisation import (
    OptimisationAttack,
    OptimisationConfig,
    surrogate_features_fn,
)
from invfeat.attacks.reconstruction import SurrogateResult, run_reconstruction
from invfeat.models.perceptual import SurrogateNet
from invfeat.study.config import StudyConfig
from invfeat.study.domain import AttackDomain
from invfeat.study.stages import Stages, inputs_digest
from invfeat.victims.from_files import PendingFeatures

CHUNK_ROWS = 4096  # rows encoded at a time: a 32-bit encoding holds 32 floats per float read
QUERY_RECONSTRUCTIONS = "queries.npy"  # a decoder's reconstructions of the queries, uint8


@functools.cache
def _encoder(encoding: str) -> Callable[[np.ndarray], jax.Array]:
    return jax.jit(functools.partial(encode_features, encoding=encoding))


@dataclasses.dataclass(frozen=True)
class Reading:
    """How the attacker reads one kind of served features: `features` per split and the
    `encoding` the attack networks apply to them (None: the floats as they are)."""

    name: str
    features: Mapping[str, np.ndarray]  # split -> [N, D]
    encoding: str | None = None

    def chunks(self, split: str) -> Iterator[np.ndarray]:
        """The split as the networks see it (float32), CHUNK_ROWS rows at a time."""
        x = self.features[split]
        for start in range(0, len(x), CHUNK_ROWS):
            block = x[start : start + CHUNK_ROWS]
            yield (
                np.asarray(block, np.float32)
                if self.encoding is None
                else np.asarray(_encoder(self.encoding)(block))
            )

    def read(self, split: str) -> np.ndarray:
        """The whole split as the networks see it: float32 [N, encoded width]."""
        return np.concatenate(list(self.chunks(split)))

    def digest(self, splits: tuple[str, ...], settings: Mapping[str, Any]) -> str:
        return inputs_digest((c for s in splits for c in self.chunks(s)), settings)


def victims(values: Mapping[str, np.ndarray]) -> np.ndarray:
    """The victims of the attribute attack: query then gallery."""
    return np.concatenate([values["query"], values["gallery"]])


def attribute_stage(
    stages: Stages, name: str, config: StudyConfig, domain: AttackDomain, reading: Reading
) -> AttributeResult:
    """The attribute head trained on the train split's reading, scored on the victims'."""
    attack_config = dataclasses.replace(config.attributes, encoding=reading.encoding)
    settings = {"attack": "attributes", "config": dataclasses.asdict(config.attributes)}
    return stages.timed(
        name,
        lambda workdir: run_attribute_attack(
            reading.features["train"],
            domain.attributes["train"],
            victims(reading.features),
            victims(domain.attributes),
            domain.schema,
            attack_config,
            workdir,
            progress=stages.progress,
        ),
        inputs=reading.digest(("train", "query", "gallery"), settings),
    )


def reconstruction_stages(
    stages: Stages,
    config: StudyConfig,
    domain: AttackDomain,
    reading: Reading,
    *,
    names: Mapping[str, str],
    perceptual_fn: Any,
    scoring: Callable[[str], Callable[[np.ndarray], np.ndarray]],
    attribute_predict: Callable[[np.ndarray], np.ndarray],
    pending: list[PendingFeatures],
    keep_queries: tuple[str, ...] = (),
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Path]]:
    """The reconstructions of `names` (kind -> stage name: "autoencoder", "gan") trained on the
    train split's reading, each evaluated on the reading of `config.reconstructed_splits`
    (with `keep_best`, its epoch chosen on query and gallery, as published): (scores, grid
    images, log) per kind.

    `scoring(stage)` is the victim's plaintext features function for that stage's
    reconstructions (of the reconstructed splits, in order); a stage whose features come from
    outside and are not there yet is added to `pending` and left out of the returned blocks.
    The stages of the kinds in `keep_queries` keep their reconstructions of every query in
    `QUERY_RECONSTRUCTIONS` (uint8), for an optimisation to start from (`query_reconstructions`).
    """
    configs = {"autoencoder": config.autoencoder, "gan": config.gan}
    gallery = "gallery" in config.reconstructed_splits
    block, grid, logs = {}, {}, {}
    for kind, stage in names.items():
        rec_config = dataclasses.replace(configs[kind], encoding=reading.encoding)
        validation = {}
        if rec_config.keep_best:
            validation = {
                "validation_images": victims(domain.images),
                "validation_features": victims(reading.features),
            }

        def attack(
            workdir: Path,
            rec_config=rec_config,
            stage=stage,
            validation=validation,
            keep=kind in keep_queries,
        ):
            result = run_reconstruction(
                domain.images["train"],
                reading.features["train"],
                rec_config,
                workdir,
                perceptual_fn=perceptual_fn if rec_config.feature > 0 else None,
                progress=stages.progress,
                **validation,
            )
            if keep:  # before the scoring, which may wait for a file victim's features
                queries = result.reconstruct(reading.features["query"])
                np.save(workdir / QUERY_RECONSTRUCTIONS, np.rint(queries * 255).astype(np.uint8))
            scores, images = evaluate_reconstructions(
                result.reconstruct,
                reading.features["query"],
                gallery_features_in=reading.features["gallery"] if gallery else None,
                gallery_images=domain.images["gallery"] if gallery else None,
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

        settings = {"attack": kind, "config": dataclasses.asdict(configs[kind])}
        read = ("train", "query", "gallery") if gallery or validation else ("train", "query")
        settings["reconstructed_splits"] = list(config.reconstructed_splits)
        try:
            block[kind] = stages.run(stage, attack, inputs=reading.digest(read, settings))
        except PendingFeatures as waiting:
            pending.append(waiting)
            continue
        grid[kind] = np.load(stages.home(stage) / "grid.npy")
        logs[kind] = stages.home(stage) / "metrics.jsonl"
    return block, grid, logs


def query_reconstructions(stages: Stages, stage: str) -> np.ndarray | None:
    """The query reconstructions a stage kept (`reconstruction_stages(keep_queries=)`), or None
    before it made them. They are written before the stage's scoring, so a stage waiting for a
    file victim's features of its images has them already."""
    try:
        home = stages.home(stage)
    except FileNotFoundError:  # not finished: pending, or not run yet
        home = stages.run_dir / stage
    path = home / QUERY_RECONSTRUCTIONS
    return np.load(path) if path.exists() else None


def optimisation_stage(
    stages: Stages,
    name: str,
    config: OptimisationConfig,
    domain: AttackDomain,
    reading: Reading,
    surrogate: SurrogateResult,
    *,
    queries: int | None,
    scoring: Callable[[str], Callable[[np.ndarray], np.ndarray]],
    attribute_predict: Callable[[np.ndarray], np.ndarray],
    grid_images: int,
    view: Callable[[jax.Array], jax.Array] | None = None,
    view_name: str = "none",
    starts: np.ndarray | None = None,
) -> dict[str, Any]:
    """Optimisation-based inversion of the first `queries` (None: all) victims' queries from
    their reading, by gradient descent on the pixels through the attacker's surrogate of the
    API (`view` applied to its output: a defence the attacker can apply itself), scored
    through the victim as the decoders are; the grid images go to `grid.npy`. With
    `config.init` "given", `starts` [queries, H, W, 3] uint8 are where each query's descent
    begins (a decoder's reconstructions of the same reading, refined here)."""
    opt = dataclasses.replace(config, encoding=reading.encoding)
    n = (
        len(domain.identity["query"])
        if queries is None
        else min(queries, len(domain.identity["query"]))
    )
    if (opt.init == "given") != (starts is not None):
        raise ValueError(f'init={opt.init!r}: starts are needed for "given" and only then')
    if starts is not None and len(starts) < n:
        raise ValueError(f"{len(starts)} start images for {n} queries")
    dim = reading.features["train"].shape[1]
    net = SurrogateNet(
        feature_dim=encoded_dim(dim, opt.encoding) if opt.encoding else dim,
        widths=surrogate.config.widths,
    )
    net_fn = surrogate_features_fn(net)
    features_fn = net_fn if view is None else (lambda v, x: view(net_fn(v, x)))

    def attack(workdir: Path) -> dict[str, Any]:
        start = None if starts is None else (lambda targets: starts[:n])  # the first n queries
        inversion = OptimisationAttack(
            features_fn, surrogate.perceptual.variables, opt,
            image_hw=domain.images["query"].shape[1:3], start=start, progress=stages.progress,
        )  # fmt: skip
        first = slice(0, n)
        scores, grid = evaluate_reconstructions(
            inversion.reconstruct,
            reading.features["query"][first],
            query_images=domain.images["query"][first],
            query_features_plain=domain.plain["query"][first],
            query_ids=domain.identity["query"][first],
            query_cams=domain.camera["query"][first],
            gallery_features_plain=domain.plain["gallery"],
            gallery_ids=domain.identity["gallery"],
            gallery_cams=domain.camera["gallery"],
            plain_features_fn=scoring(name),
            attribute_predict=attribute_predict,
            query_attributes=domain.attributes["query"][first],
            grid_images=grid_images,
        )
        np.save(workdir / "grid.npy", grid)
        return scores | inversion.summary() | {"view": view_name}

    settings = {
        "attack": "optimisation",
        "config": opt.to_dict(),
        "surrogate": surrogate.config.to_dict(),
        "queries": n,
        "view": view_name,
        "starts": None if starts is None else inputs_digest([starts[:n]], {}),
    }
    return stages.run(name, attack, inputs=reading.digest(("train", "query"), settings))
