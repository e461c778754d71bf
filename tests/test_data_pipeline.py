"""The grain pipeline (invfeat/data/pipeline.py): decode, order, PK batches, multi-process
sharding, global layout, resume."""

from __future__ import annotations

import warnings

import cv2
import jax
import numpy as np
import pytest
from helpers import fake_trees

from invfeat.data import builders
from invfeat.data.layouts import LayoutWarning
from invfeat.data.pipeline import (
    ArraySource,
    LoaderConfig,
    augment_image,
    augment_params,
    load_split,
    make_loader,
    materialize,
    read_identities,
    read_labels,
)
from invfeat.train.mesh import shard_batch

SIZE = (16, 8)


@pytest.fixture(scope="module")
def market_dir(tmp_path_factory):
    """A tiny Market-1501 build (4 train, 2 query, 5 gallery images of 32x16)."""
    root = tmp_path_factory.mktemp("pipeline")
    fake_trees.market_tree(root / "manual")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayoutWarning)
        builders.build("market1501", data_dir=root / "data", manual_dir=root / "manual")
    return root


@pytest.fixture(scope="module")
def arrays():
    n = 40
    rng = np.random.default_rng(0)
    return ArraySource(
        {
            "image": rng.integers(0, 256, (n, *SIZE, 3), dtype=np.uint8),
            "identity": np.repeat(np.arange(10), 4)[rng.permutation(n)],
            "camera": np.arange(n) % 3,
            "attributes": np.stack([np.arange(n), -np.ones(n, int)], 1),
        }
    )


def _take(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_decoded_batches_match_the_files(market_dir):
    config = LoaderConfig(
        batch_size=2, image_size=(32, 16), shuffle=False, num_epochs=1, drop_remainder=False,
        include_file_names=True,
    )  # fmt: skip
    batches = list(load_split("market1501", "query", config, data_dir=market_dir / "data"))
    assert len(batches) == 1
    batch = batches[0]
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (2, 32, 16, 3)
    for name, image in zip(batch["file_name"], batch["image"], strict=True):
        path = market_dir / "manual/Market-1501-v15.09.15" / name.decode()
        expected = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) / np.float32(255)
        np.testing.assert_allclose(image, expected, atol=1e-6)
    assert batch["identity"].tolist() == [1, 3] and batch["camera"].tolist() == [1, 1]
    assert batch["attributes"].shape == (2, 27) and batch["attributes"].dtype == np.int32
    assert batch["valid"].all() and batch["index"].tolist() == [0, 1]
    # Resize to another size.
    config = LoaderConfig(batch_size=2, image_size=SIZE, shuffle=False, num_epochs=1)
    (small,) = load_split("market1501", "query", config, data_dir=market_dir / "data")
    assert small["image"].shape == (2, *SIZE, 3)


def test_shuffled_epochs_visit_every_record_once_and_differ(arrays):
    config = LoaderConfig(batch_size=8, image_size=SIZE, seed=3, num_epochs=2)
    batches = list(make_loader(arrays, config, process_index=0, process_count=1))
    assert len(batches) == 10
    epochs = np.concatenate([b["index"] for b in batches]).reshape(2, 40)
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(40))
    assert (epochs[0] != epochs[1]).any() and (epochs[0] != np.arange(40)).any()
    other = make_loader(arrays, LoaderConfig(batch_size=8, image_size=SIZE, seed=4, num_epochs=1))
    assert (np.concatenate([b["index"] for b in other]) != epochs[0]).any()
    # Records travel with their index.
    b = batches[0]
    np.testing.assert_array_equal(b["identity"], arrays.column("identity")[b["index"]])
    np.testing.assert_array_equal(np.rint(b["image"] * 255), arrays.column("image")[b["index"]])


def test_eval_order_pads_the_last_batch_and_marks_it(arrays):
    config = LoaderConfig(
        batch_size=16, image_size=SIZE, shuffle=False, num_epochs=1, drop_remainder=False
    )
    per_process = [
        list(make_loader(arrays, config, process_index=p, process_count=2)) for p in range(2)
    ]
    assert [len(b) for b in per_process] == [3, 3]
    seen = np.concatenate(
        [np.concatenate([b0["index"][b0["valid"]], b1["index"][b1["valid"]]])
         for b0, b1 in zip(*per_process, strict=True)]
    )  # fmt: skip
    assert seen.tolist() == list(range(40))
    assert sum(int((~b["valid"]).sum()) for p in per_process for b in p) == 8


def test_pk_batches(arrays):
    config = LoaderConfig(batch_size=12, image_size=SIZE, pk=(3, 4), seed=1, num_epochs=2)
    batches = list(make_loader(arrays, config, process_index=0, process_count=1))
    assert len(batches) == 6  # 10 identities // 3 = 3 groups per epoch
    for b in batches:
        ids, counts = np.unique(b["identity"], return_counts=True)
        assert len(ids) == 3 and (counts == 4).all()
        assert len(set(b["index"].tolist())) == 12  # 4 images each: drawn without replacement
    per_epoch = [np.concatenate([b["identity"] for b in batches[i : i + 3]]) for i in (0, 3)]
    assert all(len(np.unique(e)) == 9 for e in per_epoch)  # every chosen identity once
    with pytest.raises(ValueError, match="batch_size=12"):
        make_loader(arrays, LoaderConfig(batch_size=8, pk=(3, 4)))


def test_pk_with_few_images_per_identity_and_tfds_identities(market_dir):
    source = builders.open_split("market1501", "gallery", data_dir=market_dir / "data")
    np.testing.assert_array_equal(np.sort(read_identities(source)), [0, 1, 1, 3, 3])
    config = LoaderConfig(batch_size=6, image_size=SIZE, pk=(2, 3), num_epochs=3)
    for b in make_loader(source, config, process_index=0, process_count=1):
        ids, counts = np.unique(b["identity"], return_counts=True)
        assert len(ids) == 2 and (counts == 3).all()  # 2 images of id 1 -> drawn with replacement


@pytest.mark.parametrize("pk", [None, (2, 4)])
def test_processes_together_load_the_single_process_global_batches(arrays, pk):
    config = LoaderConfig(batch_size=8, image_size=SIZE, pk=pk, augment=True, crop_padding=2)
    single = _take(make_loader(arrays, config, process_index=0, process_count=1), 4)
    parts = [
        _take(make_loader(arrays, config, process_index=p, process_count=2), 4) for p in (0, 1)
    ]
    for b, (b0, b1) in zip(single, zip(*parts, strict=True), strict=True):
        assert b0["image"].shape[0] == 4
        for key in b:
            np.testing.assert_array_equal(b[key], np.concatenate([b0[key], b1[key]]), key)
    with pytest.raises(ValueError, match="divisible"):
        make_loader(arrays, LoaderConfig(batch_size=8), process_index=0, process_count=3)


def test_resume_from_saved_state_sees_the_same_batches(market_dir, arrays):
    for source in (builders.open_split("market1501", "gallery", data_dir=market_dir / "data"),
                   arrays):  # fmt: skip
        config = LoaderConfig(batch_size=4, image_size=SIZE, augment=True, seed=7)
        it = iter(make_loader(source, config, process_index=0, process_count=1))
        for _ in range(3):
            next(it)
        state = it.get_state()
        expected = [next(it) for _ in range(4)]
        resumed = iter(make_loader(source, config, process_index=0, process_count=1))
        resumed.set_state(state)
        for a, b in zip(expected, (next(resumed) for _ in range(4)), strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], key)


def test_augment_flip_shift_equals_pad_and_crop():
    image = np.random.default_rng(0).integers(1, 256, (6, 4, 3), dtype=np.uint8)
    p = 2
    padded = np.zeros((6 + 2 * p, 4 + 2 * p, 3), np.uint8)
    for flip in (False, True):
        source = image[:, ::-1] if flip else image
        padded[p:-p, p:-p] = source
        for dy in range(-p, p + 1):
            for dx in range(-p, p + 1):
                expected = padded[p + dy : p + dy + 6, p + dx : p + dx + 4]
                np.testing.assert_array_equal(augment_image(image, flip, dy, dx), expected)
    params = [augment_params(0, position, p) for position in range(400)]
    flips = [f for f, _, _ in params]
    assert 150 < sum(flips) < 250  # about half are flipped
    assert {dy for _, dy, _ in params} == {dx for _, _, dx in params} == set(range(-p, p + 1))
    assert params != [augment_params(1, position, p) for position in range(400)]


def test_global_batch_on_the_data_mesh(arrays):
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    config = LoaderConfig(batch_size=8, image_size=SIZE, include_file_names=True)
    batch = _take(make_loader(arrays, config), 1)[0]
    out = shard_batch(batch, mesh)
    assert "file_name" not in out and set(out) == set(batch) - {"file_name"}
    assert out["image"].shape == (8, *SIZE, 3)
    assert out["image"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert len(out["image"].addressable_shards) == jax.device_count()
    np.testing.assert_array_equal(np.asarray(out["identity"]), batch["identity"])


def test_materialize_decodes_a_split_into_memory(market_dir):
    source = builders.open_split("market1501", "train", data_dir=market_dir / "data")
    memory = materialize(source, SIZE)
    assert len(memory) == 4 and memory.column("image").shape == (4, *SIZE, 3)
    assert memory.column("image").dtype == np.uint8
    config = LoaderConfig(batch_size=4, image_size=SIZE, shuffle=False, num_epochs=1)
    (from_disk,) = make_loader(source, config)
    (from_memory,) = make_loader(memory, config)
    for key in from_disk:
        np.testing.assert_array_equal(from_disk[key], from_memory[key], key)


def test_read_labels_does_not_hold_every_image_at_once():
    # A real gallery (MSMT17: 82161 images) must not sit in memory whole to read its labels.
    class Blob:
        live = peak = 0

        def __init__(self):
            Blob.live += 1
            Blob.peak = max(Blob.peak, Blob.live)

        def __del__(self):
            Blob.live -= 1

    class Source:
        def __len__(self):
            return 3000

        def __getitem__(self, i):
            return {"image": Blob(), "identity": i % 7, "file_name": f"f{i}.jpg"}

    labels = read_labels(Source())
    assert labels["identity"].tolist() == [i % 7 for i in range(3000)]
    assert labels["file_name"][2999] == "f2999.jpg" and labels["camera"][0] == -1
    assert Blob.peak <= 1025  # one chunk of 1024 records (and the last one read) at a time
