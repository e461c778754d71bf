"""The README's code is run as written, so it cannot drift from the library."""

import re
from pathlib import Path

import numpy as np

from invfeat import shufflebits

README = Path(__file__).resolve().parents[1] / "README.md"


def test_shufflebits_in_your_model_runs_as_written(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)  # it saves key.json
    scope: dict = {}
    exec(compile(blocks[0], str(README), "exec"), scope)
    plain = np.asarray(scope["features_fn"](scope["variables"], scope["images"]))
    assert np.asarray(scope["features"]).tobytes() == plain.tobytes()
    assert shufflebits.Key.load(tmp_path / "key.json") == scope["key"]
    decrypted = shufflebits.decrypt(scope["ciphertext"], scope["secret"], scope["nonces"])
    assert np.asarray(decrypted).tobytes() == plain.tobytes()
    assert np.asarray(scope["ciphertext"]).tobytes() != plain.tobytes()
