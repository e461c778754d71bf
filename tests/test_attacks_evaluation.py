"""Evaluation of reconstructions on hand-made cases, and of feature files made elsewhere."""

from pathlib import Path

import jax
import numpy as np
import pytest

from invfeat.attacks.attributes import AttributePredictor
from invfeat.attacks.evaluation import evaluate_feature_files, evaluate_reconstructions
from invfeat.data.attributes import Attribute
from invfeat.data.feature_files import FeatureFile, FeatureFileError, write_features
from invfeat.train.mesh import make_mesh
from invfeat.train.predict import BlockPredictor

IDS, H, W, D = 6, 32, 16, 8
PROJECTION = np.random.default_rng(7).normal(size=(H * W * 3, D)).astype(np.float32)


def api(images: np.ndarray) -> np.ndarray:
    """The evaluator's plaintext API: a fixed projection of the centred pixels."""
    flat = np.asarray(images, np.float32).reshape(len(images), -1)
    return (flat - 0.5) @ PROJECTION


@pytest.fixture(scope="module")
def scene():
    """One query (camera 0) and two gallery images (camera 1) per identity."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.9, size=(IDS, 1, 1, 3)) * np.ones((IDS, H, W, 3))
    base = base * np.linspace(0.6, 1.0, H)[None, :, None, None]
    noisy = lambda: np.clip(base + 0.02 * rng.normal(size=base.shape), 0, 1).astype(np.float32)
    query = noisy()
    gallery = np.concatenate([noisy(), noisy()])
    ids = np.arange(IDS)
    return {
        "query": query,
        "query_ids": ids,
        "query_cams": np.zeros(IDS, np.int32),
        "gallery": gallery,
        "gallery_ids": np.concatenate([ids, ids]),
        "gallery_cams": np.ones(2 * IDS, np.int32),
        # gender 2 classes, then three colour flags (merged into up_colour by the head)
        "attributes": np.column_stack([ids % 2, np.eye(3, dtype=int)[ids % 3]]),
    }


def lookup(keys: np.ndarray, values: np.ndarray):
    """A 'decoder' that returns the value stored for each exact key row."""
    table = {k.tobytes(): v for k, v in zip(keys, values, strict=True)}
    return lambda rows: np.stack([table[r.tobytes()] for r in np.asarray(rows)])


def evaluate(scene, reconstruct, features_in, **kwargs):
    return evaluate_reconstructions(
        reconstruct,
        features_in,
        query_images=scene["query"],
        query_features_plain=api(scene["query"]),
        query_ids=scene["query_ids"],
        query_cams=scene["query_cams"],
        gallery_features_plain=api(scene["gallery"]),
        gallery_ids=scene["gallery_ids"],
        gallery_cams=scene["gallery_cams"],
        **{"plain_features_fn": api, **kwargs},
    )


def test_perfect_reconstructions_score_perfectly(scene):
    # what the attacker sees may be ciphertext: here, arbitrary bit patterns per query
    words = np.random.default_rng(1).integers(0, 2**32, size=(IDS, D), dtype=np.uint64)
    cipher = words.astype(np.uint32).view(np.float32)
    reconstruct = lookup(cipher, scene["query"])
    truth = scene["attributes"]
    head = lambda features: lookup(api(scene["query"]), truth)(features)  # reads plaintext
    m, grid = evaluate(
        scene, reconstruct, cipher, attribute_predict=head, query_attributes=truth, grid_images=4
    )
    assert m["cosine_distance"] == pytest.approx(0.0, abs=1e-6)
    assert m["cosine_distance_shuffled"] > 0.05
    assert m["rank1"] == 1.0 and m["mAP"] == 1.0 and m["num_queries"] == IDS
    assert m["psnr"] >= 99.0  # identical images: the 100 dB cap
    assert m["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert m["attributes"]["mean"] == 1.0
    np.testing.assert_array_equal(grid, scene["query"][:4])


def test_uninformative_reconstructions_score_poorly(scene):
    features = api(scene["query"])
    grey = lambda rows: np.full((len(rows), H, W, 3), 0.5, np.float32)
    schema = (Attribute("gender", ("m", "f")),) + tuple(
        Attribute(f"up{c}", ("no", "yes")) for c in ("black", "white", "red")
    )
    # an attack's predictor maps the raw colour flags to its merged column, as the attack did
    columns = (schema[0], Attribute("up_colour", ("black", "white", "red")))
    constant = BlockPredictor(
        lambda v, f: (f[:, :2] * 0).astype(np.int32), make_mesh(jax.devices()[:1]), 8
    )
    head = AttributePredictor(constant, None, None, columns, schema, merge_colours=True)
    m = evaluate(
        scene, grey, features, attribute_predict=head, query_attributes=scene["attributes"]
    ).metrics
    assert m["rank1"] < 0.5 and m["psnr"] < 30.0 and m["ssim"] < 0.9
    assert m["attributes"]["gender"] == 0.5 and m["attributes"]["up_colour"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="query_attributes"):
        evaluate(scene, grey, features, attribute_predict=head)
    with pytest.raises(ValueError, match="reconstruct gave"):
        evaluate(scene, lambda rows: np.zeros((len(rows), 8, 8, 3), np.float32), features)


def test_the_gallery_is_reconstructed_and_scored_with_the_query_as_published(scene):
    """With the gallery's features in, every query and gallery image is reconstructed and sent
    through the API in one call; the cosine distance, PSNR and SSIM are means over all of them,
    re-identification is the query's reconstructions against the real gallery."""
    words = np.random.default_rng(2).integers(0, 2**32, size=(3 * IDS, D), dtype=np.uint64)
    cipher = words.astype(np.uint32).view(np.float32)
    real = np.concatenate([scene["query"], scene["gallery"]])
    # perfect queries, flat grey gallery reconstructions: the means blend both
    made = np.concatenate([scene["query"], np.full_like(scene["gallery"], 0.3)])
    calls = []

    def counted_api(images):
        calls.append(len(images))
        return api(images)

    m, grid = evaluate(
        scene,
        lookup(cipher, made),
        cipher[:IDS],
        plain_features_fn=counted_api,
        gallery_features_in=cipher[IDS:],
        gallery_images=scene["gallery"],
        grid_images=4,
    )
    assert calls == [3 * IDS]
    assert m["reconstructed"] == {"query": IDS, "gallery": 2 * IDS}
    assert m["rank1"] == 1.0 and m["mAP"] == 1.0  # the query's reconstructions are perfect
    grey = 1 - np.sum(api(made[IDS:]) * api(real[IDS:]), 1) / (
        np.linalg.norm(api(made[IDS:]), axis=1) * np.linalg.norm(api(real[IDS:]), axis=1)
    )
    assert m["cosine_distance"] == pytest.approx(np.sum(grey) / (3 * IDS), rel=1e-4)
    assert m["psnr"] < 100  # the grey gallery pulls the mean below a perfect query's
    np.testing.assert_array_equal(grid, scene["query"][:4])
    with pytest.raises(ValueError, match="needs gallery_features_in and gallery_images"):
        evaluate(scene, lookup(cipher, made), cipher[:IDS], gallery_features_in=cipher[IDS:])


def test_query_images_out_of_range_are_refused(scene):
    """PSNR and SSIM assume pixels in [0, 1]: 0-255 floats would score as another image."""
    features = api(scene["query"])
    as_255 = dict(scene, query=scene["query"] * 255.0)
    with pytest.raises(ValueError, match="query_images are floats outside"):
        evaluate(as_255, lambda rows: np.zeros((len(rows), H, W, 3), np.float32), features)


def write(path: Path, paths, features, encryption=None, nonces=None) -> None:
    write_features(path, FeatureFile(np.array(paths), np.asarray(features), encryption, nonces))


def test_feature_files_matched_by_path(tmp_path):
    rng = np.random.default_rng(2)
    paths = [f"query/{i:04d}_c1.png" for i in range(10)]
    source = rng.normal(size=(10, D)).astype(np.float32)
    write(tmp_path / "source.npz", paths, source)
    targets = tmp_path / "targets"
    targets.mkdir()
    order = rng.permutation(10)[:6]  # a subset, in another order, with "./" and "\\" spellings
    spelled = [
        ("./" + paths[i]) if k % 2 else paths[i].replace("/", "\\") for k, i in enumerate(order)
    ]
    write(targets / "same.npz", spelled, source[order])
    write(targets / "opposite.npz", [paths[i] for i in order], -2.0 * source[order])
    (targets / "notes.txt").write_text("not a feature file")
    distances = evaluate_feature_files(tmp_path / "source.npz", targets)
    assert list(distances) == ["opposite.npz", "same.npz"]
    assert distances["same.npz"] == pytest.approx(0.0, abs=1e-6)
    assert distances["opposite.npz"] == pytest.approx(2.0, abs=1e-6)

    write(targets / "stranger.npz", ["query/9999_c1.png"], source[:1])
    with pytest.raises(FeatureFileError, match="stranger.npz: 1 image paths are not in the source"):
        evaluate_feature_files(tmp_path / "source.npz", targets)
    (targets / "stranger.npz").unlink()
    nonces = np.zeros((1, 3), np.uint32)
    write(targets / "secret.npz", paths[:1], source[:1], "one-time", nonces)
    with pytest.raises(FeatureFileError, match="is encrypted"):
        evaluate_feature_files(tmp_path / "source.npz", targets)
    with pytest.raises(FeatureFileError, match="no target feature files"):
        evaluate_feature_files(tmp_path / "source.npz", tmp_path / "targets", pattern="*.feat")
    with pytest.raises(FeatureFileError, match="not a folder"):
        evaluate_feature_files(tmp_path / "source.npz", tmp_path / "missing")


def test_feature_files_as_the_published_evaluation_finds_them(tmp_path):
    """The published search: every folder below (`**/*.npz`), only paths holding the source's
    identifier, a target that cannot be scored skipped with a warning naming it."""
    from invfeat.attacks.evaluation import source_identifier

    rng = np.random.default_rng(3)
    paths = [f"query/{i:04d}_c1.png" for i in range(4)]
    source = rng.normal(size=(4, D)).astype(np.float32)
    write(tmp_path / "msmt_bot.R50.npz", paths, source)
    assert source_identifier(tmp_path / "msmt_bot.R50.npz") == "msmt_bot"
    targets = tmp_path / "Re-Identification_x"
    (targets / "msmt_bot_run" / "epoch_1").mkdir(parents=True)
    (targets / "msmt_sbs_run").mkdir()
    write(targets / "msmt_bot_run" / "epoch_1" / "query.npz", paths, source)
    write(targets / "msmt_bot_run" / "broken.npz", ["query/9999_c1.png"], source[:1])
    write(targets / "msmt_sbs_run" / "query.npz", paths, -source)  # another victim's
    published = dict(pattern="**/*.npz", identifier="msmt_bot", skip_errors=True)
    with pytest.warns(UserWarning, match="broken.npz: 1 image paths are not in the source"):
        distances = evaluate_feature_files(tmp_path / "msmt_bot.R50.npz", targets, **published)
    assert distances == {"msmt_bot_run/epoch_1/query.npz": pytest.approx(0.0, abs=1e-6)}
    with pytest.raises(FeatureFileError, match="broken.npz"):
        evaluate_feature_files(
            tmp_path / "msmt_bot.R50.npz", targets, pattern="**/*.npz", identifier="msmt_bot"
        )
