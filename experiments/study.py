"""`demo`, `run NAME`, `list`: the study end to end, one named configuration per run."""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.configs import STUDIES, get_study


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="the whole study on the embedded synthetic world (CPU, minutes)"
    )
    _common(demo)
    demo.set_defaults(func=lambda args: _run("demo", args))

    run = subparsers.add_parser("run", help="run one named study configuration (see `list`)")
    run.add_argument("name", help="a configuration name from `python -m experiments list`")
    _common(run)
    run.set_defaults(func=lambda args: _run(args.name, args))

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
        help="built datasets ($INVFEAT_DATA_DIR, else ./data)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _run(name: str, args: argparse.Namespace) -> int:
    from invfeat.study import run_study

    config = get_study(name)
    report = run_study(
        config, args.runs_dir / config.name, data_dir=args.data_dir, progress=not args.quiet
    )
    print(f"report: {report}")
    print((report.parent / "report.md").read_text().split("## Attribute")[0])
    return 0


def _list(args: argparse.Namespace) -> int:
    del args
    width = max(len(name) for name in STUDIES)
    for name, config in STUDIES.items():
        needs = f"  [needs: {', '.join(config.requires)}]" if config.requires else ""
        print(f"{name:<{width}}  {config.description}{needs}")
    return 0
