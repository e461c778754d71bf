"""Real-dataset builders end to end on tiny fake trees, read back through tfds.data_source."""

from __future__ import annotations

import sys
import warnings

import cv2
import fake_trees
import numpy as np
import pytest

from invfeat.data import builders
from invfeat.data.attributes import load_attribute_table
from invfeat.data.builders.common import attributes_from_metadata, decode_image
from invfeat.data.layouts import LayoutWarning


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


@pytest.mark.filterwarnings("ignore::invfeat.data.layouts.LayoutWarning")
def test_cli_build_prints_images_and_identities(tmp_path, capsys):
    import argparse

    from experiments import data as data_cli

    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="group"))
    fake_trees.duke_tree(tmp_path / "manual")
    argv = ["data", "build", "--dataset", "dukemtmc_reid", "--data-dir", str(tmp_path / "data")]
    args = parser.parse_args(argv)
    assert args.func(args) == 2  # no --manual-dir: an error line, then the instructions
    assert "DukeMTMC-reID" in capsys.readouterr().err
    args = parser.parse_args([*argv, "--manual-dir", str(tmp_path / "manual")])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    lines = lines[[line.split()[:1] for line in lines].index(["split"]) + 1 :]
    rows = {line.split()[0]: line.split()[1:] for line in lines}
    assert rows == {"train": ["4", "2"], "query": ["2", "2"], "gallery": ["3", "3"]}
    # Built already: a second run reads the counts back from disk.
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines()[-3:] == lines


@pytest.mark.filterwarnings("ignore::invfeat.data.layouts.LayoutWarning")
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
