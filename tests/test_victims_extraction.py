"""Feature files through the API: one per split, paths = records, ciphertext decrypts exactly."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from experiments.configs import get_victim_config
from invfeat import shufflebits
from invfeat.data.builders import build
from invfeat.data.builders.synth import builder_config
from invfeat.data.datasets import dataset_splits, open_dataset_split
from invfeat.data.feature_files import read_features
from invfeat.victims import TrainedVictim, inference_model, save_victim
from invfeat.victims.extraction import extract_features, feature_paths

SETTINGS = {
    "num_train_identities": 3,
    "num_test_identities": 2,
    "train_per_identity": 2,
    "gallery_per_identity": 2,
}
CONFIG = get_victim_config("tiny", dataset="synth_market", data_settings=SETTINGS)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build("synth_market", data_dir=root, config=builder_config(**SETTINGS))
    return root


@pytest.fixture(scope="module")
def victim():
    """An initialised (untrained) tiny victim: extraction does not care how it was trained."""
    model = inference_model(CONFIG)
    variables = model.init(
        jax.random.key(0, impl="rbg"), np.zeros((1, *CONFIG.input_size, 3), np.float32), False
    )
    return TrainedVictim(CONFIG, model, variables, {})


def _extract(victim, data_dir, out, key=None):
    return extract_features(
        victim, "synth_market", out, key=key, data_dir=data_dir, data_settings=SETTINGS,
        batch_size=8, progress=False,
    )  # fmt: skip


def _record_names(data_dir, split):
    source = open_dataset_split("synth_market", split, data_dir=data_dir, data_settings=SETTINGS)
    return [source[i]["file_name"].decode() for i in range(len(source))]


@pytest.fixture(scope="module")
def plain(victim, data_dir, tmp_path_factory):
    return _extract(victim, data_dir, tmp_path_factory.mktemp("plain"))


def test_one_plain_file_per_split_whose_paths_are_the_records(plain, victim, data_dir):
    assert dataset_splits("synth_market", data_dir=data_dir, data_settings=SETTINGS) == (
        "train", "query", "gallery"
    )  # fmt: skip
    assert list(plain) == ["train", "query", "gallery"]
    sizes = {"train": 6, "query": 2, "gallery": 4}
    for split, path in plain.items():
        assert path.name == f"{split}.npz"
        names = _record_names(data_dir, split)
        ff = read_features(path, encrypted=False, dataset_paths=names)
        assert list(ff.paths) == names and len(ff) == sizes[split]
        assert ff.features.shape == (sizes[split], inference_model(CONFIG).feature_dim)
        assert ff.features.dtype == np.float32 and np.isfinite(ff.features).all()
    assert plain["query"].parent == plain["train"].parent


def test_rows_are_the_api_features_of_the_records(plain, victim, data_dir):
    import cv2

    source = open_dataset_split("synth_market", "query", data_dir=data_dir, data_settings=SETTINGS)
    h, w = victim.image_size
    images = np.stack(
        [
            cv2.resize(
                cv2.cvtColor(
                    cv2.imdecode(np.frombuffer(source[i]["image"], np.uint8), 1),
                    cv2.COLOR_BGR2RGB,
                ),
                (w, h),
                interpolation=cv2.INTER_AREA,
            )
            for i in range(len(source))
        ]
    )
    expected = victim.api(batch_size=8)(images)
    got = read_features(plain["query"]).features
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scheme", ["static", "one-time"])
def test_encrypted_files_decrypt_to_the_plain_files_bit_exactly(
    scheme, plain, victim, data_dir, tmp_path
):
    key = shufflebits.Secret.generate() if scheme == "one-time" else shufflebits.Key.generate()
    paths = _extract(victim, data_dir, tmp_path / "features.npz", key=key)
    assert paths["gallery"] == tmp_path / "features_gallery.npz"
    for split, path in paths.items():
        cipher = read_features(path, encrypted=True)
        reference = read_features(plain[split])
        assert cipher.encryption == scheme
        assert (cipher.nonces is not None) == (scheme == "one-time")
        np.testing.assert_array_equal(cipher.paths, reference.paths)
        assert not np.array_equal(
            cipher.features.view(np.uint32), reference.features.view(np.uint32)
        )
        decrypted = np.asarray(shufflebits.decrypt(cipher.features, key, cipher.nonces))
        np.testing.assert_array_equal(decrypted.view(np.uint32), reference.features.view(np.uint32))


def test_feature_path_layouts(tmp_path):
    assert feature_paths(tmp_path / "f.npz", ["query"]) == {"query": tmp_path / "f_query.npz"}
    assert feature_paths(tmp_path / "out", ["val"]) == {"val": tmp_path / "out" / "val.npz"}


def test_missing_dataset_is_a_clear_error(victim, tmp_path):
    with pytest.raises(FileNotFoundError, match="not built|no built split"):
        extract_features(victim, "market1501", tmp_path / "o", data_dir=tmp_path, progress=False)


def test_cli_extract_with_a_new_one_time_key(victim, data_dir, tmp_path, capsys):
    from experiments.__main__ import main

    workdir = tmp_path / "victim"
    save_victim(workdir, victim)
    key_file = tmp_path / "secret.json"
    argv = ["features", "extract", "--dataset", "synth_market", "--victim", str(workdir),
            "--out", str(tmp_path / "enc"), "--encrypt", "one-time", "--key", str(key_file),
            "--splits", "query", "--batch-size", "8", "--data-dir", str(data_dir)]  # fmt: skip
    assert main(argv) == 0
    assert key_file.stat().st_mode & 0o777 == 0o600
    secret = shufflebits.load_key(key_file)
    assert isinstance(secret, shufflebits.Secret)
    out = capsys.readouterr().out
    assert secret.words().tobytes().hex() not in out
    cipher = read_features(tmp_path / "enc" / "query.npz", encrypted=True)
    assert cipher.encryption == "one-time" and len(cipher) == 2
    argv[argv.index("one-time")] = "static"
    assert main(argv) == 2  # the key file holds a one-time secret


def test_existing_files_are_refused_before_any_work_unless_overwrite(victim, data_dir, tmp_path):
    first = _extract(victim, data_dir, tmp_path / "out")
    before = {split: path.read_bytes() for split, path in first.items()}
    key = shufflebits.Secret.generate()
    with pytest.raises(FileExistsError, match="already exist.*overwrite"):
        _extract(victim, data_dir, tmp_path / "out", key=key)
    assert {split: path.read_bytes() for split, path in first.items()} == before
    again = extract_features(
        victim, "synth_market", tmp_path / "out", key=key, data_dir=data_dir,
        data_settings=SETTINGS, batch_size=8, overwrite=True, progress=False,
    )  # fmt: skip
    assert read_features(again["query"], encrypted=True).encryption == "one-time"


def test_cli_refuses_to_overwrite_outputs_or_to_write_over_the_key(victim, data_dir, tmp_path):
    from experiments.__main__ import main

    workdir = tmp_path / "victim"
    save_victim(workdir, victim)
    out = tmp_path / "f.npz"
    argv = ["features", "extract", "--dataset", "synth_market", "--victim", str(workdir),
            "--out", str(out), "--splits", "query", "--batch-size", "8",
            "--data-dir", str(data_dir)]  # fmt: skip
    assert main(argv) == 0
    written = (tmp_path / "f_query.npz").read_bytes()
    assert main(argv) == 2
    assert main([*argv, "--overwrite"]) == 0
    key = tmp_path / "f_query.npz"  # the key file named as one of the outputs
    assert main([*argv, "--overwrite", "--encrypt", "static", "--key", str(key)]) == 2
    assert read_features(key).encryption is None and len(written) > 0
