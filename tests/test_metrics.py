"""Metrics (invfeat/metrics.py): re-ID retrieval against plain numpy references (tied distances,
queries without a match, bad inputs named); balanced accuracy and its baselines on single-class
and unknown attributes; PSNR; SSIM."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.signal

from invfeat import metrics


def reference_reid(qf, qid, qcam, gf, gid, gcam):
    """Straightforward per-query loop: (first-match rank, AP, valid) as FastReID computes them."""
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    firsts, aps, valids = [], [], []
    for i in range(len(qf)):
        order = np.argsort(1.0 - gf @ qf[i], kind="stable")
        keep = ~((gid[order] == qid[i]) & (gcam[order] == qcam[i]))
        matches = (gid[order] == qid[i])[keep]
        hits = np.flatnonzero(matches)
        valids.append(len(hits) > 0)
        firsts.append(hits[0] if len(hits) else len(gf))
        aps.append(np.mean([(k + 1) / (pos + 1) for k, pos in enumerate(hits)]) if len(hits) else 0)
    return np.array(firsts), np.array(aps), np.array(valids)


def test_reid_matches_reference_on_random_data_with_padded_blocks():
    rng = np.random.default_rng(0)
    qf, gf = rng.normal(size=(37, 8)), rng.normal(size=(120, 8))
    qid, gid = rng.integers(0, 10, 37), rng.integers(0, 10, 120)
    qcam, gcam = rng.integers(0, 3, 37), rng.integers(0, 3, 120)
    qid[0] = 99  # a query without any true match is excluded
    before = metrics.query_block._cache_size()
    first, ap, valid = metrics.reid_per_query(qf, qid, qcam, gf, gid, gcam, block_size=16)
    assert metrics.query_block._cache_size() - before <= 1  # one program for all 3 blocks
    ref_first, ref_ap, ref_valid = reference_reid(qf, qid, qcam, gf, gid, gcam)
    np.testing.assert_array_equal(valid, ref_valid)
    assert not valid[0]
    np.testing.assert_array_equal(first[valid], ref_first[valid])
    np.testing.assert_allclose(ap[valid], ref_ap[valid], rtol=1e-5)
    m = metrics.reid_metrics(qf, qid, qcam, gf, gid, gcam, block_size=16)
    assert m["num_queries"] == ref_valid.sum()
    assert m["rank1"] == pytest.approx(np.mean(ref_first[ref_valid] < 1))
    assert m["rank5"] == pytest.approx(np.mean(ref_first[ref_valid] < 5))
    assert m["mAP"] == pytest.approx(np.mean(ref_ap[ref_valid]), rel=1e-5)


def test_reid_hand_made_case():
    angles = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 1.5])
    gallery = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    # nearest first: same id+cam (dropped), other, match, other, match, other
    gid = np.array([1, 2, 1, 3, 1, 4])
    gcam = np.array([0, 0, 1, 0, 2, 0])
    query = np.array([[1.0, 0.0]])
    first, ap, valid = metrics.reid_per_query(query, [1], [0], gallery, gid, gcam)
    assert valid[0] and first[0] == 1
    assert ap[0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    m = metrics.reid_metrics(query, [1], [0], gallery, gid, gcam)
    assert (m["rank1"], m["rank5"], m["num_queries"]) == (0.0, 1.0, 1)
    assert m["mAP"] == pytest.approx(0.5)


def test_reid_distances_are_full_float32_on_every_backend():
    # A DEFAULT-precision float32 matmul runs in TF32 (10-bit mantissa) on A100/H100 GPUs,
    # which reorders close gallery entries: the ranking must ask for HIGHEST precision.
    q, ids = np.zeros((4, 8), np.float32), np.zeros(4, np.int32)
    g, gids = np.zeros((6, 8), np.float32), np.zeros(6, np.int32)
    hlo = metrics.query_block.lower(q, ids, ids, g, gids, gids).as_text()
    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    assert dots and all("precision = [HIGHEST, HIGHEST]" in line for line in dots), dots


def test_reid_errors_when_no_query_has_a_match():
    with pytest.raises(ValueError, match="no query"):
        metrics.reid_metrics(np.ones((1, 2)), [1], [0], np.ones((2, 2)), [1, 2], [0, 0])


def test_balanced_accuracy_hand_made_and_ignores_unknown():
    labels = np.array([[0, 1], [0, 1], [0, 0], [1, -1], [-1, 0]])
    preds = np.array([[0, 1], [0, 0], [1, 0], [1, 1], [0, 0]])
    got = np.asarray(metrics.balanced_accuracy(labels, preds, num_classes=3))
    np.testing.assert_allclose(got, [(2 / 3 + 1) / 2, (1 + 1 / 2) / 2])
    scalar = metrics.balanced_accuracy(labels[:, 0], preds[:, 0], num_classes=2)
    assert float(scalar) == pytest.approx(5 / 6)


def test_majority_baseline_equals_a_constant_majority_predictor():
    rng = np.random.default_rng(1)
    labels = rng.choice([0, 1, 3, -1], size=(200, 4), p=[0.6, 0.2, 0.1, 0.1])
    labels[:, 3] = np.where(labels[:, 3] == 3, 0, labels[:, 3])  # only 2 classes present
    majority = np.array([np.bincount(col[col >= 0]).argmax() for col in labels.T])
    constant = np.broadcast_to(majority, labels.shape)
    expected = metrics.balanced_accuracy(labels, constant, num_classes=5)
    got = metrics.majority_balanced_accuracy(labels, num_classes=5)
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(got, [1 / 3, 1 / 3, 1 / 3, 1 / 2])


def test_chance_baseline_is_the_mean_of_uniform_guessing():
    rng = np.random.default_rng(2)
    labels = rng.choice(3, size=(20000, 1), p=[0.8, 0.15, 0.05])  # 3 of 4 classes present
    guesses = rng.integers(0, 4, size=labels.shape)
    got = float(metrics.balanced_accuracy(labels, guesses, num_classes=4)[0])
    assert got == pytest.approx(metrics.chance_balanced_accuracy(4), abs=0.02)


def test_psnr_known_value_and_identity():
    x = np.zeros((2, 8, 8, 3), np.float32)
    np.testing.assert_allclose(metrics.psnr(x, x + 0.1), [20.0, 20.0], rtol=1e-5)
    np.testing.assert_allclose(metrics.psnr(x, x), [100.0, 100.0])


def reference_ssim(x, y):
    w = metrics.gaussian_window().astype(np.float64)
    win = np.outer(w, w)
    out = []
    for a, b in zip(x.astype(np.float64), y.astype(np.float64), strict=True):
        vals = []
        for c in range(a.shape[-1]):
            f = lambda z: scipy.signal.convolve2d(z, win, mode="valid")
            ma, mb = f(a[..., c]), f(b[..., c])
            va, vb = f(a[..., c] ** 2) - ma**2, f(b[..., c] ** 2) - mb**2
            cov = f(a[..., c] * b[..., c]) - ma * mb
            c1, c2 = 0.01**2, 0.03**2
            s = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            vals.append(s.mean())
        out.append(np.mean(vals))
    return np.array(out)


def test_ssim_against_numpy_reference_and_known_values():
    rng = np.random.default_rng(3)
    x = rng.random((2, 16, 12, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(metrics.ssim(x, y), reference_ssim(x, y), atol=1e-5)
    np.testing.assert_allclose(metrics.ssim(x, x), [1.0, 1.0], atol=1e-5)
    assert np.all(np.asarray(metrics.ssim(x, y)) < 0.99)
    a, b = np.full((1, 12, 12, 1), 0.2, np.float32), np.full((1, 12, 12, 1), 0.6, np.float32)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)  # structure terms are 1
    np.testing.assert_allclose(metrics.ssim(a, b), [expected], rtol=1e-5)


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="window"):
        metrics.ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))


def numpy_cmc_ap(qf, qid, qcam, gf, gid, gcam):
    """Per query: (0-based first-match rank, AP) or None, by the definitions, in float64."""
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    out = []
    for i in range(len(qf)):
        dist = 1.0 - gf @ qf[i]
        ranked = sorted(range(len(gf)), key=lambda j: (dist[j], j))  # ties: gallery order
        ranked = [j for j in ranked if not (gid[j] == qid[i] and gcam[j] == qcam[i])]
        hits = [k for k, j in enumerate(ranked) if gid[j] == qid[i]]
        out.append(
            (hits[0], np.mean([(n + 1) / (k + 1) for n, k in enumerate(hits)])) if hits else None
        )
    return out


def test_reid_with_tied_distances_and_unmatched_queries_matches_numpy():
    rng = np.random.default_rng(1)
    # Entries in {-1, 0, 1}: many exactly equal distances; id 5 has no gallery entry.
    gf = rng.integers(-1, 2, (40, 4)).astype(np.float32)
    qf = rng.integers(-1, 2, (15, 4)).astype(np.float32)
    gf[~gf.any(1)], qf[~qf.any(1)] = 1.0, 1.0
    gid, gcam = rng.integers(0, 5, 40), rng.integers(0, 2, 40)
    qid, qcam = rng.integers(0, 6, 15), rng.integers(0, 2, 15)
    first, ap, valid = metrics.reid_per_query(qf, qid, qcam, gf, gid, gcam, block_size=4)
    expected = numpy_cmc_ap(qf, qid, qcam, gf, gid, gcam)
    np.testing.assert_array_equal(valid, [e is not None for e in expected])
    assert 0 < valid.sum() < len(qf)
    for i in np.flatnonzero(valid):
        assert first[i] == expected[i][0]
        assert ap[i] == pytest.approx(expected[i][1], rel=1e-6)


def test_reid_names_bad_inputs():
    f, ids = np.ones((3, 4), np.float32), np.zeros(3, int)
    cases = [
        ((f[:0], ids[:0], ids[:0], f, ids, ids), "query_features must be a non-empty"),
        ((f, ids, ids, f[:0], ids[:0], ids[:0]), "gallery_features must be a non-empty"),
        ((f, ids, ids, f[:, :3], ids, ids), "4-d but gallery_features 3-d"),
        ((f, ids, ids, f, ids[:2], ids), r"gallery_ids must have shape \(3,\)"),
        (
            (np.where(np.eye(3, 4) > 0, np.nan, f), ids, ids, f, ids, ids),
            "query_features holds NaN",
        ),
        ((f, ids, ids, np.full_like(f, np.inf), ids, ids), "gallery_features holds NaN"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            metrics.reid_per_query(*args)


def test_balanced_accuracy_and_majority_on_single_class_and_unknown_attributes():
    labels = np.array([[1, -1, 0], [1, -1, 2], [1, -1, 2], [1, -1, 0]])
    preds = np.array([[1, 0, 0], [0, 1, 2], [1, 0, 0], [1, 1, 1]])
    bacc = np.asarray(metrics.balanced_accuracy(labels, preds, 3))
    # Column 0: one class, recall 3/4. Column 1: nothing known. Column 2: (1/2 + 1/2) / 2.
    np.testing.assert_allclose(bacc, [0.75, np.nan, 0.5])
    majority = np.asarray(metrics.majority_balanced_accuracy(labels, 3))
    np.testing.assert_allclose(majority, [1.0, np.nan, 0.5])  # NaN where bacc is NaN
    jitted = jax.jit(metrics.majority_balanced_accuracy, static_argnums=1)
    np.testing.assert_allclose(jitted(labels, 3), majority)
