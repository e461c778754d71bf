"""The real attribute tables (invfeat/data/attributes.py), read from the packaged .mat files."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from invfeat.data import attributes as attr

COUNTS = {  # (dataset, split) -> (identities, attributes)
    ("market1501", "train"): (751, 27),
    ("market1501", "test"): (750, 27),
    ("dukemtmc_reid", "train"): (702, 23),
    ("dukemtmc_reid", "test"): (1110, 23),
}


@pytest.mark.parametrize("dataset,split", sorted(COUNTS))
def test_counts_and_value_ranges(dataset, split):
    table = attr.load_attribute_table(dataset, split)
    n, a = COUNTS[dataset, split]
    assert table.values.shape == (n, a) and table.identities.shape == (n,)
    assert len(np.unique(table.identities)) == n
    for i, attribute in enumerate(table.attributes):
        column = table.values[:, i]
        assert column.min() >= -1 and column.max() < attribute.num_classes, attribute.name


def test_fields_are_read_by_name_not_position():
    """The .mat orders fields differently in train and test; columns must not depend on it."""
    mat = scipy.io.loadmat(str(attr.packaged_mat_path("market1501")))["market_attribute"]
    train_fields = mat["train"][0, 0].dtype.names
    test_fields = mat["test"][0, 0].dtype.names
    assert train_fields != test_fields  # the premise
    for split in ("train", "test"):
        table = attr.load_attribute_table("market1501", split)
        raw = mat[split][0, 0]
        for name in ("age", "gender", "upred", "downbrown"):
            expected = raw[name][0, 0].ravel().astype(np.int64) - 1
            np.testing.assert_array_equal(table.column(name), expected)


def test_labels_follow_the_readme():
    table = attr.load_attribute_table("market1501", "train")
    assert table.names[:10] == (
        "gender", "hair", "up", "down", "clothes", "hat", "backpack", "bag", "handbag", "age",
    )  # fmt: skip
    assert table.attribute("age").labels == ("young", "teenager", "adult", "old")
    assert table.attribute("gender").labels == ("male", "female")
    # identity 2 (first train row): gender=1 (male), age=2 (teenager) in the .mat file.
    row = table.row(2)
    assert row["gender"] == 0 and row["age"] == 1 and row["upred"] == 1
    duke = attr.load_attribute_table("dukemtmc_reid", "test")
    assert duke.attribute("shoes").labels == ("dark", "light")
    assert len(duke.attributes) == 23 and "upbrown" in duke.names


def test_unannotated_values_become_unknown():
    """Two DukeMTMC train identities have `top` = 0 in the file (not annotated) -> -1."""
    top = attr.load_attribute_table("dukemtmc_reid", "train").column("top")
    assert int(np.sum(top == -1)) == 2


# Exact counts on the real files: identities with zero / several colour flags per group.
DROPPED = {
    ("market1501", "train"): ({"up": (78, 0), "down": (30, 0)}, 102),
    ("market1501", "test"): ({"up": (69, 0), "down": (44, 0)}, 103),
    ("dukemtmc_reid", "train"): ({"up": (1, 0), "down": (0, 0)}, 1),
    ("dukemtmc_reid", "test"): ({"up": (14, 0), "down": (11, 23)}, 48),
}


@pytest.mark.parametrize("dataset,split", sorted(DROPPED))
def test_merge_colours_drops_and_counts(dataset, split):
    raw = attr.load_attribute_table(dataset, split)
    merged = attr.load_attribute_table(dataset, split, merge_colours=True)
    per_group, total = DROPPED[dataset, split]
    for group, (none, several) in per_group.items():
        flags = np.stack([raw.column(n) for n in raw.names if n.startswith(group) and n != group])
        assert int(np.sum(flags.sum(0) == 0)) == none  # recount independently
        assert merged.dropped[f"{group}_colour_none"] == none
        assert merged.dropped[f"{group}_colour_several"] == several
    assert len(merged.dropped_identities) == total
    assert len(merged) == len(raw) - total
    assert merged.names[-2:] == ("up_colour", "down_colour")
    assert not any(n.startswith(("upb", "downb")) for n in merged.names)
    # Every kept identity's merged colour is the one flag set in the raw table.
    up = merged.attribute("up_colour")
    for identity in merged.identities[:50]:
        raw_row, merged_row = raw.row(int(identity)), merged.row(int(identity))
        colour = up.labels[merged_row["up_colour"]]
        assert raw_row[f"up{colour}"] == 1
        assert sum(raw_row[f"up{c}"] for c in up.labels) == 1


def test_lookup_fills_unknown_identities():
    table = attr.load_attribute_table("market1501", "test")
    values = table.lookup([3, 0, -1, 1])
    np.testing.assert_array_equal(values[0], table.values[table.identities == 3][0])
    np.testing.assert_array_equal(values[3], table.values[table.identities == 1][0])
    assert (values[1:3] == -1).all()


def test_schema_matches_tables():
    for dataset in attr.DATASETS:
        for merge in (False, True):
            table = attr.load_attribute_table(dataset, "test", merge_colours=merge)
            assert attr.attribute_schema(dataset, merge_colours=merge) == table.attributes


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="cuhk03"):
        attr.load_attribute_table("cuhk03", "train")
    with pytest.raises(ValueError, match="split"):
        attr.load_attribute_table("market1501", "query")
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        attr.load_attribute_table("market1501", "train", mat_path=tmp_path / "nope.mat")
    wrong = attr.packaged_mat_path("dukemtmc_reid")
    with pytest.raises(ValueError, match="market_attribute"):
        attr.load_attribute_table("market1501", "train", mat_path=wrong)
    with pytest.raises(KeyError, match="identity 0"):
        attr.load_attribute_table("market1501", "test").row(0)
