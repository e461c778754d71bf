"""Can ciphertext alone link one person across cameras? Linkability of a finished study's features
by key mode and by the attacker's reading.

Reads what `python -m experiments run NAME` left in RUNS/NAME/features (plaintext and one-time
ciphertext of the attack dataset's train, query and gallery splits) and the identities and cameras
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
from pathlib import Path

import device_info  # benchmarks/device_info.py, beside this script
import numpy as np

from experiments.configs import STUDIES, get_study
from invfeat import shufflebits as sb
from invfeat.attacks.ciphertext import ENCODINGS, encode_features
from invfeat.attacks.linkability import learn_metric, linkability
from invfeat.data import builders
from invfeat.data.datasets import SPLITS, open_dataset_split
from invfeat.data.feature_files import read_features
from invfeat.data.pipeline import read_labels

ROWS = (  # (features, reading): None reads the floats themselves
    ("plain", None),
    ("plain", "popcount"),
    ("one-time", "popcount"),
    ("one-time", "columns"),
    ("one-time", "bits"),
    ("stream", "popcount"),
    ("stream", "bits"),
)
FILE_KIND = {"plain": "plain", "one-time": "cipher"}


def split_arrays(run: Path, data_dir: Path, config, kind: str) -> dict[str, tuple]:
    """split -> (features, identities, cameras) of the study's feature files, checked against
    the dataset's records."""
    out = {}
    for split in SPLITS:
        source = open_dataset_split(
            config.attack_dataset,
            split,
            data_dir=data_dir,
            data_settings=config.attack_data_settings,
        )
        labels = read_labels(source)
        file = read_features(run / "features" / f"{kind}_{split}.npz", encrypted=kind == "cipher")
        paths = [p.decode() if isinstance(p, bytes) else str(p) for p in file.paths]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in labels["file_name"]]
        if paths != names:
            sys.exit(
                f"error: {run}/features/{kind}_{split}.npz does not follow {data_dir}'s records"
            )
        out[split] = (np.asarray(file.features), labels["identity"], labels["camera"])
    return out


def stream_encrypted(plain: dict[str, tuple]) -> dict[str, tuple]:
    key = sb.StreamKey.generate()
    return {
        split: (np.asarray(sb.encrypt(f, key, sb.fresh_nonces(len(f)))), ids, cams)
        for split, (f, ids, cams) in plain.items()
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
    parser.add_argument("--study", default="demo", choices=sorted(STUDIES))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the study's --data-dir (default: $INVFEAT_DATA_DIR or ./data)",
    )
    parser.add_argument("--bins", type=int, help="D_sys histogram bins (default: the paper's)")
    parser.add_argument("--max-pairs", type=int, default=200_000, help="per set, sub-sampled")
    parser.add_argument("--max-dims", type=int, default=512, help="PCA dims before LDA")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.bins is not None and args.bins < 1) or args.max_pairs < 1 or args.max_dims < 1:
        parser.error("--bins, --max-pairs and --max-dims must be >= 1")
    assert all(r is None or r in ENCODINGS for _, r in ROWS)
    config = get_study(args.study)
    data_dir = args.data_dir or builders.default_data_dir()
    run = args.runs_dir / args.study
    if not (run / "report.json").exists():
        parser.error(f"{run} holds no finished study (no report.json): run it first")
    try:
        arrays = {mode: split_arrays(run, data_dir, config, k) for mode, k in FILE_KIND.items()}
    except (OSError, ValueError) as err:  # data not built there, a feature file missing: named
        parser.error(f"{err} (--data-dir: the folder the study ran on)")
    print(device_info.describe(), flush=True)
    arrays["stream"] = stream_encrypted(arrays["plain"])
    sizes = ", ".join(f"{s} {len(arrays['plain'][s][0])}" for s in SPLITS)
    print(f"# linkability on {run} ({sizes}); learned metric fitted on train")
    print("# plain = the run's plaintext; one-time = its one-time ciphertext; stream = its")
    print("# plaintext under a fresh StreamKey; D_sys null = largest D_sys of 20 label shuffles")
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
