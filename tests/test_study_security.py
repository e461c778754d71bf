"""The security evaluation (invfeat/study/security.py) on a small synthetic attack domain: a
cell leaks where the attacker beats chance beyond doubt (plaintext, a static key) and not where
the ciphertext hides everything (stream mode); every cell's verdict is any of its tests', each
made at the Bonferroni level 1 - security.ALPHA / security.CELLS / (number of tests)."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from invfeat import metrics
from invfeat import shufflebits as sb
from invfeat.attacks import inversion as inv
from invfeat.attacks import significance as sig
from invfeat.attacks.attributes import AttributeResult
from invfeat.study import security
from invfeat.study.attack_stages import Reading, victims
from invfeat.study.config import ESTIMATE
from invfeat.study.domain import AttackDomain

WIDTH = 32
SPLITS = {  # split -> (identities, images per identity, cameras)
    "train": (range(0, 30), 4, 2),
    "query": (range(30, 60), 2, 2),
    "gallery": (range(30, 60), 3, 3),
}
NUM_CLASSES = (2, 3)
STATIC_KEY = sb.Key.from_seed(123)
STREAM_KEY = sb.StreamKey.from_bytes(bytes(range(32)))  # fixed: the verdicts are reproducible


def nonces(n: int, seed: int) -> np.ndarray:
    """Distinct seeded nonces (uint32 [n, 3]), as `fresh_nonces` draws but reproducible."""
    return np.random.default_rng(seed).integers(0, 2**32, (n, 3), dtype=np.uint32)


def make_domain() -> AttackDomain:
    """Identities seen by 2-3 cameras in every split; features an identity centroid plus noise
    (float32 [N, 32], of a standard normal scale); two attribute columns fixed per identity,
    some unknown (-1); tiny blank images."""
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(60, WIDTH))
    traits = np.stack([rng.integers(0, k, 60) for k in NUM_CLASSES], axis=1)
    parts = {f.name: {} for f in dataclasses.fields(AttackDomain) if f.name != "schema"}
    for split, (people, per_person, cams) in SPLITS.items():
        ids = np.repeat(np.asarray(people), per_person).astype(np.int32)
        n = len(ids)
        parts["identity"][split] = ids
        parts["camera"][split] = (np.arange(n) % per_person % cams).astype(np.int32)
        attributes = traits[ids].astype(np.int32)
        attributes[rng.random(attributes.shape) < 0.1] = -1
        parts["attributes"][split] = attributes
        parts["plain"][split] = (centroids[ids] + 0.3 * rng.normal(size=(n, WIDTH))).astype(
            np.float32
        )
        parts["file_names"][split] = np.array([f"{split}_{i}.jpg" for i in range(n)])
        if split != "gallery":
            parts["images"][split] = np.zeros((n, 4, 4, 3), np.uint8)
    plain = parts["plain"]
    parts["cipher"] = {
        "static": {s: np.asarray(sb.encrypt(x, STATIC_KEY)) for s, x in plain.items()},
        "stream": {},
    }
    parts["nonces"] = {"static": dict.fromkeys(plain), "stream": {}}
    for seed, (split, x) in enumerate(plain.items()):
        parts["nonces"]["stream"][split] = nonces(len(x), seed)
        parts["cipher"]["stream"][split] = np.asarray(
            sb.encrypt(x, STREAM_KEY, parts["nonces"]["stream"][split])
        )
    return AttackDomain(**parts, schema=())


@pytest.fixture(scope="module")
def domain() -> AttackDomain:
    return make_domain()


def check_cell(cell: dict) -> None:
    """What every cell holds: its verdict is any of its tests', each test's that its interval
    lies wholly above its chance, and its level is Bonferroni's over its tests."""
    tests = cell["tests"]
    assert tests
    assert cell["level"] == pytest.approx(1 - security.ALPHA / security.CELLS / len(tests))
    assert cell["leaks"] == any(t["leaks"] for t in tests)
    for t in tests:
        assert set(t) >= {"figure", "value", "low", "high", "chance", "leaks"}
        assert t["leaks"] == (t["low"] > t["chance"])
        assert t["low"] <= t["high"]


def test_the_synthetic_domain_is_served_as_the_study_serves_it(domain):
    for split in SPLITS:
        assert np.array_equal(
            np.asarray(
                sb.decrypt(
                    domain.cipher["stream"][split], STREAM_KEY, domain.nonces["stream"][split]
                )
            ).view(np.uint32),
            domain.plain[split].view(np.uint32),
        )
        # stream ciphertext as floats: NaN and inf among them (every bit pattern occurs)
    assert not np.all(np.isfinite(domain.cipher["stream"]["gallery"]))


def test_linkability_leaks_on_plaintext_and_not_on_stream_ciphertext(domain):
    plain = security.linkability_cell({"floats": Reading("floats", domain.plain)}, domain)
    check_cell(plain)
    assert len(plain["tests"]) == 4  # rank-1 and D_sys, raw and after a learned metric
    assert plain["leaks"]
    raw = plain["readings"]["floats"]["raw"]
    assert raw["rank1"] > 0.9 > 10 * raw["chance_rank1"]
    rank1_test = plain["tests"][0]
    assert rank1_test["value"] == pytest.approx(raw["rank1"]) and rank1_test["leaks"]
    assert rank1_test["chance"] == pytest.approx(raw["chance_rank1"])

    popcount = Reading("stream popcount", domain.cipher["stream"], "popcount")
    stream = security.linkability_cell({"popcount": popcount}, domain)
    check_cell(stream)
    assert not stream["leaks"]
    for result in stream["readings"]["popcount"].values():
        assert result["rank1"] < 0.2


def test_linkability_tests_every_reading_at_one_level(domain):
    readings = {
        "floats": Reading("floats", domain.plain),
        "popcount": Reading("stream popcount", domain.cipher["stream"], "popcount"),
    }
    cell = security.linkability_cell(readings, domain)
    check_cell(cell)
    assert len(cell["tests"]) == 8 and cell["level"] == pytest.approx(
        1 - security.ALPHA / security.CELLS / 8
    )
    assert cell["leaks"]  # the plaintext reading alone leaks
    leaking = {t["figure"].split(",")[0] for t in cell["tests"] if t["leaks"]}
    assert leaking == {"floats"}


def test_irreversibility_of_a_static_key_is_bit_exact(domain):
    cipher = domain.cipher["static"]
    estimates = security.attacker_estimates("static", domain.plain["train"], cipher)
    assert set(estimates) == set(SPLITS)
    cell = security.irreversibility_cell(estimates, domain)
    check_cell(cell)
    assert len(cell["tests"]) == 2 and cell["level"] == pytest.approx(
        1 - security.ALPHA / security.CELLS / 2
    )
    assert cell["leaks"] and all(t["leaks"] for t in cell["tests"])
    assert cell["bit_exact"] and cell["bits_correct"] == 1.0
    assert cell["cosine"] == pytest.approx(1.0)
    for split in SPLITS:
        assert np.array_equal(estimates[split].view(np.uint32), domain.plain[split].view(np.uint32))
    assert cell["rank1"] > 0.9


def test_irreversibility_of_stream_ciphertext_does_not_leak(domain):
    cipher = domain.cipher["stream"]
    estimates = security.attacker_estimates("stream", domain.plain["train"], cipher)
    assert set(estimates) == set(SPLITS)
    for split in SPLITS:
        assert estimates[split].shape == domain.plain[split].shape
        assert np.all(np.isfinite(estimates[split]))
    cell = security.irreversibility_cell(estimates, domain)
    check_cell(cell)
    assert not cell["leaks"]
    assert not cell["bit_exact"] and abs(cell["bits_correct"] - 0.5) < 0.05
    gain = cell["tests"][0]
    assert gain["chance"] == 0 and gain["low"] <= 0
    assert gain["value"] == pytest.approx(cell["cosine"] - cell["cosine_to_another"])


def test_key_recovery_of_a_static_key_leaks(domain):
    plain, cipher = victims(domain.plain), victims(domain.cipher["static"])
    profile = inv.learn_profile(domain.plain["train"])
    cell = security.key_recovery_cell(STATIC_KEY, plain, cipher, profile)
    check_cell(cell)
    sizes = [n for n in security.KEY_RECOVERY_SIZES if n <= len(cipher)]
    assert sizes == [1, 10, 100]  # 150 victims
    assert len(cell["tests"]) == 1 + len(sizes)
    assert cell["level"] == pytest.approx(1 - security.ALPHA / security.CELLS / (1 + len(sizes)))
    assert 0.0 <= cell["known_pair"] <= 1.0
    # one pair pins down all but the positions whose columns are equal within its 32 floats
    assert cell["known_pair"] > 0.5
    assert set(cell["ciphertext_only"]) == {str(n) for n in sizes}
    assert all(0.0 <= v <= 1.0 for v in cell["ciphertext_only"].values())
    assert cell["leaks"] and cell["tests"][0]["leaks"]
    assert all(t["chance"] == pytest.approx(1 / 32) for t in cell["tests"])


def test_reconstruction_verdicts_from_rank1_against_chance():
    leaking = security.reconstruction_cell({"gan": {"rank1": 0.5, "num_queries": 200}}, 0.01, "x")
    check_cell(leaking)
    level = 1 - security.ALPHA / security.CELLS
    assert leaking["leaks"] and leaking["level"] == pytest.approx(level)
    assert leaking["reading"] == "x" and leaking["attacks"]["gan"]["rank1"] == 0.5
    (test,) = leaking["tests"]
    exact = sig.binomial_interval(100, 200, z=sig.z_for(level))
    assert test["value"] == 0.5 and test["low"] == pytest.approx(exact["low"])
    assert test["chance"] == 0.01

    blocks = {
        "gan": {"rank1": 0.0, "num_queries": 200},
        "autoencoder": {"rank1": 0.01, "num_queries": 200},
    }
    hidden = security.reconstruction_cell(blocks, 0.01, None)
    check_cell(hidden)
    assert not hidden["leaks"] and hidden["level"] == pytest.approx(
        1 - security.ALPHA / security.CELLS / 2
    )
    assert [t["figure"] for t in hidden["tests"]] == ["gan: rank-1", "autoencoder: rank-1"]


@dataclasses.dataclass(frozen=True)
class FakePredictor:
    """An attribute head's predictor, stood in for: `fn(features) -> class ids [N, A]`."""

    fn: object
    names: tuple[str, ...] = ("gender", "colour")
    num_classes: tuple[int, ...] = NUM_CLASSES

    def __call__(self, features):
        return self.fn(features)

    def prepare_labels(self, attributes):
        return np.asarray(attributes)


def head(predict: FakePredictor, features: np.ndarray, labels: np.ndarray) -> AttributeResult:
    """An AttributeResult whose metrics on the victims are computed as the attack computes them."""
    predictions = predict(features)
    scores = np.asarray(metrics.balanced_accuracy(labels, predictions, max(NUM_CLASSES)))
    majority = np.asarray(metrics.majority_balanced_accuracy(labels, max(NUM_CLASSES)))
    chance = metrics.chance_balanced_accuracy(NUM_CLASSES)
    block = {
        name: {"balanced_accuracy": float(s), "majority": float(m), "chance": float(c)}
        for name, s, m, c in zip(predict.names, scores, majority, chance, strict=True)
    }
    block["mean"] = {
        "balanced_accuracy": float(scores.mean()),
        "majority": float(majority.mean()),
        "chance": float(chance.mean()),
    }
    return AttributeResult(block, None, None, predict, 0, Path("log"))


def test_attributes_cell_leaks_where_a_head_reads_the_attributes(domain):
    labels = victims(domain.attributes)
    # "oracle": a reading from which the attributes are read off exactly; "blind": a head that
    # always names class 0, as an attacker without the features can
    readings = {
        "oracle": Reading(
            "oracle", {s: a.astype(np.float32) for s, a in domain.attributes.items()}
        ),
        "blind": Reading("blind", domain.cipher["stream"], "popcount"),
    }
    predictors = {
        "oracle": FakePredictor(lambda x: np.maximum(np.asarray(x), 0).astype(np.int64)),
        "blind": FakePredictor(lambda x: np.zeros((len(x), 2), np.int64)),
    }
    heads = {
        name: head(p, victims(readings[name].features), labels) for name, p in predictors.items()
    }
    cell = security.attributes_cell(heads, domain, readings)
    check_cell(cell)
    assert len(cell["tests"]) == 2 * (len(NUM_CLASSES) + 1)
    assert cell["level"] == pytest.approx(1 - security.ALPHA / security.CELLS / 6)
    assert cell["leaks"]
    by_reading = {
        name: [t for t in cell["tests"] if t["figure"].startswith(name)] for name in heads
    }
    assert all(t["leaks"] for t in by_reading["oracle"])
    assert not any(t["leaks"] for t in by_reading["blind"])
    for name in heads:
        for t in by_reading[name]:
            attribute = t["figure"].split(": ")[1]
            block = cell["readings"][name][attribute]
            assert t["value"] == pytest.approx(block["balanced_accuracy"])
            assert t["chance"] == block["bar"] >= max(block["chance"], block["majority"])
            assert t["leaks"] == (t["value"] > t["chance"])
            assert (block["low"], block["high"]) == (t["low"], t["high"])
    assert cell["readings"]["oracle"]["mean"]["balanced_accuracy"] == 1.0
    assert security.strongest(heads) == "oracle"


def test_readings_of_names_each_reading(domain):
    calls = []

    def estimate():
        calls.append(1)
        return domain.plain

    cipher = domain.cipher["static"]
    readings = security.readings_of("static", (ESTIMATE, "popcount"), cipher, estimate)
    assert list(readings) == [ESTIMATE, "popcount"]
    assert readings[ESTIMATE] == Reading("static estimate", domain.plain, None)
    assert readings["popcount"] == Reading("static popcount", cipher, "popcount")
    assert len(calls) == 1
    assert security.readings_of("static", ("bits",), cipher, estimate)["bits"].encoding == "bits"
    assert len(calls) == 1  # no estimate asked for, none made
