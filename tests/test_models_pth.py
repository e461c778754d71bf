"""The torch-free .pth reader (invfeat/models/pth.py): a checkpoint torch wrote (tests/data, made by
make_pth_fixture.py) reads to the arrays torch had; pickles naming any other global are refused
before they run; non-zip, legacy, TorchScript-like and incomplete files are refused by name.
`write_pth` writes the same format from numpy, for tests here and in test_models_fastreid.py."""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from helpers.pth_files import pth_files, write_pth, write_zip

from invfeat.models import pth

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "pth_fixture.pth"


def fixture_files() -> dict[str, bytes]:
    with zipfile.ZipFile(FIXTURE) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def test_a_checkpoint_torch_wrote_reads_to_its_arrays():
    checkpoint = pth.load_pth(FIXTURE)
    expected = np.load(DATA / "pth_fixture.npz")
    model = checkpoint["model"]
    assert isinstance(model, OrderedDict)
    assert list(model) == [k.removeprefix("model/") for k in expected.files]
    dtypes = {
        "fc.weight": np.float32,
        "fc.weight_t": np.float32,
        "fc.slice": np.float32,
        "conv.weight": np.float32,
        "bn.running_mean": np.float16,
        "bn.num_batches_tracked": np.int64,
        "idx": np.int64,
        "heads.weight": ml_dtypes.bfloat16,
        "empty": np.float32,
    }
    for key, dtype in dtypes.items():
        array, want = model[key], expected[f"model/{key}"]
        assert array.dtype == dtype and array.shape == want.shape, key
        assert array.flags.c_contiguous and array.flags.writeable, key
        np.testing.assert_array_equal(array.astype(want.dtype), want, err_msg=key)
    np.testing.assert_array_equal(model["fc.weight_t"], model["fc.weight"].T)  # shared storage
    np.testing.assert_array_equal(model["fc.slice"], model["fc.weight"][1:, ::2])
    assert model["bn.num_batches_tracked"].shape == () and model["bn.num_batches_tracked"] == 7
    assert checkpoint["iteration"] == 5
    assert checkpoint["meta"] == {"names": ["a", "b"], "lr": 0.1, "flags": (True, None)}


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_written_checkpoints_round_trip_in_either_byte_order(tmp_path, byteorder):
    rng = np.random.default_rng(0)
    state = {
        "f32": rng.normal(size=(2, 3)).astype(np.float32),
        "f16": rng.normal(size=4).astype(np.float16),
        "bf16": rng.normal(size=(3, 1)).astype(ml_dtypes.bfloat16),
        "i64": np.arange(-3, 3, dtype=np.int64).reshape(3, 2),
        "c64": np.array([1 + 2j, -3j], np.complex64),
        "bool": np.array([True, False]),
    }
    path = tmp_path / "x.pth"
    write_pth(path, {"model": state, "iteration": 3}, byteorder)
    if byteorder == "big":  # the bytes really are big-endian
        stored = pth_files({"model": state}, "big")["archive/data/0"]
        assert stored == state["f32"].astype(">f4").tobytes()
    got = pth.load_pth(path)
    assert got["iteration"] == 3
    for key, array in state.items():
        assert got["model"][key].dtype == array.dtype, key
        np.testing.assert_array_equal(got["model"][key], array, err_msg=key)


class _Exec:
    """Unpickles as exec(`code`): what a malicious checkpoint does."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def test_a_pickle_naming_another_global_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps({"model": _Exec(f"open({str(marker)!r}, 'w').close()")}, protocol=2)
    pickle.loads(payload)  # the payload is live: plain pickle runs it
    assert marker.exists()
    marker.unlink()
    files = fixture_files()
    files["pth_fixture/data.pkl"] = payload
    path = tmp_path / "evil.pth"
    write_zip(path, files)
    with pytest.raises(
        pth.ForbiddenGlobalError, match=r"evil.pth: refused pickled global __builtin__.exec"
    ):
        pth.load_pth(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload,name",
    [
        (b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.", "posix.system"),
        (b"\x80\x02ctorch.nn.modules.linear\nLinear\n)\x81.", "torch.nn.modules.linear.Linear"),
        (b"\x80\x02ctorch\nload\n.", "torch.load"),
        (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n.", "numpy.core.multiarray._reconstruct"),
        (b"(S'true'\nios\nsystem\n.", "os.system"),  # protocol 0 INST
    ],
)
def test_every_global_outside_the_allowlist_is_named(tmp_path, payload, name):
    path = tmp_path / "x.pth"
    write_zip(path, {"archive/data.pkl": payload})
    with pytest.raises(pth.ForbiddenGlobalError, match=name) as info:
        pth.load_pth(path)
    assert info.value.name == name


def test_a_non_zip_file_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(pth.PthError, match=r"model.pth: not a torch.save checkpoint \(not a zip"):
        pth.load_pth(path)
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"\x80\x02K\x03.")
    with pytest.raises(pth.PthError, match=r"legacy \(pre-1.6\) torch.save format"):
        pth.load_pth(path)
    path.write_bytes(FIXTURE.read_bytes()[:300])
    with pytest.raises(pth.PthError, match="not a zip archive"):
        pth.load_pth(path)
    with pytest.raises(FileNotFoundError):
        pth.load_pth(tmp_path / "nope.pth")


def test_a_zip_without_data_pkl_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    write_zip(path, {"scripted/constants.pkl": b"", "scripted/code/x.py": b""})
    with pytest.raises(pth.PthError, match="no single <name>/data.pkl"):
        pth.load_pth(path)


def test_a_missing_or_short_storage_file_is_named(tmp_path):
    files = fixture_files()
    del files["pth_fixture/data/1"]
    path = tmp_path / "x.pth"
    write_zip(path, files)
    with pytest.raises(pth.PthError, match="storage file pth_fixture/data/1 is missing"):
        pth.load_pth(path)
    files = fixture_files()
    files["pth_fixture/data/0"] = files["pth_fixture/data/0"][:8]
    write_zip(path, files)
    with pytest.raises(pth.PthError, match="pth_fixture/data/0 holds 8 bytes, not 12 x 4"):
        pth.load_pth(path)


def test_a_tensor_past_its_storage_is_refused(tmp_path):
    payload = pth_files({"w": np.zeros(4, np.float32)})
    pickled = payload["archive/data.pkl"]
    assert b"K\x04\x85" in pickled  # size (4,)
    payload["archive/data.pkl"] = pickled.replace(b"K\x04\x85", b"K\x05\x85")
    path = tmp_path / "x.pth"
    write_zip(path, payload)
    with pytest.raises(pth.PthError, match=r"runs past its storage of 4 elements"):
        pth.load_pth(path)


def test_garbage_in_data_pkl_is_unreadable_not_a_crash(tmp_path):
    path = tmp_path / "x.pth"
    write_zip(path, {"archive/data.pkl": b"\x80\x02}q\x00(X\x01"})
    with pytest.raises(pth.PthError, match=r"x.pth: unreadable \("):
        pth.load_pth(path)
