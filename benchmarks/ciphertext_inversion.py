"""Inverting ciphertext without the key: how close the attacker's estimates of the plaintext
floats come, and how much of a static key it recovers, on a finished study's features.

Reads what `python -m experiments run NAME` left in RUNS/NAME/features (as benchmarks/
linkability.py does). The attacker learns the bit statistics of its own plaintext (the train
split, other people; invfeat/attacks/inversion.py) and estimates each query and gallery vector's
permutation from its ciphertext alone, then decodes it. Every row reads the run's own
ciphertext (one-time, stream, static); the run's one-time and static keys are read here only to
score the positions found. Nothing of the run changes.

    python benchmarks/ciphertext_inversion.py --study demo --runs-dir runs --data-dir data
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import device_info  # benchmarks/device_info.py, beside this script
import numpy as np
from linkability import identities  # benchmarks/linkability.py, beside this script
from study_files import add_study_arguments, finished_run

from invfeat import shufflebits as sb
from invfeat.attacks import inversion as inv
from invfeat.attacks.linkability import linkability
from invfeat.data.datasets import SPLITS
from invfeat.data.feature_files import read_features

SIZES = (1, 10, 100, 1000)
PROTECTIONS = ("static", "one-time", "stream")


def run_key(run: Path, mode: str) -> sb.Key | sb.Secret:
    return sb.load_key(run / "features" / "keys" / f"{mode}.json")


def one_time_truth(run: Path) -> np.ndarray:
    """The run's one-time permutations of query then gallery (the evaluator's view)."""
    nonces = [read_features(run / "features" / f"one-time_{s}.npz").nonces for s in SPLITS[1:]]
    return inv.key_permutation(run_key(run, "one-time"), np.concatenate(nonces))


def link(query: np.ndarray, gallery: np.ndarray, arrays: dict, args) -> dict:
    (_, qid, qcam), (_, gid, gcam) = arrays["query"], arrays["gallery"]
    common = dict(max_pairs=args.max_pairs, seed=args.seed)
    return linkability(query, qid, qcam, gallery, gid, gcam, **common)


def victims(arrays: dict) -> np.ndarray:
    return np.concatenate([arrays["query"][0], arrays["gallery"][0]])


def irreversibility_rows(plain: dict, cipher: dict, truth: np.ndarray, args) -> None:
    profile = inv.learn_profile(plain["train"][0])
    nq = len(plain["query"][0])
    x = victims(plain)
    one_time, stream = victims(cipher["one-time"]), victims(cipher["stream"])
    print(
        "| ciphertext | model | positions placed | bits right | cosine to plaintext "
        "| cosine to another's | rank-1 / mAP vs plaintext gallery "
        "| rank-1 / mAP, estimates only | chance rank-1 | seconds |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    reference = link(plain["query"][0], plain["gallery"][0], plain, args)
    print(
        f"| none (plaintext) | - | 100 % | 100 % | 1.000 | - | {_pair(reference)} | "
        f"{_pair(reference)} | {100 * reference['chance_rank1']:.2f} % | - |"
    )
    rows = (("one-time", "dims", one_time, truth), ("one-time", "counts", one_time, truth))
    for mode, model, y, src in (*rows, ("stream", "dims", stream, None)):
        start = time.perf_counter()
        r = inv.irreversibility(y, x, profile, src, model=model)
        est = r["estimates"]
        vs_plain = link(est[:nq], plain["gallery"][0], plain, args)
        vs_est = link(est[:nq], est[nq:], plain, args)
        placed = f"{100 * r['positions_correct']:.1f} %" if src is not None else "-"
        print(
            f"| {mode} | {model} | {placed} | {100 * r['bits_correct']:.1f} % "
            f"| {r['cosine']:.3f} ± {r['cosine_stderr']:.3f} | {r['cosine_null']:.3f} "
            f"| {_pair(vs_plain)} | {_pair(vs_est)} | {100 * vs_plain['chance_rank1']:.2f} % "
            f"| {time.perf_counter() - start:.0f} |",
            flush=True,
        )


def _pair(result: dict) -> str:
    return f"{100 * result['rank1']:.1f} % / {100 * result['mAP']:.1f} %"


def static_rows(plain: dict, static: dict, key: sb.Key, args) -> None:
    profile = inv.learn_profile(plain["train"][0])
    x, y = victims(plain), victims(static)
    truth = inv.key_permutation(key)
    rng = np.random.default_rng(args.seed)
    pairs = rng.choice(len(x), min(args.pairs, len(x)), replace=False)
    found = np.stack([inv.known_pair_permutation(x[i], y[i]) for i in pairs])
    exact = (found == truth).mean(axis=1)
    ambiguous = (found == -1).mean(axis=1)
    wrong = int(((found != -1) & (found != truth)).sum())
    print(f"# static key: one known (plaintext, ciphertext) pair, {len(pairs)} pairs drawn")
    print("| positions exact, mean (min-max) | ambiguous, mean | wrong (all pairs) |")
    print("| ---: | ---: | ---: |")
    print(
        f"| {100 * exact.mean():.1f} % ({100 * exact.min():.1f}-{100 * exact.max():.1f} %) "
        f"| {100 * ambiguous.mean():.1f} % | {wrong} |"
    )
    sizes = tuple(n for n in SIZES if n < len(x)) + (len(x),)
    print(f"\n# static key, ciphertext alone: mean of {args.trials} draws of n vectors")
    print(f"# (one draw of all {len(x)}); bits right = decoded under the key found from all")
    names = " | ".join(f"n = {n}" for n in sizes)
    print(f"| model | {names} | bits right (all) | cosine (all) | seconds |")
    print("| --- |" + " ---: |" * (len(sizes) + 3))
    for model in inv.MODELS:
        start = time.perf_counter()
        curve = inv.key_recovery_curve(
            y, profile, truth, sizes, trials=args.trials, seed=args.seed, model=model
        )
        src = inv.ciphertext_only_permutation(y, profile, shared=True, model=model)
        words = inv.decode(y, src)
        bits = (inv.bit_columns(words) == inv.bit_columns(x)).mean()
        decoded = np.nan_to_num(words.view(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        cosine = inv._cosines(np.clip(decoded, -profile.bound, profile.bound), x).mean()
        cells = " | ".join(f"{100 * curve[n]:.1f} %" for n in sizes)
        print(
            f"| {model} | {cells} | {100 * bits:.1f} % | {cosine:.4f} "
            f"| {time.perf_counter() - start:.0f} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_study_arguments(parser)
    parser.add_argument("--pairs", type=int, default=200, help="known pairs drawn, one at a time")
    parser.add_argument("--trials", type=int, default=10, help="draws per ciphertext-only size")
    parser.add_argument("--max-pairs", type=int, default=200_000, help="D_sys pairs per set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.trials < 1 or args.max_pairs < 1:
        parser.error("--pairs, --trials and --max-pairs must be >= 1")
    config, run = finished_run(parser, args)
    plain = identities(parser, args, config, run, "plain")
    cipher = {mode: identities(parser, args, config, run, mode) for mode in PROTECTIONS}
    try:
        truth, static_key = one_time_truth(run), run_key(run, "static")
    except (OSError, ValueError) as err:  # the run's keys or nonces missing: named
        parser.error(str(err))
    print(device_info.describe(), flush=True)
    sizes = ", ".join(f"{s} {len(plain[s][0])}" for s in SPLITS)
    print(f"# ciphertext inversion on {run} ({sizes}); the attacker's profile from train")
    print("# estimates of query and gallery; NaN decodes to 0, |x| beyond train's max to it")
    irreversibility_rows(plain, cipher, truth, args)
    print()
    static_rows(plain, cipher["static"], static_key, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
