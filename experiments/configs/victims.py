"""The named victim training runs of `victim train --config NAME` (and `victim configs`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from invfeat.victims.config import VictimConfig

VICTIMS: dict[str, VictimConfig] = {
    c.name: c
    for c in (
        # Unit tests: a few steps of the smallest net on a hand-sized dataset.
        VictimConfig(
            name="tiny", model="cpu-tiny", p=4, k=2, epochs=2, steps_per_epoch=3,
            warmup_epochs=0.0, milestones=(), learning_rate=1e-3, crop_padding=2,
        ),
        # The CPU default (its training time and accuracy: benchmarks/RESULTS.md).
        VictimConfig(
            name="cpu", epochs=20, learning_rate=2e-3, warmup_epochs=1.0, milestones=(14.0, 18.0),
            data_settings={"train_per_identity": 8},
        ),
        # FastReID's BoT recipe (Base-bagtricks) on GPUs.
        VictimConfig(
            name="resnet50", model="resnet50", epochs=120, warmup_epochs=10.0,
            milestones=(40.0, 90.0), crop_padding=10, in_memory=False, eval_every_epochs=10,
            random_erasing=0.5, data_settings={"size": (256, 128)},
        ),
    )
}  # fmt: skip


def get_victim_config(name: str, **overrides: Any) -> VictimConfig:
    """The named config, with fields replaced by `overrides` (e.g. epochs=3)."""
    if name not in VICTIMS:
        raise ValueError(f"unknown victim config {name!r}; choose from {sorted(VICTIMS)}")
    return dataclasses.replace(VICTIMS[name], **overrides)
