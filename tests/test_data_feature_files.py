"""FastReID .npz feature files (invfeat/data/feature_files.py): round trip, validation errors
naming the file, atomic writes, alignment to dataset records."""

import os

import ml_dtypes
import numpy as np
import pytest

from invfeat.data import feature_files as ffs
from invfeat.data.feature_files import FeatureFile, FeatureFileError


def sample(n: int = 5, d: int = 4) -> FeatureFile:
    paths = np.array([f"bounding_box_test/{i:04d}_c1s1_000001_00.jpg" for i in range(n)])
    feats = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    return FeatureFile(paths, feats)


def test_round_trip_plain_and_encrypted(tmp_path):
    ff = sample()
    path = tmp_path / "feats.npz"
    ffs.write_features(path, ff)
    back = ffs.read_features(path, encrypted=False)
    assert np.array_equal(back.paths, ff.paths) and np.array_equal(back.features, ff.features)
    assert back.encryption is None and back.nonces is None
    with np.load(path) as raw:  # what a FastReID reader sees
        assert set(raw.files) == {ffs.PATHS_KEY, ffs.FEATURES_KEY}

    nan_rows = ff.features.copy()
    nan_rows[0, 0] = np.nan  # ciphertext may be any bit pattern
    nonces = np.arange(15, dtype=np.uint32).reshape(5, 3)
    enc = FeatureFile(ff.paths, nan_rows, "one-time", nonces)
    ffs.write_features(path, enc)
    back = ffs.read_features(path, encrypted=True)
    assert back.encryption == "one-time" and np.array_equal(back.nonces, nonces)
    with np.load(path) as raw:
        assert np.array_equal(raw[ffs.PATHS_KEY], ff.paths)
        assert raw[ffs.FEATURES_KEY].shape == (5, 4)
    with pytest.raises(FeatureFileError, match="is encrypted"):
        ffs.read_features(path, encrypted=False)


def stream_sample(n: int = 5) -> FeatureFile:
    """A stream-mode file's layout (the tags are arbitrary bytes: verifying them needs the key,
    which this layer never sees)."""
    ff = sample(n)
    nonces = np.arange(3 * n, dtype=np.uint32).reshape(n, 3)
    tags = np.random.default_rng(1).integers(0, 256, (n, 16), np.uint8)
    return FeatureFile(ff.paths, ff.features, "stream", nonces, tags=tags)


def test_stream_files_store_nonces_and_tags(tmp_path):
    ff = stream_sample()
    path = tmp_path / "stream.npz"
    ffs.write_features(path, ff)
    back = ffs.read_features(path, encrypted=True)
    assert back.encryption == "stream"
    assert back.nonces.dtype == np.uint32 and np.array_equal(back.nonces, ff.nonces)
    assert back.tags.dtype == np.uint8 and np.array_equal(back.tags, ff.tags)
    assert ffs.TAGS_KEY not in back.extras and ffs.NONCES_KEY not in back.extras
    with np.load(path) as raw:
        assert set(raw.files) == {
            ffs.PATHS_KEY, ffs.FEATURES_KEY, ffs.ENCRYPTION_KEY, ffs.NONCES_KEY, ffs.TAGS_KEY
        }  # fmt: skip
    one_time = FeatureFile(ff.paths, ff.features, "one-time", ff.nonces, tags=ff.tags)
    with pytest.raises(FeatureFileError, match="has invfeat_tags but is not stream"):
        ffs.write_features(tmp_path / "x.npz", one_time)


def test_repeated_stream_nonces_are_refused_on_write_and_read(tmp_path):
    ff = stream_sample()
    nonces = ff.nonces.copy()
    nonces[3] = nonces[1]
    repeated = FeatureFile(ff.paths, ff.features, "stream", nonces, tags=ff.tags)
    path = tmp_path / "repeated.npz"
    message = rf"share a nonce.*rows 1 \({ff.paths[1]}\) and 3 \({ff.paths[3]}\)"
    with pytest.raises(FeatureFileError, match=message):
        ffs.write_features(path, repeated)
    assert not path.exists()
    meta = np.array('{"version": 1, "scheme": "stream"}')
    layout = {ffs.PATHS_KEY: ff.paths, ffs.FEATURES_KEY: ff.features, ffs.ENCRYPTION_KEY: meta}
    path = _raw(tmp_path, **layout, invfeat_nonces=nonces, invfeat_tags=ff.tags)
    with pytest.raises(FeatureFileError, match=message) as err:
        ffs.read_features(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "tags,found",
    [
        (None, "found none"),
        (np.zeros((5, 15), np.uint8), r"found uint8 \(5, 15\)"),
        (np.zeros((4, 16), np.uint8), r"found uint8 \(4, 16\)"),
        (np.zeros((5, 4), np.uint32), r"found uint32 \(5, 4\)"),
    ],
    ids=["missing", "short", "rows", "dtype"],
)
def test_stream_files_without_good_tags_are_refused(tmp_path, tags, found):
    ff = stream_sample()
    meta = np.array('{"version": 1, "scheme": "stream"}')
    arrays = {ffs.PATHS_KEY: ff.paths, ffs.FEATURES_KEY: ff.features, ffs.ENCRYPTION_KEY: meta}
    arrays[ffs.NONCES_KEY] = ff.nonces
    if tags is not None:
        arrays[ffs.TAGS_KEY] = tags
    path = _raw(tmp_path, **arrays)
    with pytest.raises(FeatureFileError, match=rf"invfeat_tags of uint8 \[5, 16\].*{found}"):
        ffs.read_features(path)
    without_nonces = {k: v for k, v in arrays.items() if k != ffs.NONCES_KEY}
    path = _raw(tmp_path, "no_nonces.npz", **without_nonces)
    with pytest.raises(FeatureFileError, match="stream encryption needs invfeat_nonces"):
        ffs.read_features(path)


def _raw(tmp_path, name="bad.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "arrays,message",
    [
        (dict(accumulated_feature_array=np.zeros((2, 3), np.float32)), "missing key"),
        (
            dict(
                accumulated_image_file_paths=np.array(["a", "b"]),
                accumulated_feature_array=np.zeros(3, np.float32),
            ),
            "2-D float",
        ),
        (
            dict(
                accumulated_image_file_paths=np.array(["a", "b"]),
                accumulated_feature_array=np.zeros((2, 3), np.int32),
            ),
            "2-D float",
        ),
        (
            dict(
                accumulated_image_file_paths=np.array(["a", "b", "c"]),
                accumulated_feature_array=np.zeros((2, 3), np.float32),
            ),
            "3 paths but 2",
        ),
        (
            dict(
                accumulated_image_file_paths=np.array(["a", "./a"]),
                accumulated_feature_array=np.zeros((2, 3), np.float32),
            ),
            "duplicate paths",
        ),
        (
            dict(
                accumulated_image_file_paths=np.array(["a", "b"]),
                accumulated_feature_array=np.full((2, 3), np.nan, np.float32),
            ),
            "NaN",
        ),
        (
            dict(
                accumulated_image_file_paths=np.array(["a", "b"]),
                accumulated_feature_array=np.zeros((2, 3), np.float32),
                invfeat_encryption=np.array('{"version": 1, "scheme": "one-time"}'),
            ),
            "nonces",
        ),
        (
            dict(
                accumulated_image_file_paths=np.array(["a", "b"]),
                accumulated_feature_array=np.zeros((2, 3), np.float32),
                invfeat_encryption=np.array("{bad"),
            ),
            "metadata",
        ),
        (
            dict(
                accumulated_image_file_paths=np.array(["a", "b"], dtype=object),
                accumulated_feature_array=np.zeros((2, 3), np.float32),
            ),
            "pickled",
        ),
        (
            dict(
                accumulated_image_file_paths=np.array(["a", "b"]),
                accumulated_feature_array=np.zeros((2, 3), ml_dtypes.bfloat16),  # saved as |V2
            ),
            "untyped 2-byte values .* as numpy saves bfloat16",
        ),
    ],
)
def test_bad_files_name_the_file(tmp_path, arrays, message):
    path = _raw(tmp_path, **arrays)
    with pytest.raises(FeatureFileError, match=message) as err:
        ffs.read_features(path)
    assert str(path) in str(err.value)


def test_unreadable_and_missing(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(FeatureFileError, match="not a readable"):
        ffs.read_features(junk)
    with pytest.raises(FeatureFileError, match="no such"):
        ffs.read_features(tmp_path / "nope.npz")


def test_dataset_paths_and_alignment(tmp_path):
    ff = sample()
    path = tmp_path / "f.npz"
    ffs.write_features(path, ff)
    dataset = [str(p) for p in ff.paths]
    ffs.read_features(path, dataset_paths=dataset)
    with pytest.raises(FeatureFileError, match="1 dataset images missing"):
        ffs.read_features(path, dataset_paths=dataset + ["query/x.jpg"])
    with pytest.raises(FeatureFileError, match="1 paths not in the dataset"):
        ffs.read_features(path, dataset_paths=dataset[1:])
    records = [dataset[3], "./" + dataset[0], dataset[3].replace("/", "\\")]
    rows = ffs.align_to_records(ff, records)
    assert rows.tolist() == [3, 0, 3]
    with pytest.raises(FeatureFileError, match="lacks 1 record paths"):
        ffs.align_to_records(ff, ["query/missing.jpg"])


def test_invalid_write_leaves_nothing(tmp_path):
    ff = sample()
    bad = FeatureFile(ff.paths[:3], ff.features)
    path = tmp_path / "out.npz"
    with pytest.raises(FeatureFileError, match="3 paths but 5"):
        ffs.write_features(path, bad)
    assert os.listdir(tmp_path) == []
    ffs.write_features(path, ff)
    before = path.read_bytes()
    with pytest.raises(FeatureFileError):
        ffs.write_features(path, bad)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["out.npz"]


def test_alignment_by_trailing_components():
    """Paths written elsewhere (absolute, another root) match records by their last components."""
    names = np.array(
        [
            "/data/Market-1501-v15.09.15/query/0001_c1s1_001051_00.jpg",
            "C:\\sets\\market\\bounding_box_test\\0001_c2s1_000976_03.jpg",
        ]
    )
    ff = FeatureFile(names, np.zeros((2, 4), np.float32))
    records = ["bounding_box_test/0001_c2s1_000976_03.jpg", "query/0001_c1s1_001051_00.jpg"]
    assert ffs.align_to_records(ff, records).tolist() == [1, 0]
    with pytest.raises(FeatureFileError, match="lacks 1 record paths"):
        ffs.align_to_records(ff, ["gallery/0001_c1s1_001051_00.jpg"])
    twice = FeatureFile(np.array(["a/query/x.jpg", "b/query/x.jpg"]), np.zeros((2, 4), np.float32))
    with pytest.raises(FeatureFileError, match="both end in query/x.jpg"):
        ffs.align_to_records(twice, ["query/x.jpg"])
