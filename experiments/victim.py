"""`python -m experiments victim train|eval|configs`: the victim re-ID model.

    victim train [--dataset synth_msmt] [--config cpu] [--workdir DIR] [--resume] [--epochs N]
                 [--set FIELD=VALUE ...]
    victim eval [--workdir DIR] [--dataset NAME ...]
    victim configs

The workdir defaults to runs/victim/<config>-<dataset>.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import fail, int_at_least
from experiments.configs.overrides import add_set_option, apply_overrides

if TYPE_CHECKING:
    from invfeat.victims.config import VictimConfig

CROSS_DOMAIN = ("synth_market", "synth_duke")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("victim", help="train and evaluate the victim re-ID model")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train a victim (resumable)")
    train.add_argument(
        "--dataset", default="synth_msmt", help="training dataset (default: %(default)s)"
    )
    train.add_argument("--config", default="cpu", help="victim config name (see `victim configs`)")
    train.add_argument("--workdir", type=Path, help="default: runs/victim/<config>-<dataset>")
    train.add_argument("--resume", action="store_true", help="continue the run in --workdir")
    train.add_argument("--epochs", type=int_at_least(1), help="override the config's epoch count")
    train.add_argument("--seed", type=int_at_least(0), help="override the config's seed")
    train.add_argument("--data-dir", type=Path, help="default: $INVFEAT_DATA_DIR or ./data")
    train.add_argument("--no-eval", action="store_true", help="skip the in-domain evaluation")
    add_set_option(train, "learning_rate=1e-3 or milestones=[10,15]")
    train.set_defaults(func=run_train, handles_processes=True)

    evaluate = commands.add_parser("eval", help="re-ID accuracy in-domain and cross-domain")
    evaluate.add_argument("--workdir", type=Path, help="a trained victim's workdir")
    evaluate.add_argument("--config", default="cpu", help="to find the default workdir")
    evaluate.add_argument(
        "--dataset",
        nargs="+",
        help="datasets to evaluate on (default: the victim's own, synth_market, synth_duke)",
    )
    evaluate.add_argument("--data-dir", type=Path, help="default: $INVFEAT_DATA_DIR or ./data")
    evaluate.set_defaults(func=run_eval)

    configs = commands.add_parser("configs", help="list the named victim configs")
    configs.set_defaults(func=run_configs)


def default_workdir(config: str, dataset: str) -> Path:
    return Path("runs") / "victim" / f"{config}-{dataset}"


def named_config(name: str, dataset: str, epochs: int | None, seed: int | None) -> VictimConfig:
    """The victim config `victim train --config NAME --dataset ...` resolves before `--set`."""
    from experiments.configs import get_victim_config

    changes: dict[str, Any] = {"dataset": dataset}
    if not dataset.startswith("synth_"):
        changes["data_settings"] = None
    changes |= {k: v for k, v in (("epochs", epochs), ("seed", seed)) if v is not None}
    return get_victim_config(name, **changes)


def run_train(args: argparse.Namespace) -> int:
    """Train the named config, `--set` applied, on the dataset's train split; evaluate in-domain.

    Metrics go to DIR/metrics.jsonl, checkpoints to DIR/checkpoints; `--resume` continues a
    killed run. A synthetic dataset missing from the data dir is rendered first; a real one must
    be built there (`data build`). Launched as several processes (JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES, JAX_PROCESS_ID; workdir and data dir on a shared disk), it trains on the
    devices of all of them, process 0 building the data, printing and writing the files.
    """
    import jax

    from invfeat import victims as V
    from invfeat.train import distributed
    from invfeat.train.loop import CHECKPOINT_DIR

    try:  # several processes (JAX_COORDINATOR_ADDRESS...) train one victim together
        distributed.initialize_from_env()
    except ValueError as err:
        return fail(err)
    is_primary = distributed.is_primary()
    say = print if is_primary else lambda *_: None
    try:
        config = apply_overrides(
            named_config(args.config, args.dataset, args.epochs, args.seed), args.overrides
        )
    except ValueError as err:
        return fail(err)
    workdir = args.workdir or default_workdir(args.config, args.dataset)
    if not config.model.startswith("cpu-") and jax.default_backend() == "cpu" and is_primary:
        print(f"warning: {config.name} ({config.model}) is sized for a GPU; on this CPU a step "
              "takes tens of seconds", file=sys.stderr)  # fmt: skip
    say(f"training victim {config.name} ({config.model}, {config.input_size}) on "
        f"{config.dataset} in {workdir}")  # fmt: skip
    if args.resume and not (workdir / CHECKPOINT_DIR).is_dir():
        say(f"{workdir}: no run to resume there; starting a new one")
    try:
        victim = V.train_victim(config, workdir, resume=args.resume, data_dir=args.data_dir)
    except (FileNotFoundError, FileExistsError, ValueError, FloatingPointError) as err:
        return fail(err)
    say(f"saved the victim to {workdir / V.VARIABLES_FILE} ({json.dumps(victim.summary)})")
    if args.no_eval:
        return 0

    def evaluate() -> int:  # on this process's devices: process 0 evaluates for all
        scores = V.evaluate_victim(
            victim, config.dataset, data_dir=args.data_dir, data_settings=config.data_settings
        )
        print(format_table({config.dataset: scores}))
        return 0

    return distributed.on_primary(evaluate, "victim-train-eval")


def run_eval(args: argparse.Namespace) -> int:
    """Rank-1/5/10, mAP and the chance rank-1 in-domain and cross-domain, into DIR/eval.json."""
    from invfeat import victims as V
    from invfeat.files import write_json

    workdir = args.workdir or default_workdir(args.config, "synth_msmt")
    try:
        victim = V.load_victim(workdir)
    except (FileNotFoundError, ValueError) as err:
        return fail(err)
    own = victim.config.dataset
    datasets = args.dataset or [own, *(d for d in CROSS_DOMAIN if d != own)]
    results = {}
    for dataset in datasets:
        settings = V.settings_for(victim.config, dataset)
        try:
            results[dataset] = V.evaluate_victim(
                victim, dataset, data_dir=args.data_dir, data_settings=settings
            )
        except (FileNotFoundError, ValueError) as err:
            return fail(err)
    record = {
        "victim": dataclasses.asdict(victim.config),
        "in_domain": own,
        "results": results,
    }
    write_json(record, workdir / "eval.json")
    print(format_table(results, own))
    print(f"wrote {workdir / 'eval.json'}")
    return 0


def format_table(results: dict[str, dict[str, float]], own: str | None = None) -> str:
    """A Markdown table of re-ID figures in percent."""
    lines = [
        "| dataset | domain | rank-1 | rank-5 | rank-10 | mAP | queries | chance rank-1 |",
        "|" + "---|" * 8,
    ]
    for dataset, r in results.items():
        domain = "in" if own is None or dataset == own else "cross"
        lines.append(
            f"| {dataset} | {domain} | {100 * r['rank1']:.1f} | {100 * r['rank5']:.1f} "
            f"| {100 * r['rank10']:.1f} | {100 * r['mAP']:.1f} | {r['num_queries']} "
            f"| {100 * r['chance_rank1']:.3f} |"
        )
    return "\n".join(lines)


def how_to_train(workdir: Path, started: Any) -> str:
    """The command that finishes the run started in `workdir` (config `started`), or that
    starts one there."""
    from experiments.configs import VICTIMS

    command = ["python", "-m", "experiments", "victim", "train", "--workdir", str(workdir)]
    if started is None:
        return f"train one with `{shlex.join(command)}`"
    command += ["--resume", "--config", started.name, "--dataset", started.dataset]
    named = VICTIMS.get(started.name)
    for field in ("epochs", "seed"):
        if named is None or getattr(named, field) != getattr(started, field):
            command += [f"--{field}", str(getattr(started, field))]
    if named is not None:  # what it changed beyond those options
        made = named_config(started.name, started.dataset, started.epochs, started.seed)
        for field in dataclasses.fields(started):
            value = getattr(started, field.name)
            if value != getattr(made, field.name):
                command += ["--set", f"{field.name}={json.dumps(value)}"]
    return f"its training has not finished: resume it with `{shlex.join(command)}`"


def run_configs(args: argparse.Namespace) -> int:
    from experiments.configs import VICTIMS

    for name, config in VICTIMS.items():
        h, w = config.input_size
        print(
            f"{name:10s} model {config.model}, {h}x{w}, batch {config.p}x{config.k}, "
            f"{config.epochs} epochs, Adam {config.learning_rate:g}"
        )
    return 0
