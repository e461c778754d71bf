"""The privacy-utility frontier of feature defences: each defence of `invfeat.defences` swept
over its strength, and the encryption modes beside them, on one victim and one attack domain.

Every point is served as a service would serve it, the defence fused into the victim's serving
program (`invfeat.study.frontier_points`), and measured twice:

- utility: re-ID rank-1 and mAP, query against gallery, on what the legitimate user holds (the
  defended vectors; for the projection, projected vectors under its key; for an encryption
  mode, the decrypted vectors, bit-exact);
- leakage, from an adaptive attacker who sends its own images (the attack domain's train split)
  through the defended API and trains on what comes back: the attribute head's lead over chance,
  the best reconstruction rank-1 (autoencoder, GAN where configured, optimisation-based inversion
  through a surrogate of the defended API), and the attacker's linkability rank-1 (for the
  projection: victims' vectors under one key against the same people under a new key, the
  renewability check of ISO/IEC 24745; for the encryption modes: the study's readings of the
  ciphertext).

The plaintext point and the encryption modes are the study's own stages (`run_study`'s stage
names), so the same numbers are computed once; `run_frontier` runs it all
as resumable `Stages` and writes report.json, report.md and frontier.png.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from invfeat.attacks.configs import (
    AttributeAttackConfig,
    ReconstructionConfig,
    SurrogateConfig,
    autoencoder_config,
    gan_config,
)
from invfeat.attacks.optimisation import OptimisationConfig
from invfeat.data import builders
from invfeat.data.datasets import open_dataset_split
from invfeat.data.pipeline import materialize
from invfeat.defences import DEFENCES, Defence
from invfeat.metrics import chance_rank1
from invfeat.models.perceptual import white_box_perceptual
from invfeat.study import frontier_points as fp
from invfeat.study.attack_stages import Reading, attribute_stage
from invfeat.study.config import PROTECTIONS, StudyConfig
from invfeat.study.domain import (
    AttackDomain,
    build_data,
    check_same_data,
    protection_keys,
    serve_attack_domain,
)
from invfeat.study.frontier_report import write_frontier_report
from invfeat.study.protections import Attacker
from invfeat.study.stages import Stages
from invfeat.train.run import Refusals, claim_workdir
from invfeat.victims.config import VictimConfig

# The defences and strengths swept by default, weakest first (what each strength means:
# `invfeat.defences.DEFENCES`).
DEFAULT_DEFENCES: dict[str, tuple[float, ...]] = {
    "noise": (0.25, 0.5, 1.0, 2.0),
    "quantise": (8, 4, 2, 1),
    "drop": (0.5, 0.75, 0.9, 0.97),
    "project": (1.0, 0.5, 0.25),
}
RECONSTRUCTIONS = ("autoencoder", "gan", "optimisation")
DECODERS = ("autoencoder", "gan")  # the reconstructions that train a decoder (the study's)


def _int_at_least(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")


def _names(owner: str, field: str, names: Any, allowed: tuple[str, ...], *, empty: bool) -> tuple:
    names = tuple(names)
    if len(set(names)) != len(names) or set(names) - set(allowed) or (not names and not empty):
        some = "some" if empty else "one or more"
        raise ValueError(
            f"{owner}: {field} must name {some} of {list(allowed)}, each once (got {list(names)})"
        )
    return names


def _defences(owner: str, defences: Any, seed: int) -> dict[str, tuple[float | int, ...]]:
    """{name: strengths} checked by `Defence` and normalised (quantise's bits as ints)."""
    if not isinstance(defences, Mapping):
        raise ValueError(
            f"{owner}: defences must map a defence name to its strengths, e.g. "
            f'{{"noise": [0.5, 1.0]}}; got {type(defences).__name__}'
        )
    out = {}
    for name, strengths in defences.items():
        if name not in DEFENCES:
            raise ValueError(f"{owner}: unknown defence {name!r}; choose from {list(DEFENCES)}")
        if isinstance(strengths, str | bytes) or not hasattr(strengths, "__iter__"):
            raise ValueError(f"{owner}: defences.{name} must be a list of strengths")
        strengths = tuple(strengths)
        if not strengths:
            raise ValueError(f"{owner}: defences.{name} names no strength; leave it out instead")
        try:
            normal = tuple(Defence(name, s, seed).strength for s in strengths)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{owner}: defences.{name}: {err}") from None
        if len(set(normal)) != len(normal):
            raise ValueError(f"{owner}: defences.{name} repeats a strength: {list(strengths)}")
        out[name] = normal
    return out


@dataclasses.dataclass(frozen=True)
class FrontierConfig:
    """One frontier: the victim, the attack domain, the defences and their strengths, the
    encryption modes, and the attacks' sizes (JSON-able; `to_dict`).

    `defences` maps a name of `invfeat.defences.DEFENCES` to its strengths (drop's dimensions
    chosen by `defence_seed`); `protections` are the encryption modes measured beside them
    (`invfeat.study.config.PROTECTIONS`), each read by the study's `readings`.
    `reconstructions` names the attacks whose best rank-1 is the reconstruction leakage:
    "autoencoder", "gan" (each a decoder trained on the served vectors, as in the study) and
    "optimisation" (gradient descent from grey on the pixels of the first `inverted_queries`
    queries through a surrogate trained on the served vectors: `optimisation`, `surrogate`). Every
    GAN's feature loss runs through the surrogate of the plaintext API, as in the study.
    """

    name: str
    description: str
    victim: VictimConfig
    attack_dataset: str = "synth_market"
    attack_data_settings: dict[str, Any] | None = None
    defences: dict[str, tuple[float, ...]] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_DEFENCES)
    )
    defence_seed: int = 0
    protections: tuple[str, ...] = PROTECTIONS
    readings: tuple[str, ...] = ("estimate", "popcount")
    reconstructions: tuple[str, ...] = ("autoencoder", "optimisation")
    attributes: AttributeAttackConfig = AttributeAttackConfig()
    surrogate: SurrogateConfig = SurrogateConfig()
    autoencoder: ReconstructionConfig = autoencoder_config()
    gan: ReconstructionConfig = gan_config()
    optimisation: OptimisationConfig = OptimisationConfig()
    inverted_queries: int = 128
    grid_images: int = 8
    api_batch_size: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"a frontier's name must be a folder name, got {self.name!r}")
        owner = self.name
        if not isinstance(self.victim, VictimConfig):
            raise ValueError(
                f"{owner}: the victim must be trained here (a VictimConfig): a defence runs "
                f"inside the victim's serving program, got {type(self.victim).__name__}"
            )
        _int_at_least(owner, "defence_seed", self.defence_seed, 0)
        _int_at_least(owner, "inverted_queries", self.inverted_queries, 1)
        object.__setattr__(self, "defences", _defences(owner, self.defences, self.defence_seed))
        for field in ("protections", "readings", "reconstructions"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        _names(owner, "protections", self.protections, PROTECTIONS, empty=True)
        _names(owner, "reconstructions", self.reconstructions, RECONSTRUCTIONS, empty=False)
        if not self.defences and not self.protections:
            raise ValueError(f"{owner}: no defence and no protection: nothing to put on a frontier")
        for field in ("attributes", "surrogate", "autoencoder", "gan", "optimisation"):
            if getattr(self, field).encoding is not None:
                raise ValueError(
                    f"{owner}: {field}.encoding must be null: each point sets how its vectors "
                    "are read"
                )
        if self.optimisation.init != "grey":
            raise ValueError(
                f'{owner}: optimisation.init must be "grey": every point inverts from grey '
                "(the study's \"given\" refines its GAN's reconstructions)"
            )
        if self.attack_data_settings is not None:
            settings = json.loads(json.dumps(self.attack_data_settings))
            object.__setattr__(self, "attack_data_settings", settings)
        self.study()  # the shared fields, checked as the study checks them

    def points(self) -> tuple[Defence, ...]:
        """The defended points, in the order of `defences` and of each one's strengths."""
        return tuple(
            Defence(name, strength, self.defence_seed)
            for name, strengths in self.defences.items()
            for strength in strengths
        )

    def study(self) -> StudyConfig:
        """The study configuration of the stages the frontier shares with `run_study`: the data,
        the victim, the served attack domain, the plaintext and encryption-mode attacks."""
        return StudyConfig(
            name=self.name,
            description=self.description,
            victim=self.victim,
            attack_dataset=self.attack_dataset,
            attack_data_settings=self.attack_data_settings,
            attributes=self.attributes,
            surrogate=self.surrogate,
            autoencoder=self.autoencoder,
            gan=self.gan,
            protections=self.protections,
            readings=self.readings,
            protected_reconstructions=tuple(k for k in DECODERS if k in self.reconstructions),
            reconstructed_splits=("query",),
            grid_images=self.grid_images,
            api_batch_size=self.api_batch_size,
        )

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


REFUSALS = Refusals(
    other_config="{path}: {workdir} holds a frontier with another configuration (fields "
    "{changed}); choose another run directory or remove it"
)


def _images(config: StudyConfig, domain: AttackDomain, data_dir: Path, size: tuple[int, int]):
    """split -> the attack domain's uint8 images: those the study keeps, and the gallery's,
    decoded once when a defended point first serves it (the study only ranks against it)."""

    @functools.cache
    def images(split: str) -> np.ndarray:
        if split in domain.images:
            return domain.images[split]
        source = open_dataset_split(
            config.attack_dataset,
            split,
            data_dir=data_dir,
            data_settings=config.attack_data_settings,
        )
        arrays = materialize(source, size)
        names = np.char.decode(arrays.column("file_name").astype(bytes))
        if not np.array_equal(names.astype(str), domain.file_names[split].astype(str)):
            raise ValueError(f"{config.attack_dataset} {split!r}: other records than were served")
        return arrays.column("image")

    return images


def run_frontier(
    config: FrontierConfig,
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Run (or resume) the frontier of `config` in `run_dir`; returns report.md's path.

    The stages are the study's where they are the same (`data`, `victim`, `features`,
    `attributes_plain`, `autoencoder_plain`, `linkability_plain`, `protections/<mode>/...`)
    and `defences/<defence>-<strength>/...` per defended point; a killed run resumes at the
    first unfinished one.
    """
    run = Path(run_dir)
    claim_workdir(run, config.to_dict(), resume=True, refusals=REFUSALS)
    stages = Stages(run, progress)
    study = config.study()
    data_dir = Path(data_dir) if data_dir is not None else builders.default_data_dir()
    recorded = stages.run("data", lambda _: build_data(study, data_dir))
    check_same_data(recorded, build_data(study, data_dir), run, data_dir)

    keys = protection_keys(stages.dir("features"), study.protections)
    victim = study.victim.obtain(stages, data_dir=data_dir, progress=progress)
    domain = stages.timed(
        "features",
        lambda stage_dir: serve_attack_domain(study, victim, keys, stage_dir, data_dir),
    )
    scoring_api = victim.scoring_api(study.api_batch_size)
    plaintext = Reading("plaintext", domain.plain)
    head = attribute_stage(stages, "attributes_plain", study, domain, plaintext)
    chance = chance_rank1(
        domain.identity["query"],
        domain.camera["query"],
        domain.identity["gallery"],
        domain.camera["gallery"],
    )
    attacker = Attacker(
        study, domain, stages, None, lambda _: scoring_api, head.predict, chance, pending=[]
    )
    frontier = fp.Frontier(
        config,
        attacker,
        head,
        None,
        victim.white_box(),
        _images(study, domain, data_dir, victim.image_size),
    )
    if fp.plain_surrogate_needed(config):
        frontier.plain_surrogate = fp.surrogate_stage(frontier, "surrogate_plain", plaintext)
    # The encryption modes' GAN, as in the study: its feature loss through the plaintext surrogate
    if config.gan.perceptual == "victim-surrogate":
        attacker.perceptual_fn = frontier.plain_surrogate
    elif config.gan.perceptual == "white-box":
        attacker.perceptual_fn = white_box_perceptual(*victim.white_box())

    points = [fp.plaintext_point(frontier)]
    points += [fp.encryption_point(frontier, mode, key) for mode, key in keys.items()]
    points += [fp.defence_point(frontier, defence) for defence in config.points()]
    grid = {"real": domain.images["query"][: config.grid_images].astype(np.float32) / 255.0}
    for point in points:
        grid |= {f"{kind} ({point['point']})": rows for kind, rows in point.pop("grid").items()}
    results = {
        "name": config.name,
        "description": config.description,
        "victim": {"name": config.victim.name, "model": config.victim.model},
        "chance": {"rank1": chance},
        "points": points,
        "config": config.to_dict(),
        "timings": stages.timings,
    }
    return write_frontier_report(results, run, grid_rows=grid)
