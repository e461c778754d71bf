"""Tiny fake copies of the real dataset layouts (real naming schemes, real annotated ids)."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

MARKET_FILES = {
    "bounding_box_train": (
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000301_01.jpg",
        "0007_c1s6_028546_01.jpg",
        "0007_c3s3_077419_03.jpg",
    ),
    "query": ("0001_c1s1_001051_00.jpg", "0003_c1s6_015971_00.jpg"),
    "bounding_box_test": (
        "-1_c1s1_000401_03.jpg",  # junk: dropped
        "0000_c1s1_000151_01.jpg",  # distractor: kept, no attributes
        "0001_c2s1_000976_03.jpg",
        "0001_c4s6_000810_07.jpg",
        "0003_c5s1_000401_04.jpg",
        "0003_c3s3_065944_02.jpg",
    ),
}
DUKE_FILES = {
    "bounding_box_train": (
        "0001_c2_f0046182.jpg",
        "0001_c5_f0051341.jpg",
        "0008_c1_f0061522.jpg",
        "0008_c6_f0015640.jpg",
    ),
    "query": ("0002_c1_f0044380.jpg", "0003_c8_f0058972.jpg"),
    "bounding_box_test": (
        "0002_c7_f0044402.jpg",
        "0003_c2_f0060001.jpg",
        "5000_c3_f0012345.jpg",  # an identity the table lacks (none in the real set): warned
    ),
}
MSMT_LISTS = {
    "list_train.txt": (
        "0000/0000_000_01_0303morning_0015_0.jpg 0",
        "0000/0000_001_05_0303morning_0036_1.jpg 0",
        "0001/0001_000_02_0303morning_0101_0.jpg 1",
    ),
    "list_val.txt": ("0002/0002_000_03_0303noon_0003_0.jpg 2",),
    "list_query.txt": ("0000/0000_000_07_0303afternoon_0551_0.jpg 0",),
    "list_gallery.txt": (
        "0000/0000_003_12_0303afternoon_0600_1.jpg 0",
        "0004/0004_000_15_0113morning_0012_0.jpg 4",
    ),
}


def write_jpeg(path: pathlib.Path, seed: int, shape: tuple[int, int] = (32, 16)) -> None:
    """A small random RGB JPEG whose content depends on `seed`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


def folder_tree(base: pathlib.Path, files: dict[str, tuple[str, ...]]) -> pathlib.Path:
    """Writes `folder/name.jpg` for every name; returns `base`."""
    seed = 0
    for folder, names in files.items():
        for name in names:
            write_jpeg(base / folder / name, seed)
            seed += 1
    return base


def market_tree(root: pathlib.Path) -> pathlib.Path:
    return folder_tree(root / "Market-1501-v15.09.15", MARKET_FILES)


def duke_tree(root: pathlib.Path) -> pathlib.Path:
    return folder_tree(root / "DukeMTMC-reID", DUKE_FILES)


def msmt_tree(root: pathlib.Path, version: int = 2) -> pathlib.Path:
    """MSMT17_V2 (mask_train_v2/, mask_test_v2/) or MSMT17_V1 (train/, test/), same lists."""
    base = root / f"MSMT17_V{version}"
    train_dir, test_dir = ("mask_train_v2", "mask_test_v2") if version == 2 else ("train", "test")
    seed = 0
    for list_name, lines in MSMT_LISTS.items():
        image_dir = train_dir if list_name in ("list_train.txt", "list_val.txt") else test_dir
        for line in lines:
            write_jpeg(base / image_dir / line.split()[0], seed)
            seed += 1
        base.mkdir(parents=True, exist_ok=True)
        (base / list_name).write_text("\n".join(lines) + "\n")
    return base
