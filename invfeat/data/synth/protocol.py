"""Splits of a synthetic domain like the real sets: train, query and gallery, with real file names.

Plans and images are functions of (seed, domain, person id, image number), so changing how many
identities are used does not change the images of the others.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator

import numpy as np

from invfeat.data.datasets import SPLITS
from invfeat.data.synth.scene import render_image
from invfeat.data.synth.world import Identity, cameras, domain, msmt_identities, table_identities

SIZES = ((128, 64), (256, 128), (384, 128))
_SPLIT_CODE = {"train": 1, "query": 2, "gallery": 3}
_MSMT_TIMES = (
    ("morning", 0.8, (0.97, 1.0, 1.06)),
    ("noon", 1.1, (1.0, 1.0, 1.0)),
    ("afternoon", 0.9, (1.07, 1.0, 0.92)),
)


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """How much of a synthetic domain to render, at which size, from which seed."""

    seed: int = 0
    size: tuple[int, int] = (128, 64)  # (height, width)
    train_per_identity: int = 4
    query_per_identity: int = 1
    gallery_per_identity: int = 4
    num_train_identities: int | None = None  # None: all (SynthMSMT: 1000)
    num_test_identities: int | None = None  # None: all (SynthMSMT: 500)

    def __post_init__(self) -> None:
        if tuple(self.size) not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size}")
        for name in ("train_per_identity", "query_per_identity", "gallery_per_identity"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_per_identity < 2:
            raise ValueError("train_per_identity must be >= 2 (two cameras per identity)")
        if max(self.train_per_identity, self.gallery_per_identity) > 99:
            raise ValueError("at most 99 images per identity and split (the file name schemes)")
        if self.query_per_identity > 5:
            raise ValueError("query_per_identity must be <= 5 (one camera each, one left over)")


@dataclasses.dataclass(frozen=True)
class Shot:
    """One planned image: who, which camera, which image of that person."""

    person: Identity
    camera: int  # 1-based
    number: int  # image number of this person within its split
    file_name: str


@dataclasses.dataclass(frozen=True)
class SynthImage:
    image: np.ndarray  # [H, W, 3] RGB uint8
    identity: int
    camera: int
    attributes: np.ndarray  # [A] int64
    file_name: str


def identities(name: str, group: str, config: SynthConfig) -> tuple[Identity, ...]:
    """The people of `group` ("train" or "test") of domain `name` that `config` uses."""
    if group not in ("train", "test"):
        raise ValueError(f"group must be 'train' or 'test', got {group!r}")
    count = config.num_train_identities if group == "train" else config.num_test_identities
    if domain(name).table is None:
        people = msmt_identities(
            config.num_train_identities or 1000, config.num_test_identities or 500, config.seed
        )[group]
    else:
        people = table_identities(name, group, config.seed)
    return people if count is None else people[:count]


def plan(name: str, split: str, config: SynthConfig) -> list[Shot]:
    """The images of one split, in write order.

    Every identity is seen by at least two cameras. A test identity gives `query_per_identity`
    query images, each from its own camera, and `gallery_per_identity` gallery images cycling
    through its cameras after the query ones, so each query has a match in another camera.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    d = domain(name)
    people = identities(name, "train" if split == "train" else "test", config)
    shots = []
    for person in people:
        rng = np.random.default_rng(
            [
                config.seed,
                zlib.crc32(f"{name}/cams".encode()),
                person.identity,
                _SPLIT_CODE[split] > 1,
            ]
        )
        if split == "train":
            count = config.train_per_identity
            n_cams = min(d.num_cameras, count, int(rng.integers(2, 5)))
        else:
            n_cams = min(d.num_cameras, max(config.query_per_identity + 1, int(rng.integers(2, 5))))
        cams = [int(c) + 1 for c in rng.choice(d.num_cameras, size=n_cams, replace=False)]
        q = config.query_per_identity
        if split == "train":
            seq = [cams[k % n_cams] for k in range(config.train_per_identity)]
        elif split == "query":
            seq = cams[:q]
        else:
            seq = [cams[(q + k) % n_cams] for k in range(config.gallery_per_identity)]
        for number, cam in enumerate(seq):
            shots.append(
                Shot(person, cam, number, _file_name(d.naming, split, person, cam, number))
            )
    return shots


def _file_name(naming: str, split: str, person: Identity, cam: int, number: int) -> str:
    """A relative path in the real dataset's scheme, unique per (split, person, number)."""
    pid = person.identity
    frame = (pid * 7919 + cam * 104729) % 10000 + 10000 * number  # grows with the image number
    if naming == "market":
        folder = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
        return f"{folder[split]}/{pid:04d}_c{cam}s{1 + number % 6}_{frame:06d}_{number:02d}.png"
    if naming == "duke":
        folder = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
        return f"{folder[split]}/{pid:04d}_c{cam}_f{frame:07d}.png"
    folder = "mask_train_v2" if split == "train" else "mask_test_v2"
    offset = 0 if split != "gallery" else 100  # query and gallery share the folder
    time = _MSMT_TIMES[(pid + number) % 3][0]
    stem = f"{pid:04d}_{offset + number:03d}_{cam:02d}_0{3 + number % 2}{10 + cam:02d}{time}"
    return f"{folder}/{pid:04d}/{stem}_{frame % 10000:04d}_0.png"


def render_shot(name: str, shot: Shot, config: SynthConfig, split: str) -> np.ndarray:
    """The image of one planned shot; same (config, shot) -> same pixels."""
    cam = cameras(name, config.seed)[shot.camera - 1]
    if domain(name).naming == "msmt":  # time of day changes the light
        _, light, tint = _MSMT_TIMES[(shot.person.identity + shot.number) % 3]
        gain = tuple(g * t for g, t in zip(cam.gain, tint, strict=True))
        cam = dataclasses.replace(cam, brightness=cam.brightness * light, gain=gain)
    rng = np.random.default_rng(
        [
            config.seed,
            zlib.crc32(name.encode()),
            shot.person.identity,
            _SPLIT_CODE[split],
            shot.number,
        ]
    )
    return render_image(shot.person.appearance, shot.person.traits, cam, rng, tuple(config.size))


def render_split(name: str, split: str, config: SynthConfig) -> Iterator[SynthImage]:
    """Renders one split lazily, in `plan` order."""
    for shot in plan(name, split, config):
        yield SynthImage(
            render_shot(name, shot, config, split),
            shot.person.identity,
            shot.camera,
            shot.person.attributes,
            shot.file_name,
        )
