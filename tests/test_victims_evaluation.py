"""The victim's re-ID evaluation (invfeat/victims/evaluation.py): CMC and mAP of a trained victim
on a dataset's test split; the chance rank-1 of a reconstruction follows the evaluation protocol
(same-camera matches left out)."""

import numpy as np
import pytest
from helpers.worlds import SMALL_MSMT as SETTINGS

from invfeat import metrics
from invfeat import victims as V
from invfeat.victims import chance_rank1


def test_evaluation_reports_cmc_and_map(trained_victim, small_msmt_dir):
    _, victim = trained_victim
    scores = V.evaluate_victim(victim, "synth_msmt", data_dir=small_msmt_dir,
                               data_settings=SETTINGS, progress=False)  # fmt: skip
    assert scores["num_queries"] == 4
    assert 0.0 <= scores["rank1"] <= scores["rank5"] <= scores["rank10"] <= 1.0
    assert 0.0 < scores["mAP"] <= 1.0
    assert 0.0 < scores["chance_rank1"] <= 1.0


def test_chance_rank1_follows_the_evaluation_protocol():
    # Query 0 (id 1, cam 1): the cam-1 image of id 1 is excluded; 1 match among 3 kept.
    # Query 1 (id 2, cam 1): its only gallery image shares its camera: no true match, left out.
    qid, qcam = np.array([1, 2]), np.array([1, 1])
    gid, gcam = np.array([1, 1, 2, 3]), np.array([1, 2, 1, 2])
    assert chance_rank1(qid, qcam, gid, gcam) == pytest.approx(1 / 3)
    # Against the rank-1 of many uniformly random rankings through the evaluation itself:
    # Gaussian queries against orthonormal gallery rows give i.i.d. similarities.
    rng = np.random.default_rng(0)
    qid, qcam = rng.integers(0, 5, 40), rng.integers(0, 3, 40)
    gid, gcam = rng.integers(0, 5, 60), rng.integers(0, 3, 60)
    gallery = np.linalg.qr(rng.standard_normal((64, 60)))[0].T
    first, _, valid = metrics.reid_per_query(
        rng.standard_normal((40 * 200, 64)), np.tile(qid, 200), np.tile(qcam, 200),
        gallery, gid, gcam,
    )  # fmt: skip
    assert valid.any()
    empirical = np.mean(first[valid] == 0)
    assert chance_rank1(qid, qcam, gid, gcam) == pytest.approx(empirical, abs=0.02)
