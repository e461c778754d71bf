"""How well the attribute attack reads a finished study's ciphertext, by encoding and key mode.

A bit permutation keeps each float's count of one-bits. The study trains its head once per
reading in `StudyConfig.readings` for its configured epochs; this script trains the same head on
any encoding of the bits (and plaintext) for several epoch counts, and prints one table. It
reads the run's one-time ciphertext, and with `--static-key` its static-key ciphertext too: a
static key is one fixed bijection, which a head reading bits learns through as through
plaintext. It reads what `python -m experiments run NAME` left in RUNS/NAME/features and the
attack dataset in DATA; it trains in a temporary folder and changes nothing of the run.

    python benchmarks/attribute_encodings.py --study demo --runs-dir runs --data-dir data \
        --encodings bits popcount --epochs 15 60
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time

import numpy as np
from study_files import (  # benchmarks/study_files.py, beside this script
    add_study_arguments,
    finished_run,
    read_splits,
)

from invfeat.attacks.attributes import run_attribute_attack
from invfeat.attacks.ciphertext import ENCODINGS
from invfeat.data import builders
from invfeat.data.datasets import SPLITS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_study_arguments(parser)
    parser.add_argument("--encodings", nargs="+", default=["bits", "popcount"])
    parser.add_argument("--epochs", nargs="+", type=int, default=[15])
    parser.add_argument("--plaintext", action="store_true", help="also the plaintext head")
    parser.add_argument(
        "--static-key",
        action="store_true",
        help="also the run's static-key ciphertext, read by each encoding",
    )
    parser.add_argument(
        "--last-epoch",
        action="store_true",
        help="score the last epoch (default: the best epoch on the victims, as published)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.encodings) - set(ENCODINGS))
    if unknown or min(args.epochs) < 1:
        parser.error(f"--encodings from {list(ENCODINGS)}, --epochs >= 1 (got {unknown or ''})")
    config, run = finished_run(parser, args)
    schema = tuple(builders.builder_class(config.attack_dataset).ATTRIBUTES)
    rows = [("one-time", e) for e in args.encodings]
    rows += [("static", e) for e in args.encodings] if args.static_key else []
    rows += [("plain", None)] if args.plaintext else []
    kinds = {kind for kind, _ in rows}
    arrays = {
        kind: {
            split: (features, labels["attributes"])
            for split, (features, labels) in read_splits(parser, args, config, run, kind).items()
        }
        for kind in kinds
    }
    selection = "last epoch" if args.last_epoch else "best epoch on the victims, as published"
    print(f"# attribute head on {run}, {selection}: mean balanced accuracy of the victims")
    print("# features: the run's one-time or static-key ciphertext, or its plaintext")
    print("| features | encoding | epochs | mean balanced accuracy | seconds |")
    print("| --- | --- | ---: | ---: | ---: |")
    for kind, encoding in rows:
        (train_f, train_a), *victims = (arrays[kind][s] for s in SPLITS)
        victim_f = np.concatenate([f for f, _ in victims])
        victim_a = np.concatenate([a for _, a in victims])
        for epochs in args.epochs:
            head = dataclasses.replace(
                config.attributes, encoding=encoding, epochs=epochs, keep_best=not args.last_epoch
            )
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as workdir:
                result = run_attribute_attack(
                    train_f, train_a, victim_f, victim_a, schema, head, workdir,
                    resume=False, progress=False,
                )  # fmt: skip
            score = result.metrics["mean"]["balanced_accuracy"]
            print(
                f"| {kind} | {encoding or '-'} | {epochs} | {100 * score:.1f} % "
                f"| {time.perf_counter() - start:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
