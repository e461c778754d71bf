"""TFDS builders of the synthetic world (invfeat/data/builders/synth.py): tiny configs built end
to end and read back, config names, what a build prints; images that do not decode are named."""

from __future__ import annotations

import pytest

from invfeat.data.builders import REGISTRY, build, decode_image, open_split
from invfeat.data.builders.synth import builder_config, config_name
from invfeat.data.synth import SynthConfig, domain

TINY = dict(
    num_train_identities=3, num_test_identities=2, train_per_identity=2, gallery_per_identity=2
)


def test_registered():
    assert {"synth_market", "synth_duke", "synth_msmt"} <= set(REGISTRY)


def test_config_names():
    assert config_name(SynthConfig()) == "128x64"
    assert config_name(SynthConfig(size=(384, 128))) == "384x128"
    assert builder_config(**TINY).name == "128x64-t2-q1-g2-n3-2-s0"


@pytest.mark.parametrize("name", ["synth_market", "synth_msmt"])
def test_build_tiny_and_read_back(tmp_path, name):
    config = builder_config(**TINY)
    builder = build(name, data_dir=tmp_path, config=config)
    counts = {s: builder.info.splits[s].num_examples for s in ("train", "query", "gallery")}
    assert counts == {"train": 6, "query": 2, "gallery": 4}
    assert builder.info.metadata["num_identities"] == {"train": 3, "query": 2, "gallery": 2}
    attributes = domain(name).attributes
    assert [a["name"] for a in builder.info.metadata["attributes"]] == [a.name for a in attributes]
    source = open_split(name, "query", data_dir=tmp_path, config=config)
    record = source[0]
    image = decode_image(record["image"], "query record 0")
    assert image.shape == (128, 64, 3)
    assert record["attributes"].shape == (len(attributes),) and record["attributes"].min() >= 0
    file_name = record["file_name"].decode()
    assert file_name.startswith("query/" if name == "synth_market" else "mask_test_v2/")
    # Same config, fresh directory: the same bytes.
    again = build(name, data_dir=tmp_path / "again", config=config)
    source_again = open_split(
        name, "query", data_dir=tmp_path / "again", config=again.builder_config
    )
    assert source_again[0]["image"] == record["image"]


def test_default_settings_name_the_registered_config(tmp_path):
    from invfeat.data import builders
    from invfeat.data.builders.synth import builder_config

    registered = builders.builder_class("synth_market").BUILDER_CONFIGS[0]
    assert builder_config(size=tuple(registered.synth.size)) is registered
    # TFDS accepts it where a fresh config of the same name would be refused.
    assert (
        builders.builder("synth_market", data_dir=tmp_path, config=builder_config()).builder_config
        is registered
    )


def test_build_says_building_not_downloading(tmp_path, capfd, caplog):
    """TFDS's notices speak of a download on stdout, and the custom-config warning repeats at
    every open; a build here says what it builds, on stderr, and opening says nothing."""
    config = builder_config(**TINY)
    with caplog.at_level("WARNING"):
        build("synth_duke", data_dir=tmp_path, config=config)
        open_split("synth_duke", "query", data_dir=tmp_path, config=config)
    out, err = capfd.readouterr()
    assert "ownload" not in out + err
    assert f"building synth_duke into {tmp_path}" in err
    assert not [r for r in caplog.records if "custom data configuration" in r.getMessage()]


@pytest.mark.parametrize("data", [b"", b"\xff\xd8 not a jpeg"])
def test_decode_image_names_what_it_cannot_read(data):
    with pytest.raises(ValueError, match="cannot decode image bounding_box_test/x.jpg"):
        decode_image(data, "bounding_box_test/x.jpg")
