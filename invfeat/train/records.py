"""What a training run records: step metrics read one step late, epoch means, `metrics.jsonl`."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from invfeat.files import write_atomic
from invfeat.train.distributed import is_primary


class NonFinite(Exception):
    """A metric or the train state holds NaN or infinity."""


def format_metrics(metrics: Mapping[str, float]) -> str:
    """`name value` pairs for the console, four significant digits."""
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items())


class RunLog:
    """JSONL file + console on process 0; the history (with earlier runs' records on process 0).

    A restarted run keeps the file's records up to `start_step` and drops the rest.
    """

    def __init__(self, path: Path | None, start_step: int, quiet: bool):
        self.path = path
        self.history: list[dict[str, Any]] = []
        self.primary = is_primary()
        self.quiet = quiet
        if self.primary and self.path and self.path.exists():  # keep records up to the restart
            *lines, torn = self.path.read_text().split("\n")  # torn: a write cut off, or ""
            records = []
            for number, line in enumerate(lines, 1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{self.path}:{number}: not a JSON record ({err})") from None
            self.history = [r for r in records if r.get("step", 0) <= start_step]
            text = "".join(json.dumps(r) + "\n" for r in self.history)
            write_atomic(self.path, lambda f: f.write(text.encode()))

    def write(self, record: dict[str, Any], console: str | None = None, always: bool = False):
        """Append `record`; print `console` unless quiet (`always`: print even then)."""
        self.history.append(record)
        if not self.primary:
            return
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if console and (always or not self.quiet):
            tqdm.write(console, file=sys.stderr)


@dataclasses.dataclass
class EpochMeans:
    """The current epoch's metric sums and step count, saved with each checkpoint."""

    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    count: int = 0

    def add(self, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def means(self) -> dict[str, float]:
        """`train/<metric>` means of the epoch so far (empty before its first step)."""
        if not self.count:
            return {}
        return {f"train/{k}": v / self.count for k, v in self.sums.items()}

    def reset(self) -> None:
        self.sums, self.count = {}, 0


class PendingMetrics:
    """The last dispatched step's metrics, read one step late.

    Reading them only once the next step is dispatched keeps the host from waiting for the
    device. Reading checks them for NaN/inf, adds them to the epoch's sums, shows the losses on
    the progress bar and writes a step record every `log_every_steps`.
    """

    def __init__(
        self,
        epoch: EpochMeans,
        checked: set[str] | None,
        bar: tqdm,
        log: RunLog,
        log_every_steps: int | None,
    ):
        self.epoch, self.checked, self.bar, self.log = epoch, checked, bar, log
        self.log_every_steps = log_every_steps
        self.pending: tuple[int, Any] | None = None

    def push(self, step: int, device_metrics: Any) -> None:
        """Read the previous step's metrics, then hold this one's."""
        self.consume()
        self.pending = (step, device_metrics)

    def consume(self) -> None:
        """Fetch the pending step's metrics, check them, add them to the epoch means."""
        if self.pending is None:
            return
        step, device_metrics = self.pending
        self.pending = None
        metrics = {k: float(np.asarray(v)) for k, v in jax.device_get(device_metrics).items()}
        bad = {
            k: v
            for k, v in metrics.items()
            if (self.checked is None or k in self.checked) and not math.isfinite(v)
        }
        if bad:
            raise NonFinite(f"non-finite {format_metrics(bad)} at step {step}")
        self.epoch.add(metrics)
        losses = {k: f"{v:.4g}" for k, v in metrics.items() if "loss" in k}
        self.bar.set_postfix(losses, refresh=False)
        if self.log_every_steps and step % self.log_every_steps == 0:
            self.log.write(
                {"kind": "step", "step": step, **{f"train/{k}": v for k, v in metrics.items()}}
            )
