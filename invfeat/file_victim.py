"""A victim known by its feature files: FastReID's (or anyone's) features of the attack data.

The paper attacks FastReID models (BoT, AGW, SBS, trained on MSMT17) through the feature files
its extractor writes for Market-1501 and DukeMTMC-reID. A `FileVictim` names such a victim; the
study reads `<features_dir>/{train,query,gallery}.npz` (FastReID layout; rows matched to the
dataset's records by their trailing path components, so absolute paths from another machine
align too) and encrypts them under one-time keys, bit for bit what the same model with
ShuffleBits inside would emit.

Scoring reconstructions needs the victim's features of new images. `weights` gives an API: a
FastReID ResNet-50 `.pth` (the BoT layout `invfeat.models.fastreid` maps) or a folder written by
`python -m experiments victim train`. Without it (AGW's non-local blocks and SBS's IBN layers
have no linen counterpart here), the study writes each set of reconstructions as PNG files
under `<run>/external/<stage>/` and stops with `PendingFeatures`: run the victim's extractor on
that folder, save its output as `<run>/external/<stage>.npz`, and run the study again; it
resumes there, as the published `evaluation.py` reads features of reconstructions made outside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from invfeat.api import FeatureAPI
from invfeat.data.feature_files import (
    FeatureFileError,
    align_to_records,
    read_features,
)

SPLITS = ("train", "query", "gallery")


@dataclasses.dataclass(frozen=True)
class FileVictim:
    """A victim given as feature files of the attack dataset (and optionally its weights).

    `features_dir` and `weights` are paths on the machine that runs the study; the named
    configurations leave them None and the command line fills them in.
    """

    name: str  # e.g. "fastreid-sbs-msmt17"
    image_size: tuple[int, int] = (384, 128)  # (H, W) of the victim's input and the reconstructions
    features_dir: str | None = None  # holds train.npz, query.npz, gallery.npz
    weights: str | None = None  # a FastReID .pth or an invfeat victim folder: the scoring API

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(self.image_size))

    def split_file(self, split: str) -> Path:
        if self.features_dir is None:
            raise ValueError(
                f"victim {self.name!r} is read from feature files: give the folder holding "
                f"{', '.join(s + '.npz' for s in SPLITS)} (--victim-features DIR)"
            )
        return Path(self.features_dir) / f"{split}.npz"


def aligned_features(path: Path, record_paths: Sequence[str]) -> np.ndarray:
    """The plaintext features of `path` for `record_paths`, in that order (float32)."""
    ff = read_features(path, encrypted=False)
    try:
        rows = align_to_records(ff, record_paths)
    except FeatureFileError as err:
        raise FeatureFileError(f"{path}: {err}") from None
    return np.asarray(ff.features[rows], np.float32)


def split_features(victim: FileVictim, split: str, record_paths: Sequence[str]) -> np.ndarray:
    """The victim's plaintext features of a split's records, in record order."""
    return aligned_features(victim.split_file(split), record_paths)


def victim_api(victim: FileVictim, batch_size: int = 256) -> FeatureAPI | None:
    """The plaintext API over the victim's weights, or None when it has none."""
    if victim.weights is None:
        return None
    weights = Path(victim.weights)
    if weights.is_dir():
        from invfeat.victim import load_victim

        return load_victim(weights).api(batch_size=batch_size)
    if weights.suffix == ".pth":
        from invfeat.models.fastreid import load_fastreid

        model, variables = load_fastreid(weights)
        return FeatureAPI.from_model(model, variables, batch_size=batch_size)
    raise ValueError(
        f"{weights}: victim weights must be a FastReID .pth file or an invfeat victim folder"
    )


class PendingFeatures(Exception):
    """Reconstructions written to `folder` wait for the victim's features in `expected`."""

    def __init__(self, folder: Path, expected: Path):
        super().__init__(f"features of the images in {folder} are expected in {expected}")
        self.folder, self.expected = folder, expected


def _png_name(path: str) -> str:
    return str(Path(path).with_suffix(".png"))


def external_features(
    folder: Path, expected: Path, file_names: Sequence[str]
) -> Callable[[np.ndarray], np.ndarray]:
    """A features function whose features come from outside, through files.

    Called with the images of `file_names` ([N, H, W, 3] in [0, 1]): when `expected` exists
    (a plaintext feature file whose paths end in the images' names, with extension .png), its
    rows in that order; else the images are written to `folder/<name>.png` and
    `PendingFeatures` is raised.
    """
    names = [_png_name(n) for n in file_names]

    def features(images: np.ndarray) -> np.ndarray:
        if len(images) != len(names):
            raise ValueError(f"{len(images)} images for {len(names)} file names")
        if expected.exists():
            return aligned_features(expected, names)
        for name, image in zip(names, images, strict=True):
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
            if not cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)):
                raise OSError(f"{path}: could not write the reconstruction")
        raise PendingFeatures(folder, expected)

    return features


def pending_message(pending: Sequence[PendingFeatures], command: str) -> str:
    """What the user runs to finish a study that waits for external features."""
    lines = [
        "The victim has no loadable weights here, so its features of the reconstructions",
        "must come from its own extractor (e.g. FastReID's), as in the published evaluation:",
        "",
    ]
    for p in pending:
        lines.append(f"  images:   {p.folder}/  ->  features: {p.expected}")
    lines += [
        "",
        "Write each features file in FastReID's .npz layout (accumulated_image_file_paths,",
        "accumulated_feature_array; paths ending in the image names), then run again:",
        f"  {command}",
    ]
    return "\n".join(lines)
