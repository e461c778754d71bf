"""On-disk layouts of the real sets (invfeat/data/layouts.py): naming schemes, junk and
distractors, count warnings, rejected and missing files; MSMT17_V1 under a unicode path, archives
not unpacked, nested folders and split folders given as the root."""

from __future__ import annotations

import shutil
import warnings

import pytest
from helpers import fake_trees

from invfeat.data import builders, layouts
from invfeat.data.layouts import LayoutWarning

pytestmark = pytest.mark.filterwarnings("ignore::invfeat.data.layouts.LayoutWarning")


def _parse_quietly(dataset, root):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layout = layouts.parse(dataset, root)
    return layout, [str(w.message) for w in caught if issubclass(w.category, LayoutWarning)]


def test_market_splits_junk_distractor_and_count_warnings(tmp_path):
    fake_trees.market_tree(tmp_path)
    layout, messages = _parse_quietly("market1501", tmp_path)
    assert layout.root == tmp_path / "Market-1501-v15.09.15"
    assert [len(layout.splits[s]) for s in ("train", "query", "gallery")] == [4, 2, 5]
    assert layout.junk == 1 and layout.rejected == []
    gallery = {e.file_name: e for e in layout.splits["gallery"]}
    distractor = gallery["bounding_box_test/0000_c1s1_000151_01.jpg"]
    assert distractor.identity == 0 and distractor.distractor
    entry = gallery["bounding_box_test/0003_c5s1_000401_04.jpg"]
    assert (entry.identity, entry.camera, entry.distractor) == (3, 5, False)
    assert entry.path.is_file()
    # Partial copy: each folder's count is reported with both numbers.
    assert any("bounding_box_train: found 4 images, expected 12936" in m for m in messages)
    assert any("bounding_box_test: found 6 images, expected 19732" in m for m in messages)
    assert any("query: found 2 images, expected 3368" in m for m in messages)
    assert layout.num_identities("train") == 2


def test_misnamed_files_are_named_not_skipped_silently(tmp_path):
    base = fake_trees.market_tree(tmp_path)
    fake_trees.write_jpeg(base / "query" / "person_7.jpg", seed=1)
    (base / "query" / "Thumbs.db").write_bytes(b"x")  # OS clutter: ignored
    layout, messages = _parse_quietly("market1501", base)
    assert layout.rejected == [("query/person_7.jpg", "name does not follow the dataset's scheme")]
    assert any("1 files left out: query/person_7.jpg" in m for m in messages)
    assert len(layout.splits["query"]) == 2


def test_duke_names_and_cameras(tmp_path):
    fake_trees.duke_tree(tmp_path)
    layout, _ = _parse_quietly("dukemtmc_reid", tmp_path)
    assert [len(layout.splits[s]) for s in ("train", "query", "gallery")] == [4, 2, 3]
    cams = sorted((e.identity, e.camera) for e in layout.splits["train"])
    assert cams == [(1, 2), (1, 5), (8, 1), (8, 6)]
    assert not any(e.distractor for s in layout.splits.values() for e in s)


def test_msmt_lists_cameras_and_missing_files(tmp_path):
    base = fake_trees.msmt_tree(tmp_path)
    (base / "mask_test_v2/0004/0004_000_15_0113morning_0012_0.jpg").unlink()
    with (base / "list_query.txt").open("a") as f:
        f.write("not a valid line\n")
    layout, messages = _parse_quietly("msmt17", tmp_path)
    assert sorted(layout.splits) == ["gallery", "query", "train", "val"]
    train = layout.splits["train"]
    assert [(e.identity, e.camera) for e in train] == [(0, 1), (0, 5), (1, 2)]
    assert train[0].file_name == "mask_train_v2/0000/0000_000_01_0303morning_0015_0.jpg"
    assert [(e.identity, e.camera) for e in layout.splits["gallery"]] == [(0, 12)]
    reasons = dict(layout.rejected)
    assert (
        "listed in list_gallery.txt:2 but missing"
        in reasons["mask_test_v2/0004/0004_000_15_0113morning_0012_0.jpg"]
    )
    assert "malformed line" in reasons["list_query.txt:2"]
    assert any("list_train.txt: found 3 images, expected 30248" in m for m in messages)


def test_missing_root_names_what_was_tried(tmp_path):
    with pytest.raises(FileNotFoundError, match="bounding_box_train"):
        layouts.parse("dukemtmc_reid", tmp_path)
    with pytest.raises(ValueError, match="no on-disk parser"):
        layouts.parse("cuhk03", tmp_path)


def test_missing_split_folder_is_reported(tmp_path):
    base = fake_trees.market_tree(tmp_path)
    for p in (base / "query").iterdir():
        p.unlink()
    (base / "query").rmdir()
    layout, messages = _parse_quietly("market1501", base)
    assert "query" not in layout.splits
    assert layout.missing == {"query": f"{base / 'query'} is missing"}
    assert any("query is missing; split 'query' left out" in m for m in messages)


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
    b = builders.build("msmt17", data_dir=tmp_path / "da ta", manual_dir=manual)
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
