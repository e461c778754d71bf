"""Named stages of a long run, each done once: a killed run resumes at the first unfinished one.

A stage may name its inputs by a digest (`inputs_digest`): a stage whose inputs equal those of
a stage finished earlier in the run is that stage (the same attack on the same numbers), read
back from its folder instead of run again.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from invfeat.files import json_default, write_json

RESULT_FILE = "result.json"  # a `run` stage's record
TIMING_FILE = "timing.json"  # a `timed` stage's record


def inputs_digest(arrays: Iterable[np.ndarray], settings: Mapping[str, Any]) -> str:
    """SHA-256 of arrays (dtype, shape, bytes, in order) and JSON settings."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=json_default).encode())
    return digest.hexdigest()


class Stages:
    """Runs named stages once: a finished stage's JSON result is read back, not recomputed."""

    def __init__(self, run_dir: Path, progress: bool = True):
        self.run_dir, self.progress = run_dir, progress
        self.timings: dict[str, float] = {}

    def dir(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def home(self, name: str) -> Path:
        """The folder holding the finished stage's files: its own, or that of the stage with
        the same inputs it was read back from."""
        for record_file in (RESULT_FILE, TIMING_FILE):
            path = self.run_dir / name / record_file
            if path.exists():
                same = json.loads(path.read_text()).get("same_as")
                return self.run_dir / same if same else path.parent
        raise FileNotFoundError(f"{self.run_dir / name}: the stage {name!r} has not finished")

    def run(
        self, name: str, fn: Callable[[Path], dict[str, Any]], *, inputs: str | None = None
    ) -> dict[str, Any]:
        """Calls `fn(<run_dir>/<name>)` once and keeps its JSON result in `<name>/result.json`."""
        done = self.run_dir / name / RESULT_FILE
        same = None if done.exists() else self._finished_with(inputs, RESULT_FILE)
        if done.exists():
            record = json.loads(done.read_text())
            self._say(f"[{name}] done earlier ({record['seconds']:.1f} s), read back")
        elif same is not None:
            result = json.loads((self.run_dir / same / RESULT_FILE).read_text())["result"]
            record = {"seconds": 0.0, "result": result, "inputs": inputs, "same_as": same}
            write_json(record, self.dir(name) / RESULT_FILE)
            self._say(f"[{name}] the same inputs as [{same}]: its result, read back")
        else:
            self._say(f"[{name}] running")
            start = time.perf_counter()
            result = fn(self.dir(name))
            record = {"seconds": round(time.perf_counter() - start, 2), "result": result}
            write_json(record | ({"inputs": inputs} if inputs else {}), done)
            self._say(f"[{name}] finished in {record['seconds']:.1f} s")
        self.timings[name] = record["seconds"]
        return record["result"]

    def timed(self, name: str, fn: Callable[[Path], Any], *, inputs: str | None = None) -> Any:
        """Runs a stage that returns live objects (a trained model) every time; its checkpoints
        or files make a finished one cheap. Its time is that of the run that finished it."""
        record_path = self.run_dir / name / TIMING_FILE
        same = None if record_path.exists() else self._finished_with(inputs, TIMING_FILE)
        if record_path.exists():
            seconds = json.loads(record_path.read_text())["seconds"]
            self._say(f"[{name}] done earlier ({seconds:.1f} s), loading what it saved")
            value = fn(self.home(name))
        elif same is not None:
            self._say(f"[{name}] the same inputs as [{same}]: loading what it saved")
            value = fn(self.run_dir / same)
            seconds = 0.0
            write_json(
                {"seconds": seconds, "inputs": inputs, "same_as": same},
                self.dir(name) / TIMING_FILE,
            )
        else:
            self._say(f"[{name}] running")
            start = time.perf_counter()
            value = fn(self.dir(name))
            seconds = round(time.perf_counter() - start, 2)
            write_json({"seconds": seconds} | ({"inputs": inputs} if inputs else {}), record_path)
            self._say(f"[{name}] finished in {seconds:.1f} s")
        self.timings[name] = seconds
        return value

    def _finished_with(self, inputs: str | None, record_file: str) -> str | None:
        """The name of a stage finished (not read back) with these inputs, if any."""
        if inputs is None:
            return None
        for path in sorted(self.run_dir.rglob(record_file)):
            record = json.loads(path.read_text())
            if record.get("inputs") == inputs and "same_as" not in record:
                return path.parent.relative_to(self.run_dir).as_posix()
        return None

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)
