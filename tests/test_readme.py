"""The README's code is run as written, so it cannot drift from the library."""

import re
from pathlib import Path

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag

from experiments.__main__ import main
from invfeat import shufflebits
from invfeat.data.feature_files import FeatureFile, write_features

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_its_two_python_blocks():
    assert len(python_blocks()) == 2


def test_shufflebits_in_your_model_runs_as_written(tmp_path, monkeypatch):
    blocks = python_blocks()
    monkeypatch.chdir(tmp_path)  # it saves key.json
    scope: dict = {}
    exec(compile(blocks[0], str(README), "exec"), scope)
    plain = np.asarray(scope["features_fn"](scope["variables"], scope["images"]))
    assert np.asarray(scope["features"]).tobytes() == plain.tobytes()
    assert shufflebits.Key.load(tmp_path / "key.json") == scope["key"]
    decrypted = shufflebits.decrypt(scope["ciphertext"], scope["secret"], scope["nonces"])
    assert np.asarray(decrypted).tobytes() == plain.tobytes()
    assert np.asarray(scope["ciphertext"]).tobytes() != plain.tobytes()
    assert np.asarray(scope["opened"]).tobytes() == plain.tobytes()
    assert np.asarray(scope["sealed"]).tobytes() != plain.tobytes()
    assert scope["tags"].shape == (len(plain), 16)


def test_stream_decryption_with_cryptography_runs_as_written(tmp_path, monkeypatch):
    """The block decrypts a file written by `shufflebits encrypt` under a `--stream` key."""
    block = python_blocks()[1]
    monkeypatch.chdir(tmp_path)
    plain = np.random.default_rng(0).standard_normal((3, 7)).astype(np.float32)
    write_features("plain.npz", FeatureFile(np.array(["a.jpg", "b.jpg", "c.jpg"]), plain))
    assert main(["shufflebits", "keygen", "--stream", "--out", "stream.json"]) == 0
    argv = ["shufflebits", "encrypt", "--key", "stream.json", "--in", "plain.npz"]
    assert main([*argv, "--out", "features.npz"]) == 0
    scope: dict = {}
    exec(compile(block, str(README), "exec"), scope)
    for i in range(3):
        assert scope["row"](i).tobytes() == plain[i].tobytes()
    scope["tags"][1, 0] ^= 1
    with pytest.raises(InvalidTag):
        scope["row"](1)
    scope["f"].close()
