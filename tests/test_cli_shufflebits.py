"""`python -m experiments shufflebits ...` (experiments/shufflebits.py), run in-process through
experiments.__main__.main: keygen, encrypt, decrypt, selftest, their errors and --help."""

import os
import stat

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from experiments.__main__ import main
from invfeat import shufflebits as sb
from invfeat.data import feature_files as ffs
from invfeat.data.feature_files import FeatureFile


@pytest.fixture
def plain(tmp_path):
    rng = np.random.default_rng(0)
    ff = FeatureFile(
        np.array([f"query/{i:04d}_c2s1_000101_00.jpg" for i in range(6)]),
        rng.standard_normal((6, 16)).astype(np.float32),
    )
    path = tmp_path / "plain.npz"
    ffs.write_features(path, ff)
    return path, ff


@pytest.mark.parametrize("one_time", [False, True], ids=["static", "one-time"])
def test_keygen_encrypt_decrypt_round_trip(tmp_path, plain, capsys, one_time):
    path, ff = plain
    key = tmp_path / "key.json"
    assert main(["shufflebits", "keygen", "--out", str(key)] + ["--one-time"] * one_time) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    enc, dec = tmp_path / "enc.npz", tmp_path / "dec.npz"
    assert (
        main(["shufflebits", "encrypt", "--key", str(key), "--in", str(path), "--out", str(enc)])
        == 0
    )
    e = ffs.read_features(enc, encrypted=True)
    assert e.encryption == ("one-time" if one_time else "static")
    assert np.array_equal(e.paths, ff.paths)
    assert e.features.shape == ff.features.shape and e.features.dtype == np.float32
    assert not np.array_equal(e.features.view(np.uint32), ff.features.view(np.uint32))
    assert (e.nonces is not None) == one_time
    assert (
        main(["shufflebits", "decrypt", "--key", str(key), "--in", str(enc), "--out", str(dec)])
        == 0
    )
    d = ffs.read_features(dec, encrypted=False)
    assert np.array_equal(d.paths, ff.paths)
    assert np.array_equal(d.features.view(np.uint32), ff.features.view(np.uint32))
    out = capsys.readouterr().out
    assert "encrypted 6 x 16 float32" in out and "decrypted 6 x 16" in out
    assert key.read_text() not in out


def _run(cmd: str, key, src, dst) -> int:
    return main(["shufflebits", cmd, "--key", str(key), "--in", str(src), "--out", str(dst)])


@pytest.fixture
def stream_file(tmp_path, plain):
    """(plain path, its FeatureFile, stream key path, stream-encrypted path)."""
    path, ff = plain
    key, enc = tmp_path / "stream.json", tmp_path / "enc.npz"
    assert main(["shufflebits", "keygen", "--stream", "--out", str(key)]) == 0
    assert _run("encrypt", key, path, enc) == 0
    return path, ff, key, enc


def test_stream_keygen_encrypt_decrypt_round_trip(tmp_path, stream_file, capsys):
    _, ff, key, enc = stream_file
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert isinstance(sb.load_key(key), sb.StreamKey)
    e = ffs.read_features(enc, encrypted=True)
    assert e.encryption == "stream" and np.array_equal(e.paths, ff.paths)
    assert e.nonces.shape == (6, 3) and e.tags.shape == (6, 16) and e.tags.dtype == np.uint8
    assert not np.array_equal(e.features.view(np.uint32), ff.features.view(np.uint32))
    dec = tmp_path / "dec.npz"
    assert _run("decrypt", key, enc, dec) == 0
    assert "decrypted 6 x 16 float32" in capsys.readouterr().out
    d = ffs.read_features(dec, encrypted=False)
    assert d.tags is None and d.nonces is None
    assert np.array_equal(d.features.view(np.uint32), ff.features.view(np.uint32))
    with np.load(dec) as raw:
        assert set(raw.files) == {ffs.PATHS_KEY, ffs.FEATURES_KEY}


def test_each_stream_row_decrypts_with_any_chacha20poly1305_library(stream_file):
    _, ff, key, enc = stream_file
    box = ChaCha20Poly1305(sb.load_key(key).to_bytes())
    with np.load(enc) as f:
        features, nonces, tags = (
            f["accumulated_feature_array"],
            f["invfeat_nonces"],
            f["invfeat_tags"],
        )
    for i in range(len(ff)):
        message = features[i].tobytes() + tags[i].tobytes()
        plain = box.decrypt(nonces[i].astype("<u4").tobytes(), message, None)
        assert plain == ff.features[i].tobytes()


def _rewrite(path, **changes) -> None:
    """The .npz at `path` with some arrays replaced (what an attacker or a bad copy does)."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(path, **{**arrays, **changes})


@pytest.mark.parametrize("attack", ["flipped byte", "wrong key", "swapped nonces"])
def test_stream_decrypt_refuses_what_does_not_authenticate(tmp_path, stream_file, capsys, attack):
    _, ff, key, enc = stream_file
    with np.load(enc) as f:
        features, nonces = f["accumulated_feature_array"], f["invfeat_nonces"]
    if attack == "flipped byte":
        features = features.copy()
        features.view(np.uint8)[4, 9] ^= 0x20
        _rewrite(enc, accumulated_feature_array=features)
        rows = [4]
    elif attack == "swapped nonces":
        _rewrite(enc, invfeat_nonces=nonces[[0, 1, 5, 3, 4, 2]])
        rows = [2, 5]
    else:
        key = tmp_path / "other.json"
        sb.StreamKey.generate().save(key)
        rows = list(range(6))
    capsys.readouterr()
    out = tmp_path / "out.npz"
    assert _run("decrypt", key, enc, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "fail Poly1305 authentication" in err and "nothing was written" in err
    for i in rows[:5]:
        assert f"{i} ({ff.paths[i]})" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_keys_of_one_scheme_are_refused_for_another(tmp_path, stream_file, capsys):
    path, _, stream_key, enc = stream_file
    secret, static, out = tmp_path / "secret.json", tmp_path / "static.json", tmp_path / "o.npz"
    assert main(["shufflebits", "keygen", "--one-time", "--out", str(secret)]) == 0
    assert main(["shufflebits", "keygen", "--out", str(static)]) == 0
    capsys.readouterr()
    for key in (secret, static):
        assert _run("decrypt", key, enc, out) == 2
        assert "encrypted with a stream key, not a" in capsys.readouterr().err
    one_time = tmp_path / "one_time.npz"
    assert _run("encrypt", secret, path, one_time) == 0
    assert _run("decrypt", stream_key, one_time, out) == 2
    assert "encrypted with a one-time key, not a stream one" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as done:
        main(["shufflebits", "keygen", "--stream", "--one-time", "--out", str(tmp_path / "k")])
    assert done.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_widths_round_trip_bit_exactly(tmp_path, dtype):
    """A 16- or 64-bit key on a float16 / float64 file (64 bits switch on JAX's x64 locally)."""
    bits = np.dtype(dtype).itemsize * 8
    feats = np.random.default_rng(1).standard_normal((5, 8)).astype(dtype)
    path, key = tmp_path / "plain.npz", tmp_path / "key.json"
    ffs.write_features(path, FeatureFile(np.array([f"{i}.jpg" for i in range(5)]), feats))
    assert main(["shufflebits", "keygen", "--bits", str(bits), "--out", str(key)]) == 0
    enc, dec = tmp_path / "enc.npz", tmp_path / "dec.npz"
    for cmd, src, dst in (("encrypt", path, enc), ("decrypt", enc, dec)):
        assert (
            main(["shufflebits", cmd, "--key", str(key), "--in", str(src), "--out", str(dst)]) == 0
        )
    e = ffs.read_features(enc, encrypted=True).features
    assert e.dtype == dtype and not np.array_equal(e, feats)
    d = ffs.read_features(dec, encrypted=False).features
    assert d.dtype == dtype and np.array_equal(d.view(f"u{bits // 8}"), feats.view(f"u{bits // 8}"))


def test_encrypt_decrypt_change_the_features_and_nothing_else(tmp_path):
    """Bytes paths stay bytes and arrays beyond the layout (a writer's identities) pass through."""
    paths = np.array([b"query/0001_c1s1_000151_00.jpg", b"bounding_box_test/0002_c3_01.jpg"])
    pids, feats = np.array([1, 2]), np.ones((2, 4), np.float32)
    path, key = tmp_path / "plain.npz", tmp_path / "key.json"
    np.savez(path, accumulated_image_file_paths=paths, accumulated_feature_array=feats, pids=pids)
    assert main(["shufflebits", "keygen", "--one-time", "--out", str(key)]) == 0
    enc, dec = tmp_path / "enc.npz", tmp_path / "dec.npz"
    for cmd, src, dst in (("encrypt", path, enc), ("decrypt", enc, dec)):
        assert (
            main(["shufflebits", cmd, "--key", str(key), "--in", str(src), "--out", str(dst)]) == 0
        )
    with np.load(enc) as e, np.load(dec) as d:
        layout = {ffs.PATHS_KEY, ffs.FEATURES_KEY, "pids"}
        assert set(e.files) == layout | {ffs.ENCRYPTION_KEY, ffs.NONCES_KEY}
        assert set(d.files) == layout
        for f in (e, d):
            assert f["accumulated_image_file_paths"].dtype == paths.dtype
            assert np.array_equal(f["accumulated_image_file_paths"], paths)
            assert np.array_equal(f["pids"], pids)
        assert np.array_equal(d["accumulated_feature_array"], feats)


def test_errors_exit_2_and_write_nothing(tmp_path, plain, capsys):
    path, _ = plain
    key = tmp_path / "key.json"
    assert main(["shufflebits", "keygen", "--out", str(key)]) == 0
    assert main(["shufflebits", "keygen", "--out", str(key)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["shufflebits", "keygen", "--out", str(tmp_path / "nope" / "k.json")]) == 2
    assert f"{tmp_path / 'nope'}: no such folder" in capsys.readouterr().err  # not a temp file

    out = tmp_path / "out.npz"
    bad = tmp_path / "bad.npz"
    np.savez(bad, accumulated_image_file_paths=np.array(["a"]))
    for args, message in [
        (["encrypt", "--key", str(key), "--in", str(bad)], "missing key"),
        (["encrypt", "--key", str(tmp_path / "nokey"), "--in", str(path)], "cannot read key"),
        (["decrypt", "--key", str(key), "--in", str(path)], "is not encrypted"),
    ]:
        assert main(["shufflebits", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("error: ")
        assert not out.exists()

    enc = tmp_path / "enc.npz"
    assert (
        main(["shufflebits", "encrypt", "--key", str(key), "--in", str(path), "--out", str(enc)])
        == 0
    )
    assert (
        main(["shufflebits", "encrypt", "--key", str(key), "--in", str(enc), "--out", str(out)])
        == 2
    )
    assert "is encrypted" in capsys.readouterr().err
    secret = tmp_path / "secret.json"
    assert main(["shufflebits", "keygen", "--one-time", "--out", str(secret)]) == 0
    assert (
        main(["shufflebits", "decrypt", "--key", str(secret), "--in", str(enc), "--out", str(out)])
        == 2
    )
    assert "static key, not a one-time" in capsys.readouterr().err
    # fixed keys: this wrong one turns some rows into NaN, so nothing is written (a wrong key
    # need not produce NaN: ShuffleBits does not authenticate)
    right, wrong = tmp_path / "right.json", tmp_path / "wrong.json"
    sb.Key.from_seed(1).save(right)
    sb.Key.from_seed(9).save(wrong)  # checked: decrypts some of these rows to NaN
    enc.unlink()
    assert (
        main(["shufflebits", "encrypt", "--key", str(right), "--in", str(path), "--out", str(enc)])
        == 0
    )
    assert (
        main(["shufflebits", "decrypt", "--key", str(wrong), "--in", str(enc), "--out", str(out)])
        == 2
    )
    assert "wrong key?" in capsys.readouterr().err
    os.chmod(key, 0o644)
    assert (
        main(["shufflebits", "encrypt", "--key", str(key), "--in", str(path), "--out", str(out)])
        == 2
    )
    assert "chmod 600" in capsys.readouterr().err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_refuses_to_overwrite_unless_asked_and_never_the_key(tmp_path, plain, capsys):
    path, ff = plain
    key, out = tmp_path / "key.json", tmp_path / "out.npz"
    assert main(["shufflebits", "keygen", "--out", str(key)]) == 0
    key_text = key.read_text()
    out.write_bytes(b"someone's results")
    encrypt = ["shufflebits", "encrypt", "--key", str(key), "--in", str(path), "--out"]
    assert main([*encrypt, str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"someone's results"
    # the key as --out would leave ciphertext nobody can decrypt: refused even with --overwrite
    assert main([*encrypt, str(key), "--overwrite"]) == 2
    assert "is the key file" in capsys.readouterr().err
    assert key.read_text() == key_text
    assert main([*encrypt, str(out), "--overwrite"]) == 0
    assert np.array_equal(ffs.read_features(out, encrypted=True).paths, ff.paths)


def test_selftest_passes(capsys):
    assert main(["shufflebits", "selftest"]) == 0
    out = capsys.readouterr().out
    assert "6/6 checks passed" in out and "stream mode" in out and "FAIL" not in out


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_keygen_bits_help_gives_default_and_one_time_ignoring_it(capsys):
    text = _help(capsys, "shufflebits", "keygen")
    assert "default: 32" in text
    assert "--one-time and --stream ignore it" in text
