"""Loader throughput (images/s) over array_record (JPEG decode) and in memory, by thread count.

    python benchmarks/data_pipeline.py [--images 2048] [--batches 30]
    python benchmarks/data_pipeline.py --images 64 --batches 2 --batch-size 8 --threads 0 1  # smoke

Builds a throwaway Market-1501-shaped dataset (smooth 128x64 JPEGs) in a temp dir, then times
training loaders (shuffle + flip/crop augmentation + float conversion) at 128x64 and 64x32, by
grain reader threads (0: read and decode in the calling thread). Host CPU only; needs grain and
tensorflow-datasets (not on the lent GPU machines' image), so benchmarks/gpu.sh does not run it.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time
import warnings

import cv2
import device_info  # benchmarks/device_info.py, beside this script
import numpy as np
import tensorflow_datasets as tfds

from invfeat.data import builders
from invfeat.data.layouts import LayoutWarning
from invfeat.data.pipeline import LoaderConfig, make_loader, materialize


def write_fake_market(root: pathlib.Path, num_images: int) -> None:
    """Smooth random 128x64 JPEGs named like Market-1501 crops: `num_images` training ones, and
    8 each in query and gallery (the builder refuses a Market-1501 folder without them)."""
    rng = np.random.default_rng(0)
    for split, count in (
        ("bounding_box_train", num_images),
        ("query", 8),
        ("bounding_box_test", 8),
    ):
        folder = root / "Market-1501-v15.09.15" / split
        folder.mkdir(parents=True)
        for i in range(count):
            small = rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)
            image = cv2.GaussianBlur(cv2.resize(small, (64, 128)), (5, 5), 0)
            cv2.imwrite(str(folder / f"{i // 8 + 1:04d}_c{i % 6 + 1}s1_{i:06d}_01.jpg"), image)


def images_per_second(source, config: LoaderConfig, num_batches: int) -> float:
    it = iter(make_loader(source, config, process_index=0, process_count=1))
    next(it)  # warm up threads and buffers
    start = time.perf_counter()
    for _ in range(num_batches):
        next(it)
    return num_batches * config.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2, 4])
    args = parser.parse_args()
    for option in ("images", "batches", "batch_size"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1: got {getattr(args, option)}")
    if min(args.threads) < 0:
        parser.error(f"--threads must be >= 0 (0: the calling thread): got {args.threads}")
    print(device_info.describe(), flush=True)
    cv2.setNumThreads(1)
    tfds.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        write_fake_market(tmp / "manual", args.images)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LayoutWarning)
            builders.build("market1501", data_dir=tmp / "data", manual_dir=tmp / "manual")
        disk = builders.open_split("market1501", "train", data_dir=tmp / "data")
        print(
            f"{len(disk)} records; batch {args.batch_size}; shuffle + augment; images/s "
            f"over {args.batches} batches after a warm-up one, by grain reader threads"
        )
        print(f"{'source':<14} {'size':>7} " + " ".join(f"{t:>4} thr" for t in args.threads))
        for size in ((128, 64), (64, 32)):
            memory = materialize(disk, size)
            for label, source in (("array_record", disk), ("in memory", memory)):
                rates = [
                    images_per_second(
                        source,
                        LoaderConfig(
                            batch_size=args.batch_size,
                            image_size=size,
                            augment=True,
                            num_threads=threads,
                        ),  # fmt: skip
                        args.batches,
                    )
                    for threads in args.threads
                ]
                cells = " ".join(f"{r:8.0f}" for r in rates)
                print(f"{label:<14} {size[0]:>3}x{size[1]:<3} {cells}")


if __name__ == "__main__":
    main()
