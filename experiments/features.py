"""`python -m experiments features extract`: FastReID-layout feature files through the victim's API.

    features extract --dataset NAME --victim WORKDIR --out PATH
                     [--encrypt static|one-time|stream --key FILE] [--splits train query ...]

One .npz per split, plaintext or (with --encrypt) ShuffleBits or stream-mode ciphertext.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from experiments import fail, int_at_least


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("features", help="extract feature files through the API")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    extract = commands.add_parser("extract", help="one FastReID .npz per split")
    extract.add_argument(
        "--dataset",
        required=True,
        help="e.g. synth_market (rendered if missing) or a real dataset built with `data build`",
    )
    extract.add_argument("--victim", required=True, type=Path, help="trained victim workdir")
    extract.add_argument("--out", required=True, type=Path, help="a folder, or NAME.npz")
    extract.add_argument(
        "--encrypt",
        choices=("static", "one-time", "stream"),
        help="ShuffleBits scheme (static, one-time) or stream (ChaCha20-Poly1305)",
    )
    extract.add_argument("--key", type=Path, help="key file (created if missing)")
    extract.add_argument("--splits", nargs="+", help="default: every built split")
    extract.add_argument("--batch-size", type=int_at_least(1), default=256)
    extract.add_argument("--data-dir", type=Path, help="default: $INVFEAT_DATA_DIR or ./data")
    extract.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (never the key)"
    )
    extract.set_defaults(func=run_extract)


def load_or_create_key(path: Path, scheme: str):
    """The key in `path` (checked against `scheme`), or a new one saved there (mode 0600)."""
    from invfeat import shufflebits as sb
    from invfeat.victims.extraction import scheme_of

    if not path.exists():
        key = {"static": sb.Key, "one-time": sb.Secret, "stream": sb.StreamKey}[scheme].generate()
        key.save(path)
        print(f"created a new {scheme} key file {path} (mode 0600)")
        return key
    key = sb.load_key(path)
    found = scheme_of(key)
    if found != scheme:
        raise ValueError(f"{path} holds a {found} key, but --encrypt {scheme} was asked for")
    return key


def made_by(args: argparse.Namespace) -> dict[str, str | None]:
    """What makes the files, for a rerun to know its own interrupted extraction: the victim's
    folder and a digest of its weights, the key file and a digest of it (never the key)."""
    from invfeat.victims import VARIABLES_FILE

    def digest(path: Path) -> str:
        return hashlib.sha256(b"invfeat extract\0" + path.read_bytes()).hexdigest()[:32]

    return {
        "victim": str(args.victim.resolve()),
        "weights": digest(args.victim / VARIABLES_FILE),
        "key_file": None if args.key is None else str(args.key.resolve()),
        "key": None if args.key is None else digest(args.key),
    }


def run_extract(args: argparse.Namespace) -> int:
    """One .npz per split: `--out DIR` writes DIR/<split>.npz, `--out NAME.npz` NAME_<split>.npz.

    With --encrypt the API emits ciphertext under the static key in the key file, or under
    per-vector keys derived from its one-time secret, or XORed with the ChaCha20 keystream of its
    stream key (with a Poly1305 tag per row), the nonces stored in the files; keys are never
    printed. Existing outputs are replaced only with --overwrite, the key file never; a rerun
    of a killed extraction with the same options keeps the files it had written.
    """
    from invfeat import shufflebits as sb
    from invfeat.data import builders
    from invfeat.data.feature_files import FeatureFileError
    from invfeat.victims import extract_features, feature_paths, load_victim, settings_for

    if (args.encrypt is None) != (args.key is None):
        return fail("--encrypt and --key go together")
    try:
        splits = args.splits or builders.builder_class(args.dataset).SPLITS
        outputs = {path.resolve() for path in feature_paths(args.out, splits).values()}
        if args.key is not None and args.key.resolve() in outputs:
            return fail(f"--key {args.key}: is one of the output files; refusing to overwrite it")
        unknown = sorted(set(splits) - set(builders.builder_class(args.dataset).SPLITS))
        if unknown:
            return fail(
                f"--splits {' '.join(unknown)}: {args.dataset} has the splits "
                f"{' '.join(builders.builder_class(args.dataset).SPLITS)}"
            )
        victim = load_victim(args.victim)
        key = load_or_create_key(args.key, args.encrypt) if args.encrypt else None
        settings = settings_for(victim.config, args.dataset)
        paths = extract_features(
            victim,
            args.dataset,
            args.out,
            key=key,
            splits=args.splits,
            data_dir=args.data_dir,
            data_settings=settings,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            made_by=made_by(args),
        )
    except (OSError, ValueError, TypeError, FeatureFileError, sb.KeyFileError) as err:
        return fail(err)
    kind = f"{args.encrypt}-key ciphertext" if args.encrypt else "plaintext"
    for split, path in paths.items():
        print(f"{split}: {path} ({kind})")
    return 0
