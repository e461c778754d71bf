"""The canonical re-ID record, its TFDS feature spec, and a base builder that needs no TensorFlow.

Every re-ID dataset, real or synthetic, is written as `array_record` files of `ReidRecord`s in
generation order (no TFDS shuffling), so `record index -> file` is stable.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import cv2
import numpy as np
import tensorflow_datasets as tfds

from invfeat.data.attributes import Attribute
from invfeat.data.datasets import SPLITS

FEATURE_KEYS = ("image", "identity", "camera", "attributes", "file_name")
REGISTRY: dict[str, type[ReidBuilder]] = {}


def _not_custom_config_notice(record: logging.LogRecord) -> bool:
    """TFDS warns "Using custom data configuration" at every open of a config it does not list;
    every synthetic world's settings are such a config, so the notice only repeats."""
    return not str(record.msg).startswith("Using custom data configuration")


logging.getLogger("absl").addFilter(_not_custom_config_notice)


@dataclasses.dataclass(frozen=True)
class ReidRecord:
    """One image of a re-ID dataset, as written to disk."""

    image: bytes  # encoded PNG/JPEG (`decode_image` gives RGB uint8)
    identity: int  # the dataset's person id (0: a Market-1501 distractor)
    camera: int  # as in the file name (1-based for the real sets)
    attributes: np.ndarray  # [A] int64 class index from 0, -1 unknown (A = 0 for MSMT17)
    file_name: str  # relative to the dataset root, unique within the dataset

    def as_example(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "identity": int(self.identity),
            "camera": int(self.camera),
            "attributes": np.asarray(self.attributes, np.int64),
            "file_name": self.file_name,
        }


def reid_features(num_attributes: int) -> tfds.features.FeaturesDict:
    """The canonical feature spec; images are a bytes `Tensor` (`features.Image` needs TF)."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),
            "identity": tfds.features.Scalar(dtype=np.int64),
            "camera": tfds.features.Scalar(dtype=np.int64),
            "attributes": tfds.features.Tensor(shape=(num_attributes,), dtype=np.int64),
            "file_name": tfds.features.Text(),
        }
    )


def attributes_metadata(attributes: tuple[Attribute, ...]) -> list[dict[str, Any]]:
    """JSON-able description of the attribute columns, stored in the dataset's metadata."""
    return [{"name": a.name, "labels": list(a.labels)} for a in attributes]


def attributes_from_metadata(metadata: Any) -> tuple[Attribute, ...]:
    """Inverse of `attributes_metadata`, from a built dataset's `info.metadata`."""
    rows = (metadata or {}).get("attributes", [])
    return tuple(Attribute(r["name"], tuple(r["labels"])) for r in rows)


def encode_image(image_HWC: np.ndarray, ext: str = ".png", jpeg_quality: int = 95) -> bytes:
    """RGB uint8 image -> encoded bytes (".png" lossless or ".jpg")."""
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext in (".jpg", ".jpeg") else []
    bgr = cv2.cvtColor(np.ascontiguousarray(image_HWC, np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {image_HWC.shape} as {ext}")
    return buf.tobytes()


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Encoded PNG/JPEG bytes -> RGB uint8 [H, W, 3]; ValueError naming `name` if unreadable."""
    if not data:  # OpenCV asserts on an empty buffer
        raise ValueError(f"cannot decode image {name}: it is empty")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise ValueError(f"cannot decode image {name}: {str(e).strip().splitlines()[-1]}") from None
    if bgr is None:
        raise ValueError(f"cannot decode image {name}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class ReidBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of all re-ID builders: canonical features, array_record, no TensorFlow.

    A dataset subclasses it, sets `name`, VERSION, RELEASE_NOTES, SPLITS, ATTRIBUTES, DESCRIPTION
    and CITATION, and implements `_split_records`; concrete subclasses register in `REGISTRY`
    when their module is imported. Real datasets get the user's folder as `dl_manager.manual_dir`.
    """

    SPLITS: ClassVar[tuple[str, ...]] = SPLITS
    ATTRIBUTES: ClassVar[tuple[Attribute, ...]] = ()
    DESCRIPTION: ClassVar[str] = ""
    CITATION: ClassVar[str] = ""
    HOMEPAGE: ClassVar[str | None] = None

    def __init_subclass__(cls, skip_registration: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(skip_registration=skip_registration, **kwargs)
        # TFDS has set `cls.name` (snake_case of the class name unless the class sets it).
        if not skip_registration and not inspect.isabstract(cls):
            REGISTRY[cls.name] = cls

    def __init__(self, *, file_format: str = "array_record", **kwargs: Any) -> None:
        super().__init__(file_format=file_format, **kwargs)

    # TFDS's own notices ("Downloading and preparing dataset ... (download: ...)") are printed to
    # stdout and speak of a download; nothing is downloaded here, and progress goes to stderr.
    def _log_download_bytes(self) -> None:
        print(f"building {self.name} into {self.data_dir}", file=sys.stderr, flush=True)

    def _log_download_done(self) -> None:
        print(f"built {self.name} in {self.data_dir}", file=sys.stderr, flush=True)

    @abc.abstractmethod
    def _split_records(self, dl_manager: Any) -> dict[str, Iterable[ReidRecord]]:
        """Split name -> records (a lazy iterable; file names unique within the dataset).

        Leave out a split that would have no records: TFDS cannot write an empty split.
        """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=reid_features(len(self.ATTRIBUTES)),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(
                attributes=attributes_metadata(self.ATTRIBUTES), num_identities={}
            ),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict]]]:
        records = self._split_records(dl_manager)
        unknown = set(records) - set(self.SPLITS)
        if unknown:
            raise ValueError(f"{self.name}: splits {sorted(unknown)} not in SPLITS {self.SPLITS}")
        return {split: self._generate_examples(split, recs) for split, recs in records.items()}

    def _generate_examples(
        self, split: str, records: Iterable[ReidRecord]
    ) -> Iterator[tuple[str, dict]]:
        identities: set[int] = set()
        num_attributes = len(self.ATTRIBUTES)
        for record in records:
            if np.shape(record.attributes) != (num_attributes,):
                raise ValueError(
                    f"{self.name}/{split}: {record.file_name} has attributes of shape "
                    f"{np.shape(record.attributes)}, expected ({num_attributes},)"
                )
            identities.add(int(record.identity))
            yield record.file_name, record.as_example()
        if not identities:
            raise ValueError(f"{self.name}/{split}: no records (TFDS cannot write an empty split)")
        self.info.metadata["num_identities"][split] = len(identities)
