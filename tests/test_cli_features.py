"""`python -m experiments features extract` (experiments/features.py): a new one-time or stream
key is written 0600 and never printed; stream files carry tags that verify and decrypt to the
plaintext extraction; outputs are not overwritten unless asked, and never the key file."""

from __future__ import annotations

import numpy as np

from experiments.__main__ import main
from invfeat import shufflebits
from invfeat.data.feature_files import read_features
from invfeat.shufflebits.aead import bad_stream_tags
from invfeat.victims import save_victim


def test_cli_extract_with_a_new_one_time_key(untrained_victim, tiny_market_dir, tmp_path, capsys):
    workdir = tmp_path / "victim"
    save_victim(workdir, untrained_victim)
    key_file = tmp_path / "secret.json"
    argv = ["features", "extract", "--dataset", "synth_market", "--victim", str(workdir),
            "--out", str(tmp_path / "enc"), "--encrypt", "one-time", "--key", str(key_file),
            "--splits", "query", "--batch-size", "8",
            "--data-dir", str(tiny_market_dir)]  # fmt: skip
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


def test_cli_extract_stream_writes_tags_that_verify(
    untrained_victim, tiny_market_dir, tmp_path, capsys
):
    workdir = tmp_path / "victim"
    save_victim(workdir, untrained_victim)
    key_file = tmp_path / "stream.json"
    common = ["features", "extract", "--dataset", "synth_market", "--victim", str(workdir),
              "--splits", "query", "--batch-size", "8",
              "--data-dir", str(tiny_market_dir)]  # fmt: skip
    stream = ["--encrypt", "stream", "--key", str(key_file)]
    assert main([*common, "--out", str(tmp_path / "enc"), *stream]) == 0
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = shufflebits.load_key(key_file)
    assert isinstance(key, shufflebits.StreamKey)
    assert "created a new stream key file" in capsys.readouterr().out
    cipher = read_features(tmp_path / "enc" / "query.npz", encrypted=True)
    assert cipher.encryption == "stream" and cipher.tags.shape == (2, 16)
    assert len(bad_stream_tags(cipher.features, key, cipher.nonces, cipher.tags)) == 0
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    decrypted = tmp_path / "dec.npz"
    argv = ["shufflebits", "decrypt", "--key", str(key_file),
            "--in", str(tmp_path / "enc" / "query.npz"), "--out", str(decrypted)]  # fmt: skip
    assert main(argv) == 0
    plain = read_features(tmp_path / "plain" / "query.npz", encrypted=False)
    got = read_features(decrypted, encrypted=False)
    np.testing.assert_array_equal(got.paths, plain.paths)
    np.testing.assert_array_equal(got.features.view(np.uint32), plain.features.view(np.uint32))
    for other in ("static", "one-time"):  # the key file holds a stream key
        argv = [*common, "--out", str(tmp_path / other), "--encrypt", other, "--key", str(key_file)]
        assert main(argv) == 2
        assert "holds a stream key" in capsys.readouterr().err


def test_cli_refuses_to_overwrite_outputs_or_to_write_over_the_key(
    untrained_victim, tiny_market_dir, tmp_path
):
    workdir = tmp_path / "victim"
    save_victim(workdir, untrained_victim)
    out = tmp_path / "f.npz"
    argv = ["features", "extract", "--dataset", "synth_market", "--victim", str(workdir),
            "--out", str(out), "--splits", "query", "--batch-size", "8",
            "--data-dir", str(tiny_market_dir)]  # fmt: skip
    assert main(argv) == 0
    written = (tmp_path / "f_query.npz").read_bytes()
    assert main(argv) == 2
    assert main([*argv, "--overwrite"]) == 0
    key = tmp_path / "f_query.npz"  # the key file named as one of the outputs
    assert main([*argv, "--overwrite", "--encrypt", "static", "--key", str(key)]) == 2
    assert read_features(key).encryption is None and len(written) > 0
