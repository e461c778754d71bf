"""Feature files of a dataset (invfeat/victims/extraction.py): one file per split whose paths are
the records and whose rows are the API's features; ciphertext files decrypt to the plain ones bit
exactly; existing files are refused before any work unless overwritten."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.worlds import TINY_MARKET as SETTINGS
from helpers.worlds import TINY_MARKET_VICTIM as CONFIG

from invfeat import shufflebits
from invfeat.data.datasets import dataset_splits, open_dataset_split
from invfeat.data.feature_files import read_features
from invfeat.shufflebits.aead import bad_stream_tags
from invfeat.victims import inference_model
from invfeat.victims.extraction import extract_features, feature_paths


def _extract(victim, data_dir, out, key=None):
    return extract_features(
        victim, "synth_market", out, key=key, data_dir=data_dir, data_settings=SETTINGS,
        batch_size=8, progress=False,
    )  # fmt: skip


def _record_names(data_dir, split):
    source = open_dataset_split("synth_market", split, data_dir=data_dir, data_settings=SETTINGS)
    return [source[i]["file_name"].decode() for i in range(len(source))]


@pytest.fixture(scope="module")
def plain(untrained_victim, tiny_market_dir, tmp_path_factory):
    return _extract(untrained_victim, tiny_market_dir, tmp_path_factory.mktemp("plain"))


def test_one_plain_file_per_split_whose_paths_are_the_records(
    plain, untrained_victim, tiny_market_dir
):
    assert dataset_splits("synth_market", data_dir=tiny_market_dir, data_settings=SETTINGS) == (
        "train", "query", "gallery"
    )  # fmt: skip
    assert list(plain) == ["train", "query", "gallery"]
    sizes = {"train": 6, "query": 2, "gallery": 4}
    for split, path in plain.items():
        assert path.name == f"{split}.npz"
        names = _record_names(tiny_market_dir, split)
        ff = read_features(path, encrypted=False, dataset_paths=names)
        assert list(ff.paths) == names and len(ff) == sizes[split]
        assert ff.features.shape == (sizes[split], inference_model(CONFIG).feature_dim)
        assert ff.features.dtype == np.float32 and np.isfinite(ff.features).all()
    assert plain["query"].parent == plain["train"].parent


def test_rows_are_the_api_features_of_the_records(plain, untrained_victim, tiny_market_dir):
    import cv2

    source = open_dataset_split(
        "synth_market", "query", data_dir=tiny_market_dir, data_settings=SETTINGS
    )
    h, w = untrained_victim.image_size
    images = np.stack(
        [
            cv2.resize(
                cv2.cvtColor(
                    cv2.imdecode(np.frombuffer(source[i]["image"], np.uint8), 1),
                    cv2.COLOR_BGR2RGB,
                ),
                (w, h),
                interpolation=cv2.INTER_AREA,
            )
            for i in range(len(source))
        ]
    )
    expected = untrained_victim.api(batch_size=8)(images)
    got = read_features(plain["query"]).features
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


KEY_TYPES = {
    "static": shufflebits.Key, "one-time": shufflebits.Secret, "stream": shufflebits.StreamKey
}  # fmt: skip


@pytest.mark.parametrize("scheme", list(KEY_TYPES))
def test_encrypted_files_decrypt_to_the_plain_files_bit_exactly(
    scheme, plain, untrained_victim, tiny_market_dir, tmp_path
):
    key = KEY_TYPES[scheme].generate()
    paths = _extract(untrained_victim, tiny_market_dir, tmp_path / "features.npz", key=key)
    assert paths["gallery"] == tmp_path / "features_gallery.npz"
    for split, path in paths.items():
        cipher = read_features(path, encrypted=True)
        reference = read_features(plain[split])
        assert cipher.encryption == scheme
        assert (cipher.nonces is not None) == (scheme != "static")
        assert (cipher.tags is not None) == (scheme == "stream")
        if scheme == "stream":  # tags of the served ciphertext, each verifying
            assert len(bad_stream_tags(cipher.features, key, cipher.nonces, cipher.tags)) == 0
        np.testing.assert_array_equal(cipher.paths, reference.paths)
        assert not np.array_equal(
            cipher.features.view(np.uint32), reference.features.view(np.uint32)
        )
        decrypted = np.asarray(shufflebits.decrypt(cipher.features, key, cipher.nonces))
        np.testing.assert_array_equal(decrypted.view(np.uint32), reference.features.view(np.uint32))


def test_feature_path_layouts(tmp_path):
    assert feature_paths(tmp_path / "f.npz", ["query"]) == {"query": tmp_path / "f_query.npz"}
    assert feature_paths(tmp_path / "out", ["val"]) == {"val": tmp_path / "out" / "val.npz"}


def test_existing_files_are_refused_before_any_work_unless_overwrite(
    untrained_victim, tiny_market_dir, tmp_path
):
    first = _extract(untrained_victim, tiny_market_dir, tmp_path / "out")
    before = {split: path.read_bytes() for split, path in first.items()}
    key = shufflebits.Secret.generate()
    with pytest.raises(FileExistsError, match="already exist.*overwrite"):
        _extract(untrained_victim, tiny_market_dir, tmp_path / "out", key=key)
    assert {split: path.read_bytes() for split, path in first.items()} == before
    again = extract_features(
        untrained_victim, "synth_market", tmp_path / "out", key=key, data_dir=tiny_market_dir,
        data_settings=SETTINGS, batch_size=8, overwrite=True, progress=False,
    )  # fmt: skip
    assert read_features(again["query"], encrypted=True).encryption == "one-time"
