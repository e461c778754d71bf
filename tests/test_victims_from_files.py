"""A victim known by its FastReID feature files (invfeat/victims/from_files.py): `aligned_features`
reads files as FastReID users have them (paths from other machines, absolute or Windows; half or
double precision; extra rows) in record order, and names missing images and non-finite values."""

from __future__ import annotations

import numpy as np
import pytest

from invfeat.data.feature_files import FeatureFileError
from invfeat.victims.from_files import aligned_features

RECORDS = ["query/0003_c1s6_015971_00.jpg", "query/0001_c1s1_001051_00.jpg"]


def _write(path, paths, features):
    np.savez(path, accumulated_image_file_paths=np.array(paths), accumulated_feature_array=features)
    return path


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_rows_from_another_machine_align_in_any_float_precision(tmp_path, dtype):
    paths = [
        "C:\\Users\\me\\Market-1501-v15.09.15\\query\\0001_c1s1_001051_00.jpg",
        "/home/x/datasets/Market-1501-v15.09.15/query/0003_c1s6_015971_00.jpg",
        "/home/x/datasets/Market-1501-v15.09.15/query/0004_c1s6_016996_00.jpg",  # extra row
    ]
    features = np.arange(6, dtype=dtype).reshape(3, 2) / 4
    path = _write(tmp_path / "query.npz", paths, features)
    aligned = aligned_features(path, RECORDS)
    assert aligned.dtype == np.float32
    np.testing.assert_array_equal(aligned, features[[1, 0]].astype(np.float32))


def test_missing_images_are_named_with_what_the_file_holds(tmp_path):
    path = _write(tmp_path / "query.npz", ["0003_c1s6_015971_00.jpg"], np.zeros((1, 2), np.float32))
    with pytest.raises(
        FeatureFileError,
        match=r"query.npz: feature file lacks 2 record paths \(e.g. query/0001.*\); "
        r"its 1 paths look like 0003_c1s6_015971_00.jpg$",
    ):
        aligned_features(path, RECORDS)


def test_infinite_features_are_refused_naming_a_row(tmp_path):
    features = np.array([[0.5, 1.0], [np.inf, 0.0]], np.float16)
    path = _write(tmp_path / "query.npz", ["query/a.jpg", "query/b.jpg"], features)
    with pytest.raises(
        FeatureFileError, match=r"NaN or infinity .* in 1 rows \(e.g. query/b.jpg\)"
    ):
        aligned_features(path, ["query/a.jpg"])
