"""Optimizers (optax Adam/AdamW) and the learning-rate schedules the paper's baselines use."""

from __future__ import annotations

import dataclasses

import optax

SCHEDULES = ("constant", "drop_at_half", "warmup_multistep", "warmup_cosine")
OPTIMIZERS = ("adam", "adamw")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Everything that defines an optimizer; JSON-able (`dataclasses.asdict`).

    `schedule`, by name:

    - `constant`: the attack scripts' fixed rate (e.g. Adam 1e-4 for the GAN).
    - `drop_at_half`: constant, then times `drop_factor` (default 1/5) for the second half of
      `total_steps`: the attribute attack's "lr / 5 for the second half".
    - `warmup_multistep`: linear warm-up from `warmup_factor * lr` over `warmup_steps`, then
      times `gamma` at each of `milestones` (absolute steps): FastReID's BoT/AGW baselines.
    - `warmup_cosine`: the same warm-up, constant until `delay_steps`, then cosine annealing to
      `final_lr` at `total_steps`: FastReID's SBS baseline.

    `clip_norm` adds global-norm gradient clipping before the optimizer.
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    total_steps: int = 0
    warmup_steps: int = 0
    warmup_factor: float = 0.1
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    drop_factor: float = 0.2
    delay_steps: int = 0
    final_lr: float = 0.0
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float | None = None


def _warmup(cfg: OptimizerConfig) -> optax.Schedule:
    return optax.linear_schedule(
        cfg.learning_rate * cfg.warmup_factor, cfg.learning_rate, max(cfg.warmup_steps, 1)
    )


def _after_warmup(cfg: OptimizerConfig, schedule: optax.Schedule) -> optax.Schedule:
    if cfg.warmup_steps <= 0:
        return schedule
    return optax.join_schedules([_warmup(cfg), schedule], [cfg.warmup_steps])


def make_schedule(cfg: OptimizerConfig) -> optax.Schedule:
    """The learning rate as a function of the step count."""
    lr = cfg.learning_rate
    if cfg.schedule == "constant":
        return optax.constant_schedule(lr)
    if cfg.schedule in ("drop_at_half", "warmup_cosine") and cfg.total_steps <= 0:
        raise ValueError(f"schedule {cfg.schedule!r} needs total_steps > 0")
    if cfg.schedule == "drop_at_half":
        return optax.piecewise_constant_schedule(lr, {cfg.total_steps // 2: cfg.drop_factor})
    if cfg.schedule == "warmup_multistep":
        if list(cfg.milestones) != sorted(cfg.milestones):
            raise ValueError(f"milestones must be increasing, got {cfg.milestones}")
        if cfg.milestones and cfg.milestones[0] <= cfg.warmup_steps:
            raise ValueError(
                f"milestones must come after the warm-up ({cfg.warmup_steps} steps), "
                f"got {cfg.milestones}"
            )
        shifted = {m - cfg.warmup_steps: cfg.gamma for m in cfg.milestones}
        return _after_warmup(cfg, optax.piecewise_constant_schedule(lr, shifted))
    if cfg.schedule == "warmup_cosine":
        start = max(cfg.delay_steps, cfg.warmup_steps)
        decay_steps = max(cfg.total_steps - start, 1)
        cosine = optax.cosine_decay_schedule(lr, decay_steps, alpha=cfg.final_lr / lr)
        flat = start - cfg.warmup_steps
        main = (
            optax.join_schedules([optax.constant_schedule(lr), cosine], [flat]) if flat else cosine
        )
        return _after_warmup(cfg, main)
    raise ValueError(f"unknown schedule {cfg.schedule!r}; choose one of {SCHEDULES}")


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """Adam or AdamW over `make_schedule(cfg)`, with optional global-norm clipping."""
    schedule = make_schedule(cfg)
    if cfg.name == "adam":
        if cfg.weight_decay:
            raise ValueError("weight_decay needs name='adamw' (Adam has no decoupled decay)")
        opt = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif cfg.name == "adamw":
        opt = optax.adamw(
            schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}; choose one of {OPTIMIZERS}")
    if cfg.clip_norm is not None:
        if cfg.clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive, got {cfg.clip_norm}")
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return opt
