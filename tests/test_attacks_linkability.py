"""Linkability of protected vectors (invfeat/attacks/linkability.py): D_sys of Gomez-Barrero et
al. at its two ends and in between, rank-1 of a perfect and of a useless reading against chance,
the attacker's learned metric, and what one-time and stream ciphertext leave to be read."""

import numpy as np
import pytest

from invfeat import shufflebits as sb
from invfeat.attacks.ciphertext import encode_features
from invfeat.attacks.linkability import (
    d_sys,
    d_sys_null,
    learn_metric,
    linkability,
    rank1_p_value,
    score_pairs,
)
from invfeat.metrics import chance_rank1


def world(num_ids: int, per_id: int, seed: int = 0):
    """Query and gallery identities/cameras: each identity once in the query (camera 0) and
    `per_id` times in the gallery (cameras 1..per_id)."""
    qid = np.arange(num_ids)
    qcam = np.zeros(num_ids, np.int32)
    gid = np.repeat(np.arange(num_ids), per_id)
    gcam = np.tile(np.arange(1, per_id + 1), num_ids)
    return qid, qcam, gid, gcam


def test_d_sys_is_zero_for_identical_distributions():
    scores = np.random.default_rng(0).normal(size=2000)
    assert d_sys(scores, scores) == 0.0
    assert d_sys(scores, scores.copy()[::-1], bins=30) == 0.0


def test_d_sys_is_one_for_separated_distributions():
    rng = np.random.default_rng(1)
    assert d_sys(rng.uniform(2, 3, 500), rng.uniform(0, 1, 5000)) == pytest.approx(1.0)
    assert d_sys([1.0, 1.0], [0.0, 0.0, 0.0], bins=4) == pytest.approx(1.0)


def test_d_sys_grows_with_the_separation_and_clears_its_null():
    rng = np.random.default_rng(2)
    non_mated = rng.normal(0.0, 1.0, 20000)
    values = [d_sys(rng.normal(shift, 1.0, 2000), non_mated) for shift in (0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values
    assert 0.0 < values[0] and values[-1] < 1.0
    null = d_sys_null(rng.normal(0.0, 1.0, 2000), non_mated)
    assert null < values[0] and null < 0.15


def test_d_sys_local_measure_follows_the_paper():
    # one bin with mated mass 0.75, non-mated 0.25: LR 3, D = 2 * 3 / 4 - 1 = 0.5, weighed by
    # 0.75; the other bin LR 1/3 < 1 gives 0: D_sys = 0.375. omega 1/3 makes LR omega 1: 0.
    mated, non_mated = [0, 1, 1, 1], [0, 0, 0, 1]
    assert d_sys(mated, non_mated, bins=2) == pytest.approx(0.375)
    assert d_sys(mated, non_mated, bins=2, omega=1 / 3) == pytest.approx(0.0)


def test_perfect_reading_links_everyone():
    qid, qcam, gid, gcam = world(40, 3)
    one_hot = np.eye(40)
    result = linkability(one_hot[qid], qid, qcam, one_hot[gid], gid, gcam)
    assert result["rank1"] == 1.0 and result["mAP"] == 1.0
    assert result["chance_rank1"] == pytest.approx(3 / 120)
    assert result["d_sys"] == pytest.approx(1.0)
    assert result["rank1_p_value"] < 1e-6


def test_noise_links_no_one_beyond_chance():
    qid, qcam, gid, gcam = world(300, 4)
    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(len(qid), 32)), rng.normal(size=(len(gid), 32))
    result = linkability(q, qid, qcam, g, gid, gcam)
    chance, n = result["chance_rank1"], result["num_queries"]
    assert chance == pytest.approx(chance_rank1(qid, qcam, gid, gcam))
    # a one-sided binomial bound at the 1e-4 level, not a look
    assert result["rank1_p_value"] > 1e-4
    assert result["rank1"] <= chance + 4 * np.sqrt(chance * (1 - chance) / n)
    assert result["d_sys"] <= result["d_sys_null"] + 0.05


def test_rank1_p_value_is_the_binomial_tail():
    assert rank1_p_value(0.0, 100, 0.01) == 1.0
    assert rank1_p_value(0.05, 100, 0.01) == pytest.approx(0.00343, rel=0.05)


def test_score_pairs_splits_by_identity_and_camera_and_subsamples():
    qid, qcam, gid, gcam = world(10, 3)
    one_hot = np.eye(10)
    mated, non_mated = score_pairs(one_hot[qid], qid, qcam, one_hot[gid], gid, gcam)
    assert len(mated) == 30 and np.all(mated == 1.0)
    assert len(non_mated) == 10 * 27 and np.all(non_mated == 0.0)
    # a gallery entry of the query's own camera is neither mated nor left in the mated set
    gcam_same = gcam.copy()
    gcam_same[0] = 0
    mated, _ = score_pairs(one_hot[qid], qid, qcam, one_hot[gid], gid, gcam_same)
    assert len(mated) == 29
    a = score_pairs(one_hot[qid], qid, qcam, one_hot[gid], gid, gcam, max_pairs=50, seed=4)
    b = score_pairs(one_hot[qid], qid, qcam, one_hot[gid], gid, gcam, max_pairs=50, seed=4)
    assert len(a[1]) == 50 and np.array_equal(a[1], b[1])


def identity_in_few_dimensions(num_ids: int, seed: int):
    """Readings of 40 dims: 4 carry the identity weakly, 36 are loud noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, 4))
    ids = np.repeat(np.arange(num_ids), 4)
    cams = np.tile(np.arange(4), num_ids)
    signal = centres[ids] + 0.2 * rng.normal(size=(len(ids), 4))
    noise = 5.0 * rng.normal(size=(len(ids), 36))
    return np.concatenate([signal, noise], axis=1), ids, cams


def test_learned_metric_finds_the_dimensions_that_carry_identity():
    train, train_ids, _ = identity_in_few_dimensions(200, seed=5)
    test, ids, cams = identity_in_few_dimensions(100, seed=6)
    q, g = cams == 0, cams != 0
    metric = learn_metric(train, train_ids)
    args = (test[q], ids[q], cams[q], test[g], ids[g], cams[g])
    plain, learned = linkability(*args), linkability(*args, metric=metric)
    oracle = linkability(test[q][:, :4], ids[q], cams[q], test[g][:, :4], ids[g], cams[g])
    assert plain["rank1"] < 0.1 < 0.6 < oracle["rank1"]
    assert learned["rank1"] > 0.9 * oracle["rank1"], (plain, learned, oracle)
    assert metric(test).shape[0] == len(test) and metric(test).dtype == np.float32


def test_learned_metric_handles_more_dimensions_than_samples():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(30, 200))
    x[:, 5] = 0.0  # a constant reading is dropped, not divided by zero
    metric = learn_metric(x, np.repeat(np.arange(10), 3), max_dims=16)
    out = metric(x)
    assert out.shape == (30, 9) and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="learned on 200-d"):
        metric(x[:, :10])
    with pytest.raises(ValueError, match="two identities"):
        learn_metric(x, np.zeros(30))


def plaintext_features(n: int = 64, d: int = 16) -> np.ndarray:
    return np.random.default_rng(8).normal(size=(n, d)).astype(np.float32)


def test_one_time_ciphertext_keeps_every_popcount_so_links_as_plaintext():
    x = plaintext_features()
    y = np.asarray(sb.encrypt(x, sb.Secret.generate(), sb.fresh_nonces(len(x))))
    assert not np.array_equal(x.view(np.uint32), y.view(np.uint32))
    plain, cipher = (np.asarray(encode_features(v, "popcount")) for v in (x, y))
    assert np.array_equal(plain, cipher)
    ids = np.repeat(np.arange(16), 4)
    cams = np.tile(np.arange(4), 16)
    q, g = cams == 0, cams != 0

    def link(r):
        return linkability(r[q], ids[q], cams[q], r[g], ids[g], cams[g])

    assert link(plain) == link(cipher)


def test_stream_ciphertext_readings_of_one_vector_are_uncorrelated():
    x = np.repeat(plaintext_features(1, 512), 2, axis=0)
    key = sb.StreamKey.generate()
    y = np.asarray(sb.encrypt(x, key, sb.fresh_nonces(2)))
    for encoding in ("popcount", "bits"):
        a, b = np.asarray(encode_features(y, encoding))
        r = np.corrcoef(a, b)[0, 1]
        # |r| of independent readings is about 1 / sqrt(len): 5 of those is far outside
        assert abs(r) < 5 / np.sqrt(len(a)), (encoding, r)
        plain = np.asarray(encode_features(x[:1], encoding))[0]
        assert abs(np.corrcoef(plain, a)[0, 1]) < 5 / np.sqrt(len(a))
