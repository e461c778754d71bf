"""`python -m experiments data build|preview`: build re-ID datasets, look at the synthetic world.

    data build --dataset NAME [--manual-dir DIR] [--data-dir DIR] [--config NAME]
    data preview --dataset NAME [--out PNG]

NAME: market1501, dukemtmc_reid, msmt17 (need --manual-dir: where you unpacked them),
synth_market, synth_duke, synth_msmt (rendered, nothing to download). The data dir defaults to
$INVFEAT_DATA_DIR, else ./data.
"""

from __future__ import annotations

import argparse
import pathlib

from experiments import fail

REAL = ("market1501", "dukemtmc_reid", "msmt17")
SYNTH = ("synth_market", "synth_duke", "synth_msmt")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="build datasets, preview the synthetic world")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    build = commands.add_parser("build", help="build a dataset as array_record files")
    build.add_argument("--dataset", required=True, choices=REAL + SYNTH)
    build.add_argument("--manual-dir", type=pathlib.Path, help="where a real dataset is unpacked")
    build.add_argument("--data-dir", type=pathlib.Path, help="default: $INVFEAT_DATA_DIR or ./data")
    build.add_argument("--config", help="builder config name (synth: 128x64, 256x128, 384x128)")
    build.set_defaults(func=run_build)

    preview = commands.add_parser("preview", help="contact sheet of a synthetic dataset")
    preview.add_argument("--dataset", required=True, choices=SYNTH)
    preview.add_argument("--out", type=pathlib.Path, help="PNG path (default: NAME_preview.png)")
    preview.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    preview.set_defaults(func=run_preview)


def run_build(args: argparse.Namespace) -> int:
    from invfeat.data import builders

    cls = builders.builder_class(args.dataset)
    configs = [c.name for c in cls.BUILDER_CONFIGS]
    if args.config is not None and args.config not in configs:
        return fail(
            f"--config {args.config}: {args.dataset} has "
            + (f"the configs {configs}" if configs else "no configs")
        )
    if args.dataset in REAL and args.manual_dir is None:
        return fail(
            f"{args.dataset} needs --manual-dir FOLDER, the folder you unpacked it in:\n\n"
            f"    python -m experiments data build --dataset {args.dataset} "
            "--manual-dir /path/to/unpacked\n\n"
            f"{cls.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
        )
    if args.dataset in REAL and args.manual_dir.is_file():
        return fail(f"--manual-dir {args.manual_dir} is a file: unpack it and pass the folder")
    if args.dataset in REAL and not (args.manual_dir.is_dir() and any(args.manual_dir.iterdir())):
        return fail(f"--manual-dir {args.manual_dir}: no such folder, or an empty one")
    kwargs = {"config": args.config} if args.config else {}
    try:
        b = builders.build(
            args.dataset, data_dir=args.data_dir, manual_dir=args.manual_dir, **kwargs
        )
    except (OSError, ValueError) as err:  # a layout not found, a folder not writable: named
        return fail(str(err))
    print(summary(b))
    return 0


def summary(builder) -> str:
    """One line per split: images and identities."""
    identities = dict(builder.info.metadata.get("num_identities", {}))
    lines = [f"{builder.name} ({builder.info.config_name or 'default'}) in {builder.data_dir}:"]
    lines.append(f"  {'split':<8} {'images':>8} {'identities':>10}")
    for split in builder.SPLITS:
        if split not in builder.info.splits:
            lines.append(f"  {split:<8} {'(none)':>8}")
            continue
        n = builder.info.splits[split].num_examples
        lines.append(f"  {split:<8} {n:>8} {identities.get(split, '?'):>10}")
    rejected = builder.info.metadata.get("rejected_files", [])
    if rejected:
        lines.append(
            f"  {len(rejected)} files left out (listed in metadata.json); once they are"
            f" mended, delete {builder.data_dir} and build again"
        )
    return "\n".join(lines)


def run_preview(args: argparse.Namespace) -> int:
    from invfeat.data.synth.preview import write_contact_sheet

    out = args.out if args.out is not None else pathlib.Path(f"{args.dataset}_preview.png")
    if out.suffix.lower() != ".png" or out.is_dir():
        return fail(f"--out {out}: give a file path ending in .png")
    if out.exists() and not args.overwrite:
        return fail(f"{out}: already exists; pass --overwrite to replace it")
    print(write_contact_sheet(args.dataset, out, overwrite=args.overwrite))
    return 0
