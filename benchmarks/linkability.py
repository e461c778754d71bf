"""Can ciphertext alone link one person across cameras? Linkability of a finished study's features
by key mode and by the attacker's reading.

Reads what `python -m experiments run NAME` left in RUNS/NAME/features (plaintext, one-time and
stream ciphertext of the attack dataset's train, query and gallery splits) and the identities and cameras
of those records from the attack dataset in DATA. Each row ranks the gallery for every query by
cosine distance over one key-independent reading (invfeat/attacks/ciphertext.py), under the re-ID
protocol, then again after a metric the attacker learns on the train split's readings and
identities (PCA + LDA); D_sys (Gomez-Barrero et al., IEEE TIFS 2018) scores mated against
non-mated pairs, beside the largest D_sys of label-shuffled pairs. Stream rows encrypt the
run's plaintext under a fresh StreamKey drawn here (never written), a fresh nonce per vector.
Nothing of the run changes.

    python benchmarks/linkability.py --study demo --runs-dir runs --data-dir data
"""

from __future__ import annotations

import argparse
import sys
import time

import device_info  # benchmarks/device_info.py, beside this script
import numpy as np
from study_files import (  # benchmarks/study_files.py, beside this script
    add_study_arguments,
    finished_run,
    read_splits,
)

from invfeat.attacks.ciphertext import ENCODINGS, encode_features
from invfeat.attacks.linkability import learn_metric, linkability
from invfeat.data.datasets import SPLITS

ROWS = (  # (features, reading): None reads the floats themselves
    ("plain", None),
    ("plain", "popcount"),
    ("one-time", "popcount"),
    ("one-time", "columns"),
    ("one-time", "bits"),
    ("stream", "popcount"),
    ("stream", "bits"),
)
KINDS = ("plain", "one-time", "stream")


def identities(parser, args, config, run, kind: str) -> dict[str, tuple]:
    """split -> (features, identities, cameras) of the run's `kind` feature files."""
    return {
        split: (features, labels["identity"], labels["camera"])
        for split, (features, labels) in read_splits(parser, args, config, run, kind).items()
    }


def read(features: np.ndarray, reading: str | None) -> np.ndarray:
    if reading is None:
        return np.asarray(features, np.float64)
    return np.asarray(encode_features(features, reading), np.float64)


def measure(arrays: dict[str, tuple], reading: str | None, args) -> tuple[dict, dict]:
    """(raw, learned-metric) linkability of one reading of one kind of features."""
    (train, train_ids, _), query, gallery = (arrays[s] for s in SPLITS)
    r_query, r_gallery = read(query[0], reading), read(gallery[0], reading)
    common = dict(bins=args.bins, max_pairs=args.max_pairs, seed=args.seed)
    pairs = (r_query, query[1], query[2], r_gallery, gallery[1], gallery[2])
    raw = linkability(*pairs, **common)
    metric = learn_metric(read(train, reading), train_ids, max_dims=args.max_dims)
    return raw, linkability(*pairs, metric=metric, **common)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_study_arguments(parser)
    parser.add_argument("--bins", type=int, help="D_sys histogram bins (default: the paper's)")
    parser.add_argument("--max-pairs", type=int, default=200_000, help="per set, sub-sampled")
    parser.add_argument("--max-dims", type=int, default=512, help="PCA dims before LDA")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.bins is not None and args.bins < 1) or args.max_pairs < 1 or args.max_dims < 1:
        parser.error("--bins, --max-pairs and --max-dims must be >= 1")
    assert all(r is None or r in ENCODINGS for _, r in ROWS)
    config, run = finished_run(parser, args)
    arrays = {kind: identities(parser, args, config, run, kind) for kind in KINDS}
    print(device_info.describe(), flush=True)
    sizes = ", ".join(f"{s} {len(arrays['plain'][s][0])}" for s in SPLITS)
    print(f"# linkability on {run} ({sizes}); learned metric fitted on train")
    print("# the run's plaintext, one-time and stream ciphertext")
    print("# D_sys null = largest D_sys of 20 label shuffles")
    print(
        "| features | reading | rank-1 | mAP | rank-1, learned metric | mAP, learned metric "
        "| D_sys (null) | D_sys, learned metric (null) | chance rank-1 | p (rank-1 at chance) "
        "| seconds |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode, reading in ROWS:
        start = time.perf_counter()
        raw, learned = measure(arrays[mode], reading, args)
        print(
            f"| {mode} | {reading or 'floats'} | {100 * raw['rank1']:.1f} % "
            f"| {100 * raw['mAP']:.1f} % | {100 * learned['rank1']:.1f} % "
            f"| {100 * learned['mAP']:.1f} % | {raw['d_sys']:.3f} ({raw['d_sys_null']:.3f}) "
            f"| {learned['d_sys']:.3f} ({learned['d_sys_null']:.3f}) "
            f"| {100 * raw['chance_rank1']:.2f} % | {raw['rank1_p_value']:.1g} "
            f"| {time.perf_counter() - start:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
