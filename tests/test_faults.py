"""Crash consistency of the commands that write files, by fault injection (tests/helpers/faults.py):
each command is killed (SIGKILL) just before or just after each of its file-system calls, or the
call fails as a full disk does. Whatever the fault, every output is absent or complete and
valid; a full disk ends in one `error:` line; and a rerun of the same command completes, keeping
what was finished and removing what the killed run left. CI runs a sample (one fault of each
kind per command); `pytest -m slow` runs every fault."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import faults
from helpers.faults import Fault
from helpers.worlds import TINY_MARKET

from invfeat import shufflebits as sb
from invfeat.data.feature_files import FeatureFile, read_features, write_features
from invfeat.shufflebits.aead import check_stream_tags
from invfeat.victims import save_victim

SAMPLE = (Fault("link", 1, "kill-after"), Fault("fsync", 1, "kill-before"))
ENOSPC = Fault("fsync", 1, "enospc")


def _check_no_traceback(outcome: faults.Outcome) -> None:
    assert "Traceback" not in outcome.stderr, outcome.stderr


def _full_disk(outcome: faults.Outcome, name: str) -> None:
    """A full disk: exit 2, one error line naming the output (not a temporary file)."""
    _check_no_traceback(outcome)
    assert outcome.returncode == 2
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {name}: no space left on the device"], outcome.stderr


def _after(outcome: faults.Outcome, fault: Fault, name: str) -> None:
    if fault.action == "enospc":
        _full_disk(outcome, name)
    else:
        assert outcome.killed, (fault, outcome.returncode, outcome.stderr)


# ---- shufflebits encrypt ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def encrypt_case(tmp_path_factory):
    """A plaintext feature file and a stream key, and the encrypt command's call counts."""
    root = tmp_path_factory.mktemp("encrypt")
    rng = np.random.default_rng(0)
    paths = np.asarray([f"query/{i:04d}.jpg" for i in range(64)])
    write_features(root / "plain.npz", FeatureFile(paths, rng.normal(size=(64, 32)).astype("f4")))
    sb.StreamKey.generate().save(root / "key.json")
    counted = faults.run(ENCRYPT, root)
    assert counted.returncode == 0, counted.stderr
    (root / "out.npz").unlink()
    return root, counted.counts


ENCRYPT = ["shufflebits", "encrypt", "--key", "key.json", "--in", "plain.npz", "--out", "out.npz"]


def _check_encrypted(folder: Path) -> None:
    out = read_features(folder / "out.npz", encrypted=True)
    key = sb.load_key(folder / "key.json")
    check_stream_tags(out.features, key, out.nonces, out.tags, names=out.paths)
    plain = read_features(folder / "plain.npz")
    np.testing.assert_array_equal(
        np.asarray(sb.decrypt(out.features, key, out.nonces)), plain.features
    )


def _encrypt_survives(fault: Fault, case, tmp_path: Path) -> None:
    root, _ = case
    folder = tmp_path / str(fault)
    shutil.copytree(root, folder)
    _after(faults.run(ENCRYPT, folder, fault), fault, "out.npz")
    published = (folder / "out.npz").exists()
    if published:
        _check_encrypted(folder)
    again = faults.run(ENCRYPT, folder)
    _check_no_traceback(again)
    assert again.returncode == (2 if published else 0), again.stderr
    _check_encrypted(folder)
    assert faults.leftovers(folder) == []


@pytest.mark.parametrize("fault", [*SAMPLE, ENOSPC], ids=str)
def test_encrypt_survives_a_sample_of_faults(fault, encrypt_case, tmp_path):
    _encrypt_survives(fault, encrypt_case, tmp_path)


@pytest.mark.slow
def test_encrypt_survives_every_fault(encrypt_case, tmp_path):
    every = faults.every_fault(encrypt_case[1])
    assert len(every) >= 9
    for fault in every:
        _encrypt_survives(fault, encrypt_case, tmp_path)


# ---- shufflebits keygen -----------------------------------------------------------------------

KEYGEN = ["shufflebits", "keygen", "--out", "k.json", "--stream"]


def _keygen_survives(fault: Fault, tmp_path: Path) -> None:
    folder = tmp_path / str(fault)
    folder.mkdir()
    _after(faults.run(KEYGEN, folder, fault), fault, "k.json")
    published = (folder / "k.json").exists()
    if published:
        sb.load_key(folder / "k.json")
        assert (folder / "k.json").stat().st_mode & 0o777 == 0o600
    again = faults.run(KEYGEN, folder)
    assert again.returncode == (2 if published else 0), again.stderr
    assert isinstance(sb.load_key(folder / "k.json"), sb.StreamKey)
    assert faults.leftovers(folder) == []  # a killed keygen's temporary file held a key


@pytest.mark.parametrize("fault", [Fault("link", 1, "kill-before"), ENOSPC], ids=str)
def test_keygen_survives_a_sample_of_faults(fault, tmp_path):
    _keygen_survives(fault, tmp_path)


@pytest.mark.slow
def test_keygen_survives_every_fault(tmp_path):
    counted = faults.run(KEYGEN, tmp_path)
    assert counted.returncode == 0
    for fault in faults.every_fault(counted.counts):
        _keygen_survives(fault, tmp_path)


# ---- features extract -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extract_case(untrained_victim, tiny_market_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    save_victim(root / "victim", untrained_victim)
    argv = ["features", "extract", "--dataset", "synth_market", "--victim", "victim",
            "--out", "feats", "--batch-size", "8", "--data-dir", str(tiny_market_dir)]  # fmt: skip
    counted = faults.run(argv, root)
    assert counted.returncode == 0, counted.stderr
    reference = {
        s: read_features(root / "feats" / f"{s}.npz") for s in ("train", "query", "gallery")
    }
    shutil.rmtree(root / "feats")
    return root, argv, counted.counts, reference


def _extract_survives(fault: Fault, case, tmp_path: Path) -> None:
    root, argv, _, reference = case
    folder = tmp_path / str(fault)
    shutil.copytree(root, folder)
    outcome = faults.run(argv, folder, fault)
    if fault.action == "enospc":
        _check_no_traceback(outcome)
        assert outcome.returncode == 2 and "no space left on the device" in outcome.stderr
    else:
        assert outcome.killed, outcome.stderr
    for split, ff in reference.items():
        path = folder / "feats" / f"{split}.npz"
        if path.exists():  # published whole
            np.testing.assert_array_equal(read_features(path).features, ff.features)
    manifest = folder / "feats" / ".extract.json"
    finished = not manifest.exists() and all(
        (folder / "feats" / f"{split}.npz").exists() for split in reference
    )
    again = faults.run(argv, folder)
    _check_no_traceback(again)
    assert again.returncode == (2 if finished else 0), again.stderr  # finished: not replaced
    for split, ff in reference.items():
        np.testing.assert_array_equal(
            read_features(folder / "feats" / f"{split}.npz").features, ff.features
        )
    assert faults.leftovers(folder) == []
    assert not (folder / "feats" / ".extract.json").exists()


@pytest.mark.parametrize(
    "fault", [Fault("link", 2, "kill-after"), Fault("fsync", 3, "enospc")], ids=str
)
def test_extract_survives_a_sample_of_faults(fault, extract_case, tmp_path):
    """Killed after the second split is published, the rerun keeps two and makes the third."""
    _extract_survives(fault, extract_case, tmp_path)


@pytest.mark.slow
def test_extract_survives_every_fault(extract_case, tmp_path):
    for fault in faults.every_fault(extract_case[2], ("kill-before", "kill-after")):
        _extract_survives(fault, extract_case, tmp_path)


# ---- data preview -----------------------------------------------------------------------------

PREVIEW = ["data", "preview", "--dataset", "synth_market", "--out", "sheet.png"]


def _preview_survives(fault: Fault, tmp_path: Path) -> None:
    folder = tmp_path / str(fault)
    folder.mkdir()
    _after(faults.run(PREVIEW, folder, fault), fault, "sheet.png")
    if (folder / "sheet.png").exists():
        assert cv2.imread(str(folder / "sheet.png")) is not None
    again = faults.run([*PREVIEW, "--overwrite"], folder)
    assert again.returncode == 0, again.stderr
    assert cv2.imread(str(folder / "sheet.png")) is not None
    assert faults.leftovers(folder) == []


def test_preview_survives_a_full_disk(tmp_path):
    _preview_survives(ENOSPC, tmp_path)


@pytest.mark.slow
def test_preview_survives_every_fault(tmp_path):
    counted = faults.run(PREVIEW, tmp_path)
    assert counted.returncode == 0
    for fault in faults.every_fault(counted.counts):
        _preview_survives(fault, tmp_path)


# ---- data build -------------------------------------------------------------------------------

BUILD = f"""
from invfeat.data.datasets import prepare_dataset
from experiments.__main__ import show_own_warnings_as_lines
show_own_warnings_as_lines()
prepare_dataset("synth_market", data_dir="data", data_settings={TINY_MARKET!r})
"""
# The build's own example generator kills its process after a few examples: always mid-way,
# where a kill from outside could race a tiny build's end.
KILLED_MIDWAY = """
import os, signal
from invfeat.data.builders.common import ReidBuilder
generate = ReidBuilder._generate_examples
def killed_midway(self, split, records):
    for i, example in enumerate(generate(self, split, records)):
        if i == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        yield example
ReidBuilder._generate_examples = killed_midway
"""


def test_a_build_killed_midway_is_rebuilt_and_its_leftovers_removed(tmp_path):
    """TFDS writes through TensorFlow's file system, which the os hooks do not see: the build
    (as every command renders a synthetic dataset) is killed while it writes its examples into
    its `incomplete.*` folder, then run again."""
    env = {"PYTHONPATH": str(faults.ROOT), "PATH": "/usr/bin:/bin"}
    run = dict(cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = subprocess.run([sys.executable, "-c", KILLED_MIDWAY + BUILD], **run, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list(tmp_path.glob("data/synth_market/*/incomplete.*"))
    assert faults.leftovers(tmp_path / "data")
    again = subprocess.run([sys.executable, "-c", BUILD], **run, text=True, check=True)
    assert "warning: " in again.stderr and "removed what a killed build" in again.stderr
    assert faults.leftovers(tmp_path / "data") == []
    from invfeat.data.datasets import open_dataset_split

    query = open_dataset_split("synth_market", "query", data_dir=tmp_path / "data",
                               data_settings=TINY_MARKET)  # fmt: skip
    assert len(query) > 0
