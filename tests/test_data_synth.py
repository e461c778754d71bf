"""The synthetic world (invfeat/data/synth/): determinism, protocol, file names, visible
attributes, hard identities; the contact sheet and attribute descriptions of its preview."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from invfeat.data.synth import SynthConfig, domain, plan, render_shot, render_split
from invfeat.data.synth.preview import describe, write_contact_sheet
from invfeat.data.synth.protocol import Shot, identities
from invfeat.data.synth.world import ATTACK_DOMAINS, msmt_identities, table_identities

NAMES = {
    "synth_market": r"(bounding_box_train|query|bounding_box_test)/(\d{4})_c(\d)s\d_\d{6}_\d{2}\.png",
    "synth_duke": r"(bounding_box_train|query|bounding_box_test)/(\d{4})_c(\d)_f\d{7}\.png",
    "synth_msmt": r"mask_(?:train|test)_v2/(\d{4})/(\d{4})_\d{3}_(\d{2})_\d{4}[a-z]+_\d{4}_0\.png",
}
FOLDERS = {
    "train": ("bounding_box_train", "mask_train_v2"),
    "query": ("query", "mask_test_v2"),
    "gallery": ("bounding_box_test", "mask_test_v2"),
}
TINY = SynthConfig(
    num_train_identities=3, num_test_identities=3, train_per_identity=2, gallery_per_identity=2
)


def test_same_seed_same_pixels_other_seed_other_pixels():
    first = [x.image.tobytes() for x in render_split("synth_market", "train", TINY)]
    again = [x.image.tobytes() for x in render_split("synth_market", "train", TINY)]
    other = SynthConfig(**{**TINY.__dict__, "seed": 1})
    reseeded = [x.image.tobytes() for x in render_split("synth_market", "train", other)]
    assert first == again
    assert len(first) == 6 and all(a != b for a, b in zip(first, reseeded, strict=True))


@pytest.mark.parametrize("size", [(128, 64), (256, 128), (384, 128)])
def test_sizes(size):
    config = SynthConfig(size=size, num_train_identities=1, train_per_identity=2)
    images = [x.image for x in render_split("synth_duke", "train", config)]
    assert [im.shape for im in images] == [(*size, 3)] * 2
    assert all(im.dtype == np.uint8 and im.std() > 10 for im in images)


def test_bad_config_and_names_are_reported():
    with pytest.raises(ValueError, match="size"):
        SynthConfig(size=(100, 50))
    with pytest.raises(ValueError, match="train_per_identity"):
        SynthConfig(train_per_identity=1)
    with pytest.raises(ValueError, match="query_per_identity"):
        SynthConfig(query_per_identity=6)
    with pytest.raises(ValueError, match="synth_nowhere"):
        domain("synth_nowhere")


@pytest.mark.parametrize("name", ["synth_market", "synth_duke", "synth_msmt"])
def test_protocol_like_the_real_sets(name):
    config = SynthConfig(
        num_train_identities=12,
        num_test_identities=12,
        query_per_identity=2,
        gallery_per_identity=3,
    )
    splits = {s: plan(name, s, config) for s in ("train", "query", "gallery")}
    assert [len(splits[s]) for s in splits] == [12 * 4, 12 * 2, 12 * 3]
    names = [shot.file_name for shots in splits.values() for shot in shots]
    assert len(set(names)) == len(names)
    for split, shots in splits.items():
        for shot in shots:  # identity and camera read back from the name, as the real parsers do
            match = re.fullmatch(NAMES[name], shot.file_name)
            assert match and shot.file_name.split("/")[0] in FOLDERS[split], shot.file_name
            assert (
                int(match.group(2)) == shot.person.identity and int(match.group(3)) == shot.camera
            )
    for group in ("train", "test"):
        shots = splits["train"] if group == "train" else splits["query"] + splits["gallery"]
        cams: dict[int, set[int]] = {}
        for shot in shots:
            cams.setdefault(shot.person.identity, set()).add(shot.camera)
        assert len(cams) == 12 and min(len(c) for c in cams.values()) >= 2
    gallery = {(s.person.identity, s.camera) for s in splits["gallery"]}
    for q in splits["query"]:  # every query has a match in another camera
        assert any(i == q.person.identity and c != q.camera for i, c in gallery)
    assert len({(s.person.identity, s.camera) for s in splits["query"]}) == 24


def test_attack_identities_are_the_real_tables():
    assert [len(table_identities("synth_market", s, 0)) for s in ("train", "test")] == [751, 750]
    assert [len(table_identities("synth_duke", s, 0)) for s in ("train", "test")] == [702, 1110]
    market = identities("synth_market", "train", SynthConfig())
    assert market[0].identity == 2 and market[0].attributes.shape == (27,)


def test_equal_attributes_different_people():
    people = table_identities("synth_market", "train", 0)
    by_row: dict[bytes, list] = {}
    for p in people:
        by_row.setdefault(p.attributes.tobytes(), []).append(p)
    twins = next(group for group in by_row.values() if len(group) >= 2)
    a, b = twins[:2]
    assert a.traits != b.traits
    image_a = render_shot("synth_market", Shot(a, 1, 0, ""), TINY, "train").astype(int)
    image_b = render_shot("synth_market", Shot(b, 1, 0, ""), TINY, "train").astype(int)
    assert np.abs(image_a - image_b).mean() > 5


def test_msmt_people_are_recombined_and_never_attack_side_individuals():
    people = msmt_identities(200, 100, 0)
    attack = [
        p for n in ATTACK_DOMAINS for s in ("train", "test") for p in table_identities(n, s, 0)
    ]
    attack_keys = {p.key() for p in attack}
    msmt = people["train"] + people["test"]
    assert len(msmt) == 300 and not ({p.key() for p in msmt} & attack_keys)
    assert len({p.key() for p in msmt}) == 300
    assert [p.identity for p in people["test"]] == list(range(100))  # numbered from 0, like MSMT17
    assert len({p.appearance for p in msmt}) > 250  # recombination makes new looks
    assert msmt[0].attributes.shape == (len(domain("synth_msmt").attributes),)
    fewer = msmt_identities(20, 10, 0)  # a person does not depend on how many are drawn
    assert [p.key() for p in fewer["test"]] == [p.key() for p in people["test"][:10]]


# --- the attributes can be seen, the identities are hard: simple models on rendered pixels ---


def _render(name: str, group: str, count: int, number: int) -> tuple[np.ndarray, np.ndarray, list]:
    config = SynthConfig()
    people = identities(name, group, config)[:count]
    cams = domain(name).num_cameras
    shots = [Shot(p, 1 + (p.identity + 3 * number) % cams, number, "") for p in people]
    images = np.stack([render_shot(name, s, config, "gallery") for s in shots])
    return images, np.stack([p.attributes for p in people]), shots


def _gradient_histograms(gray: np.ndarray, cell: int, bins: int = 6) -> np.ndarray:
    gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    angle = np.minimum((np.mod(np.arctan2(gy, gx), np.pi) / np.pi * bins).astype(int), bins - 1)
    votes = np.zeros((*gray.shape, bins), np.float32)
    np.put_along_axis(votes, angle[..., None], np.hypot(gx, gy)[..., None], axis=2)
    h, w = gray.shape
    cells = votes.reshape(h // cell, cell, w // cell, cell, bins).sum((1, 3))
    return (cells / (np.linalg.norm(cells, axis=-1, keepdims=True) + 1e-3)).ravel()


def _features(images: np.ndarray) -> np.ndarray:
    """Gradient-orientation histograms (shape) and a coarse thumbnail (colour)."""
    out = []
    for image in images:
        small = cv2.resize(image, (32, 64), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        thumb = cv2.resize(image, (8, 16), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        out.append(
            np.concatenate(
                [_gradient_histograms(gray, 8), _gradient_histograms(gray, 4), thumb.ravel()]
            )
        )
    return np.stack(out)


def _balanced_ridge(train_x, train_y, test_x, lam: float = 100.0) -> np.ndarray:
    """Class-balanced kernel ridge regression on standardised features; predicts 0/1."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-3
    a, b = (train_x - mean) / std, (test_x - mean) / std
    weight = np.where(train_y == 1, 0.5 / (train_y == 1).mean(), 0.5 / (train_y == 0).mean())
    target = np.where(train_y == 1, 1.0, -1.0)
    alpha = np.linalg.solve((a @ a.T) * weight[:, None] + lam * np.eye(len(a)), weight * target)
    return ((b @ (a.T @ alpha)) > 0).astype(int)


def _balanced_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[truth == c] == c) for c in (0, 1)]))


@pytest.fixture(scope="module")
def rendered():
    out = {}
    for name in ("synth_market", "synth_duke"):
        train_x, train_y, _ = _render(name, "train", 500, 0)
        test_x, test_y, _ = _render(name, "test", 200, 0)
        out[name] = (_features(train_x), train_y, _features(test_x), test_y)
    return out


@pytest.mark.parametrize(
    ("name", "attributes"),
    [
        ("synth_market", ("gender", "hair", "down", "backpack", "upwhite", "downblack", "age")),
        ("synth_duke", ("gender", "boots", "hat", "backpack", "upblack", "downblue")),
    ],
)
def test_attributes_are_visible_to_a_linear_model(rendered, name, attributes):
    train_x, train_y, test_x, test_y = rendered[name]
    columns = [a.name for a in domain(name).attributes]
    scores = {}
    for attribute in attributes:
        j = columns.index(attribute)
        y_train, y_test = train_y[:, j], test_y[:, j]
        if attribute == "age":  # teenager vs the rest
            y_train, y_test = (y_train == 1).astype(int), (y_test == 1).astype(int)
        pred = _balanced_ridge(train_x, y_train, test_x)
        scores[attribute] = _balanced_accuracy(pred, y_test)  # held-out identities; chance 0.5
    assert min(scores.values()) > 0.6, scores
    assert np.mean(list(scores.values())) > 0.7, scores


def _person_pixels(images: np.ndarray) -> np.ndarray:
    """The middle half of each crop, 32x8, each image normalised (removes camera exposure)."""
    w = images.shape[2]
    crops = np.stack(
        [
            cv2.resize(x[:, w // 4 : 3 * w // 4], (8, 32), interpolation=cv2.INTER_AREA)
            for x in images
        ]
    ).astype(np.float32)
    crops = (crops - crops.mean((1, 2), keepdims=True)) / (crops.std((1, 2), keepdims=True) + 1e-3)
    return crops.reshape(len(images), -1)


def test_identities_are_distinguishable_but_not_trivially():
    n = 100
    gallery, _, gallery_shots = _render("synth_market", "test", n, 0)
    query, _, query_shots = _render("synth_market", "test", n, 1)
    assert all(q.camera != g.camera for q, g in zip(query_shots, gallery_shots, strict=True))
    g, q = _person_pixels(gallery), _person_pixels(query)
    distance = (q**2).sum(1)[:, None] - 2 * q @ g.T + (g**2).sum(1)[None, :]
    rank1 = float(np.mean(distance.argmin(1) == np.arange(n)))
    assert 8 / n < rank1 < 0.5, rank1  # chance is 1/n: pixels carry identity, a model must learn it


def test_contact_sheet(tmp_path):
    out = write_contact_sheet(
        "synth_duke", tmp_path / "sheet.png", num_identities=2, num_cameras=3, zoom=1
    )
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[1] == 3 * 64 and sheet.shape[0] > 2 * 128
    assert (sheet[:, :, :] < 50).any()  # text printed


def test_describe_reads_the_attribute_row():
    attributes = domain("synth_market").attributes
    values = np.zeros(len(attributes), np.int64)
    names = [a.name for a in attributes]
    for name, v in (("gender", 1), ("backpack", 1), ("upred", 1), ("upblue", 1)):
        values[names.index(name)] = v
    text = describe(values, attributes)
    assert "female" in text and "backpack" in text and "up: red+blue" in text
    assert "down: other" in text
