"""`StudyConfig`: one study, its victim, its attack domain and each attack's settings."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from invfeat.attacks.ciphertext import ENCODINGS
from invfeat.attacks.configs import (
    AttributeAttackConfig,
    ReconstructionConfig,
    SurrogateConfig,
    autoencoder_config,
    gan_config,
)
from invfeat.attacks.optimisation import OptimisationConfig
from invfeat.victims.config import VictimConfig
from invfeat.victims.from_files import FileVictim

PROTECTIONS = ("static", "one-time", "stream")
ESTIMATE = "estimate"  # the attacker's estimate of the plaintext floats
RECONSTRUCTED_SPLITS = ("query", "gallery")


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
    # The protections the study attacks, each under a key of its own (`invfeat.study.domain`
    # KEY_TYPES), and how the attacker reads their ciphertext (`invfeat.study.security`): its
    # plaintext estimate or an encoding of the bits. Each reading gets an attribute head and
    # the linkability measures; the reconstructions named read the strongest one.
    protections: tuple[str, ...] = PROTECTIONS
    readings: tuple[str, ...] = ("estimate", "popcount")
    protected_reconstructions: tuple[str, ...] = ("autoencoder", "gan")
    # The splits whose images are reconstructed and scored (published: query and gallery; the
    # cosine distance, PSNR and SSIM are means over them, re-identification is the query's).
    reconstructed_splits: tuple[str, ...] = RECONSTRUCTED_SPLITS
    # Optimisation-based inversion of the plaintext queries through the attacker's surrogate of
    # the API, reported beside the decoders (None: not run); init "given" starts each query
    # from the plaintext GAN's reconstruction of it and refines it, "grey" from mid-grey.
    optimisation: OptimisationConfig | None = None
    grid_images: int = 8  # query images shown in the report's reconstruction grid
    api_batch_size: int = 256
    requires: tuple[str, ...] = ()  # what a run needs beyond this machine, e.g. "GPU"

    def __post_init__(self):
        for field, allowed in (
            ("protections", PROTECTIONS),
            ("readings", (ESTIMATE, *ENCODINGS)),
            ("protected_reconstructions", ("autoencoder", "gan")),
        ):
            names = list(getattr(self, field))
            if len(set(names)) != len(names) or set(names) - set(allowed):
                raise ValueError(
                    f"{self.name}: {field} must name some of {list(allowed)}, each once "
                    f"(got {names})"
                )
        if self.reconstructed_splits not in (("query",), RECONSTRUCTED_SPLITS):
            raise ValueError(
                f"{self.name}: reconstructed_splits must be ['query'] or {list(RECONSTRUCTED_SPLITS)} "
                f"(got {list(self.reconstructed_splits)})"
            )
        if self.protections and not self.readings:
            raise ValueError(f"{self.name}: readings must name at least one way to read ciphertext")

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
