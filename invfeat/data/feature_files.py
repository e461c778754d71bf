"""Feature files in FastReID's .npz layout: read, validate, write atomically, align to records.

`accumulated_image_file_paths` (str [N]) and `accumulated_feature_array` (float [N, D]; FastReID
readers load ciphertext too); encrypted files add `invfeat_encryption`, a 0-d JSON string
`{"version": 1, "scheme": "static" | "one-time" | "stream"}`; one-time and stream ones
`invfeat_nonces` (uint32 [N, 3]), and stream ones `invfeat_tags` (uint8 [N, 16], each row's
ChaCha20-Poly1305 tag). Everything else is written back as read: encrypting a file changes only
its features. Shapes, dtypes and the uniqueness of a stream file's nonces are checked here; the
tags are computed and verified where the key is (`invfeat.shufflebits.aead`).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from invfeat.files import write_atomic

PATHS_KEY = "accumulated_image_file_paths"
FEATURES_KEY = "accumulated_feature_array"
ENCRYPTION_KEY = "invfeat_encryption"
NONCES_KEY = "invfeat_nonces"
TAGS_KEY = "invfeat_tags"
SCHEMES = ("static", "one-time", "stream")
NONCED_SCHEMES = ("one-time", "stream")  # a nonce per row
TAG_BYTES = 16  # a Poly1305 tag per row of a stream file
_LAYOUT_KEYS = (PATHS_KEY, FEATURES_KEY, ENCRYPTION_KEY, NONCES_KEY, TAGS_KEY)
_META_VERSION = 1


class FeatureFileError(ValueError):
    """A feature file is missing, unreadable or malformed (the message names the file)."""


@dataclass(frozen=True)
class FeatureFile:
    """Rows of features with their dataset-relative image paths (and encryption metadata)."""

    paths: np.ndarray  # [N] str
    features: np.ndarray  # [N, D] float
    encryption: str | None = None  # None (plain), "static", "one-time" or "stream"
    nonces: np.ndarray | None = None  # [N, 3] uint32 for one-time and stream encryption
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # other arrays, kept verbatim
    paths_as_bytes: bool = False  # the file stored its paths as UTF-8 bytes (written back so)
    tags: np.ndarray | None = None  # [N, 16] uint8 Poly1305 tags for stream encryption

    def __len__(self) -> int:
        return len(self.paths)


def normalise_path(path: str) -> str:
    """Compare paths as POSIX relative paths: backslashes to slashes, no leading './'."""
    path = str(path).replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def _mismatch(what: str, items: Iterable[str]) -> str:
    items = sorted(items)
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    return f"{len(items)} {what} (e.g. {', '.join(items[:3])}{more})"


def validate(ff: FeatureFile, where: str | os.PathLike, dataset_paths=None) -> None:
    """Raise FeatureFileError (naming `where`) unless `ff` is a well-formed feature file.

    Checks: 1-D string paths, unique; 2-D float features with one row per path; no NaN or
    infinity in plain files (ciphertext may hold any bit pattern); nonces exactly for one-time
    and stream encryption, unique for stream; tags exactly for stream; and, if `dataset_paths`
    is given, that the paths are exactly that set.
    """
    paths, feats = ff.paths, ff.features
    if paths.ndim != 1 or paths.dtype.kind != "U":
        raise FeatureFileError(f"{where}: {PATHS_KEY} must be a 1-D string array")
    if feats.dtype.kind == "V":  # what np.savez makes of bfloat16: raw bytes, the type lost
        raise FeatureFileError(
            f"{where}: {FEATURES_KEY} holds untyped {feats.dtype.itemsize}-byte values "
            f"({feats.dtype.str}, as numpy saves bfloat16); store features as float16, float32 "
            "or float64"
        )
    if feats.ndim != 2 or feats.dtype.kind != "f":
        raise FeatureFileError(
            f"{where}: {FEATURES_KEY} must be a 2-D float array, got {feats.dtype} {feats.shape}"
        )
    if len(paths) != len(feats):
        raise FeatureFileError(f"{where}: {len(paths)} paths but {len(feats)} feature rows")
    normal = [normalise_path(p) for p in paths]
    if len(set(normal)) != len(normal):
        seen, dups = set(), set()
        for p in normal:
            (dups if p in seen else seen).add(p)
        raise FeatureFileError(f"{where}: {_mismatch('duplicate paths', dups)}")
    if ff.encryption is None:
        bad = ~np.isfinite(feats)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise FeatureFileError(
                f"{where}: features contain NaN or infinity (not allowed in a plain feature "
                f"file) in {len(rows)} rows (e.g. {paths[rows[0]]})"
            )
    elif ff.encryption not in SCHEMES:
        raise FeatureFileError(f"{where}: unknown encryption scheme {ff.encryption!r}")
    if ff.encryption in NONCED_SCHEMES:
        n = ff.nonces
        if n is None or n.dtype != np.uint32 or n.shape != (len(paths), 3):
            raise FeatureFileError(
                f"{where}: {ff.encryption} encryption needs {NONCES_KEY} of uint32 "
                f"[{len(paths)}, 3]"
            )
    elif ff.nonces is not None:
        raise FeatureFileError(f"{where}: has {NONCES_KEY} but is not one-time or stream encrypted")
    if ff.encryption == "stream":
        _check_stream(ff, where)
    elif ff.tags is not None:
        raise FeatureFileError(f"{where}: has {TAGS_KEY} but is not stream encrypted")
    if dataset_paths is not None:
        expected = {normalise_path(p) for p in dataset_paths}
        unknown, missing = set(normal) - expected, expected - set(normal)
        if unknown or missing:
            parts = [_mismatch("paths not in the dataset", unknown)] if unknown else []
            parts += [_mismatch("dataset images missing", missing)] if missing else []
            raise FeatureFileError(f"{where}: {'; '.join(parts)}")


def repeated_nonces(nonces: np.ndarray) -> list[np.ndarray]:
    """The groups of rows (indices, ascending) that share a nonce, in order of first row."""
    _, inverse, counts = np.unique(nonces, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    groups = [np.flatnonzero(inverse == g) for g in np.flatnonzero(counts > 1)]
    return sorted(groups, key=lambda rows: rows[0])


def _check_stream(ff: FeatureFile, where: str | os.PathLike) -> None:
    """A stream file's tags (uint8 [N, 16]) and its nonces, none used twice."""
    t, n = ff.tags, len(ff.paths)
    if t is None or t.dtype != np.uint8 or t.shape != (n, TAG_BYTES):
        found = "none" if t is None else f"{t.dtype} {t.shape}"
        raise FeatureFileError(
            f"{where}: stream encryption needs {TAGS_KEY} of uint8 [{n}, {TAG_BYTES}] "
            f"(a Poly1305 tag per row), found {found}"
        )
    groups = repeated_nonces(ff.nonces)
    if groups:
        shown = "; ".join(" and ".join(f"{i} ({ff.paths[i]})" for i in rows) for rows in groups[:3])
        more = f"; and {len(groups) - 3} more groups" if len(groups) > 3 else ""
        raise FeatureFileError(
            f"{where}: stream-encrypted rows share a nonce (one keystream twice gives away the "
            f"XOR of their plaintexts): rows {shown}{more}"
        )


def read_features(
    path: str | os.PathLike, *, encrypted: bool | None = None, dataset_paths=None
) -> FeatureFile:
    """Load and validate a feature file; `encrypted` True/False demands that state."""
    path = Path(path)
    if path.is_dir():
        raise FeatureFileError(f"{path}: is a folder, not a feature file")
    if not path.is_file():
        raise FeatureFileError(f"{path}: no such feature file")
    if not zipfile.is_zipfile(path):
        raise FeatureFileError(f"{path}: not a readable .npz feature file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise FeatureFileError(f"{path}: holds pickled objects; store paths as str") from None
        raise FeatureFileError(f"{path}: not a readable .npz feature file") from None
    except (OSError, zipfile.BadZipFile, EOFError):
        raise FeatureFileError(f"{path}: not a readable .npz feature file") from None
    for key in (PATHS_KEY, FEATURES_KEY):
        if key not in contents:
            raise FeatureFileError(f"{path}: missing key {key!r} (has {sorted(contents)})")
    paths = contents[PATHS_KEY]
    paths_as_bytes = paths.dtype.kind == "S"
    if paths_as_bytes:
        try:
            paths = np.char.decode(paths, "utf-8")
        except UnicodeDecodeError:
            raise FeatureFileError(f"{path}: {PATHS_KEY} holds bytes that are not UTF-8") from None
    scheme = None
    if ENCRYPTION_KEY in contents:
        try:
            meta = json.loads(str(contents[ENCRYPTION_KEY][()]))
        except (ValueError, TypeError):
            meta = None
        if not isinstance(meta, dict) or meta.get("version") != _META_VERSION:
            raise FeatureFileError(f"{path}: unreadable {ENCRYPTION_KEY} metadata")
        scheme = meta.get("scheme", "<missing>")
    extras = {k: v for k, v in contents.items() if k not in _LAYOUT_KEYS}
    ff = FeatureFile(
        paths,
        contents[FEATURES_KEY],
        scheme,
        contents.get(NONCES_KEY),
        extras,
        paths_as_bytes,
        contents.get(TAGS_KEY),
    )
    if encrypted is not None and (scheme is not None) != encrypted:
        state = "encrypted" if scheme else "not encrypted"
        raise FeatureFileError(f"{path}: feature file is {state}")
    validate(ff, path, dataset_paths)
    return ff


def write_features(path: str | os.PathLike, ff: FeatureFile, *, exclusive: bool = False) -> None:
    """Validate, then write atomically (`invfeat.files.write_atomic`); with `exclusive` a file
    that exists by then is left as it is (FileExistsError)."""
    path = Path(path)
    validate(ff, path)
    paths = np.char.encode(ff.paths, "utf-8") if ff.paths_as_bytes else ff.paths
    arrays = {**ff.extras, PATHS_KEY: paths, FEATURES_KEY: ff.features}
    if ff.encryption is not None:
        meta = json.dumps({"version": _META_VERSION, "scheme": ff.encryption})
        arrays[ENCRYPTION_KEY] = np.array(meta)
    if ff.nonces is not None:
        arrays[NONCES_KEY] = ff.nonces
    if ff.tags is not None:
        arrays[TAGS_KEY] = ff.tags
    write_atomic(path, lambda f: np.savez(f, **arrays), exclusive=exclusive)


def align_to_records(ff: FeatureFile, record_paths: Iterable[str]) -> np.ndarray:
    """Row index into `ff` for each dataset record, matched by relative path (all must exist).

    A record `query/0001_c1s1_001051_00.jpg` matches a row whose path ends with those
    components, so files written elsewhere with absolute or differently rooted paths (FastReID
    stores the paths it read) align too; a suffix shared by two rows is an error.
    """
    records = [normalise_path(p) for p in record_paths]
    files = [normalise_path(p) for p in ff.paths]
    rows_by_depth: dict[int, dict[str, int]] = {}
    for depth in {r.count("/") + 1 for r in records}:
        rows: dict[str, int] = {}
        for i, path in enumerate(files):
            suffix = "/".join(path.split("/")[-depth:])
            if suffix in rows:
                raise FeatureFileError(
                    f"feature file rows {files[rows[suffix]]} and {path} both end in {suffix}"
                )
            rows[suffix] = i
        rows_by_depth[depth] = rows
    found = [rows_by_depth[r.count("/") + 1].get(r) for r in records]
    missing = [r for r, i in zip(records, found, strict=True) if i is None]
    if missing:
        seen = f"; its {len(files)} paths look like {files[0]}" if files else "; it has no rows"
        raise FeatureFileError(f"feature file lacks {_mismatch('record paths', missing)}{seen}")
    return np.array(found, dtype=np.int64)
