"""`python -m experiments shufflebits keygen|encrypt|decrypt|selftest`: ShuffleBits on feature files."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from experiments import fail
from invfeat import shufflebits as sb
from invfeat.data.feature_files import FeatureFileError, read_features, write_features
from invfeat.files import remove_orphans
from invfeat.selftest import run_checks
from invfeat.shufflebits.aead import check_stream_tags, stream_tags

# the feature-file scheme of each key type
_SCHEMES = {sb.Key: "static", sb.Secret: "one-time", sb.StreamKey: "stream"}
_ERRORS = (sb.KeyFileError, FeatureFileError, FileExistsError, ValueError, TypeError, OSError)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shufflebits", help="ShuffleBits keys, feature-file encryption and a self-test"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keygen = sub.add_parser("keygen", help="write a new key (mode 0600)")
    keygen.add_argument("--out", required=True, type=Path, help="key file to create")
    kind = keygen.add_mutually_exclusive_group()
    kind.add_argument(
        "--one-time", action="store_true", help="a 256-bit one-time-pad secret instead of a key"
    )
    kind.add_argument(
        "--stream", action="store_true", help="a 256-bit stream-mode (ChaCha20-Poly1305) key"
    )
    keygen.add_argument(
        "--bits",
        type=int,
        default=32,
        choices=sb.WIDTHS,
        help="float width a static key permutes (default: %(default)s; one-time secrets and "
        "stream keys serve every width, so --one-time and --stream ignore it)",
    )
    keygen.set_defaults(func=_keygen)

    for name, func, what in (("encrypt", _encrypt, "plain"), ("decrypt", _decrypt, "encrypted")):
        cmd = sub.add_parser(name, help=f"{name} a FastReID .npz feature file")
        cmd.add_argument("--key", required=True, type=Path, help="key, secret or stream key file")
        cmd.add_argument("--in", dest="inp", required=True, type=Path, help=f"{what} .npz")
        cmd.add_argument("--out", required=True, type=Path, help="output .npz (written atomically)")
        cmd.add_argument(
            "--overwrite", action="store_true", help="replace --out if it exists (never the key)"
        )
        cmd.set_defaults(func=func)

    selftest = sub.add_parser("selftest", help="fast checks of ShuffleBits on this machine")
    selftest.set_defaults(func=_selftest)


def _keygen(args: argparse.Namespace) -> int:
    try:
        remove_orphans(args.out)  # a killed keygen's temporary file holds a key
        if args.stream:
            key, kind = sb.StreamKey.generate(), "stream key (256 bits)"
        elif args.one_time:
            key, kind = sb.Secret.generate(), "one-time secret (256 bits)"
        else:
            key, kind = sb.Key.generate(args.bits), f"{args.bits}-bit static key"
        key.save(args.out)
    except _ERRORS as err:
        return fail(err)
    print(f"wrote {kind} to {args.out} (mode 0600)")
    return 0


def _check_output(args: argparse.Namespace) -> None:
    """Refuse to replace an existing --out unless --overwrite, and the key file ever."""
    out = args.out
    if not (out.exists() or out.is_symlink()):
        return
    if out.exists() and args.key.exists() and out.samefile(args.key):
        raise FileExistsError(f"{out}: is the key file {args.key}; refusing to overwrite it")
    if not args.overwrite:
        raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it")


def _transform(args: argparse.Namespace, encrypting: bool) -> int:
    """Encrypt or decrypt a feature file; a stream file's tags are all checked before any
    decryption, and nothing is written unless every step succeeds."""
    try:
        remove_orphans(args.out)
        _check_output(args)
        key = sb.load_key(args.key)
        ff = read_features(args.inp, encrypted=not encrypting)
        scheme = _SCHEMES[type(key)]
        if not encrypting and ff.encryption != scheme:
            raise ValueError(
                f"{args.inp}: encrypted with a {ff.encryption} key, not a {scheme} one"
            )
        nonces = None
        if sb.uses_nonces(key):
            nonces = sb.fresh_nonces(len(ff)) if encrypting else ff.nonces
        if scheme == "stream" and not encrypting:
            try:
                check_stream_tags(ff.features, key, nonces, ff.tags, names=ff.paths)
            except ValueError as err:
                raise ValueError(f"{args.inp}: {err}; nothing was written") from None
        op = sb.encrypt if encrypting else sb.decrypt
        with jax.enable_x64(ff.features.dtype == np.float64):
            out = np.asarray(op(ff.features, key, nonces))  # one compiled program
        tags = stream_tags(out, key, nonces) if scheme == "stream" and encrypting else None
        result = dataclasses.replace(
            ff,
            features=out,
            encryption=scheme if encrypting else None,
            nonces=nonces if encrypting else None,
            tags=tags,
        )
        write_features(args.out, result, exclusive=not args.overwrite)
    except _ERRORS as err:
        if not encrypting and isinstance(err, FeatureFileError) and "NaN" in str(err):
            err = FeatureFileError(f"{err}; wrong key? nothing was written")
        return fail(err)
    verb = "encrypted" if encrypting else "decrypted"
    print(f"{verb} {len(ff)} x {ff.features.shape[1]} {ff.features.dtype} features -> {args.out}")
    return 0


def _encrypt(args: argparse.Namespace) -> int:
    return _transform(args, encrypting=True)


def _decrypt(args: argparse.Namespace) -> int:
    return _transform(args, encrypting=False)


def _selftest(args: argparse.Namespace) -> int:
    start, failed = time.perf_counter(), 0
    results = list(run_checks())
    for name, ok, detail in results:
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    took = time.perf_counter() - start
    print(
        f"shufflebits selftest: {len(results) - failed}/{len(results)} checks passed ({took:.1f} s)"
    )
    return 1 if failed else 0
