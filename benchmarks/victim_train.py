"""Victim training through the engine: images/s of the whole loop, not just the step.

`benchmarks/victim.py` times the bare train step; this times `invfeat.victims.train_on_source`
as the recipe runs it: PK sampling, augmentation and batching in grain, sharding, the jitted
step, metrics one step late, per-epoch checkpoints. The data is random images in memory (no
dataset needed), so the figure is the engine's ceiling. Prints a table; never asserted.

    python benchmarks/victim_train.py                                  # CPU: tiny and cpu
    python benchmarks/victim_train.py --configs resnet50 --precisions float32,bfloat16   # GPU
    python benchmarks/victim_train.py --configs tiny --epochs 2 --steps-per-epoch 3 \
        --identities 8                                                  # smoke test

Needs grain (not on the lent GPU machines' image), so benchmarks/gpu.sh does not run it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import device_info  # benchmarks/device_info.py, beside this script
import jax
import numpy as np

from experiments.configs import VICTIMS, get_victim_config
from invfeat.data.pipeline import ArraySource
from invfeat.train.precision import PRECISIONS
from invfeat.victims import train_on_source


def random_source(identities: int, per_identity: int, size_HW: tuple[int, int]) -> ArraySource:
    rng = np.random.default_rng(0)
    n = identities * per_identity
    return ArraySource(
        {
            "image": rng.integers(0, 256, (n, *size_HW, 3), np.uint8),
            "identity": np.repeat(np.arange(identities), per_identity).astype(np.int64),
            "camera": np.tile(np.arange(per_identity), identities).astype(np.int64),
        }
    )


def bench(name: str, precision: str, args: argparse.Namespace) -> dict:
    config = get_victim_config(
        name,
        precision=precision,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        eval_every_epochs=0,
        in_memory=True,
        data_settings=None,
    )
    source = random_source(args.identities, 8, config.input_size)
    with tempfile.TemporaryDirectory() as workdir:
        victim = train_on_source(config, source, workdir, progress=False)
        records = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
    rates = [r["steps_per_s"] for r in records if r["kind"] == "epoch"][1:]  # skip the compile
    steps_per_s = statistics.median(rates)
    return {
        "config": name,
        "precision": precision,
        "size": "x".join(map(str, config.input_size)),
        "batch": config.batch_size,
        "steps_per_s": steps_per_s,
        "images_per_s": steps_per_s * config.batch_size,
        "run_s": victim.summary["seconds_this_session"],
    }


def main() -> None:
    on_cpu = jax.default_backend() == "cpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,cpu" if on_cpu else "resnet50")
    parser.add_argument("--precisions", default="float32" if on_cpu else "float32,bfloat16")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=20 if on_cpu else 50)
    parser.add_argument("--identities", type=int, default=64)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error(
            f"--epochs must be >= 2 (the first epoch, the compile, is not timed): got {args.epochs}"
        )
    if args.steps_per_epoch < 1:
        parser.error(f"--steps-per-epoch must be >= 1: got {args.steps_per_epoch}")
    unknown = sorted(set(args.precisions.split(",")) - set(PRECISIONS))
    if unknown:
        parser.error(f"--precisions: unknown {unknown}; choose from {list(PRECISIONS)}")
    for name in args.configs.split(","):
        if name not in VICTIMS:
            parser.error(f"--configs: unknown victim config {name!r}; choose from {list(VICTIMS)}")
        if args.identities < VICTIMS[name].p:
            parser.error(
                f"--identities {args.identities}: {name} batches {VICTIMS[name].p} identities"
            )
    print(device_info.describe(), flush=True)
    print("| config | precision | input | batch | steps/s | images/s | whole run s |")
    print("|" + "---|" * 7)
    for name in args.configs.split(","):
        for precision in args.precisions.split(","):
            r = bench(name, precision, args)
            print(
                f"| {r['config']} | {r['precision']} | {r['size']} | {r['batch']} "
                f"| {r['steps_per_s']:.2f} | {r['images_per_s']:.0f} | {r['run_s']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
