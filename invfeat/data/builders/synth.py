"""TFDS builders of the synthetic re-ID world: synth_market, synth_duke, synth_msmt.

Images are rendered at build time and stored as PNG. One config per image size ("128x64", the
default, "256x128", "384x128"); `builder_config(...)` gives others, e.g.
`build("synth_market", config=builder_config(train_per_identity=8))`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import tensorflow_datasets as tfds

from invfeat.data.builders.common import ReidBuilder, ReidRecord, encode_image
from invfeat.data.datasets import SPLITS
from invfeat.data.synth.protocol import SIZES, SynthConfig, render_split
from invfeat.data.synth.world import domain


@dataclasses.dataclass(eq=False)
class SynthBuilderConfig(tfds.core.BuilderConfig):
    """A builder config carrying the rendering settings."""

    synth: SynthConfig = dataclasses.field(default_factory=SynthConfig)


def config_name(synth: SynthConfig) -> str:
    """ "128x64" for the defaults at a size, else every setting spelt out."""
    size = f"{synth.size[0]}x{synth.size[1]}"
    if dataclasses.replace(synth, size=SynthConfig().size) == SynthConfig():
        return size
    counts = (
        f"t{synth.train_per_identity}-q{synth.query_per_identity}-g{synth.gallery_per_identity}"
    )
    people = f"n{synth.num_train_identities or 'all'}-{synth.num_test_identities or 'all'}"
    return f"{size}-{counts}-{people}-s{synth.seed}"


_CONFIGS_BY_NAME: dict[str, SynthBuilderConfig] = {}


def builder_config(**settings: Any) -> SynthBuilderConfig:
    """The config for the given `SynthConfig` settings, named after them.

    One object per name: TFDS refuses a config that is not the registered one of the same
    name, so the defaults (e.g. plain "128x64") come back as the registered objects.
    """
    synth = SynthConfig(**settings)
    name = config_name(synth)
    return _CONFIGS_BY_NAME.setdefault(name, SynthBuilderConfig(name=name, synth=synth))


_DEFAULT_CONFIGS = [builder_config(size=size) for size in SIZES]
_VERSION = tfds.core.Version("1.0.0")
_NOTES = {"1.0.0": "Procedural pedestrians with the real attribute tables."}


class _SynthBuilder(ReidBuilder, skip_registration=True):
    """Renders the splits of the domain named like the builder."""

    BUILDER_CONFIGS: ClassVar[list[SynthBuilderConfig]] = _DEFAULT_CONFIGS
    VERSION = _VERSION
    RELEASE_NOTES: ClassVar[dict[str, str]] = _NOTES
    SPLITS = SPLITS

    def _split_records(self, dl_manager: Any) -> dict[str, Iterable[ReidRecord]]:
        config = self.builder_config.synth
        return {split: self._records(split, config) for split in SPLITS}

    def _records(self, split: str, config: SynthConfig) -> Iterator[ReidRecord]:
        for item in render_split(self.name, split, config):
            yield ReidRecord(
                encode_image(item.image),
                item.identity,
                item.camera,
                item.attributes,
                item.file_name,
            )


class SynthMarket(_SynthBuilder):
    """The 1501 annotated Market-1501 people, rendered; 6 summer campus cameras."""

    name = "synth_market"
    ATTRIBUTES = domain("synth_market").attributes
    DESCRIPTION = (
        "Synthetic Market-1501: procedural pedestrians whose attributes are the Market-1501_Attribute"
        " rows (751 train, 750 test identities), 6 cameras, Market-1501 file names (.png)."
    )


class SynthDuke(_SynthBuilder):
    """The 1812 annotated DukeMTMC-reID people, rendered; 8 winter campus cameras."""

    name = "synth_duke"
    ATTRIBUTES = domain("synth_duke").attributes
    DESCRIPTION = (
        "Synthetic DukeMTMC-reID: procedural pedestrians whose attributes are the DukeMTMC-attribute"
        " rows (702 train, 1110 test identities), 8 cameras, DukeMTMC-reID file names (.png)."
    )


class SynthMsmt(_SynthBuilder):
    """People recombined from both tables (none an attack-side individual); 15 cameras."""

    name = "synth_msmt"
    ATTRIBUTES = domain("synth_msmt").attributes
    DESCRIPTION = (
        "Synthetic MSMT17, the victim's training domain: attribute rows recombined across"
        " Market-1501 and DukeMTMC people (1000 train, 500 test identities by default, numbered"
        " from 0 in each, as in MSMT17_V2), 15 cameras indoors and outdoors at three times of day,"
        " MSMT17_V2 file names (.png). Attributes: the renderer's canonical columns."
    )
