"""The attack domain of a study (invfeat/study/domain.py): served feature files are read back
only when they hold the current records and, stream, authentic; ciphertext whose key is gone is
refused; every protection's key is made once, 0600."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.worlds import TINY_STUDY_DATA as SETTINGS
from helpers.worlds import tiny_study_names

from invfeat import shufflebits
from invfeat.data.datasets import SPLITS
from invfeat.data.feature_files import FeatureFile, read_features, write_features
from invfeat.shufflebits.aead import TagError, stream_tags
from invfeat.study.config import PROTECTIONS, StudyConfig
from invfeat.study.domain import (
    KEY_TYPES,
    legitimate_reid,
    protection_keys,
    serve_attack_domain,
)
from invfeat.victims.from_files import FileVictim


def _keys():
    return {mode: kind.generate() for mode, kind in KEY_TYPES.items()}


def _serve_files(stage_dir, data_dir, keys, rename=None):
    """Plain and cipher files of every split, as a finished features stage leaves them."""
    for split in SPLITS:
        names = tiny_study_names(data_dir, split)
        if rename is not None and split == rename:
            names = np.roll(names, 1)  # the same records in another order: other data
        plain = np.random.default_rng(0).standard_normal((len(names), 4)).astype(np.float32)
        write_features(stage_dir / f"plain_{split}.npz", FeatureFile(names, plain))
        for mode, key in keys.items():
            nonces = shufflebits.fresh_nonces(len(names)) if mode != "static" else None
            cipher = np.asarray(shufflebits.encrypt(plain, key, nonces))
            tags = stream_tags(cipher, key, nonces) if mode == "stream" else None
            ff = FeatureFile(names, cipher, mode, nonces, tags=tags)
            write_features(stage_dir / f"{mode}_{split}.npz", ff)


def _file_victim_config():
    return StudyConfig(
        name="t", description="", victim=FileVictim("v", image_size=(32, 16)),
        attack_dataset="synth_market", attack_data_settings=SETTINGS,
    )  # fmt: skip


def test_served_features_of_the_current_records_are_read_back(tiny_study_data_dir, tmp_path):
    keys = _keys()
    _serve_files(tmp_path, tiny_study_data_dir, keys)
    config = _file_victim_config()
    domain = serve_attack_domain(config, config.victim, keys, tmp_path, tiny_study_data_dir)
    assert domain.plain["query"].shape == (len(tiny_study_names(tiny_study_data_dir, "query")), 4)
    for mode, key in keys.items():
        decrypted = shufflebits.decrypt(
            domain.cipher[mode]["query"], key, domain.nonces[mode]["query"]
        )
        np.testing.assert_array_equal(np.asarray(decrypted), domain.plain["query"])
        assert legitimate_reid(domain, mode, key)["bit_exact"] is True


def test_served_features_of_other_records_are_refused(tiny_study_data_dir, tmp_path):
    keys = _keys()
    _serve_files(tmp_path, tiny_study_data_dir, keys, rename="query")
    config = _file_victim_config()
    with pytest.raises(ValueError, match="plain_query.npz: served from other records"):
        serve_attack_domain(config, config.victim, keys, tmp_path, tiny_study_data_dir)


def test_a_tampered_stream_file_is_refused_naming_the_row(tiny_study_data_dir, tmp_path):
    keys = _keys()
    _serve_files(tmp_path, tiny_study_data_dir, keys)
    path = tmp_path / "stream_gallery.npz"
    ff = read_features(path)
    ff.features.view(np.uint32)[2, 1] ^= 1
    write_features(path, ff)
    config = _file_victim_config()
    with pytest.raises(TagError, match=f"row 2 \\({ff.paths[2]}\\)"):
        serve_attack_domain(config, config.victim, keys, tmp_path, tiny_study_data_dir)


def test_each_protection_gets_its_own_key_once_and_a_lost_key_is_refused(tmp_path):
    first = protection_keys(tmp_path, PROTECTIONS)
    assert {mode: type(key) for mode, key in first.items()} == KEY_TYPES
    for mode in PROTECTIONS:
        assert (tmp_path / "keys" / f"{mode}.json").stat().st_mode & 0o777 == 0o600
    assert protection_keys(tmp_path, PROTECTIONS) == first  # read back, not made again
    (tmp_path / "stream_train.npz").write_bytes(b"served under the first key")
    (tmp_path / "keys" / "stream.json").unlink()
    with pytest.raises(FileNotFoundError, match="stream key of stream_train.npz"):
        protection_keys(tmp_path, PROTECTIONS)
    assert not (tmp_path / "keys" / "stream.json").exists()


def test_a_key_file_of_another_protection_is_refused(tmp_path):
    protection_keys(tmp_path, ("static",))
    (tmp_path / "keys" / "static.json").rename(tmp_path / "keys" / "one-time.json")
    with pytest.raises(ValueError, match="holds a Key, not a one-time key"):
        protection_keys(tmp_path, ("one-time",))
