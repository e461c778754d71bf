"""Stages (invfeat/study/stages.py): each named stage runs once and is read back after; a stage
whose inputs digest equals that of a stage finished earlier is that stage, not run again."""

import json

import numpy as np
import pytest

from invfeat.study.stages import RESULT_FILE, TIMING_FILE, Stages, inputs_digest


class Calls:
    """A stage function that records the folders it was called with."""

    def __init__(self, value):
        self.value, self.dirs = value, []

    def __call__(self, workdir):
        self.dirs.append(workdir)
        (workdir / "made.txt").write_text(str(self.value))
        return self.value


def never(_):
    raise AssertionError("this stage must not run")


def test_run_stage_runs_once_and_is_read_back(tmp_path):
    stages = Stages(tmp_path, progress=False)
    fn = Calls({"score": 0.5})
    assert stages.run("attack", fn) == {"score": 0.5}
    assert fn.dirs == [tmp_path / "attack"]
    record = json.loads((tmp_path / "attack" / RESULT_FILE).read_text())
    assert record["result"] == {"score": 0.5} and "inputs" not in record
    assert stages.run("attack", never) == {"score": 0.5}
    # a fresh Stages over the same folder (a resumed run) reads it back too
    again = Stages(tmp_path, progress=False)
    assert again.run("attack", never) == {"score": 0.5}
    assert again.timings["attack"] == record["seconds"]
    assert again.home("attack") == tmp_path / "attack"
    with pytest.raises(FileNotFoundError, match="has not finished"):
        again.home("other")


def test_run_stage_with_the_same_inputs_is_the_first(tmp_path):
    stages = Stages(tmp_path, progress=False)
    digest = inputs_digest([np.arange(5, dtype=np.float32)], {"attack": "gan"})
    first = Calls({"rank1": 0.25})
    assert stages.run("a/gan", first, inputs=digest) == {"rank1": 0.25}
    assert json.loads((tmp_path / "a/gan" / RESULT_FILE).read_text())["inputs"] == digest
    assert stages.run("b/gan", never, inputs=digest) == {"rank1": 0.25}
    record = json.loads((tmp_path / "b/gan" / RESULT_FILE).read_text())
    assert record["same_as"] == "a/gan" and record["inputs"] == digest
    assert record["seconds"] == 0.0 and stages.timings["b/gan"] == 0.0
    assert stages.home("b/gan") == tmp_path / "a/gan"
    assert stages.home("a/gan") == tmp_path / "a/gan"
    assert (stages.home("b/gan") / "made.txt").exists()
    # read back again on resume: still the first's result and folder
    resumed = Stages(tmp_path, progress=False)
    assert resumed.run("b/gan", never, inputs=digest) == {"rank1": 0.25}
    assert resumed.home("b/gan") == tmp_path / "a/gan"
    # other inputs, or none: the stage runs
    other = Calls({"rank1": 0.75})
    assert stages.run("c/gan", other, inputs=digest[::-1]) == {"rank1": 0.75}
    assert other.dirs == [tmp_path / "c/gan"]
    plain = Calls({"rank1": 0.5})
    assert stages.run("d/gan", plain) == {"rank1": 0.5}
    assert plain.dirs == [tmp_path / "d/gan"]
    assert first.dirs == [tmp_path / "a/gan"]


def test_timed_stage_with_the_same_inputs_loads_the_first(tmp_path):
    stages = Stages(tmp_path, progress=False)
    digest = inputs_digest([np.ones((2, 3), np.float32)], {"attack": "attributes"})
    first = Calls("model")
    assert stages.timed("a/head", first, inputs=digest) == "model"
    assert first.dirs == [tmp_path / "a/head"]
    assert json.loads((tmp_path / "a/head" / TIMING_FILE).read_text())["inputs"] == digest
    # a timed stage always calls fn (it returns live objects), with the first's folder
    second = Calls("loaded")
    assert stages.timed("b/head", second, inputs=digest) == "loaded"
    assert second.dirs == [tmp_path / "a/head"]
    assert not (tmp_path / "b/head" / "made.txt").exists()
    record = json.loads((tmp_path / "b/head" / TIMING_FILE).read_text())
    assert record["same_as"] == "a/head" and record["seconds"] == 0.0
    assert stages.home("b/head") == tmp_path / "a/head"
    # resumed: both load from the first's folder
    resumed = Stages(tmp_path, progress=False)
    again = Calls("again")
    resumed.timed("a/head", again, inputs=digest)
    resumed.timed("b/head", again, inputs=digest)
    assert again.dirs == [tmp_path / "a/head", tmp_path / "a/head"]
    # other inputs run in their own folder
    other = Calls("other")
    stages.timed("c/head", other, inputs=inputs_digest([np.zeros((2, 3), np.float32)], {}))
    assert other.dirs == [tmp_path / "c/head"]


def test_run_and_timed_records_do_not_stand_in_for_each_other(tmp_path):
    stages = Stages(tmp_path, progress=False)
    digest = inputs_digest([np.arange(3)], {})
    stages.timed("head", Calls("model"), inputs=digest)
    fn = Calls({"x": 1})
    assert stages.run("scores", fn, inputs=digest) == {"x": 1}
    assert fn.dirs == [tmp_path / "scores"]


def test_a_stage_read_back_is_never_the_source_of_a_later_one(tmp_path):
    digest = inputs_digest([np.arange(4, dtype=np.int32)], {"k": 1})
    stages = Stages(tmp_path, progress=False)
    # names sorted so that the read-back stage comes first in the folder walk
    stages.run("z/original", Calls({"v": 1}), inputs=digest)
    stages.run("a/copy", never, inputs=digest)
    assert json.loads((tmp_path / "a/copy" / RESULT_FILE).read_text())["same_as"] == "z/original"
    stages.run("m/later", never, inputs=digest)
    record = json.loads((tmp_path / "m/later" / RESULT_FILE).read_text())
    assert record["same_as"] == "z/original"
    assert stages.home("m/later") == tmp_path / "z/original"
    stages.timed("z/model", Calls("model"), inputs=digest)
    stages.timed("a/model", Calls("loaded"), inputs=digest)
    later = Calls("later")
    stages.timed("m/model", later, inputs=digest)
    assert later.dirs == [tmp_path / "z/model"]
    record = json.loads((tmp_path / "m/model" / TIMING_FILE).read_text())
    assert record["same_as"] == "z/model"


def test_inputs_digest_changes_with_every_part_of_the_inputs():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    base = inputs_digest([x], {"attack": "gan", "steps": 10})
    assert len(base) == 64 and int(base, 16) >= 0
    assert inputs_digest([x.copy()], {"steps": 10, "attack": "gan"}) == base  # key order
    assert inputs_digest(iter([x]), {"attack": "gan", "steps": 10}) == base  # any iterable
    # a non-contiguous view digests as its values
    assert inputs_digest([np.asfortranarray(x)], {"attack": "gan", "steps": 10}) == base
    changed = x.copy()
    changed[1, 2] = np.nextafter(changed[1, 2], np.float32(np.inf))
    others = [
        inputs_digest([changed], {"attack": "gan", "steps": 10}),  # bytes
        inputs_digest([x.view(np.int32)], {"attack": "gan", "steps": 10}),  # dtype, same bytes
        inputs_digest([x.reshape(4, 3)], {"attack": "gan", "steps": 10}),  # shape, same bytes
        inputs_digest([x], {"attack": "gan", "steps": 11}),  # settings
        inputs_digest([x], {"attack": "autoencoder", "steps": 10}),
        inputs_digest([x[:1], x[1:]], {"attack": "gan", "steps": 10}),  # the split into arrays
        inputs_digest([x, x], {"attack": "gan", "steps": 10}),
        inputs_digest([], {"attack": "gan", "steps": 10}),
    ]
    assert len({base, *others}) == len(others) + 1
    # settings that JSON cannot hold as they are (numpy scalars, tuples) still digest
    assert inputs_digest([x], {"lr": np.float32(0.5), "sizes": (1, 2)}) == inputs_digest(
        [x], {"lr": np.float32(0.5), "sizes": (1, 2)}
    )
