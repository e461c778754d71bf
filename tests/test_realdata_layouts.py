"""Real-data paths a user takes: MSMT17_V1, archives not unpacked, nested or wrong folders,
missing splits, empty image files, identities the attribute tables lack, unicode paths."""

from __future__ import annotations

import shutil
import warnings

import fake_trees
import pytest

from invfeat.data import builders, layouts
from invfeat.data.layouts import LayoutWarning

pytestmark = pytest.mark.filterwarnings("ignore::invfeat.data.layouts.LayoutWarning")


def _build(name, manual_dir, data_dir):
    return builders.build(name, data_dir=data_dir, manual_dir=manual_dir)


def test_msmt17_v1_layout_builds_under_a_unicode_path_with_spaces(tmp_path):
    manual = tmp_path / "my datasets ü 数据"
    fake_trees.msmt_tree(manual, version=1)
    layout = layouts.parse("msmt17", manual)
    assert layout.root == manual / "MSMT17_V1" and layout.rejected == []
    assert {s: len(e) for s, e in layout.splits.items()} == {
        "train": 3,
        "val": 1,
        "query": 1,
        "gallery": 2,
    }
    assert layout.splits["train"][0].file_name == "train/0000/0000_000_01_0303morning_0015_0.jpg"
    gallery = layout.splits["gallery"]
    assert [(e.file_name.split("/")[0], e.identity, e.camera) for e in gallery] == [
        ("test", 0, 12),
        ("test", 4, 15),
    ]
    b = _build("msmt17", manual, tmp_path / "da ta")
    assert {s: b.info.splits[s].num_examples for s in b.info.splits} == {
        "train": 3,
        "val": 1,
        "query": 1,
        "gallery": 2,
    }


def test_an_msmt17_root_without_image_folders_is_named(tmp_path):
    base = fake_trees.msmt_tree(tmp_path)
    shutil.rmtree(base / "mask_train_v2")
    shutil.rmtree(base / "mask_test_v2")
    with pytest.warns(LayoutWarning, match="no MSMT17 image folder .mask_train_v2/ and mask_test"):
        layout = layouts.parse("msmt17", tmp_path)
    assert layout.splits == {} and set(layout.missing) == {"train", "val", "query", "gallery"}


@pytest.mark.parametrize("archive", ["Market-1501-v15.09.15.zip", "market1501.tar.gz"])
def test_an_archive_not_unpacked_is_named(tmp_path, archive):
    (tmp_path / archive).write_bytes(b"PK\x03\x04")
    with pytest.raises(FileNotFoundError, match=f"holds {archive}: unpack it there first"):
        layouts.parse("market1501", tmp_path)
    with pytest.raises(FileNotFoundError, match="is a file, not a folder: unpack it"):
        layouts.parse("market1501", tmp_path / archive)


def test_nested_folder_is_found_and_a_split_folder_points_to_its_parent(tmp_path):
    base = fake_trees.market_tree(tmp_path / "Market-1501-v15.09.15")  # unzip -d of its own name
    assert layouts.find_root(tmp_path, "market1501") == base
    with pytest.raises(FileNotFoundError, match=f"pass {base}$"):
        layouts.find_root(base / "query", "market1501")


def test_a_missing_split_is_refused_and_nothing_is_kept(tmp_path):
    base = fake_trees.market_tree(tmp_path / "manual")
    shutil.move(base / "query", tmp_path / "query-elsewhere")
    with pytest.raises(ValueError, match=r"split\(s\) query missing \(query: .*query is missing\)"):
        _build("market1501", tmp_path / "manual", tmp_path / "data")
    # The user moves the folder back: the next build is a real one, not a reuse of a partial one.
    shutil.move(tmp_path / "query-elsewhere", base / "query")
    b = _build("market1501", tmp_path / "manual", tmp_path / "data")
    assert sorted(b.info.splits) == ["gallery", "query", "train"]


def test_empty_and_unreadable_images_are_left_out_by_name(tmp_path):
    base = fake_trees.market_tree(tmp_path / "manual")
    (base / "bounding_box_test/0001_c2s1_000976_03.jpg").write_bytes(b"")  # interrupted copy
    whole = (base / "query/0003_c1s6_015971_00.jpg").read_bytes()
    (base / "query/0003_c1s6_015971_00.jpg").write_bytes(whole[: len(whole) // 2])  # truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = _build("market1501", tmp_path / "manual", tmp_path / "data")
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
        b = _build("market1501", tmp_path / "manual", tmp_path / "data")
    assert b.info.metadata["identities_without_attributes"] == {"train": [1]}
