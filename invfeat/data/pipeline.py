"""grain loaders over re-ID splits: order, decode, resize, augment, batch, shard per process;
deterministic and resumable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import grain
import jax
import numpy as np

from invfeat.data.builders.common import decode_image
from invfeat.data.sampling import Order, PKOrder, SequentialOrder, ShuffledOrder, record_at

ENDLESS = 2**62  # positions of an endless loader


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """How to read one split. `batch_size` is global (summed over processes)."""

    batch_size: int
    image_size: tuple[int, int] = (128, 64)  # (H, W)
    shuffle: bool = True
    seed: int = 0
    num_epochs: int | None = None  # None: endless
    drop_remainder: bool = True
    augment: bool = False  # horizontal flip + random crop after zero padding
    crop_padding: int = 8
    pk: tuple[int, int] | None = None  # (P, K): identity-balanced batches, batch_size = P*K
    num_threads: int = 2  # grain reader threads (decode runs there; OpenCV releases the GIL)
    prefetch_batches: int = 4
    include_file_names: bool = False


class ArraySource:
    """In-memory random-access source: a dict of equally long arrays, one row per record.

    "image" may be decoded uint8 [N,H,W,3] or encoded bytes; the other keys as in the records.
    """

    def __init__(self, arrays: Mapping[str, Any]):
        lengths = {k: len(v) for k, v in arrays.items()}
        if "image" not in arrays or "identity" not in arrays or len(set(lengths.values())) != 1:
            raise ValueError(f"ArraySource needs equally long 'image' and 'identity'; {lengths}")
        self._arrays = dict(arrays)
        self._length = lengths["image"]

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {k: v[index] for k, v in self._arrays.items()}

    def column(self, key: str) -> np.ndarray:
        return np.asarray(self._arrays[key])


def read_identities(source: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The identity of every record of a source (for identity-balanced sampling)."""
    if isinstance(source, ArraySource):
        return source.column("identity").astype(np.int64)
    return read_labels(source)["identity"].astype(np.int64)


def read_labels(source: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Every record's identity, camera, attributes and file name, without decoding images."""
    columns: dict[str, list] = {"identity": [], "camera": [], "attributes": [], "file_name": []}
    for start in range(0, len(source), 1024):  # labels only: no chunk's images are kept
        indices = list(range(start, min(start + 1024, len(source))))
        for i, r in zip(indices, _get_many(source, indices), strict=True):
            columns["identity"].append(r["identity"])
            columns["camera"].append(r.get("camera", -1))
            columns["attributes"].append(np.asarray(r.get("attributes", ())))
            columns["file_name"].append(_text(r.get("file_name", i)))
    return {
        "identity": np.asarray(columns["identity"], np.int32),
        "camera": np.asarray(columns["camera"], np.int32),
        "attributes": np.asarray(columns["attributes"], np.int32),
        "file_name": np.asarray(columns["file_name"]),
    }


def load_image(image: Any, size_HW: tuple[int, int], name: str = "<record>") -> np.ndarray:
    """Encoded bytes or a decoded array -> RGB uint8 [H, W, 3] at `size_HW`."""
    if isinstance(image, bytes | np.bytes_):
        image = decode_image(bytes(image), name)
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    h, w = size_HW
    if image.shape[:2] != (h, w):
        shrink = image.shape[0] > h and image.shape[1] > w
        image = cv2.resize(
            image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return image


def augment_params(seed: int, position: int, padding: int) -> tuple[bool, int, int]:
    """(flip, dy, dx) for the element at a global position: a cheap hash of (seed, position)."""
    h = _mix64(_mix64(seed) ^ position)
    span = 2 * padding + 1
    return bool(h & 1), (h >> 8) % span - padding, (h >> 32) % span - padding


def augment_image(image_HWC: np.ndarray, flip: bool, dy: int, dx: int) -> np.ndarray:
    """Optional horizontal flip, then a shift by (dy, dx) filled with zeros.

    Equals cropping the image zero-padded by p at offset (p + dy, p + dx) back to its size.
    """
    if flip:
        image_HWC = image_HWC[:, ::-1]
    if dy == 0 and dx == 0:
        return np.ascontiguousarray(image_HWC)
    h, w = image_HWC.shape[:2]
    out = np.zeros_like(image_HWC)
    out[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = image_HWC[
        max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
    ]
    return out


def make_order(source: Sequence[Any], config: LoaderConfig) -> Order:
    if config.pk is not None:
        p, k = config.pk
        if p * k != config.batch_size:
            raise ValueError(f"pk={config.pk} needs batch_size={p * k}, got {config.batch_size}")
        return PKOrder(read_identities(source), p, k, config.seed)
    if config.shuffle:
        return ShuffledOrder(len(source), config.seed)
    return SequentialOrder(len(source))


def make_loader(
    source: Sequence[Mapping[str, Any]],
    config: LoaderConfig,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """This process's batches of `source`; `iter()` gives a checkpointable grain iterator.

    A batch is a dict of numpy arrays: "image" [B,H,W,3] float32 RGB in [0,1],
    "identity"/"camera"/"index" [B] int32, "attributes" [B,A] int32 (-1 unknown), "valid" [B]
    bool (False on padding, only when drop_remainder=False), and "file_name" [B] bytes if asked
    for; B = batch_size // process_count (`invfeat.train.mesh.shard_batch` lays the processes'
    batches out as one global batch). The global order of records is a pure function of (seed,
    epoch), the same on every process; global batch b holds positions [b*G, (b+1)*G) and process
    p takes its contiguous B of them, so the processes' batches, concatenated in process order,
    are the global batch a single process would load. Augmentation is keyed by the global
    position too. The iterator's `get_state()` / `set_state()` (a small JSON-able dict) is what
    a checkpoint saves.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if config.batch_size % process_count:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by process_count {process_count}"
        )
    global_B = config.batch_size
    local_B = global_B // process_count
    order = make_order(source, config)
    epochs = ENDLESS // order.epoch_length if config.num_epochs is None else config.num_epochs
    total = epochs * order.epoch_length  # real global positions
    num_batches = total // global_B if config.drop_remainder else -(-total // global_B)
    if num_batches == 0:
        raise ValueError(f"{total} records make no full batch of {global_B} (drop_remainder)")

    def read_batch(b: int) -> dict[str, np.ndarray]:
        start = b * global_B + process_index * local_B
        positions = range(start, start + local_B)
        indices = [record_at(order, pos if pos < total else 0) for pos in positions]
        elements = []
        for pos, index, record in zip(positions, indices, _get_many(source, indices), strict=True):
            name = _text(record.get("file_name", index))
            image = load_image(record["image"], config.image_size, name)
            if config.augment:
                image = augment_image(image, *augment_params(config.seed, pos, config.crop_padding))
            element = {
                "image": image,
                "identity": np.int32(record["identity"]),
                "camera": np.int32(record.get("camera", -1)),
                "attributes": np.asarray(record.get("attributes", ()), np.int32),
                "index": np.int32(index),
            }
            if not config.drop_remainder:
                element["valid"] = np.bool_(pos < total)
            if config.include_file_names:
                element["file_name"] = name.encode()
            elements.append(element)
        batch = {k: np.stack([e[k] for e in elements]) for k in elements[0]}
        batch["image"] = batch["image"].astype(np.float32) * np.float32(1.0 / 255.0)
        return batch

    dataset = grain.MapDataset.range(num_batches).map(read_batch)
    options = grain.ReadOptions(
        num_threads=config.num_threads, prefetch_buffer_size=config.prefetch_batches
    )
    return dataset.to_iter_dataset(options)


def load_split(
    name: str,
    split: str,
    config: LoaderConfig,
    *,
    data_dir: str | os.PathLike | None = None,
    **loader_kwargs: Any,
) -> grain.IterDataset:
    """`make_loader` over a built split opened with `tfds.data_source`."""
    from invfeat.data.builders import open_split

    return make_loader(open_split(name, split, data_dir=data_dir), config, **loader_kwargs)


def materialize(
    source: Sequence[Mapping[str, Any]], image_size: tuple[int, int], num_threads: int = 2
) -> ArraySource:
    """Decodes and resizes a whole split into memory (uint8 images), for tiny runs and demos."""
    config = LoaderConfig(
        batch_size=1, image_size=image_size, shuffle=False, num_epochs=1, drop_remainder=False,
        num_threads=num_threads, include_file_names=True,
    )  # fmt: skip
    images, rows = [], []
    for batch in make_loader(source, config, process_index=0, process_count=1):
        images.append(np.rint(batch.pop("image")[0] * 255.0).astype(np.uint8))
        rows.append({k: v[0] for k, v in batch.items() if k != "valid"})
    arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return ArraySource({"image": np.stack(images), **arrays})


def _get_many(source: Sequence[Mapping[str, Any]], indices: list[int]) -> Sequence[Any]:
    """Records at `indices`, in one call where the source reads in batches (tfds sources do)."""
    getitems = getattr(source, "__getitems__", None)
    return getitems(indices) if getitems is not None else [source[i] for i in indices]


def _mix64(x: int) -> int:
    """splitmix64 finaliser: a well-mixed 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode()
    return str(value)
