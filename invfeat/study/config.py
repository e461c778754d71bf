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
from invfeat.victims.config import VictimConfig
from invfeat.victims.from_files import FileVictim


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
    # ones; `popcount` reads what no bit permutation changes (figures in benchmarks/RESULTS.md).
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
