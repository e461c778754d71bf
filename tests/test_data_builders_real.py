"""Builders of the real sets (invfeat/data/builders/): end to end on tiny fake trees, read back
through tfds.data_source; missing splits, empty or unreadable images, identities the attribute
tables lack, a folder of another dataset; the registry and the default data dir."""

from __future__ import annotations

import shutil
import sys
import warnings

import cv2
import numpy as np
import pytest
from helpers import fake_trees

from invfeat.data import builders
from invfeat.data.attributes import load_attribute_table
from invfeat.data.builders.common import attributes_from_metadata, decode_image
from invfeat.data.layouts import LayoutWarning

pytestmark = pytest.mark.filterwarnings("ignore::invfeat.data.layouts.LayoutWarning")


def _build(name, tmp_path, make_tree):
    make_tree(tmp_path / "manual")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayoutWarning)  # partial copies: counts differ
        b = builders.build(name, data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    return b, {s: builders.open_split(name, s, data_dir=tmp_path / "data") for s in b.info.splits}


def _records(source):
    return {r["file_name"].decode(): r for r in (source[i] for i in range(len(source)))}


def test_market1501_end_to_end(tmp_path):
    b, sources = _build("market1501", tmp_path, fake_trees.market_tree)
    assert {s: len(src) for s, src in sources.items()} == {"train": 4, "query": 2, "gallery": 5}
    assert b.info.metadata["num_identities"] == {"train": 2, "query": 2, "gallery": 3}
    assert b.info.metadata["junk_images_dropped"] == 1
    train = _records(sources["train"])
    record = train["bounding_box_train/0007_c3s3_077419_03.jpg"]
    assert (record["identity"], record["camera"]) == (7, 3)
    table = load_attribute_table("market1501", "train")
    np.testing.assert_array_equal(record["attributes"], table.lookup([7])[0])
    # The stored bytes are the file's bytes; they decode to the same pixels as OpenCV reads.
    path = tmp_path / "manual/Market-1501-v15.09.15/bounding_box_train/0007_c3s3_077419_03.jpg"
    assert record["image"] == path.read_bytes()
    expected = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decode_image(record["image"]), expected)
    gallery = _records(sources["gallery"])
    assert "bounding_box_test/-1_c1s1_000401_03.jpg" not in gallery  # junk
    distractor = gallery["bounding_box_test/0000_c1s1_000151_01.jpg"]
    assert distractor["identity"] == 0 and (distractor["attributes"] == -1).all()
    test_table = load_attribute_table("market1501", "test")
    query = _records(sources["query"])["query/0003_c1s6_015971_00.jpg"]
    np.testing.assert_array_equal(query["attributes"], test_table.lookup([3])[0])
    names = [a.name for a in attributes_from_metadata(b.info.metadata)]
    assert names == list(table.names) and len(names) == 27
    assert "tensorflow" not in sys.modules


def test_dukemtmc_reid_end_to_end(tmp_path):
    b, sources = _build("dukemtmc_reid", tmp_path, fake_trees.duke_tree)
    assert {s: len(src) for s, src in sources.items()} == {"train": 4, "query": 2, "gallery": 3}
    gallery = _records(sources["gallery"])
    assert (gallery["bounding_box_test/5000_c3_f0012345.jpg"]["attributes"] == -1).all()
    record = gallery["bounding_box_test/0002_c7_f0044402.jpg"]
    assert (record["identity"], record["camera"]) == (2, 7)
    expected = load_attribute_table("dukemtmc_reid", "test").lookup([2])[0]
    np.testing.assert_array_equal(record["attributes"], expected)
    assert record["attributes"].shape == (23,) and (record["attributes"] >= 0).all()
    assert b.info.metadata["identities_without_attributes"] == {"gallery": [5000]}


def test_msmt17_end_to_end_with_val_and_no_attributes(tmp_path):
    b, sources = _build("msmt17", tmp_path, fake_trees.msmt_tree)
    sizes = {s: len(src) for s, src in sources.items()}
    assert sizes == {"train": 3, "val": 1, "query": 1, "gallery": 2}
    record = _records(sources["gallery"])["mask_test_v2/0004/0004_000_15_0113morning_0012_0.jpg"]
    assert (record["identity"], record["camera"]) == (4, 15)
    assert record["attributes"].shape == (0,)
    assert b.info.metadata["attributes"] == []


@pytest.mark.filterwarnings("ignore:.*partial copy")
def test_unreadable_image_is_left_out_by_name(tmp_path):
    base = fake_trees.market_tree(tmp_path / "manual")
    (base / "query/0003_c1s6_015971_00.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(LayoutWarning, match="0003_c1s6_015971_00.jpg: left out: cannot decode"):
        b = builders.build("market1501", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    source = builders.open_split("market1501", "query", data_dir=tmp_path / "data")
    assert [source[i]["file_name"] for i in range(len(source))] == [
        b"query/0001_c1s1_001051_00.jpg"
    ]
    assert ["query/0003_c1s6_015971_00.jpg", "cannot decode"] in b.info.metadata["rejected_files"]


def test_registry_names_and_errors(tmp_path):
    assert {"market1501", "dukemtmc_reid", "msmt17"} <= set(builders.REGISTRY)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        builders.build("nope", data_dir=tmp_path)
    assert (
        "Market-1501-v15.09.15" in builders.builder_class("market1501").MANUAL_DOWNLOAD_INSTRUCTIONS
    )


def test_default_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.delenv(builders.DATA_DIR_ENV, raising=False)
    assert str(builders.default_data_dir()) == "data"
    monkeypatch.setenv(builders.DATA_DIR_ENV, str(tmp_path))
    assert builders.default_data_dir() == tmp_path


def test_a_folder_of_another_dataset_is_refused_not_built_empty(tmp_path):
    # DukeMTMC-reID files unpacked where Market-1501 is expected: no name follows Market's scheme.
    fake_trees.duke_tree(tmp_path / "other").rename(tmp_path / "Market-1501-v15.09.15")
    with pytest.raises(
        ValueError, match="Market-1501-v15.09.15: no market1501 image found .9 files"
    ):
        builders.build("market1501", data_dir=tmp_path / "data", manual_dir=tmp_path)
    # Nothing was written that a later build (on the right files) would mistake for a dataset.
    (tmp_path / "Market-1501-v15.09.15").rename(tmp_path / "wrong")
    fake_trees.market_tree(tmp_path)
    b = builders.build("market1501", data_dir=tmp_path / "data", manual_dir=tmp_path)
    assert b.info.splits["train"].num_examples == 4


def test_a_missing_split_is_refused_and_nothing_is_kept(tmp_path):
    base = fake_trees.market_tree(tmp_path / "manual")
    shutil.move(base / "query", tmp_path / "query-elsewhere")
    with pytest.raises(ValueError, match=r"split\(s\) query missing \(query: .*query is missing\)"):
        builders.build("market1501", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    # The user moves the folder back: the next build is a real one, not a reuse of a partial one.
    shutil.move(tmp_path / "query-elsewhere", base / "query")
    b = builders.build("market1501", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    assert sorted(b.info.splits) == ["gallery", "query", "train"]


def test_empty_and_unreadable_images_are_left_out_by_name(tmp_path):
    base = fake_trees.market_tree(tmp_path / "manual")
    (base / "bounding_box_test/0001_c2s1_000976_03.jpg").write_bytes(b"")  # interrupted copy
    whole = (base / "query/0003_c1s6_015971_00.jpg").read_bytes()
    (base / "query/0003_c1s6_015971_00.jpg").write_bytes(whole[: len(whole) // 2])  # truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = builders.build("market1501", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    messages = [str(w.message) for w in caught if issubclass(w.category, LayoutWarning)]
    assert any("0001_c2s1_000976_03.jpg: left out: cannot decode image" in m for m in messages)
    assert any("0003_c1s6_015971_00.jpg: left out: cannot decode" in m for m in messages)
    rejected = b.info.metadata["rejected_files"]
    assert ["bounding_box_test/0001_c2s1_000976_03.jpg", "cannot decode"] in rejected
    assert ["query/0003_c1s6_015971_00.jpg", "cannot decode"] in rejected
    assert {s: b.info.splits[s].num_examples for s in b.info.splits} == {
        "train": 4,
        "query": 1,
        "gallery": 4,
    }


def test_identities_the_attribute_table_lacks_are_warned_about(tmp_path):
    # Identity 1 is a Market-1501 test identity: the train table has no row for it.
    files = {**fake_trees.MARKET_FILES}
    files["bounding_box_train"] = (*files["bounding_box_train"], "0001_c1s1_000001_01.jpg")
    fake_trees.folder_tree(tmp_path / "manual" / "Market-1501-v15.09.15", files)
    with pytest.warns(LayoutWarning, match=r"market1501/train: 1 identities have no row .*\(1\)"):
        b = builders.build("market1501", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    assert b.info.metadata["identities_without_attributes"] == {"train": [1]}
