"""A victim known by its feature files: FastReID's (or anyone's) features of the attack data.

The paper attacks FastReID models through the feature files their extractor writes. A
`FileVictim` reads `<features_dir>/{train,query,gallery}.npz` (rows matched to the dataset's
records by their trailing path components) and encrypts them under one-time keys, bit for bit
what the same model with ShuffleBits inside would emit. Reconstructions are scored through
`weights` (a FastReID ResNet-50 `.pth` or a trained victim's folder); without weights they are
written as PNGs for the victim's own extractor (`external_features`), as the published
`evaluation.py` reads features of reconstructions made outside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from invfeat import shufflebits
from invfeat.api import FeatureAPI
from invfeat.data.datasets import SPLITS
from invfeat.data.feature_files import FeatureFileError, align_to_records, read_features
from invfeat.files import make_folder
from invfeat.models.reid import make_features_fn
from invfeat.victims.base import DatasetRef, MissingInputError, Served, ServeFn, StageRunner


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
    # (H, W) the victim's own test transform resizes its input to (FastReID: INPUT.SIZE_TEST);
    # the scoring API resizes reconstructions to it as that transform does (bicubic). None: as is.
    test_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(self.image_size))
        if self.test_size is not None:
            object.__setattr__(self, "test_size", tuple(self.test_size))

    embeds_images = False

    @property
    def datasets(self) -> tuple[DatasetRef, ...]:
        return ()

    def split_file(self, split: str) -> Path:
        if self.features_dir is None:
            raise MissingInputError(
                f"victim {self.name!r} is read from feature files: give the folder holding "
                f"{', '.join(s + '.npz' for s in SPLITS)}",
                "features_dir",
            )
        return Path(self.features_dir) / f"{split}.npz"

    def required_inputs(self) -> tuple[list[MissingInputError], list[Path]]:
        options, needed = [], []
        try:
            needed += [self.split_file(split) for split in SPLITS]
        except MissingInputError as err:
            options.append(err)
        needed += [Path(self.weights)] if self.weights else []
        return options, needed

    def load_inputs(self) -> None:
        victim_api(self)

    def obtain(self, stages: StageRunner, **opened: Any) -> FileVictim:
        del stages, opened  # nothing to train: its features are read from files
        return self

    def server(self, keys: Mapping[str, Any], batch_size: int) -> ServeFn:
        """The features read from files, encrypted here under each key (fresh nonces)."""
        del batch_size

        def serve(split: str, images: Any, file_names: np.ndarray) -> Served:
            plain = split_features(self, split, file_names)
            served = {}
            for mode, key in keys.items():
                nonces = (
                    shufflebits.fresh_nonces(len(plain)) if shufflebits.uses_nonces(key) else None
                )
                served[mode] = (np.asarray(shufflebits.encrypt(plain, key, nonces)), nonces)
            return plain, served

        return serve

    def scoring_api(self, batch_size: int) -> FeatureAPI | None:
        return victim_api(self, batch_size)

    def white_box(self) -> tuple[Any, Any]:
        raise ValueError("perceptual 'white-box' needs a victim trained here, not files")

    def evaluate(self, attack: DatasetRef, served_reid: Any, **opened: Any) -> dict[str, float]:
        """Re-ID figures of the features read from its files."""
        del attack, opened
        return served_reid()

    def report_block(self, evaluated: dict[str, Any]) -> dict[str, Any]:
        return evaluated | {"source": self.name}


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
        from invfeat.victims.trained import load_victim

        return load_victim(weights).api(batch_size=batch_size)
    if weights.suffix == ".pth":
        from invfeat.models.fastreid import load_fastreid

        model, variables = load_fastreid(weights)
        features_fn = make_features_fn(model)
        if victim.test_size is not None:
            features_fn = resized_input(features_fn, victim.test_size)
        return FeatureAPI(features_fn, variables, batch_size=batch_size)
    raise ValueError(
        f"{weights}: victim weights must be a FastReID .pth file or an invfeat victim folder"
    )


def resized_input(features_fn: Callable[..., Any], size: tuple[int, int]) -> Callable[..., Any]:
    """`features_fn` that first resizes its images [B, H, W, 3] in [0, 1] to `size` (H, W),
    bicubic with antialiasing as PIL's (FastReID's test transform), clipped to [0, 1]."""
    height, width = size

    def fn(variables: Any, images: Any) -> Any:
        shape = (images.shape[0], height, width, images.shape[-1])
        return features_fn(variables, jnp.clip(jax.image.resize(images, shape, "cubic"), 0, 1))

    return fn


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
            make_folder(path.parent)
            pixels = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
            ok, png = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"{path}: could not encode the reconstruction")
            path.write_bytes(png.tobytes())  # errors name the path (no OpenCV warning line)
        raise PendingFeatures(folder, expected)

    return features
