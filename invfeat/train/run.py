"""How a training run starts: its workdir claimed, its state made, its steps run by `fit`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from jax.sharding import Mesh

from invfeat.files import json_default, write_json
from invfeat.train.checkpoint import CheckpointConfig
from invfeat.train.distributed import is_primary
from invfeat.train.loop import CHECKPOINT_DIR, Evaluator, FitResult, Hook, fit
from invfeat.train.state import Optimizers, StepFn, create_train_state

CONFIG_FILE = "config.json"
OldRuns = Literal["refuse", "clear"]


@dataclasses.dataclass(frozen=True)
class Refusals:
    """How the guard words its refusals (the default: a library caller's).

    Format strings over `path` (the config file), `workdir` and `changed` (the sorted
    top-level fields that differ): `other_config` for a config that differs from the stored
    one, `old_run` for a fresh run over checkpoints under the "refuse" policy.
    """

    other_config: str = (
        "{workdir} holds a run with a different config (fields {changed}); use another "
        "workdir, or resume=False to start afresh there"
    )
    old_run: str = (
        "{workdir} already holds a run; pass resume=True to continue it, or choose another workdir"
    )


class RunExistsError(FileExistsError):
    """A fresh run refused over the checkpoints of an earlier one in `workdir`."""

    def __init__(self, message: str, workdir: Path):
        super().__init__(message)
        self.workdir = workdir


def _changed(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in stored.keys() | given.keys() if stored.get(k) != given.get(k))


def claim_workdir(
    workdir: Path,
    config: Mapping[str, Any],
    *,
    resume: bool,
    old_runs: OldRuns = "refuse",
    refusals: Refusals = Refusals(),
) -> None:
    """Make `workdir` this run's: check its `config.json` against `config`, then write it.

    With `resume` an existing `config.json` must equal `config` (ValueError); without it,
    checkpoints left by an earlier run are refused (RunExistsError) or removed, as `old_runs`
    says: "refuse" for the victim (a finished or killed training is worth keeping), "clear" for
    the attacks (cheap to redo). `refusals` words the errors, so each command names its own
    remedy. Every process checks the same files; process 0 writes.
    """
    path = workdir / CONFIG_FILE
    given = json.loads(json.dumps(dict(config), default=json_default))
    checkpoints = workdir / CHECKPOINT_DIR
    words = {"path": path, "workdir": workdir}
    if resume:
        stored = json.loads(path.read_text()) if path.exists() else given
        if stored != given:
            raise ValueError(refusals.other_config.format(**words, changed=_changed(stored, given)))
    elif old_runs == "clear":
        shutil.rmtree(checkpoints, ignore_errors=True)
    elif checkpoints.exists() and any(checkpoints.iterdir()):
        raise RunExistsError(refusals.old_run.format(**words), workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if is_primary():
        write_json(given, path)


def run_training(
    init_fn: Callable[[Any], Any],
    tx: Optimizers,
    step_fn: StepFn,
    batches: Iterable[Mapping[str, Any]],
    *,
    mesh: Mesh,
    seed: int,
    num_steps: int,
    steps_per_epoch: int,
    workdir: Path,
    checkpoint: CheckpointConfig,
    meta: Mapping[str, Any],
    resume: bool,
    evaluators: Mapping[str, Evaluator] | None = None,
    eval_every_steps: int | None = None,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
    prepare_state: Callable[[Any], Any] | None = None,
) -> FitResult:
    """A state from `init_fn`, `tx` and `seed` on `mesh`, trained by `fit` over `batches`: the
    one way every model here is trained.

    `prepare_state` changes the fresh state before training (e.g. puts frozen variables in);
    a resumed run then restores its checkpoint over it. The batches are iterated only once the
    state exists.
    """
    state = create_train_state(init_fn, tx, mesh, seed=seed)
    if prepare_state is not None:
        state = prepare_state(state)
    return fit(
        state,
        step_fn,
        iter(batches),
        mesh=mesh,
        num_steps=num_steps,
        steps_per_epoch=steps_per_epoch,
        workdir=workdir,
        evaluators=evaluators,
        eval_every_steps=eval_every_steps,
        checkpoint=checkpoint,
        resume=resume,
        meta=meta,
        hooks=hooks,
        progress=progress,
    )
