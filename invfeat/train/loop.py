"""The fit loop: any pure step `(state, batch) -> (state, metrics)`, compiled once, on the mesh,
with progress, metrics records, evaluators, checkpoints and resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from tqdm import tqdm

from invfeat.train.checkpoint import CheckpointConfig, Checkpointer
from invfeat.train.distributed import is_primary
from invfeat.train.mesh import batch_sharding, replicated_sharding, shard_batch
from invfeat.train.records import (
    EpochMeans,
    NonFinite,
    PendingMetrics,
    RunLog,
    format_metrics,
)
from invfeat.train.state import StepFn, abstract_like

Hook = Callable[[int, Any], None]
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
DEFAULT_CHECKPOINT = CheckpointConfig()


class Evaluator(Protocol):
    """Measures a train state: `run(state)` yields `(metric name, value)` pairs.

    `fit` records them as `<evaluator name>/<metric name>` without knowing what they measure.
    """

    def run(self, state: Any) -> Iterable[tuple[str, float]]: ...


@dataclasses.dataclass
class FitResult:
    """The final state (after a NaN stop: the last good checkpoint's), its step, the records."""

    state: Any
    step: int
    history: list[dict[str, Any]]
    stop_reason: str | None = None


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return (
        jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
        if leaves
        else jnp.array(True)
    )


def _is_whole(state: Any) -> bool:
    return not any(getattr(x, "is_deleted", lambda: False)() for x in jax.tree.leaves(state))


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths where two JSON values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            d
            for k in sorted(old.keys() | new.keys())
            for d in _differences(old.get(k), new.get(k), f"{path}.{k}" if path else k)
        ]
    return [] if old == new else [path or "(all)"]


def _check_meta(ckpt: Checkpointer, meta: Mapping[str, Any]) -> None:
    """Refuse to resume a run whose checkpoint was saved with another `meta` (its config)."""
    step = ckpt.latest_step()
    stored = ckpt.read_meta(step).get("meta")
    given = json.loads(json.dumps(dict(meta)))
    if stored is not None and stored != given:
        raise ValueError(
            f"{ckpt.directory}/{step}: the checkpoint was saved by a run with another config "
            f"({', '.join(_differences(stored, given))} differ); resume it with the same config "
            "or use another workdir"
        )


def _compile_step(step_fn: StepFn, target: Any, mesh: Mesh) -> StepFn:
    """`step_fn` jitted on the state's own shardings, batches split along "data", state donated."""
    shardings = jax.tree.map(lambda x: x.sharding, target)
    return jax.jit(
        step_fn,
        in_shardings=(shardings, batch_sharding(mesh)),
        out_shardings=(shardings, replicated_sharding(mesh)),
        donate_argnums=0,
    )


@dataclasses.dataclass(frozen=True)
class _Cadence:
    """Which steps end an epoch, run the evaluators, save a checkpoint."""

    num_steps: int
    steps_per_epoch: int
    eval_every_steps: int | None
    has_evaluators: bool
    checkpoint: CheckpointConfig | None

    def end_of_epoch(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0 or step == self.num_steps

    def evaluates(self, step: int) -> bool:
        if not self.has_evaluators:
            return False
        if self.eval_every_steps:
            return step % self.eval_every_steps == 0
        return self.end_of_epoch(step)

    def saves(self, step: int) -> bool:
        config = self.checkpoint
        if config is None:
            return False
        every = config.every_steps is not None and step % config.every_steps == 0
        return step == self.num_steps or every or (config.every_epoch and self.end_of_epoch(step))


def _restore(
    ckpt: Checkpointer,
    target: Any,
    train_data: Iterator[Mapping[str, Any]],
    meta: Mapping[str, Any] | None,
) -> tuple[Any, int, EpochMeans]:
    """The latest checkpoint's state, step and epoch sums; the data iterator set to its place."""
    if meta is not None:
        _check_meta(ckpt, meta)
    restored = ckpt.restore(target)
    # The running means of a checkpoint taken mid-epoch, so the epoch's record is the same.
    epoch = EpochMeans(
        dict(restored.meta.get("epoch_sums", {})), int(restored.meta.get("epoch_count", 0))
    )
    if restored.data_state is not None:
        if not hasattr(train_data, "set_state"):
            raise TypeError(
                "the checkpoint holds a data-iterator state but train_data has no set_state()"
            )
        train_data.set_state(restored.data_state)
    elif hasattr(train_data, "set_state"):
        # stacklevel 3: the warning names the line that called `fit`
        warnings.warn("checkpoint has no data-iterator state: batches will differ", stacklevel=3)
    return restored.state, restored.step, epoch


@dataclasses.dataclass
class _Run:
    """One call of `fit`: the state as it trains, and what the ends of steps do with it.

    `done` is the last step whose update is in `state`; `consumed` the last step whose batch
    was taken. They differ only while a step is being dispatched, when the state's buffers may
    already be donated: a Ctrl-C then saves nothing.
    """

    state: Any
    start: int
    target: Any  # the state's shapes and shardings, the restore target
    train_step: StepFn
    train_data: Iterator[Mapping[str, Any]]
    mesh: Mesh
    cadence: _Cadence
    metrics: PendingMetrics
    log: RunLog
    ckpt: Checkpointer | None
    evaluators: Mapping[str, Evaluator]
    meta: Mapping[str, Any] | None
    hooks: Sequence[Hook]
    bar: tqdm

    def __post_init__(self) -> None:
        self.done = self.consumed = self.start
        self.last_saved = self.start if self.start else None
        self.epoch_started, self.epoch_first_step = time.perf_counter(), self.start

    def run(self) -> None:
        for step in range(self.start + 1, self.cadence.num_steps + 1):
            self.train(step)
            self.end_step(step)

    def train(self, step: int) -> None:
        """Take a batch, dispatch the step, read the previous step's metrics, run the hooks."""
        try:
            batch = next(self.train_data)
        except StopIteration:
            raise RuntimeError(
                f"train_data ended after {step - 1} of {self.cadence.num_steps} steps; give fit "
                "an endless iterator (e.g. a grain pipeline with num_epochs=None)"
            ) from None
        self.consumed = step
        self.state, device_metrics = self.train_step(self.state, shard_batch(batch, self.mesh))
        self.done = step
        self.metrics.push(step, device_metrics)
        self.bar.update(1)
        for hook in self.hooks:
            hook(step, self.state)

    def end_step(self, step: int) -> None:
        """At an epoch end, an evaluation or a save: read the metrics, record, save."""
        end_of_epoch = self.cadence.end_of_epoch(step)
        evaluate = self.cadence.evaluates(step)
        save = self.cadence.saves(step)
        if not (evaluate or save or end_of_epoch):
            return
        self.metrics.consume()
        record = self.metrics.epoch.means() if end_of_epoch else {}
        for name, evaluator in self.evaluators.items() if evaluate else ():
            record.update({f"{name}/{k}": float(v) for k, v in evaluator.run(self.state)})
        if end_of_epoch:
            self.record_epoch(step, record)
        elif record:
            self.log.write({"kind": "eval", "step": step, **record})
        if save:
            self.save(step, record)

    def record_epoch(self, step: int, record: dict[str, float]) -> None:
        """The epoch's JSONL record and console line; the next epoch's sums start empty."""
        elapsed = time.perf_counter() - self.epoch_started
        rate = (step - self.epoch_first_step) / elapsed if elapsed > 0 else float("nan")
        epoch = math.ceil(step / self.cadence.steps_per_epoch)
        self.log.write(
            {"kind": "epoch", "step": step, "epoch": epoch, **record, "steps_per_s": rate},
            console=f"epoch {epoch} step {step}/{self.cadence.num_steps}: {format_metrics(record)} "
            f"({rate:.3g} steps/s)",
        )
        self.metrics.epoch.reset()
        self.epoch_started, self.epoch_first_step = time.perf_counter(), step

    def save(self, step: int, metrics: Mapping[str, float] | None = None) -> None:
        """Checkpoint the state, the data position, `meta` and the epoch sums (once per step)."""
        if self.ckpt is None or self.last_saved == step:
            return
        if not bool(_all_finite(self.state)):
            raise NonFinite(f"non-finite values in the train state at step {step}")
        data = self.train_data
        data_state = data.get_state() if hasattr(data, "get_state") else None
        self.last_saved = step  # before the call: a Ctrl-C inside it must not save this step again
        self.ckpt.save(
            step,
            self.state,
            data_state=data_state,
            metrics=metrics,
            meta={
                "step": step,
                "epoch": step / self.cadence.steps_per_epoch,
                "metrics": dict(metrics or {}),
                "meta": dict(self.meta or {}),
                "epoch_sums": dict(self.metrics.epoch.sums),
                "epoch_count": self.metrics.epoch.count,
            },
        )

    def stop(self, err: NonFinite) -> FitResult:
        """The NaN stop: log why, and return the last good checkpoint's state."""
        ckpt = self.ckpt
        if ckpt is not None:
            ckpt.wait()
        good = ckpt.latest_step() if ckpt is not None else None
        where = f"step {good} in {ckpt.directory}" if good is not None else "none saved"
        message = f"stopping: {err}; the last good checkpoint is {where}"
        self.log.write(
            {"kind": "stopped", "step": self.done, "reason": str(err)}, console=message, always=True
        )
        state = self.state if good is None else ckpt.restore(self.target, good).state
        return FitResult(state=state, step=good or 0, history=self.log.history, stop_reason=message)

    def interrupt(self) -> None:
        """Ctrl-C: save the whole state of the last finished step, wait for it, say what is kept."""
        if self.ckpt is None:
            return
        if self.consumed == self.done and _is_whole(self.state):
            try:
                self.metrics.consume()
                self.save(self.done)
            except NonFinite:
                pass
        self.ckpt.wait()  # the latest step counts once its save is committed
        kept = self.ckpt.latest_step()
        tqdm.write(
            f"interrupted at step {self.done}; "
            + (f"checkpoint {kept} kept" if kept is not None else "no checkpoint saved yet"),
            file=sys.stderr,
        )


def fit(
    state: Any,
    step_fn: StepFn,
    train_data: Iterator[Mapping[str, Any]],
    *,
    mesh: Mesh,
    num_steps: int,
    steps_per_epoch: int | None = None,
    workdir: str | Path | None = None,
    evaluators: Mapping[str, Evaluator] | None = None,
    eval_every_steps: int | None = None,
    checkpoint: CheckpointConfig | None = DEFAULT_CHECKPOINT,
    resume: bool = False,
    meta: Mapping[str, Any] | None = None,
    hooks: Sequence[Hook] = (),
    log_every_steps: int | None = None,
    finite_metrics: Sequence[str] | None = None,
    progress: bool = True,
) -> FitResult:
    """Train `state` with `step_fn` for `num_steps` steps in total (counting resumed ones).

    `state` is the freshly created, placed state (its shardings are used for the step and as the
    restore target). `train_data` is an endless iterator of per-process batches (dicts of numpy
    arrays); when it has `get_state()` / `set_state()` (grain iterators do) its position is
    checkpointed and restored. Evaluators run each epoch end (or every `eval_every_steps`); their
    metrics are named `<evaluator name>/<metric>`, training means `train/<metric>`;
    `checkpoint.best_metric` may name either. `meta` (JSON-able, e.g. the run config) is stored
    with every checkpoint, and a resume with another `meta` is refused (ValueError naming what
    differs). `hooks(step, state)` run after every step. `finite_metrics` names the metrics
    checked for NaN/inf (default: every metric). `progress` shows the bar (steps/s, ETA, losses)
    and the per-epoch console lines (stderr, process 0 only); records go to
    `<workdir>/metrics.jsonl` each epoch (and every `log_every_steps`).

    A non-finite metric stops the run without saving and returns the last good checkpoint's
    state. A KeyboardInterrupt saves the last finished step (when the state is whole), waits
    until that save is committed, names it and is raised again.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    steps_per_epoch = steps_per_epoch or num_steps
    evaluators = dict(evaluators or {})
    workdir = Path(workdir) if workdir is not None else None
    if resume and (checkpoint is None or workdir is None):
        raise ValueError("resume=True needs a workdir and a checkpoint config")
    if workdir is None:
        checkpoint = None
    target = abstract_like(state)
    ckpt = Checkpointer(workdir / CHECKPOINT_DIR, checkpoint) if checkpoint else None

    start, epoch = 0, EpochMeans()
    if resume and ckpt is not None and ckpt.latest_step() is not None:
        state, start, epoch = _restore(ckpt, target, train_data, meta)
    log = RunLog(workdir / METRICS_FILE if workdir else None, start, quiet=not progress)
    bar = tqdm(
        total=num_steps,
        initial=start,
        file=sys.stderr,
        dynamic_ncols=True,
        unit="step",
        disable=not (progress and is_primary()) or start >= num_steps,  # nothing left to run
    )
    checked = None if finite_metrics is None else set(finite_metrics)
    run = _Run(
        state=state,
        start=start,
        target=target,
        train_step=_compile_step(step_fn, target, mesh),
        train_data=train_data,
        mesh=mesh,
        cadence=_Cadence(
            num_steps, steps_per_epoch, eval_every_steps, bool(evaluators), checkpoint
        ),
        metrics=PendingMetrics(epoch, checked, bar, log, log_every_steps),
        log=log,
        ckpt=ckpt,
        evaluators=evaluators,
        meta=meta,
        hooks=hooks,
        bar=bar,
    )
    try:
        run.run()
    except NonFinite as err:
        return run.stop(err)
    except KeyboardInterrupt:
        run.interrupt()
        raise
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.wait()
            ckpt.close()
    return FitResult(state=run.state, step=run.done, history=log.history)
