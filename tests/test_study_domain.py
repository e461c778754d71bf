"""The attack domain of a study (invfeat/study/domain.py): served feature files are read back
only when they hold the current records, and ciphertext whose one-time secret is gone is refused."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.worlds import TINY_STUDY_DATA as SETTINGS
from helpers.worlds import tiny_study_names

from invfeat import shufflebits
from invfeat.data.datasets import SPLITS
from invfeat.data.feature_files import FeatureFile, write_features
from invfeat.study.config import StudyConfig
from invfeat.study.domain import serve_attack_domain
from invfeat.victims.from_files import FileVictim


def _serve_files(stage_dir, data_dir, secret, rename=None):
    """Plain and one-time cipher files of every split, as a finished features stage leaves them."""
    for split in SPLITS:
        names = tiny_study_names(data_dir, split)
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


def test_served_features_of_the_current_records_are_read_back(tiny_study_data_dir, tmp_path):
    secret = shufflebits.Secret.generate()
    _serve_files(tmp_path, tiny_study_data_dir, secret)
    config = _file_victim_config()
    domain = serve_attack_domain(config, config.victim, secret, tmp_path, tiny_study_data_dir)
    assert domain.plain["query"].shape == (len(tiny_study_names(tiny_study_data_dir, "query")), 4)


def test_served_features_of_other_records_are_refused(tiny_study_data_dir, tmp_path):
    secret = shufflebits.Secret.generate()
    _serve_files(tmp_path, tiny_study_data_dir, secret, rename="query")
    config = _file_victim_config()
    with pytest.raises(ValueError, match="plain_query.npz: served from other records"):
        serve_attack_domain(config, config.victim, secret, tmp_path, tiny_study_data_dir)


def test_ciphertext_whose_secret_is_gone_is_refused(tmp_path):
    from invfeat.study.domain import SECRET_FILE, one_time_secret

    first = one_time_secret(tmp_path / SECRET_FILE)
    assert one_time_secret(tmp_path / SECRET_FILE).words().tobytes() == first.words().tobytes()
    (tmp_path / "cipher_train.npz").write_bytes(b"served under the first secret")
    (tmp_path / SECRET_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="one-time secret of cipher_train.npz"):
        one_time_secret(tmp_path / SECRET_FILE)
    assert not (tmp_path / SECRET_FILE).exists()
