"""The fit loop: any pure step `(state, batch) -> (state, metrics)`, compiled once, on the mesh.

`fit` jits the step with the state's own shardings, batches split along "data" and the state
buffers donated; it reads each step's metrics one step late (so the host never waits for the step
it just dispatched), shows a progress bar on stderr (steps/s, ETA, current losses), writes one
JSONL record per epoch (and per `log_every_steps` if set) to `<workdir>/metrics.jsonl` and a line
to the console, runs evaluators, saves checkpoints (state + data-iterator state + meta + the
running epoch means) and resumes from the latest one. A non-finite metric stops the run without
saving, and the last good checkpoint is restored and returned. KeyboardInterrupt saves a
checkpoint (when the state is whole), waits until it is committed, names it and re-raises; a
Ctrl-C landing inside a save takes effect once the save has been handed over to orbax.

The data is an endless iterator of per-process batches (dicts of numpy arrays); when it has
`get_state()`/`set_state()` (grain iterators do) its position is checkpointed and restored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from invfeat.files import write_atomic
from invfeat.train.checkpoint import CheckpointConfig, Checkpointer
from invfeat.train.distributed import is_primary
from invfeat.train.evaluators import Evaluator
from invfeat.train.mesh import batch_sharding, replicated_sharding, shard_batch
from invfeat.train.state import StepFn, abstract_like

Hook = Callable[[int, Any], None]
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
DEFAULT_CHECKPOINT = CheckpointConfig()


@dataclasses.dataclass
class FitResult:
    """The final state (after a NaN stop: the last good checkpoint's), its step, the records."""

    state: Any
    step: int
    history: list[dict[str, Any]]
    stop_reason: str | None = None


class _NonFinite(Exception):
    pass


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


class _Log:
    """JSONL file + console on process 0; the history (with earlier runs' records on process 0)."""

    def __init__(self, workdir: Path | None, start_step: int, quiet: bool):
        self.path = workdir / METRICS_FILE if workdir else None
        self.history: list[dict[str, Any]] = []
        self.primary = is_primary()
        self.quiet = quiet
        if self.primary and self.path and self.path.exists():  # keep records up to the restart
            *lines, torn = self.path.read_text().split("\n")  # torn: a write cut off, or ""
            records = []
            for number, line in enumerate(lines, 1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{self.path}:{number}: not a JSON record ({err})") from None
            self.history = [r for r in records if r.get("step", 0) <= start_step]
            text = "".join(json.dumps(r) + "\n" for r in self.history)
            write_atomic(self.path, lambda f: f.write(text.encode()))

    def write(self, record: dict[str, Any], console: str | None = None, always: bool = False):
        """Append `record`; print `console` unless quiet (`always`: print even then)."""
        self.history.append(record)
        if not self.primary:
            return
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if console and (always or not self.quiet):
            tqdm.write(console, file=sys.stderr)


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


def _fmt(metrics: Mapping[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items())


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
    restore target). Evaluators run each epoch end (or every `eval_every_steps`); their metrics
    are named `<evaluator name>/<metric>`, training means `train/<metric>`; `checkpoint.
    best_metric` may name either. `meta` (JSON-able, e.g. the run config) is stored with every
    checkpoint, and a resume with another `meta` is refused (ValueError naming what differs).
    `hooks(step, state)` run after every step. `finite_metrics` names the metrics checked for
    NaN/inf (default: every metric). `progress` shows the bar and the per-epoch console lines
    (stderr, process 0 only).
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

    start = 0
    epoch_sums: dict[str, float] = {}
    epoch_count = 0
    if resume and ckpt is not None and ckpt.latest_step() is not None:
        if meta is not None:
            _check_meta(ckpt, meta)
        restored = ckpt.restore(target)
        state, start = restored.state, restored.step
        # The running means of a checkpoint taken mid-epoch, so the epoch's record is the same.
        epoch_sums = dict(restored.meta.get("epoch_sums", {}))
        epoch_count = int(restored.meta.get("epoch_count", 0))
        if restored.data_state is not None:
            if not hasattr(train_data, "set_state"):
                raise TypeError(
                    "the checkpoint holds a data-iterator state but train_data has no set_state()"
                )
            train_data.set_state(restored.data_state)
        elif hasattr(train_data, "set_state"):
            warnings.warn(
                "checkpoint has no data-iterator state: batches will differ", stacklevel=2
            )
    log = _Log(workdir, start, quiet=not progress)

    shardings = jax.tree.map(lambda x: x.sharding, target)
    train_step = jax.jit(
        step_fn,
        in_shardings=(shardings, batch_sharding(mesh)),
        out_shardings=(shardings, replicated_sharding(mesh)),
        donate_argnums=0,
    )
    checked = None if finite_metrics is None else set(finite_metrics)
    pending: tuple[int, Any] | None = None
    last_saved = start if start else None
    done = consumed = start
    bar = tqdm(
        total=num_steps,
        initial=start,
        file=sys.stderr,
        dynamic_ncols=True,
        unit="step",
        disable=not (progress and is_primary()) or start >= num_steps,  # nothing left to run
    )

    def consume() -> None:
        """Fetch the pending step's metrics, check them, add them to the epoch means."""
        nonlocal pending, epoch_count
        if pending is None:
            return
        step, device_metrics = pending
        pending = None
        metrics = {k: float(np.asarray(v)) for k, v in jax.device_get(device_metrics).items()}
        bad = {
            k: v
            for k, v in metrics.items()
            if (checked is None or k in checked) and not math.isfinite(v)
        }
        if bad:
            raise _NonFinite(f"non-finite {_fmt(bad)} at step {step}")
        for k, v in metrics.items():
            epoch_sums[k] = epoch_sums.get(k, 0.0) + v
        epoch_count += 1
        bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if "loss" in k}, refresh=False)
        if log_every_steps and step % log_every_steps == 0:
            log.write(
                {"kind": "step", "step": step, **{f"train/{k}": v for k, v in metrics.items()}}
            )

    def save(step: int, metrics: Mapping[str, float] | None = None) -> None:
        nonlocal last_saved
        if ckpt is None or last_saved == step:
            return
        if not bool(_all_finite(state)):
            raise _NonFinite(f"non-finite values in the train state at step {step}")
        data_state = train_data.get_state() if hasattr(train_data, "get_state") else None
        epoch = step / steps_per_epoch
        last_saved = step  # before the call: a Ctrl-C inside it must not save this step again
        ckpt.save(
            step,
            state,
            data_state=data_state,
            metrics=metrics,
            meta={
                "step": step,
                "epoch": epoch,
                "metrics": dict(metrics or {}),
                "meta": dict(meta or {}),
                "epoch_sums": dict(epoch_sums),
                "epoch_count": epoch_count,
            },
        )

    t_epoch, step_epoch = time.perf_counter(), start
    try:
        for step in range(start + 1, num_steps + 1):
            try:
                batch = next(train_data)
            except StopIteration:
                raise RuntimeError(
                    f"train_data ended after {step - 1} of {num_steps} steps; give fit an endless "
                    "iterator (e.g. a grain pipeline with num_epochs=None)"
                ) from None
            consumed = step
            state, metrics = train_step(state, shard_batch(batch, mesh))
            done = step
            consume()
            pending = (step, metrics)
            bar.update(1)
            for hook in hooks:
                hook(step, state)
            end_of_epoch = step % steps_per_epoch == 0 or step == num_steps
            do_eval = bool(evaluators) and (
                step % eval_every_steps == 0 if eval_every_steps else end_of_epoch
            )
            do_save = ckpt is not None and (
                step == num_steps
                or (checkpoint.every_steps is not None and step % checkpoint.every_steps == 0)
                or (checkpoint.every_epoch and end_of_epoch)
            )
            if not (do_eval or do_save or end_of_epoch):
                continue
            consume()
            record: dict[str, float] = {}
            if end_of_epoch and epoch_count:
                record.update({f"train/{k}": v / epoch_count for k, v in epoch_sums.items()})
            for name, evaluator in evaluators.items() if do_eval else ():
                record.update({f"{name}/{k}": float(v) for k, v in evaluator.run(state)})
            if end_of_epoch:
                elapsed = time.perf_counter() - t_epoch
                rate = (step - step_epoch) / elapsed if elapsed > 0 else float("nan")
                epoch = math.ceil(step / steps_per_epoch)
                log.write(
                    {"kind": "epoch", "step": step, "epoch": epoch, **record, "steps_per_s": rate},
                    console=f"epoch {epoch} step {step}/{num_steps}: {_fmt(record)} "
                    f"({rate:.3g} steps/s)",
                )
                epoch_sums.clear()
                epoch_count = 0
                t_epoch, step_epoch = time.perf_counter(), step
            elif record:
                log.write({"kind": "eval", "step": step, **record})
            if do_save:
                save(step, record)
        consume()
    except _NonFinite as err:
        if ckpt is not None:
            ckpt.wait()
        good = ckpt.latest_step() if ckpt is not None else None
        where = f"step {good} in {ckpt.directory}" if good is not None else "none saved"
        message = f"stopping: {err}; the last good checkpoint is {where}"
        log.write(
            {"kind": "stopped", "step": done, "reason": str(err)}, console=message, always=True
        )
        if good is not None:
            state = ckpt.restore(target, good).state
        return FitResult(state=state, step=good or 0, history=log.history, stop_reason=message)
    except KeyboardInterrupt:
        if ckpt is not None:
            if consumed == done and _is_whole(state):
                try:
                    consume()
                    save(done)
                except _NonFinite:
                    pass
            ckpt.wait()  # the latest step counts once its save is committed
            kept = ckpt.latest_step()
            tqdm.write(
                f"interrupted at step {done}; "
                + (f"checkpoint {kept} kept" if kept is not None else "no checkpoint saved yet"),
                file=sys.stderr,
            )
        raise
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.wait()
            ckpt.close()
    return FitResult(state=state, step=done, history=log.history)
