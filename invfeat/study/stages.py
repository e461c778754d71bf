"""Named stages of a long run, each done once: a killed run resumes at the first unfinished one."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invfeat.files import write_json


class Stages:
    """Runs named stages once: a finished stage's JSON result is read back, not recomputed."""

    def __init__(self, run_dir: Path, progress: bool = True):
        self.run_dir, self.progress = run_dir, progress
        self.timings: dict[str, float] = {}

    def dir(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, name: str, fn: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """Calls `fn(<run_dir>/<name>)` once and keeps its JSON result in `<name>/result.json`."""
        done = self.run_dir / name / "result.json"
        if done.exists():
            record = json.loads(done.read_text())
            self._say(f"[{name}] done earlier ({record['seconds']:.1f} s), read back")
        else:
            self._say(f"[{name}] running")
            start = time.perf_counter()
            result = fn(self.dir(name))
            record = {"seconds": round(time.perf_counter() - start, 2), "result": result}
            write_json(record, done)
            self._say(f"[{name}] finished in {record['seconds']:.1f} s")
        self.timings[name] = record["seconds"]
        return record["result"]

    def timed(self, name: str, fn: Callable[[Path], Any]) -> Any:
        """Runs a stage that returns live objects (a trained model) every time; its checkpoints
        or files make a finished one cheap. Its time is that of the run that finished it."""
        stage_dir = self.dir(name)
        record_path = stage_dir / "timing.json"
        if record_path.exists():
            seconds = json.loads(record_path.read_text())["seconds"]
            self._say(f"[{name}] done earlier ({seconds:.1f} s), loading what it saved")
            value = fn(stage_dir)
        else:
            self._say(f"[{name}] running")
            start = time.perf_counter()
            value = fn(stage_dir)
            seconds = round(time.perf_counter() - start, 2)
            write_json({"seconds": seconds}, record_path)
            self._say(f"[{name}] finished in {seconds:.1f} s")
        self.timings[name] = seconds
        return value

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)
