"""`frontier [--config NAME]`: the privacy-utility frontier of the feature defences, each swept
over its strength beside the encryption modes, on the synthetic world (one process)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from experiments import INTERRUPTED_EXIT, fail
from experiments.configs.frontiers import FRONTIERS, get_frontier
from experiments.configs.overrides import add_set_option, apply_overrides
from invfeat.study.frontier import run_frontier
from invfeat.train import distributed


def register(subparsers: argparse._SubParsersAction) -> None:
    frontier = subparsers.add_parser(
        "frontier",
        help="the privacy-utility frontier: each defence (noise, quantise, drop, project) over "
        "its strength beside the encryption modes, against adaptive attackers (CPU, minutes)",
    )
    frontier.add_argument(
        "--config",
        default="default",
        choices=sorted(FRONTIERS),
        help="which frontier: default (every defence, beside the encryption modes: under 20 "
        "minutes on 2 CPU cores, the victim trained and the data rendered) or tiny (toy sizes)",
    )
    frontier.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where runs/<name>/ go (default ./runs)"
    )
    frontier.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="datasets: the synthetic ones are rendered here if missing ($INVFEAT_DATA_DIR, "
        "else ./data)",
    )
    frontier.add_argument("--quiet", action="store_true", help="no progress output")
    add_set_option(frontier, "'defences={\"noise\": [0.5, 1]}' or optimisation.steps=300")
    frontier.set_defaults(func=_run, handles_processes=True)


def _run(args: argparse.Namespace) -> int:
    command = "python -m experiments " + shlex.join(sys.argv[1:])
    try:
        if distributed.requested_process_count() > 1:
            return fail(
                f"the frontier runs in one process; unset {distributed.ENV_COORDINATOR}, "
                f"{distributed.ENV_NUM_PROCESSES} and {distributed.ENV_PROCESS_ID} and start it once"
            )
        config = apply_overrides(get_frontier(args.config), args.overrides)
        report = run_frontier(
            config, args.runs_dir / config.name, data_dir=args.data_dir, progress=not args.quiet
        )
    except KeyboardInterrupt:
        print(
            f"interrupted: finished stages and checkpoints are kept; run `{command}` again to "
            "resume",
            file=sys.stderr,
        )
        return INTERRUPTED_EXIT
    except (OSError, ValueError, ImportError) as err:  # bad input, a missing extra: named
        return fail(err)
    print(f"report: {report}")
    print(report.read_text().split("\n## Utility against leakage\n")[0])
    return 0
