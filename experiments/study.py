"""`demo`, `run NAME`, `list`: the study end to end, one named configuration per run (or one
run per seed, summarised), in one process (a launch as several, JAX_NUM_PROCESSES > 1, is
refused)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import jax

from experiments import INTERRUPTED_EXIT, fail
from experiments.configs import STUDIES, get_study
from experiments.configs.overrides import add_set_option, apply_overrides
from invfeat.models.perceptual import KERAS_LOADERS
from invfeat.study.config import StudyConfig
from invfeat.study.run import StudyInputsError, StudyPending, run_study
from invfeat.study.seeds import with_seed, write_summary
from invfeat.train import distributed
from invfeat.victims.from_files import FileVictim, PendingFeatures

PENDING_EXIT = 3  # the study waits for features computed outside (the message says which)
OPTIONS = {  # the study's config fields that a command-line option gives
    "features_dir": "--victim-features DIR",
    "perceptual_weights": "--perceptual-weights FILE.h5",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="the whole study on the embedded synthetic world (CPU, minutes)"
    )
    _common(demo)
    demo.set_defaults(func=lambda args: _run("demo", args), handles_processes=True)

    run = subparsers.add_parser("run", help="run one named study configuration (see `list`)")
    run.add_argument("name", help="a configuration name from `python -m experiments list`")
    _common(run)
    run.add_argument(
        "--victim-features",
        type=Path,
        help="a feature-file victim's folder of train.npz, query.npz, gallery.npz (FastReID layout)",
    )
    run.add_argument(
        "--victim-weights",
        type=Path,
        help="its weights, to score reconstructions here: a FastReID .pth or an invfeat victim "
        "folder (without: reconstructions are written out for its own extractor)",
    )
    run.add_argument(
        "--perceptual-weights",
        type=Path,
        help="the Keras weights of the Keras perceptual network the study names: "
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (resnet50-imagenet) or "
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (vgg16-imagenet)",
    )
    run.set_defaults(func=lambda args: _run(args.name, args), handles_processes=True)

    listing = subparsers.add_parser("list", help="list the named study configurations")
    listing.set_defaults(func=_list)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where runs/<name>/ go (default ./runs)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="datasets: the synthetic ones are rendered here if missing, real ones must be "
        "built here first with `data build` ($INVFEAT_DATA_DIR, else ./data)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--seeds",
        type=_seeds,
        help="comma-separated seeds, e.g. 0,1,2: one run per seed (runs/<name>-seed<S>/, every "
        "seed field of the config set to S), then one report of every figure's mean and "
        "spread in runs/<name>-seeds/",
    )
    add_set_option(parser, "gan.learning_rate=1e-4 or victim.epochs=3")


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds are comma-separated integers, got {text!r}"
        ) from None
    if min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct and >= 0, got {text!r}")
    return seeds


def with_paths(config: StudyConfig, args: argparse.Namespace) -> StudyConfig:
    """The named config with the machine's paths from the command line (absolute)."""
    victim = {}
    for option, field in (("victim_features", "features_dir"), ("victim_weights", "weights")):
        if getattr(args, option, None) is not None:
            if not isinstance(config.victim, FileVictim):
                raise ValueError(f"--{option.replace('_', '-')}: {config.name} trains its victim")
            victim[field] = str(getattr(args, option).resolve())
    overrides: dict[str, Any] = {"victim": victim} if victim else {}
    weights = getattr(args, "perceptual_weights", None)
    if weights is not None:
        attacks = ("autoencoder", "gan")
        chosen = [a for a in attacks if getattr(config, a).perceptual in KERAS_LOADERS]
        if not chosen:
            raise ValueError(
                f"--perceptual-weights: {config.name} uses no Keras perceptual network "
                f"({', '.join(KERAS_LOADERS)})"
            )
        overrides |= {a: {"perceptual_weights": str(weights.resolve())} for a in chosen}
    return config.replace_nested(**overrides)


def _run(name: str, args: argparse.Namespace) -> int:
    command = "python -m experiments " + shlex.join(sys.argv[1:])
    try:
        several = distributed.requested_process_count() > 1
    except ValueError as err:
        return fail(err)
    if several:  # its stages write shared files and pick devices as one process
        return fail(
            f"the study ({name}) runs in one process; unset {distributed.ENV_COORDINATOR}, "
            f"{distributed.ENV_NUM_PROCESSES} and {distributed.ENV_PROCESS_ID} and start it "
            "once (several processes can run `victim train`, and `victim eval` and `features "
            "extract`, which run on process 0)"
        )
    try:
        config = with_paths(apply_overrides(get_study(name), args.overrides), args)
        if "GPU" in config.requires and jax.default_backend() == "cpu":
            print(f"warning: {name} is sized for a GPU; on this CPU it takes days", file=sys.stderr)
        if args.seeds is None:
            report = run_study(
                config, args.runs_dir / config.name, data_dir=args.data_dir, progress=not args.quiet
            )
        else:
            runs = {s: args.runs_dir / f"{config.name}-seed{s}" for s in args.seeds}
            for seed, run_dir in runs.items():
                run_study(
                    with_seed(config, seed),
                    run_dir,
                    data_dir=args.data_dir,
                    progress=not args.quiet,
                )
            report = write_summary(config.name, runs, args.runs_dir / f"{config.name}-seeds")
    except StudyPending as waiting:
        print(pending_message(waiting.pending, command))
        return PENDING_EXIT
    except KeyboardInterrupt:
        print(
            f"interrupted: finished stages and checkpoints are kept; run `{command}`"
            " again to resume",
            file=sys.stderr,
        )
        return INTERRUPTED_EXIT
    except StudyInputsError as err:
        return fail(inputs_message(err))
    except (OSError, ValueError, ImportError) as err:  # bad input, a missing extra: named
        return fail(err)
    print(f"report: {report}")
    print(report.read_text().split("\n## Plaintext features")[0].split("\n## Figures")[0])
    return 0


def _list(args: argparse.Namespace) -> int:
    del args
    width = max(len(name) for name in STUDIES)
    for name, config in STUDIES.items():
        print(f"{name:<{width}}  {config.description}")
        if config.requires:
            print(f"{'':<{width}}  needs: {'; '.join(config.requires)}")
    return 0


def pending_message(pending: list[PendingFeatures], command: str) -> str:
    """What the user runs to finish a study that waits for external features."""
    lines = [
        "The victim has no loadable weights here, so its features of the reconstructions",
        "must come from its own extractor (e.g. FastReID's), as in the published evaluation:",
        "",
    ]
    for p in pending:
        lines.append(f"  images:   {p.folder}/  ->  features: {p.expected}")
    lines += [
        "",
        "Write each features file in FastReID's .npz layout (accumulated_image_file_paths,",
        "accumulated_feature_array; paths ending in the image names), then run again:",
        f"  {command}",
    ]
    return "\n".join(lines)


def inputs_message(error: StudyInputsError) -> str:
    """The inputs a study lacks, each with the option that gives it."""
    problems = [f"{m.what} ({OPTIONS.get(m.field, m.field)})" for m in error.missing]
    problems += [f"no such file or folder: {', '.join(error.absent)}"] if error.absent else []
    return f"{error.name}: {'; '.join(problems)}"
