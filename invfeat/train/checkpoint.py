"""Checkpoints: one small layer over `orbax.checkpoint.CheckpointManager`, saving a run's
state, data-iterator state and meta by step, with keep-last and keep-best retention.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from invfeat.train.state import abstract_like

BEST_MODES = ("min", "max")


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block ends, then deliver it; a second one acts at once.

    A KeyboardInterrupt raised inside orbax leaves it half-way: a save interrupted in its blocking
    part is never committed while its array writes go on in threads nobody waits for (at exit
    they print "Event loop is closed" tracebacks), and one interrupted while waiting for the
    previous save logs an ERROR traceback and forgets that save. Only the main thread receives
    signals: elsewhere, or under a non-Python SIGINT handler, the block runs as it is.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    held: list[Any] = []

    def hold(signum: int, frame: Any) -> None:
        if held:  # pressed again: stop waiting
            held.clear()
            signal.signal(signal.SIGINT, previous)
            previous(signum, frame)
        else:
            held.append(frame)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            previous(signal.SIGINT, held[0])


class DataStateHandler(ocp.CheckpointHandler):
    """Per-process JSON files for data-iterator states (dict, bytes or None)."""

    @staticmethod
    def _file(directory: epath.Path) -> epath.Path:
        return directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"

    def save(self, directory: epath.Path, args: DataStateSave) -> None:
        state = args.state
        if isinstance(state, bytes):
            record = {"kind": "bytes", "value": base64.b64encode(state).decode("ascii")}
        else:
            record = {"kind": "json", "value": state}
        directory.mkdir(parents=True, exist_ok=True)
        self._file(directory).write_text(json.dumps(record))

    def restore(self, directory: epath.Path, args: DataStateRestore | None = None) -> Any:
        path = self._file(directory)
        if not path.exists():
            found = sorted(p.name for p in directory.iterdir())
            raise FileNotFoundError(
                f"no data-iterator state {path} for this process; the checkpoint has {found} "
                "(was it written with a different number of processes?)"
            )
        record = json.loads(path.read_text())
        if record["kind"] == "bytes":
            return base64.b64decode(record["value"])
        return record["value"]


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
    state: Any


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
    pass


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """When to save and what to keep.

    Kept: the last `keep_last` checkpoints, plus the best one by `best_metric` (`best_mode`
    "min" or "max") among the checkpoints saved with that metric.
    """

    every_steps: int | None = None
    every_epoch: bool = True
    keep_last: int = 2
    best_metric: str | None = None
    best_mode: str = "max"
    async_save: bool = True

    def __post_init__(self):
        if self.keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {self.keep_last}")
        if self.best_mode not in BEST_MODES:
            raise ValueError(f"best_mode must be one of {BEST_MODES}, got {self.best_mode!r}")
        if self.every_steps is not None and self.every_steps < 1:
            raise ValueError(f"every_steps must be >= 1 or None, got {self.every_steps}")


@dataclasses.dataclass
class Restored:
    step: int
    state: Any
    data_state: Any
    meta: dict[str, Any]


def _shape_misfits(item_dir: Path, abstract: Any, shown: int = 5) -> list[str]:
    """Leaves whose saved shape differs from `abstract`'s: "<path>: saved (..), wanted (..)".

    Checked from the saved metadata before orbax reads anything: orbax finds a misfit only while
    reading the arrays, then closes its event loop under the reads still running, which print
    "Event loop is closed" and "Exception ignored in: <coroutine ...>" tracebacks later. Leaves
    in only one of the trees are left to orbax, which refuses them before reading.
    """
    handler = ocp.StandardCheckpointHandler()
    try:
        saved = ocp.tree.to_flat_dict(handler.metadata(epath.Path(item_dir)).tree)
    except FileNotFoundError:  # no tree metadata (or no item): orbax reads without, or says why
        return []
    finally:
        handler.close()
    wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(abstract, keep_empty_nodes=True))
    misfits = [
        f"{'/'.join(map(str, key))}: saved {tuple(saved[key].shape)}, wanted {tuple(leaf.shape)}"
        for key, leaf in wanted.items()
        if key in saved
        and hasattr(saved[key], "shape")
        and hasattr(leaf, "shape")
        and tuple(saved[key].shape) != tuple(leaf.shape)
    ]
    if len(misfits) > shown:
        misfits = [*misfits[:shown], f"and {len(misfits) - shown} more"]
    return misfits


class Checkpointer:
    """Save and restore (state, data-iterator state, meta) by step under one directory.

    `<dir>/<step>/` holds `state` (any pytree of jax arrays, restored straight into the
    shardings of a target state), `data` (each process's data-iterator state, one file per
    process, so a resumed run sees the same batches) and `meta` (JSON: epoch, metrics, the
    caller's config...). Saves are atomic: orbax writes to `<step>.orbax-checkpoint-tmp*` and
    renames when complete, and removes leftovers when a manager opens the directory, so a run
    killed mid-save leaves the previous checkpoint restorable. A Ctrl-C landing inside a call
    into orbax is held until the call returns (`interrupts_held`).
    """

    def __init__(self, directory: str | Path, config: CheckpointConfig | None = None):
        self.directory = Path(directory).absolute()
        self.config = config = config or CheckpointConfig()
        policies: list[Any] = [ocp.checkpoint_managers.LatestN(n=config.keep_last)]
        best_fn = None
        if config.best_metric is not None:
            name = config.best_metric
            best_fn = lambda metrics: float(metrics[name])
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=best_fn,
                    reverse=config.best_mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            best_fn=best_fn,
            best_mode=config.best_mode,
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=config.async_save,
            cleanup_tmp_directories=True,
            create=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data", "meta")
        )

    def save(
        self,
        step: int,
        state: Any,
        *,
        data_state: Any = None,
        meta: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Save at `step`; `metrics` rank it for keep-best when they hold `best_metric`."""
        name = self.config.best_metric
        ranked = {k: float(v) for k, v in metrics.items()} if metrics else None
        if ranked is not None and (name is None or name not in ranked):
            ranked = None
        with interrupts_held():
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    data=DataStateSave(data_state),
                    meta=ocp.args.JsonSave(dict(meta or {})),
                ),
                metrics=ranked,
                force=True,
            )

    def restore(self, target: Any, step: int | None = None) -> Restored:
        """Restore `step` (default: latest) into the shapes and shardings of `target`.

        `target` is a placed state (e.g. from `create_train_state`) or its abstract version.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint to restore in {self.directory}")
        if step not in self.all_steps():
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}")
        abstract = jax.tree.map(
            lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else abstract_like(x), target
        )
        misfits = _shape_misfits(self.directory / str(step) / "state", abstract)
        if misfits:
            raise ValueError(
                f"{self.directory / str(step)}: the checkpoint does not fit the state to restore "
                f"into (saved by another model or config?): shapes differ at {'; '.join(misfits)}"
            )
        try:
            with interrupts_held():
                out = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract),
                        data=DataStateRestore(),
                        meta=ocp.args.JsonRestore(),
                    ),
                )
        except ValueError as err:  # orbax names the leaf, not the checkpoint
            raise ValueError(
                f"{self.directory / str(step)}: the checkpoint does not fit the state to restore "
                f"into (saved by another model or config?): {err}"
            ) from err
        return Restored(step=step, state=out["state"], data_state=out["data"], meta=out["meta"])

    def read_meta(self, step: int) -> dict[str, Any]:
        """The `meta` saved at `step`, without restoring the state."""
        with interrupts_held():
            out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return out["meta"]

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The best step by `best_metric` (latest step when no metric is tracked)."""
        return self._manager.best_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def wait(self) -> None:
        """Block until a pending asynchronous save has been committed."""
        with interrupts_held():
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for a pending save, then release orbax's threads."""
        with interrupts_held():
            self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
