"""What the study attacks, as one interface: `Victim` (a re-ID model seen through its features)
and `VictimSource` (how a study gets one: trained here, or read from feature files)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# (split, uint8 images [N, H, W, 3] or None, file names) -> plaintext features, and for each
# protection {name: (ciphertext, nonces [N, 3] or None)}
Served = tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray | None]]]
ServeFn = Callable[[str, np.ndarray | None, np.ndarray], Served]
# float images [N, H, W, 3] in [0, 1] -> plaintext features [N, D]
FeaturesFn = Callable[[np.ndarray], np.ndarray]
DatasetRef = tuple[str, Mapping[str, Any] | None]  # (dataset name, synthetic data settings)


class VictimNotTrainedError(FileNotFoundError):
    """No trained victim at `path`; `started` is the config of an unfinished run there, if any."""

    def __init__(self, path: Path, started: Any = None):
        state = "its training has not finished" if started is not None else "none was trained"
        super().__init__(f"{path}: no trained victim here ({state})")
        self.path, self.workdir, self.started = path, path.parent, started


class MissingInputError(ValueError):
    """An input a run needs and was not given: `what` it is, and the config field that gives it."""

    def __init__(self, what: str, field: str):
        super().__init__(f"{what} ({field})")
        self.what, self.field = what, field


class StageRunner(Protocol):
    """Runs a named stage once, keeping its JSON result (`invfeat.study.stages.Stages`)."""

    def run(self, name: str, fn: Callable[[Path], Any]) -> Any: ...

    def dir(self, name: str) -> Path: ...


class Victim(Protocol):
    """A re-ID model under attack: it serves features of the attack data, in plaintext and under
    each protection's key, and embeds reconstructions to score them."""

    name: str

    @property
    def image_size(self) -> tuple[int, int]: ...

    @property
    def embeds_images(self) -> bool:
        """Whether serving needs the images (a model), or only their file names (files)."""
        ...

    def server(self, keys: Mapping[str, Any], batch_size: int) -> ServeFn:
        """Serves a split in plaintext and encrypted under each of `keys` (protection -> key)."""
        ...

    def scoring_api(self, batch_size: int) -> FeaturesFn | None:
        """Plaintext features of new images, or None when they must come from outside."""
        ...

    def white_box(self) -> tuple[Callable[..., Any], Any]:
        """(features_fn(variables, images), variables): the model itself, outside the threat model."""
        ...

    def evaluate(
        self, attack: DatasetRef, served_reid: Callable[[], dict[str, float]], **opened: Any
    ) -> dict[str, Any]:
        """The victim's own re-ID figures (JSON); `served_reid()` scores the served plaintext."""
        ...

    def report_block(self, evaluated: dict[str, Any]) -> dict[str, Any]:
        """The report's victim block from what `evaluate` returned."""
        ...


class VictimSource(Protocol):
    """How a study gets its victim: `VictimConfig` trains one, `FileVictim` is read from files."""

    @property
    def datasets(self) -> tuple[DatasetRef, ...]:
        """Datasets the victim needs besides the attack dataset."""
        ...

    def required_inputs(self) -> tuple[list[MissingInputError], list[Path]]:
        """(options not given, files that must exist) before a study starts."""
        ...

    def load_inputs(self) -> None:
        """Load every weights file given, so a wrong one fails before the study starts."""
        ...

    def obtain(self, stages: StageRunner, **opened: Any) -> Victim:
        """The victim, trained (or resumed) in `stages` where it is trained here."""
        ...
