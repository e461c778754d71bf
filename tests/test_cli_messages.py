"""The messages of the commands' refusals: each names the user's input and what to do, in the
command line's words (options, never library arguments or temporary files), and nothing is
replaced without --overwrite."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.__main__ import main
from invfeat import shufflebits as sb
from invfeat.data.feature_files import FeatureFile, write_features
from invfeat.victims import save_victim


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A plaintext feature file, one holding NaN, a stream key, a file and a folder."""
    monkeypatch.chdir(tmp_path)
    paths = np.asarray(["q/1.jpg", "q/2.jpg"])
    write_features("plain.npz", FeatureFile(paths, np.ones((2, 4), np.float32)))
    nan = np.asarray([[np.nan] * 4, [1.0] * 4], np.float32)
    np.savez("nan.npz", accumulated_image_file_paths=paths, accumulated_feature_array=nan)
    sb.StreamKey.generate().save("key.json")
    (tmp_path / "afile").write_text("")
    (tmp_path / "folder").mkdir()
    return tmp_path


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Errno" not in err and ".tmp" not in err, err
    return err.strip().splitlines()[-1]


CASES = {
    "encrypt to a folder": (
        ["shufflebits", "encrypt", "--key", "key.json", "--in", "plain.npz", "--out", "folder",
         "--overwrite"],
        "error: folder: is a folder",
    ),
    "encrypt from a folder": (
        ["shufflebits", "encrypt", "--key", "key.json", "--in", "folder", "--out", "o.npz"],
        "error: folder: is a folder, not a feature file",
    ),
    "decrypt plaintext holding NaN": (
        ["shufflebits", "decrypt", "--key", "key.json", "--in", "nan.npz", "--out", "o.npz"],
        "error: nan.npz: feature file is not encrypted",
    ),
    "a key under a file": (
        ["shufflebits", "keygen", "--out", "afile/k.json"],
        "error: afile: no such folder for the key file k.json",
    ),
    "a preview under a file": (
        ["data", "preview", "--dataset", "synth_market", "--out", "afile/x.png"],
        "error: afile: a file, not a folder",
    ),
}  # fmt: skip


@pytest.mark.parametrize("argv,expected", CASES.values(), ids=CASES)
def test_refusals_name_the_input(argv, expected, files, capsys):
    assert main(argv) == 2
    assert error_line(capsys) == expected


def test_a_preview_is_replaced_only_with_overwrite(files, capsys):
    argv = ["data", "preview", "--dataset", "synth_market", "--out", "sheet.png"]
    assert main(argv) == 0
    first = (files / "sheet.png").stat().st_mtime_ns
    assert main(argv) == 2
    assert error_line(capsys) == "error: sheet.png: already exists; pass --overwrite to replace it"
    assert (files / "sheet.png").stat().st_mtime_ns == first
    assert main([*argv, "--overwrite"]) == 0


def test_extract_refusals_speak_of_options(untrained_victim, tiny_market_dir, files, capsys):
    """Unknown splits are named with the dataset's; an unwritable --out fails before any
    extraction; existing outputs point to --overwrite."""
    save_victim(files / "victim", untrained_victim)
    base = ["features", "extract", "--dataset", "synth_market", "--victim", "victim",
            "--data-dir", str(tiny_market_dir), "--batch-size", "8"]  # fmt: skip
    assert main([*base, "--out", "feats", "--splits", "query", "nosuch"]) == 2
    assert error_line(capsys) == (
        "error: --splits nosuch: synth_market has the splits train query gallery"
    )
    assert main([*base, "--out", "afile/feats", "--splits", "query"]) == 2
    assert error_line(capsys) == "error: afile: a file, not a folder"
    assert main([*base, "--out", "feats", "--splits", "query"]) == 0
    assert main([*base, "--out", "feats", "--splits", "query"]) == 2
    line = error_line(capsys)
    assert line.startswith("error: feats/query.npz: already exist(s); pass --overwrite"), line
    assert "overwrite=True" not in line


def test_victim_train_says_what_resume_does(tmp_path, capsys, monkeypatch):
    """--resume on a folder without a run says it starts a new one; a second fresh run over a
    finished one is refused in the command line's words."""
    from invfeat import victims as V

    monkeypatch.chdir(tmp_path)

    class NotTrained(Exception):
        pass

    def stop(*args, **kwargs):
        raise NotTrained

    real = V.train_victim
    monkeypatch.setattr(V, "train_victim", stop)  # what was said before training is the point
    argv = ["victim", "train", "--config", "tiny", "--workdir", "w", "--no-eval"]
    with pytest.raises(NotTrained):
        main([*argv, "--resume"])
    assert "w: no run to resume there; starting a new one" in capsys.readouterr().out
    (tmp_path / "w" / "checkpoints" / "1").mkdir(parents=True)  # a run was here
    monkeypatch.setattr(V, "train_victim", real)
    assert main(argv) == 2
    assert error_line(capsys) == (
        "error: w already holds a training run; continue it with --resume, or choose another "
        "--workdir"
    )
