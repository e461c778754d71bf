"""The security evaluation: the study's attacker against each protection's ciphertext (and the
plaintext, the reference), every figure with an interval, every cell a verdict.

The attacker is the same for every protection. It knows the scheme, sends its own images (the
attack domain's train split) through the API and also holds plaintext features of them, as
from a copy of the model before it was protected (the surrogate perceptual network is trained on
them too): a stronger attacker than one who sees ciphertext only, so what holds against it holds
against a weaker one. It reads the victims' vectors (query and gallery) in each of
`StudyConfig.readings`:

- `estimate`: its estimate of the plaintext floats (`invfeat.attacks.inversion`): for a key
  shared by every vector (static), decoded under the permutation that its own (plaintext,
  ciphertext) pairs pin down; otherwise each vector decoded under the permutation of its bit
  positions that the bit statistics of the attacker's plaintext make most likely;
- a name of `invfeat.attacks.ciphertext.ENCODINGS` (`popcount`, `columns`, `bits`, ...).

A cell (protection x attack) holds `tests`, each a figure with its interval and the level an
attacker without the features reaches (`chance`); the cell `leaks` when any test puts its figure
above that: a rank-1 or a cosine whose interval lies wholly above it, an attribute's balanced
accuracy above the bar its predictions reach against shuffled labels. The error is shared out (Bonferroni): each of a protection's CELLS
attacks gets ALPHA / CELLS, and each of a cell's m tests 1 / m of that, so a protection that
leaks nothing is called leaking anywhere in at most about 1 % of studies. D_sys and balanced
accuracy are tested against the mean of their label shuffles plus z of their standard deviations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from invfeat.attacks import inversion as inv
from invfeat.attacks import significance as sig
from invfeat.attacks.attributes import AttributeResult
from invfeat.attacks.linkability import learn_metric, linkability
from invfeat.study.attack_stages import Reading, victims
from invfeat.study.config import ESTIMATE
from invfeat.study.domain import AttackDomain

ALPHA = 0.01  # the chance of calling a protection that leaks nothing leaking anywhere
CELLS = 5  # attacks per protection: ALPHA is shared among them, then among each one's tests
SHUFFLES = 100  # label shuffles behind each D_sys threshold
KEY_RECOVERY_SIZES = (1, 10, 100, 1000)  # ciphertext vectors seen
KNOWN_PAIRS = 20  # single known pairs tried, one at a time


def _level(tests: int) -> float:
    return 1 - ALPHA / CELLS / tests


def _z(tests: int) -> float:
    return sig.z_for(_level(tests))


def _test(figure: str, interval: Mapping[str, float], chance: float) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": float(interval["value"]),
        "low": float(interval["low"]),
        "high": float(interval["high"]),
        "chance": float(chance),
        "leaks": sig.leaks(interval, chance),
    }


def _cell(tests: list[dict[str, Any]], **data: Any) -> dict[str, Any]:
    leaks = any(t["leaks"] for t in tests)
    return {**data, "level": _level(len(tests)), "leaks": leaks, "tests": tests}


def _rank1(figure: str, rank1: float, queries: int, chance: float, z: float) -> dict[str, Any]:
    return _test(figure, sig.binomial_interval(round(rank1 * queries), queries, z=z), chance)


def attacker_estimates(
    mode: str, plain_train: np.ndarray, cipher: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The attacker's estimates of the plaintext of every split of `cipher` (the `estimate`
    reading): static, decoded under the key its train pairs give; else per vector."""
    if mode == "static":
        src = inv.consistent_permutation(plain_train, cipher["train"])
        return {split: inv.static_estimates(c, src) for split, c in cipher.items()}
    profile = inv.learn_profile(plain_train)
    return {split: inv.estimate_plaintext(c, profile) for split, c in cipher.items()}


def attributes_cell(
    heads: Mapping[str, AttributeResult], domain: AttackDomain, readings: Mapping[str, Reading]
) -> dict:
    """Each reading's head on the victims: mean and per-attribute balanced accuracy, each with its
    bootstrap interval over the victims, tested against what the same predictions score against
    shuffled labels (a class-imbalanced attribute lets a head that reads nothing wander far from
    1 / classes): the figure leaks above the shuffles' mean plus z of their standard deviations,
    and above the larger of guessing and always naming one class."""
    tests, blocks = [], {}
    z = _z(sum(len(h.names) + 1 for h in heads.values()))
    for name, head in heads.items():
        labels = head.prepare_labels(victims(domain.attributes))
        predictions = head.predict(victims(readings[name].features))
        interval = sig.balanced_accuracy_interval(labels, predictions, head.num_classes, z=z)
        null = sig.balanced_accuracy_null(labels, predictions, head.num_classes)
        block = {k: dict(v) for k, v in head.metrics.items()}
        pairs = zip(
            [*head.names, "mean"],
            [*interval["per_attribute"], interval],
            [*null["per_attribute"], null],
            strict=True,
        )
        for attribute, bounds, shuffled in pairs:
            if not np.isfinite(bounds["value"]):  # no victim has a known label
                continue
            baseline = max(block[attribute]["chance"], block[attribute]["majority"])
            bar = max(baseline, shuffled["mean"] + z * shuffled["sd"])
            block[attribute] |= {"low": bounds["low"], "high": bounds["high"], "bar": bar}
            test = _test(f"{name}: {attribute}", bounds, bar)
            tests.append(test | {"leaks": bool(bounds["value"] > bar)})
        blocks[name] = block
    return _cell(tests, readings=blocks)


def reconstruction_cell(blocks: Mapping[str, Any], chance: float, reading: str | None) -> dict:
    """Rank-1 of each reconstruction against the real gallery, with its exact binomial interval."""
    z = _z(len(blocks))
    tests = [
        _rank1(f"{kind}: rank-1", b["rank1"], b["num_queries"], chance, z)
        for kind, b in blocks.items()
    ]
    return _cell(tests, reading=reading, attacks=dict(blocks))


def linkability_cell(readings: Mapping[str, Reading], domain: AttackDomain) -> dict:
    """Each reading ranked query against gallery by cosine, raw and after a metric learned on
    the train split: rank-1 (exact binomial interval), and D_sys against the bar its label
    shuffles set."""
    tests_per_reading = 4
    z = _z(tests_per_reading * len(readings))
    labels = [domain.identity, domain.camera]
    tests, blocks = [], {}
    for name, reading in readings.items():
        query, gallery = reading.read("query"), reading.read("gallery")
        pairs = (query, *(x["query"] for x in labels), gallery, *(x["gallery"] for x in labels))
        metric = learn_metric(reading.read("train"), domain.identity["train"])
        blocks[name] = {}
        for variant, learned in (("raw", None), ("learned metric", metric)):
            r = linkability(*pairs, metric=learned, permutations=SHUFFLES)
            blocks[name][variant] = r
            tests.append(
                _rank1(
                    f"{name}, {variant}: rank-1", r["rank1"], r["num_queries"], r["chance_rank1"], z
                )
            )
            # D_sys against what label shuffles give: their mean + z standard deviations
            bar = r["d_sys_shuffled_mean"] + z * r["d_sys_shuffled_std"]
            d = {"value": r["d_sys"], "low": r["d_sys"], "high": r["d_sys"]}
            tests.append(_test(f"{name}, {variant}: D_sys", d, bar))
    return _cell(tests, readings=blocks)


def irreversibility_cell(estimates: Mapping[str, np.ndarray], domain: AttackDomain) -> dict:
    """The victims' estimates against their plaintext: the mean over vectors of cosine to their
    own plaintext minus cosine to another's (0: what the attacker's prior gives alone), and the
    rank-1 of the estimated queries against the plaintext gallery."""
    z = _z(2)
    est, plain = victims(estimates), victims(domain.plain)
    own, other = _cosines(est, plain), _cosines(est, np.roll(plain, 1, axis=0))
    bits = inv.bit_columns(est) == inv.bit_columns(plain)
    r = linkability(
        estimates["query"], domain.identity["query"], domain.camera["query"],
        domain.plain["gallery"], domain.identity["gallery"], domain.camera["gallery"],
    )  # fmt: skip
    tests = [
        _test("cosine to own plaintext minus to another's", sig.mean_interval(own - other, z=z), 0),
        _rank1(
            "rank-1 of estimates, plaintext gallery",
            r["rank1"],
            r["num_queries"],
            r["chance_rank1"],
            z,
        ),
    ]
    return _cell(
        tests,
        cosine=float(own.mean()),
        cosine_to_another=float(other.mean()),
        bits_correct=float(bits.mean()),
        bit_exact=bool(bits.all()),
        rank1=r["rank1"],
        mAP=r["mAP"],
    )


def key_recovery_cell(key: Any, plain: np.ndarray, cipher: np.ndarray, profile) -> dict:
    """A static key's bit positions found from one known (plaintext, ciphertext) pair (each of
    KNOWN_PAIRS pairs alone) and from ciphertext alone after n vectors, against the 1 / 32 a
    guess places; plain and cipher are the victims' vectors."""
    truth = inv.key_permutation(key)
    z = _z(1 + len(KEY_RECOVERY_SIZES))
    rng = np.random.default_rng(0)
    picks = rng.choice(len(plain), min(KNOWN_PAIRS, len(plain)), replace=False)
    known = np.mean([inv.known_pair_permutation(plain[i], cipher[i]) == truth for i in picks])
    sizes = tuple(n for n in KEY_RECOVERY_SIZES if n <= len(cipher))
    curve = inv.key_recovery_curve(cipher, profile, truth, sizes, trials=5)  # one draw of all

    def positions(figure: str, fraction: float, draws: int) -> dict[str, Any]:
        trials = inv.BITS * draws
        return _test(figure, sig.binomial_interval(round(fraction * trials), trials, z=z), 1 / 32)

    tests = [positions("one known pair: positions exact", known, len(picks))]
    tests += [
        positions(f"ciphertext only, n = {n}: positions", curve[n], 1 if n >= len(cipher) else 5)
        for n in sizes
    ]
    return _cell(tests, known_pair=float(known), ciphertext_only={str(n): curve[n] for n in sizes})


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-30)


def strongest(heads: Mapping[str, AttributeResult]) -> str:
    """The reading whose attribute head scored best on the victims (mean balanced accuracy)."""
    return max(heads, key=lambda name: heads[name].metrics["mean"]["balanced_accuracy"])


def readings_of(
    mode: str,
    names: tuple[str, ...],
    cipher: Mapping[str, np.ndarray],
    estimate: Callable[[], Mapping[str, np.ndarray]],
) -> dict[str, Reading]:
    """The attacker's readings of one protection's ciphertext, by name."""
    return {
        name: Reading(f"{mode} {name}", estimate(), None)
        if name == ESTIMATE
        else Reading(f"{mode} {name}", cipher, name)
        for name in names
    }
