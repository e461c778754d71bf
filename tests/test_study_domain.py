"""A study's run folder meets other data: stale served features and changed splits are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.configs import get_study
from invfeat import shufflebits
from invfeat.data.datasets import SPLITS, open_dataset_split, prepare_dataset
from invfeat.data.feature_files import FeatureFile, write_features
from invfeat.data.pipeline import read_labels
from invfeat.study import report
from invfeat.study.config import StudyConfig
from invfeat.study.domain import serve_attack_domain
from invfeat.study.run import run_study
from invfeat.victims.from_files import FileVictim

TINY = get_study("tiny")
SETTINGS = TINY.attack_data_settings


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    prepare_dataset("synth_market", data_dir=root, data_settings=SETTINGS)
    return root


def _names(data_dir, split):
    source = open_dataset_split("synth_market", split, data_dir=data_dir, data_settings=SETTINGS)
    return read_labels(source)["file_name"]


def _serve_files(stage_dir, data_dir, secret, rename=None):
    """Plain and one-time cipher files of every split, as a finished features stage leaves them."""
    for split in SPLITS:
        names = _names(data_dir, split)
        if rename is not None and split == rename:
            names = np.roll(names, 1)  # the same records in another order: other data
        plain = np.random.default_rng(0).standard_normal((len(names), 4)).astype(np.float32)
        nonces = shufflebits.fresh_nonces(len(names))
        cipher = np.asarray(shufflebits.encrypt(plain, secret, nonces))
        write_features(stage_dir / f"plain_{split}.npz", FeatureFile(names, plain))
        write_features(
            stage_dir / f"cipher_{split}.npz", FeatureFile(names, cipher, "one-time", nonces)
        )


def _file_victim_config():
    return StudyConfig(
        name="t", description="", victim=FileVictim("v", image_size=(32, 16)),
        attack_dataset="synth_market", attack_data_settings=SETTINGS,
    )  # fmt: skip


def test_served_features_of_the_current_records_are_read_back(data_dir, tmp_path):
    secret = shufflebits.Secret.generate()
    _serve_files(tmp_path, data_dir, secret)
    config = _file_victim_config()
    domain = serve_attack_domain(config, config.victim, secret, tmp_path, data_dir)
    assert domain.plain["query"].shape == (len(_names(data_dir, "query")), 4)


def test_served_features_of_other_records_are_refused(data_dir, tmp_path):
    secret = shufflebits.Secret.generate()
    _serve_files(tmp_path, data_dir, secret, rename="query")
    config = _file_victim_config()
    with pytest.raises(ValueError, match="plain_query.npz: served from other records"):
        serve_attack_domain(config, config.victim, secret, tmp_path, data_dir)


def test_a_run_begun_on_data_of_other_sizes_is_refused(data_dir, tmp_path):
    config = TINY.replace_nested(victim={"dataset": "synth_market", "data_settings": SETTINGS})
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    report.write_json(config.to_dict(), run / "config.json")
    sizes = {split: len(_names(data_dir, split)) + 1 for split in SPLITS}
    record = {"seconds": 1.0, "result": {"synth_market": sizes}}
    (run / "data" / "result.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="made from other data"):
        run_study(config, run, data_dir=data_dir, progress=False)
    assert not (run / "victim").exists()


def test_chance_rank1_follows_the_evaluation_protocol():
    from invfeat.victims import chance_rank1

    # Query 0 (id 1, cam 1): the cam-1 image of id 1 is excluded; 1 match among 3 kept.
    # Query 1 (id 2, cam 1): its only gallery image shares its camera: no true match, left out.
    qid, qcam = np.array([1, 2]), np.array([1, 1])
    gid, gcam = np.array([1, 1, 2, 3]), np.array([1, 2, 1, 2])
    assert chance_rank1(qid, qcam, gid, gcam) == pytest.approx(1 / 3)
    # Against the rank-1 of many uniformly random rankings through the evaluation itself:
    # Gaussian queries against orthonormal gallery rows give i.i.d. similarities.
    from invfeat import metrics

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


def test_ciphertext_whose_secret_is_gone_is_refused(tmp_path):
    from invfeat.study.domain import SECRET_FILE, one_time_secret

    first = one_time_secret(tmp_path / SECRET_FILE)
    assert one_time_secret(tmp_path / SECRET_FILE).words().tobytes() == first.words().tobytes()
    (tmp_path / "cipher_train.npz").write_bytes(b"served under the first secret")
    (tmp_path / SECRET_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="one-time secret of cipher_train.npz"):
        one_time_secret(tmp_path / SECRET_FILE)
    assert not (tmp_path / SECRET_FILE).exists()
